//! The model's event stream: bytes a provider sends, cut into reads, through the SSE decoder
//! and the streamed-delta assembler. Checks that cutting the bytes differently never changes
//! the events or the answer, that forwarded text is the answer's text, that the limits hold
//! and that no error quotes the provider's key or password.
#![no_main]

use agentd::config::LimitsConfig;
use agentd::fuzzing::{STREAM_API_KEY, StreamReport, decode_events, model_stream};
use libfuzzer_sys::fuzz_target;

/// Cuts `bytes` into reads of 1 to 32 bytes, their lengths drawn from `seed`.
fn reads(bytes: &[u8], seed: u8) -> Vec<&[u8]> {
    let mut state = u32::from(seed) | 0x9e37_7900;
    let mut rest = bytes;
    let mut out = Vec::new();
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let len = (state % 32 + 1) as usize;
        let (read, after) = rest.split_at(len.min(rest.len()));
        out.push(read);
        rest = after;
    }
    out
}

/// The limits of one run: the defaults, or small ones that streams reach quickly.
fn limits(small: bool) -> LimitsConfig {
    let mut limits = LimitsConfig::default();
    if small {
        limits.max_event_bytes = 96;
        limits.max_response_bytes = 256;
        limits.max_tool_calls = 3;
    }
    limits
}

/// What must not depend on how the stream was cut (generated call ids do).
fn shape(report: &StreamReport) -> (String, Option<String>, Vec<(String, String)>, bool) {
    let calls = report
        .calls
        .iter()
        .map(|c| (c.function.name.clone(), c.function.arguments.clone()))
        .collect();
    (
        report.forwarded.clone(),
        report.content.clone(),
        calls,
        report.error.is_some(),
    )
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let limits = limits(seed & 0x80 != 0);
    let cut = reads(stream, seed);

    let whole = decode_events(&[stream], limits.max_event_bytes);
    assert_eq!(decode_events(&cut, limits.max_event_bytes), whole);
    for event in &whole.0 {
        assert!(event.len() <= limits.max_event_bytes);
    }

    let report = model_stream(&cut, &limits);
    assert_eq!(shape(&model_stream(&[stream], &limits)), shape(&report));
    match &report.error {
        Some(error) => {
            for secret in [STREAM_API_KEY, "fuzz-password"] {
                assert!(!error.contains(secret), "{error}");
            }
        }
        None => {
            assert_eq!(report.content.as_deref().unwrap_or(""), report.forwarded);
            assert!(report.calls.len() <= limits.max_tool_calls);
            assert!(report.forwarded.len() <= limits.max_response_bytes);
            for call in &report.calls {
                assert!(!call.id.is_empty() && !call.function.name.is_empty());
            }
            let reason = report.finish_reason.as_deref();
            assert_eq!(report.calls.is_empty(), reason != Some("tool_calls"));
        }
    }
});
