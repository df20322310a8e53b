//! The flat JSON form of a scripted [`Reply`] (`POST /_mock/script`), checked for
//! contradictions, and its conversion to and from the Rust form.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::script::{Reply, ReplyKind, ScriptedCall, StreamQuirks};

/// The flat JSON form of a [`Reply`].
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReplyWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tool_calls: Option<Vec<ScriptedCall>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    finish_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "header_map")]
    headers: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "is_zero")]
    delay_ms: u64,
    #[serde(default, skip_serializing_if = "is_false")]
    split_chars: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    all_index_zero: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    wrong_finish_reason: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    die_after_chunks: Option<usize>,
    #[serde(default, skip_serializing_if = "is_zero")]
    chunk_delay_ms: u64,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// Headers as a JSON object, in order.
mod header_map {
    use serde::{Deserialize, Deserializer, Serializer, ser::SerializeMap};
    use serde_json::{Map, Value};

    pub(super) fn serialize<S: Serializer>(
        headers: &[(String, String)],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(headers.len()))?;
        for (name, value) in headers {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<(String, String)>, D::Error> {
        let map = Map::<String, Value>::deserialize(d)?;
        Ok(map
            .into_iter()
            .map(|(name, value)| match value {
                Value::String(text) => (name, text),
                other => (name, other.to_string()),
            })
            .collect())
    }
}

impl TryFrom<ReplyWire> for Reply {
    type Error = String;

    fn try_from(wire: ReplyWire) -> Result<Self, String> {
        let is_message = wire.text.is_some() || wire.tool_calls.is_some();
        let kind = match (wire.status, is_message) {
            (Some(_), true) => {
                return Err("a reply has either `status` or `text`/`tool_calls`, not both".into());
            }
            (Some(status), false) => {
                if wire.finish_reason.is_some() {
                    return Err("`finish_reason` needs `text` or `tool_calls`".into());
                }
                ReplyKind::Http {
                    status,
                    body: wire.body.unwrap_or(Value::Null),
                }
            }
            (None, _) if wire.body.is_some() => return Err("`body` needs `status`".into()),
            (None, true) => ReplyKind::Message {
                text: wire.text,
                calls: wire.tool_calls.unwrap_or_default(),
                finish_reason: wire.finish_reason,
            },
            (None, false) if wire.finish_reason.is_some() => {
                return Err("`finish_reason` needs `text` or `tool_calls`".into());
            }
            (None, false) => ReplyKind::Default,
        };
        Ok(Reply {
            kind,
            delay: Duration::from_millis(wire.delay_ms),
            headers: wire.headers,
            quirks: StreamQuirks {
                split_chars: wire.split_chars,
                all_index_zero: wire.all_index_zero,
                wrong_finish_reason: wire.wrong_finish_reason,
                die_after_chunks: wire.die_after_chunks,
                chunk_delay: Duration::from_millis(wire.chunk_delay_ms),
            },
        })
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl From<Reply> for ReplyWire {
    fn from(reply: Reply) -> Self {
        let mut wire = ReplyWire {
            headers: reply.headers,
            delay_ms: millis(reply.delay),
            split_chars: reply.quirks.split_chars,
            all_index_zero: reply.quirks.all_index_zero,
            wrong_finish_reason: reply.quirks.wrong_finish_reason,
            die_after_chunks: reply.quirks.die_after_chunks,
            chunk_delay_ms: millis(reply.quirks.chunk_delay),
            ..ReplyWire::default()
        };
        match reply.kind {
            ReplyKind::Default => {}
            ReplyKind::Message {
                text,
                calls,
                finish_reason,
            } => {
                // A message without text always carries `tool_calls`, so it reads back as one.
                wire.tool_calls = (!calls.is_empty() || text.is_none()).then_some(calls);
                wire.text = text;
                wire.finish_reason = finish_reason;
            }
            ReplyKind::Http { status, body } => {
                wire.status = Some(status);
                wire.body = Some(body);
            }
        }
        wire
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_forms_read_into_the_same_replies_as_the_builders() {
        let replies: Vec<Reply> = serde_json::from_value(json!([
            {"text": "hi", "finish_reason": "length", "delay_ms": 5, "split_chars": true},
            {"tool_calls": [{"name": "f", "arguments": {"a": 1}}, {"name": "g", "arguments": "{bad", "id": "c1"}]},
            {"status": 503, "body": {"error": {"message": "busy"}}, "headers": {"retry-after": "2"}},
            {"all_index_zero": true, "die_after_chunks": 3, "chunk_delay_ms": 7, "wrong_finish_reason": true}
        ]))
        .expect("valid script");
        assert_eq!(
            replies,
            vec![
                Reply::text("hi")
                    .with_finish_reason("length")
                    .with_delay(Duration::from_millis(5))
                    .split_chars(),
                Reply::tool_calls(vec![
                    ScriptedCall::new("f", json!({"a": 1})),
                    ScriptedCall::raw("g", "{bad").with_id("c1"),
                ]),
                Reply::error(503, json!({"error": {"message": "busy"}})).with_retry_after("2"),
                Reply::default_answer()
                    .all_index_zero()
                    .die_after(3)
                    .chunk_delay(Duration::from_millis(7))
                    .wrong_finish_reason(),
            ]
        );
    }

    #[test]
    fn replies_survive_a_json_round_trip() {
        let replies = vec![
            Reply::text("x").with_header("x-a", "b"),
            Reply::tool_calls(vec![]),
            Reply::tool_calls(vec![ScriptedCall::raw("f", "{")]).with_text("calling"),
            Reply::raw_body(200, "not json"),
        ];
        let text = serde_json::to_string(&replies).expect("serializes");
        let back: Vec<Reply> = serde_json::from_str(&text).expect("reads back");
        assert_eq!(back, replies);
    }

    #[test]
    fn contradictory_or_misspelled_replies_are_rejected() {
        for bad in [
            json!({"text": "a", "status": 500}),
            json!({"body": {}}),
            json!({"finish_reason": "stop"}),
            json!({"txt": "typo"}),
            json!({"tool_calls": [{"name": "f", "args": {}}]}),
        ] {
            assert!(
                serde_json::from_value::<Reply>(bad.clone()).is_err(),
                "accepted {bad}"
            );
        }
    }
}
