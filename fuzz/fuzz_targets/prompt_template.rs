//! The system prompt a turn builds: the session's `system_template` with its placeholders
//! filled from the agent and session text, or the default prompt. Input: NUL-separated
//! template, agent name, about, situation, then instructions; the first byte picks the size
//! limit. The prompt never exceeds the limit, and a template without placeholders is sent as
//! written.
#![no_main]

use agentd::fuzzing::{PromptParts, system_prompt};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&size, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let max_bytes = if size & 0x80 == 0 {
        64 * 1024
    } else {
        usize::from(size & 0x7f) * 4
    };
    let mut fields = text.split('\0').map(str::to_owned);
    let template = fields.next().filter(|t| !t.is_empty());
    let parts = PromptParts {
        template: template.clone(),
        agent_name: fields.next().unwrap_or_default(),
        agent_about: fields.next().unwrap_or_default(),
        situation: fields.next(),
        instructions: fields.collect(),
    };
    match system_prompt(parts, max_bytes) {
        Ok(prompt) => {
            let prompt = prompt.unwrap_or_default();
            assert!(prompt.len() <= max_bytes);
            if let Some(template) = template.filter(|t| !t.trim().is_empty() && !t.contains("{{")) {
                assert_eq!(prompt, template);
            }
        }
        Err(message) => assert!(message.contains("turn.max_system_prompt_bytes")),
    }
});
