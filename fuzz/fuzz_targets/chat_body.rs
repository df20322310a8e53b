//! A `POST /sessions/{id}/chat` body through the parsing and checks the handler runs before it
//! reads the session (serde into the ChatInput, counts, fields, declared tools' schemas):
//! every refusal is a 4xx (a 503 only when every schema compile slot stayed busy), never a
//! 500 or a panic.
#![no_main]

use std::sync::LazyLock;

use agentd::fuzzing::ChatBody;
use libfuzzer_sys::fuzz_target;

static CHAT: LazyLock<ChatBody> = LazyLock::new(ChatBody::new);

fuzz_target!(|data: &[u8]| {
    match CHAT.check(data) {
        Ok((messages, _tools)) => assert!(messages >= 1),
        Err((status, message)) => {
            let busy = status == 503 && message.contains("busy compiling");
            assert!((400..500).contains(&status) || busy, "{status}: {message}");
        }
    }
});
