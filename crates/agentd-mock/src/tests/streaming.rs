//! Streamed answers read as raw SSE: chunking, tool-call deltas, quirks, usage, abrupt ends.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{assemble, post_stream, send_email_tool, start, user_request};
use crate::{Reply, ScriptedCall};

fn streaming(text: &str) -> Value {
    let mut request = user_request(text);
    request["stream"] = json!(true);
    request
}

fn content_deltas(chunks: &[Value]) -> Vec<String> {
    chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
        .filter(|piece| !piece.is_empty())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn text_streams_word_by_word_and_ends_with_done() {
    let mock = start().await;
    mock.push(Reply::text("The quick brown fox"));
    let streamed = post_stream(&mock, &streaming("hi")).await;
    assert!(streamed.saw_done && !streamed.cut);
    assert_eq!(
        content_deltas(&streamed.chunks),
        ["The", " quick", " brown", " fox"]
    );
    assert_eq!(
        streamed.chunks[0]["choices"][0]["delta"]["role"],
        "assistant"
    );
    let assembled = assemble(&streamed.chunks);
    assert_eq!(assembled.text, "The quick brown fox");
    assert_eq!(assembled.finish_reason.as_deref(), Some("stop"));
    assert_eq!(assembled.usage, None);
    let ids: Vec<&Value> = streamed.chunks.iter().map(|chunk| &chunk["id"]).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "one id per answer");
}

#[tokio::test]
async fn split_chars_streams_one_character_per_chunk() {
    let mock = start().await;
    mock.push(Reply::text("añb c").split_chars());
    let streamed = post_stream(&mock, &streaming("hi")).await;
    assert_eq!(content_deltas(&streamed.chunks), ["a", "ñ", "b", " ", "c"]);
}

#[tokio::test]
async fn tool_calls_stream_as_deltas_with_split_arguments() {
    let mock = start().await;
    let mut request = streaming("Send an email to ann@corp.io about the budget.");
    request["tools"] = json!([send_email_tool()]);
    let streamed = post_stream(&mock, &request).await;
    assert!(streamed.saw_done);
    let deltas: Vec<&Value> = streamed
        .chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    assert!(deltas.len() >= 3, "arguments split over several chunks");
    let first = deltas[0];
    assert_eq!(first["index"], 0);
    assert_eq!(first["type"], "function");
    assert_eq!(first["function"]["name"], "send_email");
    assert_eq!(first["function"]["arguments"], "");
    assert!(
        first["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("call_"))
    );
    assert!(
        deltas[1..]
            .iter()
            .all(|d| d.get("id").is_none() && d["function"].get("name").is_none())
    );

    let assembled = assemble(&streamed.chunks);
    assert_eq!(assembled.finish_reason.as_deref(), Some("tool_calls"));
    let [(_, name, arguments)] = assembled.calls.as_slice() else {
        panic!("one call expected: {assembled:?}");
    };
    assert_eq!(name, "send_email");
    let arguments: Value = serde_json::from_str(arguments).expect("reassembled arguments parse");
    assert_eq!(arguments["to"], "ann@corp.io");
    assert_eq!(arguments["subject"], "the budget");
}

#[tokio::test]
async fn parallel_calls_with_all_index_zero_differ_only_by_id() {
    let mock = start().await;
    mock.push(
        Reply::tool_calls(vec![
            ScriptedCall::new("a", json!({"n": 1})).with_id("call_a"),
            ScriptedCall::new("b", json!({"n": 2})).with_id("call_b"),
        ])
        .all_index_zero()
        .wrong_finish_reason()
        .split_chars(),
    );
    let streamed = post_stream(&mock, &streaming("go")).await;
    let indexes: Vec<&Value> = streamed
        .chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["tool_calls"][0].get("index"))
        .collect();
    assert!(indexes.iter().all(|index| **index == 0), "{indexes:?}");
    let assembled = assemble(&streamed.chunks);
    assert_eq!(
        assembled.calls,
        [
            ("call_a".to_owned(), "a".to_owned(), "{\"n\":1}".to_owned()),
            ("call_b".to_owned(), "b".to_owned(), "{\"n\":2}".to_owned()),
        ]
    );
    assert_eq!(assembled.finish_reason.as_deref(), Some("stop"));
}

#[tokio::test]
async fn distinct_indexes_when_not_all_zero() {
    let mock = start().await;
    mock.push(Reply::tool_calls(vec![
        ScriptedCall::raw("a", "{bad"),
        ScriptedCall::raw("b", "{}"),
    ]));
    let streamed = post_stream(&mock, &streaming("go")).await;
    let firsts: Vec<(u64, &str)> = streamed
        .chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["tool_calls"].get(0))
        .filter(|delta| delta.get("id").is_some())
        .map(|delta| {
            (
                delta["index"].as_u64().unwrap_or(99),
                delta["function"]["name"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(firsts, [(0, "a"), (1, "b")]);
    let assembled = assemble(&streamed.chunks);
    assert_eq!(assembled.calls[0].2, "{bad");
}

#[tokio::test]
async fn die_after_cuts_the_connection_without_done() {
    let mock = start().await;
    mock.push(Reply::text("one two three four five").die_after(3));
    let streamed = post_stream(&mock, &streaming("hi")).await;
    assert!(streamed.cut, "the connection must end in an error");
    assert!(!streamed.saw_done);
    assert_eq!(streamed.chunks.len(), 3);
    assert_eq!(assemble(&streamed.chunks).text, "one two");
    mock.push(Reply::text("short").die_after(100));
    let whole_but_cut = post_stream(&mock, &streaming("hi")).await;
    assert!(whole_but_cut.cut && !whole_but_cut.saw_done);
    let assembled = assemble(&whole_but_cut.chunks);
    assert_eq!(
        (assembled.text.as_str(), assembled.finish_reason.as_deref()),
        ("short", Some("stop"))
    );
    // The server is still fine afterwards.
    let next = post_stream(&mock, &streaming("again")).await;
    assert!(next.saw_done);
    assert_eq!(assemble(&next.chunks).text, "You said: again");
}

#[tokio::test]
async fn include_usage_adds_a_final_chunk_with_empty_choices() {
    let mock = start().await;
    mock.push(Reply::text("abcdefgh"));
    let mut request = streaming("12345");
    request["stream_options"] = json!({"include_usage": true});
    let streamed = post_stream(&mock, &request).await;
    assert!(streamed.saw_done);
    let last = streamed.chunks.last().expect("chunks");
    assert_eq!(last["choices"], json!([]));
    // prompt: ceil(5/4) = 2; completion: 8/4 + 1 = 3.
    assert_eq!(
        last["usage"],
        json!({"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5})
    );
    let earlier = &streamed.chunks[..streamed.chunks.len() - 1];
    assert!(earlier.iter().all(|chunk| chunk["usage"].is_null()));
}

#[tokio::test]
async fn chunk_delay_paces_the_stream() {
    let mock = start().await;
    mock.push(Reply::text("a b c").chunk_delay(Duration::from_millis(20)));
    let started = Instant::now();
    let streamed = post_stream(&mock, &streaming("hi")).await;
    // role, 3 words, finish, [DONE]: 5 pauses between 6 events.
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(assemble(&streamed.chunks).text, "a b c");
}
