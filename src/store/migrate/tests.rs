//! The migration on real stores: an SQLite store filled the way turns fill it, copied into a
//! fresh PostgreSQL test database, then read back through [`PostgresStore`] and compared.

use std::path::Path;
use std::sync::Arc;

use serde_json::json;
use time::{Duration, OffsetDateTime};

use crate::session::message::{
    ChatMessage, Entry, EntrySource, FunctionCall, MessageJson, Role, ToolCallRequest,
};
use crate::store::migrate::{Copied, MigrateError, copy_store};
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::SqliteStore;
use crate::store::test_support::{DIGEST, at, entry, record, started, tool};
use crate::store::{
    ApprovalDecision, ApprovalRecord, ApprovalState, CallStatus, Collection, Direction, ListQuery,
    StepWrite, Store,
};

/// Agents, users, sessions and tools: [`filled_source`] stores these.
const SESSION: &str = "s-tools";
/// A session whose history is longer than one page of the copy.
const LONG_SESSION: &str = "s-long";
const LONG_HISTORY: usize = 501;

async fn connect(db: &agentd_testpg::TestDatabase) -> PostgresStore {
    PostgresStore::connect(&db.url(), db.password(), agentd_testpg::POOL_SIZE)
        .await
        .expect("connect the target")
}

fn call(id: &str, tool: &str, arguments: &str) -> ToolCallRequest {
    ToolCallRequest {
        id: id.to_owned(),
        kind: "function".to_owned(),
        function: FunctionCall {
            name: tool.to_owned(),
            arguments: arguments.to_owned(),
        },
    }
}

fn entry_of(id: &str, source: EntrySource, message: ChatMessage, step: i64) -> Entry {
    Entry {
        id: id.into(),
        session_id: SESSION.into(),
        source,
        message,
        created_at: at(step),
        json: MessageJson::default(),
    }
}

/// A conversation with tool calls and results, in the order a turn writes it.
fn tool_conversation() -> Vec<Arc<Entry>> {
    let answer = ChatMessage {
        role: Role::Assistant,
        content: serde_json::Value::Null,
        name: None,
        tool_call_id: None,
        tool_calls: Some(vec![
            call("c-done", "lookup", r#"{"key":"ünïcode ✓"}"#),
            call("c-lost", "send_email", r#"{"to":"a@example.org"}"#),
        ]),
    };
    vec![
        entry_of(
            "e1",
            EntrySource::ApiRequest,
            ChatMessage::text(Role::User, "look it up, then mail it"),
            10,
        ),
        entry_of("e2", EntrySource::ApiResponse, answer, 11),
        entry_of(
            "e3",
            EntrySource::ToolResponse,
            ChatMessage::tool_result("c-done", "lookup", r#"{"value":"42"}"#.to_owned()),
            12,
        ),
        entry_of(
            "e4",
            EntrySource::ToolResponse,
            ChatMessage::tool_result("c-lost", "send_email", "outcome_unknown".to_owned()),
            13,
        ),
    ]
    .into_iter()
    .map(Arc::new)
    .collect()
}

fn held(call_id: &str, expires_at: OffsetDateTime) -> ApprovalRecord {
    ApprovalRecord {
        session_id: SESSION.to_owned(),
        call_id: call_id.to_owned(),
        digest: format!("digest-{call_id}"),
        tool: "send_email".to_owned(),
        arguments: r#"{"to":"b@example.org"}"#.to_owned(),
        requested_at: at(20),
        expires_at,
        state: ApprovalState::Pending,
        reason: None,
        decided_at: None,
    }
}

/// An SQLite store holding every kind of row: resources, a history with tool calls and
/// results, a finished and a started call, a pending, a denied and an expired held call.
async fn filled_source(dir: &Path) -> SqliteStore {
    let store = SqliteStore::open(&dir.join("agentd.db")).expect("open the source");
    let agent = record(
        "agent-1",
        json!({ "name": "a", "metadata": { "team": "x" } }),
        1,
        2,
    );
    store.insert(Collection::Agents, agent).await.unwrap();
    let other_agent = record("agent-2", json!({ "name": "b", "about": null }), 3, 3);
    store.insert(Collection::Agents, other_agent).await.unwrap();
    store
        .insert(Collection::AgentTools, tool("tool-1", "agent-1"))
        .await
        .unwrap();
    let user = record("user-1", json!({ "name": "u", "about": "ü" }), 4, 9);
    store.insert(Collection::Users, user).await.unwrap();
    for (index, id) in [SESSION, LONG_SESSION, "s-empty"].into_iter().enumerate() {
        let session = record(id, json!({ "agent": "agent-1", "situation": id }), 5, 6);
        let session = crate::store::Record {
            created_at: at(5 + index as i64),
            ..session
        };
        store.insert(Collection::Sessions, session).await.unwrap();
    }

    let conversation = tool_conversation();
    let done = crate::store::JournalRecord {
        call_id: "c-done".to_owned(),
        tool: "lookup".to_owned(),
        ..started(SESSION, "c-done")
    };
    store
        .write_step(StepWrite {
            entries: conversation[..2].to_vec(),
            start: vec![done, started(SESSION, "c-lost")],
            ..StepWrite::default()
        })
        .await
        .unwrap();
    store
        .journal_finish(SESSION, "c-done", DIGEST, r#"{"value":"42"}"#)
        .await
        .unwrap();
    store
        .append_entries(conversation[2..].to_vec())
        .await
        .unwrap();

    let now = OffsetDateTime::now_utc();
    let later = now + Duration::hours(1);
    store
        .write_step(StepWrite {
            hold: vec![
                held("h-pending", later),
                held("h-denied", later),
                held("h-expired", at(21)),
            ],
            ..StepWrite::default()
        })
        .await
        .unwrap();
    let denied = store
        .approval_decide(
            SESSION,
            "h-denied",
            "digest-h-denied",
            ApprovalState::Denied,
            Some("not to that address".to_owned()),
            now,
        )
        .await
        .unwrap();
    assert!(matches!(denied, ApprovalDecision::Decided(_)), "{denied:?}");
    let expired = store
        .approval_decide(
            SESSION,
            "h-expired",
            "digest-h-expired",
            ApprovalState::Approved,
            None,
            now,
        )
        .await
        .unwrap();
    assert!(
        matches!(expired, ApprovalDecision::Expired(_)),
        "{expired:?}"
    );

    let long: Vec<Arc<Entry>> = (0..LONG_HISTORY)
        .map(|n| {
            Arc::new(entry(
                LONG_SESSION,
                &format!("l{n:04}"),
                &format!("message {n}"),
            ))
        })
        .collect();
    store.append_entries(long).await.unwrap();
    store
}

fn everything() -> ListQuery {
    ListQuery {
        limit: u32::MAX,
        direction: Direction::Asc,
        ..ListQuery::default()
    }
}

/// Each session's history as stored, message texts in append order (the SQLite file read
/// beside the store, WAL letting it).
fn sqlite_messages(dir: &Path, session: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(dir.join("agentd.db")).unwrap();
    let mut statement = conn
        .prepare("SELECT entry_heads, messages FROM history WHERE session_id = ?1 ORDER BY seq")
        .unwrap();
    let rows: Vec<(String, String)> = statement
        .query_map([session], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    // Each row's messages lie in its JSON array at the lengths its entry heads give.
    let mut texts = Vec::new();
    for (heads, messages) in rows {
        let heads: Vec<serde_json::Value> = serde_json::from_str(&heads).unwrap();
        let mut at = 1;
        for head in heads {
            let bytes = usize::try_from(head[4].as_u64().unwrap()).unwrap();
            texts.push(messages[at..at + bytes].to_owned());
            at += bytes + 1;
        }
    }
    texts
}

async fn postgres_messages(db: &agentd_testpg::TestDatabase, session: &str) -> Vec<String> {
    db.raw()
        .await
        .query(
            "SELECT message FROM history WHERE session_id = $1 ORDER BY seq",
            &[&session],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn copies_every_row_as_it_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let source = filled_source(dir.path()).await;
    let db = agentd_testpg::TestDatabase::create().await;
    let target = connect(&db).await;

    let copied = copy_store(&source, &target).await.expect("migrate");
    let expected = Copied {
        agents: 2,
        agent_tools: 1,
        users: 1,
        sessions: 3,
        history_entries: 4 + LONG_HISTORY as u64,
        journaled_calls: 2,
        unfinished_calls: 1,
        held_calls: 3,
        pending_held_calls: 1,
    };
    assert_eq!(copied, expected);

    for collection in [
        Collection::Agents,
        Collection::AgentTools,
        Collection::Users,
        Collection::Sessions,
    ] {
        let from = source.list(collection, &everything()).await.unwrap();
        let to = target.list(collection, &everything()).await.unwrap();
        assert!(!from.is_empty());
        assert_eq!(
            to, from,
            "{collection:?}: ids, parents, bodies and timestamps"
        );
    }

    for session in [SESSION, LONG_SESSION, "s-empty"] {
        let from = source.full_history(session).await.unwrap();
        let to = target.full_history(session).await.unwrap();
        assert_eq!(to.len(), from.len(), "{session}");
        for (copy, original) in to.iter().zip(&from) {
            assert_eq!(copy, original, "{session}: id, source, time and message");
            assert_eq!(
                copy.message_json().unwrap().get(),
                original.message_json().unwrap().get()
            );
        }
        assert_eq!(
            postgres_messages(&db, session).await,
            sqlite_messages(dir.path(), session),
            "{session}: stored texts, byte for byte, in order"
        );
    }
    let calls = target.full_history(SESSION).await.unwrap();
    assert_eq!(calls[1].message.calls().len(), 2);

    let finished = target.journal_get(SESSION, "c-done", DIGEST).await.unwrap();
    let finished = finished.expect("the finished call is journaled");
    assert_eq!(finished.status, CallStatus::Finished);
    assert_eq!(
        Some(finished.clone()),
        source.journal_get(SESSION, "c-done", DIGEST).await.unwrap(),
        "result and both times kept"
    );
    let unfinished = target.journal_get(SESSION, "c-lost", DIGEST).await.unwrap();
    let unfinished = unfinished.expect("the started call is journaled");
    assert_eq!(unfinished.status, CallStatus::Started);
    assert_eq!(unfinished.result, None);
    assert_eq!(
        Some(unfinished),
        source.journal_get(SESSION, "c-lost", DIGEST).await.unwrap()
    );
    let restarted = target
        .write_step(StepWrite {
            start: vec![started(SESSION, "c-lost")],
            ..StepWrite::default()
        })
        .await
        .unwrap();
    assert_eq!(restarted, [false], "a started call is never started again");

    let approvals = target.approvals(SESSION).await.unwrap();
    let states: Vec<_> = approvals
        .iter()
        .map(|a| (a.call_id.as_str(), a.state))
        .collect();
    assert_eq!(
        states,
        [
            ("h-denied", ApprovalState::Denied),
            ("h-expired", ApprovalState::Expired),
            ("h-pending", ApprovalState::Pending),
        ]
    );
    assert_eq!(approvals, source.approvals(SESSION).await.unwrap());
    let now = OffsetDateTime::now_utc();
    assert_eq!(target.approvals_pending(now).await.unwrap(), 1);
}

#[tokio::test]
async fn refuses_a_target_that_holds_data_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let source = filled_source(dir.path()).await;
    let db = agentd_testpg::TestDatabase::create().await;
    let target = connect(&db).await;
    copy_store(&source, &target).await.expect("first migration");
    let rows = || async {
        let raw = db.raw().await;
        let mut counts = Vec::new();
        for table in ["resources", "history", "journal", "approvals"] {
            let count: i64 = raw
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await
                .unwrap()
                .get(0);
            counts.push(count);
        }
        counts
    };
    let before = rows().await;

    let again = copy_store(&source, &target).await;
    assert!(
        matches!(again, Err(MigrateError::TargetNotEmpty)),
        "{again:?}"
    );
    assert_eq!(rows().await, before);

    // History alone (no resource) is data too.
    let other = agentd_testpg::TestDatabase::create().await;
    let only_history = connect(&other).await;
    only_history
        .append_entries(vec![Arc::new(entry("gone", "e1", "left behind"))])
        .await
        .unwrap();
    let refused = copy_store(&source, &only_history).await;
    assert!(
        matches!(refused, Err(MigrateError::TargetNotEmpty)),
        "{refused:?}"
    );
    let agents = only_history
        .list(Collection::Agents, &everything())
        .await
        .unwrap();
    assert!(agents.is_empty());
}
