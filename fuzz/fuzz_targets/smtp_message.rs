//! `send_email` arguments (first byte: whether the policy allows only example.com, the rest:
//! the arguments JSON) through the smtp plugin's limits, recipient policy and message builder.
//! A built message has only the headers agentd writes (no line the model smuggled in), no Bcc
//! header, and only allowed recipients.
#![no_main]

use agentd_smtp::fuzzing::{ALLOWED_DOMAIN, build_message};
use libfuzzer_sys::fuzz_target;

/// Header names a built message may have.
const HEADERS: &[&str] = &[
    "from",
    "reply-to",
    "to",
    "cc",
    "subject",
    "message-id",
    "mime-version",
    "date",
    "content-type",
    "content-transfer-encoding",
];

fuzz_target!(|data: &[u8]| {
    let Some((&flags, json)) = data.split_first() else {
        return;
    };
    let Ok(arguments) = serde_json::from_slice::<serde_json::Value>(json) else {
        return;
    };
    let restricted = flags & 1 == 1;
    let Ok(built) = build_message(&arguments, restricted, "call-key/1") else {
        return;
    };
    let text = String::from_utf8_lossy(&built.formatted);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    for line in head.split("\r\n") {
        assert!(!line.contains(['\r', '\n']), "bare line break in {line:?}");
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let name = line
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert!(HEADERS.contains(&name.as_str()), "header line {line:?}");
    }
    assert!(!built.recipients.is_empty());
    if restricted {
        for recipient in &built.recipients {
            let domain = recipient
                .rsplit_once('@')
                .map(|(_, d)| d)
                .unwrap_or_default();
            assert!(domain.eq_ignore_ascii_case(ALLOWED_DOMAIN), "{recipient}");
        }
    }
});
