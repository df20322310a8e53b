//! The error results dispatch itself produces (as opposed to a handler's own errors), in the
//! same `{"error": {"kind", "message", "retryable", ...}}` shape, and "did you mean" for
//! unknown tool names.

use std::time::Duration;

use agentd_sdk::HandlerError;
use serde_json::json;

use super::validate::Violation;

/// Longest model-chosen name or id repeated in a message or a log line.
const SHOWN_CHARS: usize = 64;

/// A model-chosen name or id as it may be repeated back or logged: at most [`SHOWN_CHARS`]
/// characters, control characters escaped, so it can neither forge log lines nor make a
/// message as large as the model's answer.
pub(super) fn shown(text: &str) -> std::borrow::Cow<'_, str> {
    let plain = text.len() <= SHOWN_CHARS && !text.chars().any(char::is_control);
    if plain {
        return text.into();
    }
    let mut out: String = text
        .chars()
        .take(SHOWN_CHARS)
        .flat_map(char::escape_default)
        .collect();
    if text.chars().nth(SHOWN_CHARS).is_some() {
        out.push('…');
    }
    out.into()
}

pub(super) fn unknown_tool(name: &str, offered: &[String]) -> HandlerError {
    let mut message = format!("there is no tool named `{}`", shown(name));
    // A name far longer than any offered one is no typo (and would cost an edit distance).
    let plausible = name.len() <= 4 * SHOWN_CHARS;
    if let Some(close) = closest(name, offered).filter(|_| plausible) {
        message.push_str(&format!("; did you mean `{close}`?"));
    } else if offered.is_empty() {
        message.push_str("; no tools are available");
    } else {
        message.push_str(&format!("; available tools: {}", offered.join(", ")));
    }
    HandlerError::new("unknown_tool", message).with_details(json!({ "available": offered }))
}

pub(super) fn malformed_arguments(reason: &str) -> HandlerError {
    HandlerError::new(
        "malformed_arguments",
        format!("{reason}; send the arguments as one JSON object matching the tool's parameters"),
    )
}

pub(super) fn invalid_arguments(violations: &[Violation]) -> HandlerError {
    let summary: Vec<String> = violations
        .iter()
        .map(|v| {
            let at = if v.pointer.is_empty() {
                "(root)"
            } else {
                &v.pointer
            };
            format!("{at}: {}", v.message)
        })
        .collect();
    HandlerError::new(
        "invalid_arguments",
        format!(
            "the arguments do not match the tool's parameters: {}",
            summary.join("; ")
        ),
    )
    .with_details(json!({ "violations": violations }))
}

pub(super) fn outcome_unknown() -> HandlerError {
    HandlerError::new(
        "outcome_unknown",
        "this call was started before but its result was lost; it was not run again; check before retrying",
    )
}

pub(super) fn journal_unavailable() -> HandlerError {
    HandlerError::new(
        "unavailable",
        "the call was not run: it could not be recorded before running; try again later",
    )
    .retryable()
}

pub(super) fn result_too_large(bytes: usize, limit: usize) -> HandlerError {
    HandlerError::new(
        "result_too_large",
        format!(
            "the call ran, but its result was {bytes} bytes, over the limit of {limit}, and was \
             dropped; what the call does may have been done, so do not repeat it as is; to see \
             its output, call it again asking for less"
        ),
    )
}

pub(super) fn timeout(limit: Duration) -> HandlerError {
    HandlerError::new(
        "timeout",
        format!(
            "the tool did not finish within {}; it may or may not have taken effect; check before retrying",
            human(limit)
        ),
    )
    .retryable()
}

pub(super) fn panicked(detail: &str) -> HandlerError {
    HandlerError::new(
        "panic",
        format!(
            "the tool failed with an internal error ({detail}); it may or may not have taken effect"
        ),
    )
}

pub(super) fn cancelled() -> HandlerError {
    HandlerError::new(
        "cancelled",
        "the call was cancelled before it finished; it may or may not have taken effect",
    )
    .retryable()
}

fn human(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// The offered name closest to `name`, if it is close enough to be a likely typo.
pub(super) fn closest<'a>(name: &str, offered: &'a [String]) -> Option<&'a str> {
    let lowered = name.to_lowercase();
    offered
        .iter()
        .map(|candidate| {
            (
                edit_distance(&lowered, &candidate.to_lowercase()),
                candidate,
            )
        })
        .filter(|(distance, candidate)| {
            let longest = candidate.chars().count().max(name.chars().count());
            *distance <= (longest / 3).max(1)
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate.as_str())
}

/// Edit distance over characters where inserting, deleting, replacing a character or swapping
/// two neighbours each cost one (optimal string alignment).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for (i, row) in d.chunks_mut(width).enumerate() {
        row[0] = i;
    }
    for (j, cell) in d.iter_mut().take(width).enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("send_email", "send_email"), 0);
        assert_eq!(edit_distance("send_emial", "send_email"), 1);
        assert_eq!(edit_distance("fsat", "fast"), 1);
        assert_eq!(edit_distance("send_mail", "send_email"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn model_names_are_shown_short_and_without_control_characters() {
        assert_eq!(shown("send_email"), "send_email");
        assert_eq!(shown("a\nINFO forged"), "a\\nINFO forged");
        let long = "x".repeat(100_000);
        let message = unknown_tool(&long, &["send_email".to_owned()]).message;
        assert!(message.len() < 200, "{}", message.len());
    }

    #[test]
    fn close_names_are_suggested_and_far_ones_are_not() {
        let offered = vec!["send_email".to_owned(), "echo".to_owned()];
        assert_eq!(closest("send_mail", &offered), Some("send_email"));
        assert_eq!(closest("Send_Email", &offered), Some("send_email"));
        assert_eq!(closest("ecko", &offered), Some("echo"));
        assert_eq!(closest("weather", &offered), None);
    }

    #[test]
    fn unknown_tool_lists_what_is_available_when_nothing_is_close() {
        let offered = vec!["send_email".to_owned()];
        let json = unknown_tool("weather", &offered).to_result_json();
        assert_eq!(json["error"]["kind"], "unknown_tool");
        assert_eq!(json["error"]["available"][0], "send_email");
        let message = json["error"]["message"].as_str().unwrap();
        assert!(message.contains("available tools: send_email"), "{message}");
    }
}
