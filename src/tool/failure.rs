//! The error results dispatch itself produces (as opposed to a handler's own errors), in the
//! same `{"error": {"kind", "message", "retryable", ...}}` shape, and "did you mean" for
//! unknown tool names.

use std::time::Duration;

use agentd_sdk::HandlerError;
use serde_json::json;

use super::validate::Violation;

/// Longest model-chosen name or id repeated in a message or a log line.
const SHOWN_CHARS: usize = 64;

/// The failures dispatch itself reports, as opposed to a handler's own errors. Each is also
/// the `kind` of the error result the model gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DispatchFailure {
    /// The model named a tool it was not offered.
    UnknownTool,
    /// The arguments are not one JSON object.
    MalformedArguments,
    /// The arguments do not match the tool's schema.
    InvalidArguments,
    /// The journal has the call as started but not finished: it may have had its effect.
    OutcomeUnknown,
    /// The call could not be journaled before running, so it was not run.
    Unavailable,
    /// The call ran but its result was over `limits.max_tool_result_bytes`.
    ResultTooLarge,
    Timeout,
    Panic,
    Cancelled,
    /// The call needs a person's approval, which needs the conversation stored
    /// (`save: false`): it was not run.
    ApprovalUnavailable,
}

impl DispatchFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            DispatchFailure::UnknownTool => "unknown_tool",
            DispatchFailure::MalformedArguments => "malformed_arguments",
            DispatchFailure::InvalidArguments => "invalid_arguments",
            DispatchFailure::OutcomeUnknown => "outcome_unknown",
            DispatchFailure::Unavailable => "unavailable",
            DispatchFailure::ResultTooLarge => "result_too_large",
            DispatchFailure::Timeout => "timeout",
            DispatchFailure::Panic => "panic",
            DispatchFailure::Cancelled => "cancelled",
            DispatchFailure::ApprovalUnavailable => "approval_unavailable",
        }
    }

    fn error(self, message: impl Into<String>) -> Failure {
        Failure {
            kind: FailureKind::Dispatch(self),
            error: HandlerError::new(self.as_str(), message),
        }
    }
}

/// Why a call failed: refused or stopped by dispatch, or an error its handler returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureKind {
    Dispatch(DispatchFailure),
    /// The handler's own `kind` (for example `invalid_recipient`).
    Handler(String),
}

impl FailureKind {
    pub fn as_str(&self) -> &str {
        match self {
            FailureKind::Dispatch(failure) => failure.as_str(),
            FailureKind::Handler(kind) => kind,
        }
    }
}

/// A failed call: its kind, and the error result the model gets.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) kind: FailureKind,
    pub(super) error: HandlerError,
}

impl Failure {
    pub(super) fn from_handler(error: HandlerError) -> Self {
        Failure {
            kind: FailureKind::Handler(error.kind.clone()),
            error,
        }
    }

    fn with_details(mut self, details: serde_json::Value) -> Self {
        self.error = self.error.with_details(details);
        self
    }

    fn retryable(mut self) -> Self {
        self.error = self.error.retryable();
        self
    }
}

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

pub(super) fn unknown_tool(name: &str, offered: &[String]) -> Failure {
    let mut message = format!("there is no tool named `{}`", shown(name));
    // A name far longer than any offered one is no typo (and would cost an edit distance).
    let plausible = name.len() <= 4 * SHOWN_CHARS;
    if let Some(close) = plausible.then(|| closest(name, offered)).flatten() {
        message.push_str(&format!("; did you mean `{close}`?"));
    } else if offered.is_empty() {
        message.push_str("; no tools are available");
    } else {
        message.push_str(&format!("; available tools: {}", offered.join(", ")));
    }
    DispatchFailure::UnknownTool
        .error(message)
        .with_details(json!({ "available": offered }))
}

pub(super) fn malformed_arguments(reason: &str) -> Failure {
    DispatchFailure::MalformedArguments.error(format!(
        "{reason}; send the arguments as one JSON object matching the tool's parameters"
    ))
}

pub(super) fn invalid_arguments(violations: &[Violation]) -> Failure {
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
    DispatchFailure::InvalidArguments
        .error(format!(
            "the arguments do not match the tool's parameters: {}",
            summary.join("; ")
        ))
        .with_details(json!({ "violations": violations }))
}

pub(super) fn outcome_unknown() -> Failure {
    DispatchFailure::OutcomeUnknown.error(
        "this call was started before but its result was lost; it was not run again; check before retrying",
    )
}

/// A call that needs approval in a turn that does not store its conversation.
pub(super) fn approval_unavailable() -> Failure {
    DispatchFailure::ApprovalUnavailable.error(
        "this tool needs a person's approval, which needs the conversation stored; \
         it was not run (the chat was sent with `save: false`)",
    )
}

pub(super) fn journal_unavailable() -> Failure {
    DispatchFailure::Unavailable
        .error("the call was not run: it could not be recorded before running; try again later")
        .retryable()
}

pub(super) fn result_too_large(bytes: usize, limit: usize) -> Failure {
    DispatchFailure::ResultTooLarge.error(format!(
        "the call ran, but its result was {bytes} bytes, over the limit of {limit}, and was \
             dropped; what the call does may have been done, so do not repeat it as is; to see \
             its output, call it again asking for less"
    ))
}

pub(super) fn timeout(limit: Duration) -> Failure {
    DispatchFailure::Timeout.error(
        format!(
            "the tool did not finish within {}; it may or may not have taken effect; check before retrying",
            human(limit)
        ),
    )
    .retryable()
}

pub(super) fn panicked(detail: &str) -> Failure {
    DispatchFailure::Panic.error(format!(
        "the tool failed with an internal error ({detail}); it may or may not have taken effect"
    ))
}

pub(super) fn cancelled() -> Failure {
    DispatchFailure::Cancelled
        .error("the call was cancelled before it finished; it may or may not have taken effect")
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

/// The offered name closest to `name`, if it is close enough to be a likely typo: at most a
/// third of its length in edits, where inserting, deleting, replacing a character or swapping
/// two neighbours each count one (optimal string alignment).
pub(super) fn closest<'a>(name: &str, offered: &'a [String]) -> Option<&'a str> {
    let lowered = name.to_lowercase();
    offered
        .iter()
        .map(|candidate| {
            (
                strsim::osa_distance(&lowered, &candidate.to_lowercase()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_are_shown_short_and_without_control_characters() {
        assert_eq!(shown("send_email"), "send_email");
        assert_eq!(shown("a\nINFO forged"), "a\\nINFO forged");
        let long = "x".repeat(100_000);
        let message = unknown_tool(&long, &["send_email".to_owned()])
            .error
            .message;
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
        let json = unknown_tool("weather", &offered).error.to_result_json();
        assert_eq!(json["error"]["kind"], "unknown_tool");
        assert_eq!(json["error"]["available"][0], "send_email");
        let message = json["error"]["message"].as_str().unwrap();
        assert!(message.contains("available tools: send_email"), "{message}");
    }
}
