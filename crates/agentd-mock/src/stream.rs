//! Streaming: an [`Answer`] cut into `chat.completion.chunk` SSE events, sent with the reply's
//! quirks (per-character text, `index: 0` for every call, delays, an abrupt end).

use std::time::Duration;

use axum::body::{Body, Bytes};
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};

use super::completion::Answer;
use super::script::StreamQuirks;

/// Pieces a tool call's arguments are cut into when not cutting per character.
const ARGUMENT_PIECES: usize = 3;

/// The `data:` events of the answer, in order, ending with `data: [DONE]`.
pub(crate) fn frames(answer: &Answer, quirks: &StreamQuirks, include_usage: bool) -> Vec<Bytes> {
    let chunk = |choices: Value, usage: Option<Value>| {
        let mut chunk = json!({
            "id": answer.id,
            "object": "chat.completion.chunk",
            "created": answer.created,
            "model": answer.model,
            "choices": choices,
        });
        if include_usage {
            chunk["usage"] = usage.unwrap_or(Value::Null);
        }
        event(&chunk)
    };
    let delta = |delta: Value| {
        chunk(
            json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": null}]),
            None,
        )
    };

    let mut frames = Vec::new();
    let opening_content = answer.text.as_ref().map(|_| "");
    frames.push(delta(
        json!({"role": "assistant", "content": opening_content}),
    ));
    if let Some(text) = &answer.text {
        for piece in split_text(text, quirks.split_chars) {
            frames.push(delta(json!({"content": piece})));
        }
    }
    for (position, call) in answer.calls.iter().enumerate() {
        let index = if quirks.all_index_zero { 0 } else { position };
        frames.push(delta(json!({"tool_calls": [{
            "index": index,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }]})));
        for piece in split_arguments(&call.arguments, quirks.split_chars) {
            frames.push(delta(
                json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}),
            ));
        }
    }
    frames.push(chunk(
        json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": answer.finish_reason}]),
        None,
    ));
    if include_usage {
        frames.push(chunk(json!([]), Some(answer.usage.to_json())));
    }
    frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
    frames
}

fn event(chunk: &Value) -> Bytes {
    let mut line = Vec::with_capacity(256);
    line.extend_from_slice(b"data: ");
    // Serializing a `Value` into a Vec cannot fail.
    serde_json::to_writer(&mut line, chunk).unwrap_or_default();
    line.extend_from_slice(b"\n\n");
    Bytes::from(line)
}

/// Words with their leading whitespace (`"a b"` -> `"a"`, `" b"`), or single characters.
pub(crate) fn split_text(text: &str, per_char: bool) -> Vec<&str> {
    if per_char {
        return text
            .char_indices()
            .map(|(at, c)| &text[at..at + c.len_utf8()])
            .collect();
    }
    let mut pieces = Vec::new();
    let mut start = 0;
    // Where the whitespace before the current character began, if it is whitespace-preceded.
    let mut space_from: Option<usize> = None;
    let mut piece_has_word = false;
    for (at, c) in text.char_indices() {
        if c.is_whitespace() {
            space_from.get_or_insert(at);
            continue;
        }
        if let Some(cut) = space_from.take()
            && piece_has_word
        {
            pieces.push(&text[start..cut]);
            start = cut;
        }
        piece_has_word = true;
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

/// Arguments cut into [`ARGUMENT_PIECES`] nearly equal pieces, or single characters.
pub(crate) fn split_arguments(arguments: &str, per_char: bool) -> Vec<&str> {
    let chars = arguments.chars().count();
    let size = if per_char {
        1
    } else {
        chars.div_ceil(ARGUMENT_PIECES).max(1)
    };
    let mut pieces = Vec::new();
    let mut start = 0;
    for (count, (at, _)) in arguments.char_indices().enumerate() {
        if count > 0 && count % size == 0 {
            pieces.push(&arguments[start..at]);
            start = at;
        }
    }
    if start < arguments.len() {
        pieces.push(&arguments[start..]);
    }
    pieces
}

/// The SSE body: `frames` paced by `chunk_delay`. With `die_after_chunks`, the connection is
/// cut after that many events, or after the last chunk if there are fewer; `[DONE]` never comes.
/// `keep` is held until the body ends or is dropped (it accounts the time spent streaming).
pub(crate) fn body<K: Send + 'static>(
    mut frames: Vec<Bytes>,
    quirks: &StreamQuirks,
    keep: K,
) -> Body {
    struct Pacing<K> {
        frames: std::vec::IntoIter<Bytes>,
        sent: usize,
        delay: Duration,
        die_after: Option<usize>,
        _keep: K,
    }
    if quirks.die_after_chunks.is_some() {
        frames.pop();
    }
    let pacing = Pacing {
        frames: frames.into_iter(),
        sent: 0,
        delay: quirks.chunk_delay,
        die_after: quirks.die_after_chunks,
        _keep: keep,
    };
    let events = stream::unfold(Some(pacing), |pacing| async move {
        let mut pacing = pacing?;
        let frame = match pacing.frames.next() {
            Some(frame) if pacing.die_after != Some(pacing.sent) => frame,
            None if pacing.die_after.is_none() => return None,
            _ => return Some((Err(abrupt_end().await), None)),
        };
        if pacing.sent > 0 && !pacing.delay.is_zero() {
            tokio::time::sleep(pacing.delay).await;
        }
        pacing.sent += 1;
        Some((Ok(frame), Some(pacing)))
    });
    Body::from_stream(events)
}

/// A JSON body cut in half, then an abrupt end.
pub(crate) fn truncated_body(json: Vec<u8>) -> Body {
    let json = Bytes::from(json);
    let half = json.slice(..json.len() / 2);
    let first = stream::iter([Ok::<_, std::io::Error>(half)]);
    Body::from_stream(first.chain(stream::once(async { Err(abrupt_end().await) })))
}

/// The error that makes the server drop the connection. It is produced only after one pending
/// poll, so the server flushes what was already sent before the connection goes.
async fn abrupt_end() -> std::io::Error {
    tokio::task::yield_now().await;
    std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "scripted abrupt end")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_splits_into_words_keeping_their_spaces() {
        assert_eq!(
            split_text("Hello  big world", false),
            ["Hello", "  big", " world"]
        );
        assert_eq!(split_text(" lead", false), [" lead"]);
        assert_eq!(split_text("hé!", true), ["h", "é", "!"]);
        assert!(split_text("", false).is_empty());
    }

    #[test]
    fn arguments_split_into_pieces_that_join_back() {
        let arguments = r#"{"to":"ann@x.io","n":1}"#;
        let pieces = split_arguments(arguments, false);
        assert_eq!(pieces.len(), 3);
        assert_eq!(pieces.concat(), arguments);
        assert_eq!(split_arguments("{é}", true), ["{", "é", "}"]);
        assert_eq!(split_arguments("{}", false), ["{", "}"]);
    }
}
