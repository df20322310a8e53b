//! Every message shape through the PostgreSQL store's history, beyond the store contract
//! (`store/contract`).

use serde_json::json;

use crate::session::message::{
    ChatMessage, Entry, EntrySource, FunctionCall, Role, ToolCallRequest,
};
use crate::store::Store;
use crate::store::postgres::test_server::{TestDatabase, connect_store};
use crate::store::test_support::{at, entry, shared};

#[tokio::test]
async fn entries_round_trip_every_message_shape() {
    let db = TestDatabase::create().await;
    let store = connect_store(&db).await;
    let call = ToolCallRequest {
        id: "call_1".to_owned(),
        kind: "function".to_owned(),
        function: FunctionCall {
            name: "send_email".to_owned(),
            arguments: "{\"to\": oops".to_owned(),
        },
    };
    let assistant = ChatMessage {
        role: Role::Assistant,
        content: serde_json::Value::Null,
        name: None,
        tool_call_id: None,
        tool_calls: Some(vec![call]),
    };
    let parts = ChatMessage {
        content: json!([{ "type": "text", "text": "ünïcode \u{1F600}" }]),
        ..ChatMessage::text(Role::User, "")
    };
    let entries = vec![
        Entry {
            message: parts,
            source: EntrySource::ApiRequest,
            ..entry("s", "e1", "")
        },
        Entry {
            message: assistant,
            source: EntrySource::ApiResponse,
            created_at: at(3),
            ..entry("s", "e2", "")
        },
        Entry {
            message: ChatMessage::tool_result("call_1", "send_email", "sent".to_owned()),
            source: EntrySource::ToolResponse,
            ..entry("s", "e3", "")
        },
        Entry {
            source: EntrySource::Internal,
            ..entry("s", "e4", "note")
        },
    ];
    let appended = shared(entries.clone());
    store
        .append_entries(appended.clone())
        .await
        .expect("append");
    let stored = store.full_history("s").await.expect("history");
    assert_eq!(
        stored.iter().map(|e| Entry::clone(e)).collect::<Vec<_>>(),
        entries
    );
    // The stored text is the very text the entries made (and sent to the model).
    let texts: Vec<String> = db
        .raw()
        .await
        .query(
            "SELECT message FROM history WHERE session_id = 's' ORDER BY seq",
            &[],
        )
        .await
        .expect("raw read")
        .iter()
        .map(|row| row.get(0))
        .collect();
    let made: Vec<String> = appended
        .iter()
        .map(|e| e.message_json().expect("json").get().to_owned())
        .collect();
    assert_eq!(texts, made);
}
