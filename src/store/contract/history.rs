//! The contract's history and journal tests: append order and pages, clearing, steps that
//! commit entries and journal starts together, digests, concurrency and restarts.

use std::sync::Arc;

use serde_json::json;
use time::OffsetDateTime;

use super::Fixture;
use crate::session::message::Entry;
use crate::store::test_support::{DIGEST, at, entry, entry_ids, record, shared, started, tool};
use crate::store::{
    CallResult, CallStatus, Collection, JournalRecord, StepWrite, Store, StoreError,
};

pub(crate) async fn history_keeps_append_order_and_pages_across_reopen(fixture: &impl Fixture) {
    let mut expected = Vec::new();
    {
        let store = fixture.open().await;
        for turn in 0..100 {
            let batch: Vec<Entry> = (0..3)
                .map(|i| entry("s", &format!("e{turn:03}-{i}"), "m"))
                .collect();
            expected.extend(batch.iter().map(|e| e.id.to_string()));
            store.append_entries(shared(batch)).await.expect("append");
            store
                .append_entries(shared(vec![entry("other", &format!("o{turn}"), "x")]))
                .await
                .expect("other");
        }
        assert_eq!(
            entry_ids(&store.full_history("s").await.expect("history")),
            expected
        );
    }
    let store = fixture.open().await;
    assert_eq!(
        entry_ids(&store.full_history("s").await.expect("history")),
        expected
    );
    assert_eq!(
        entry_ids(&store.history("s", 4, 10).await.expect("page")),
        expected[10..14]
    );
    assert_eq!(
        entry_ids(&store.history("s", 50, 290).await.expect("tail")),
        expected[290..]
    );
    store
        .append_entries(shared(vec![entry("s", "after-restart", "m")]))
        .await
        .expect("append");
    let all = store.full_history("s").await.expect("history");
    assert_eq!(all.len(), 301);
    assert_eq!(all.last().map(|e| e.id.as_str()), Some("after-restart"));
    assert_eq!(store.full_history("other").await.expect("other").len(), 100);
    assert!(
        store
            .full_history("unknown")
            .await
            .expect("unknown")
            .is_empty()
    );
}

pub(crate) async fn clear_history_empties_only_that_session(fixture: &impl Fixture) {
    let store = fixture.open().await;
    store
        .append_entries(shared(vec![entry("s1", "a", "x"), entry("s2", "b", "y")]))
        .await
        .expect("append");
    store.clear_history("s1").await.expect("clear");
    assert!(store.full_history("s1").await.expect("history").is_empty());
    assert_eq!(
        entry_ids(&store.full_history("s2").await.expect("history")),
        ["b"]
    );
    store
        .append_entries(shared(vec![entry("s1", "c", "z")]))
        .await
        .expect("append after clear");
    assert_eq!(
        entry_ids(&store.full_history("s1").await.expect("history")),
        ["c"]
    );
}

pub(crate) async fn journal_records_start_once_and_finish(fixture: &impl Fixture) {
    let store = fixture.open().await;
    assert_eq!(
        store.journal_get("s", "call_1", DIGEST).await.expect("get"),
        None
    );
    store
        .journal_start(&started("s", "call_1"))
        .await
        .expect("start");
    assert_eq!(
        store.journal_get("s", "call_1", DIGEST).await.expect("get"),
        Some(started("s", "call_1"))
    );

    let again = store.journal_start(&started("s", "call_1")).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    // The same call id in another session is a different call.
    store
        .journal_start(&started("s2", "call_1"))
        .await
        .expect("other session");

    let before = OffsetDateTime::now_utc();
    store
        .journal_finish("s", "call_1", DIGEST, "sent, id 42")
        .await
        .expect("finish");
    let done = store
        .journal_get("s", "call_1", DIGEST)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(done.status, CallStatus::Finished);
    assert_eq!(done.result.as_deref(), Some("sent, id 42"));
    assert!(
        done.finished_at.is_some_and(|t| t >= before),
        "{:?}",
        done.finished_at
    );
    assert_eq!((done.tool.as_str(), done.started_at), ("send_email", at(5)));
    assert_eq!(
        store
            .journal_get("s2", "call_1", DIGEST)
            .await
            .expect("get")
            .map(|r| r.status),
        Some(CallStatus::Started)
    );

    let never = store.journal_finish("s", "call_never", DIGEST, "x").await;
    assert!(
        matches!(never, Err(ref e @ StoreError::Backend { .. }) if e.to_string().contains("never started")),
        "{never:?}"
    );
}

pub(crate) async fn everything_survives_reopen(fixture: &impl Fixture) {
    let agent = record(
        "a",
        json!({ "name": "mailer", "metadata": { "team": "ops" } }),
        1,
        2,
    );
    {
        let store = fixture.open().await;
        store
            .insert(Collection::Agents, agent.clone())
            .await
            .expect("insert");
        store
            .insert(Collection::AgentTools, tool("t", "a"))
            .await
            .expect("tool");
        store
            .journal_start(&started("s", "c1"))
            .await
            .expect("start");
        store
            .journal_finish("s", "c1", DIGEST, "ok")
            .await
            .expect("finish");
        store
            .journal_start(&started("s", "c2"))
            .await
            .expect("start");
    }
    let store = fixture.open().await;
    store.ping().await.expect("ping");
    assert_eq!(
        store
            .get(Collection::Agents, "a")
            .await
            .expect("get")
            .as_deref(),
        Some(&agent)
    );
    assert_eq!(
        store
            .get(Collection::AgentTools, "t")
            .await
            .expect("get")
            .as_deref(),
        Some(&tool("t", "a"))
    );
    let finished = store
        .journal_get("s", "c1", DIGEST)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(
        (finished.status, finished.result.as_deref()),
        (CallStatus::Finished, Some("ok"))
    );
    let pending = store
        .journal_get("s", "c2", DIGEST)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(
        (pending.status, pending.result),
        (CallStatus::Started, None)
    );
}

pub(crate) async fn concurrent_appends_all_land_in_per_task_order(fixture: &impl Fixture) {
    const TASKS: usize = 50;
    const PER_TASK: usize = 20;
    let store = Arc::new(fixture.open().await);
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let store = Arc::clone(&store);
        handles.push(tokio::spawn(async move {
            for i in 0..PER_TASK {
                let common = entry("shared", &format!("{task}:{i}"), "m");
                let own = entry(&format!("own-{task}"), &format!("{i}"), "m");
                store
                    .append_entries(shared(vec![common, own]))
                    .await
                    .expect("append");
                if i % 5 == 0 {
                    // Reads interleave with writes.
                    let seen = store
                        .full_history(&format!("own-{task}"))
                        .await
                        .expect("read");
                    assert_eq!(seen.len(), i + 1);
                }
            }
        }));
    }
    for handle in handles {
        handle.await.expect("task");
    }
    let shared = store.full_history("shared").await.expect("history");
    assert_eq!(shared.len(), TASKS * PER_TASK);
    let mut next = vec![0usize; TASKS];
    for e in &shared {
        let (task, i) = e.id.split_once(':').expect("task:i");
        let (task, i): (usize, usize) = (task.parse().expect("task"), i.parse().expect("i"));
        assert_eq!(i, next[task], "task {task} out of order");
        next[task] += 1;
    }
    for task in 0..TASKS {
        let own = store
            .full_history(&format!("own-{task}"))
            .await
            .expect("history");
        let expected: Vec<String> = (0..PER_TASK).map(|i| i.to_string()).collect();
        assert_eq!(
            own.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
            expected
        );
    }
}

pub(crate) async fn a_step_commits_entries_and_journal_together_and_reports_calls_journaled_before(
    fixture: &impl Fixture,
) {
    let store = fixture.open().await;
    store
        .journal_start(&started("s", "old"))
        .await
        .expect("start");

    let step = StepWrite {
        entries: shared(vec![entry("s", "answer", "calls two tools")]),
        start: vec![started("s", "new"), started("s", "old")],
        ..StepWrite::default()
    };
    assert_eq!(
        store.write_step(step).await.expect("step"),
        vec![true, false]
    );
    assert_eq!(
        entry_ids(&store.full_history("s").await.unwrap()),
        ["answer"]
    );

    // A finish for a call never started fails the whole step: its entry is not stored either.
    let step = StepWrite {
        entries: shared(vec![entry("s", "result", "r")]),
        finish: vec![
            CallResult {
                session_id: "s".into(),
                call_id: "new".into(),
                digest: DIGEST.into(),
                result: "done".into(),
            },
            CallResult {
                session_id: "s".into(),
                call_id: "never".into(),
                digest: DIGEST.into(),
                result: "x".into(),
            },
        ],
        ..StepWrite::default()
    };
    assert!(store.write_step(step).await.is_err());
    drop(store);
    let store = fixture.open().await;
    assert_eq!(
        entry_ids(&store.full_history("s").await.unwrap()),
        ["answer"]
    );
    let new = store
        .journal_get("s", "new", DIGEST)
        .await
        .unwrap()
        .expect("new");
    assert_eq!(
        new.status,
        CallStatus::Started,
        "the failed step changed nothing"
    );
}

pub(crate) async fn one_call_id_with_two_digests_is_two_calls(fixture: &impl Fixture) {
    let store = fixture.open().await;
    store
        .journal_start(&started("s", "call_0"))
        .await
        .expect("first");
    let other = JournalRecord {
        digest: "digest-1".into(),
        ..started("s", "call_0")
    };
    store.journal_start(&other).await.expect("other content");
    store
        .journal_finish("s", "call_0", "digest-1", "second")
        .await
        .expect("finish the second");
    let first = store.journal_get("s", "call_0", DIGEST).await.unwrap();
    assert_eq!(first.map(|r| r.status), Some(CallStatus::Started));
    let second = store.journal_get("s", "call_0", "digest-1").await.unwrap();
    assert_eq!(second.and_then(|r| r.result).as_deref(), Some("second"));
}

pub(crate) async fn clearing_history_forgets_the_journal_of_its_calls(fixture: &impl Fixture) {
    let store = fixture.open().await;
    for session in ["s", "s2"] {
        store
            .journal_start(&started(session, "call_1"))
            .await
            .expect("start");
    }
    store.clear_history("s").await.expect("clear");
    assert_eq!(
        store.journal_get("s", "call_1", DIGEST).await.unwrap(),
        None
    );
    assert!(
        store
            .journal_get("s2", "call_1", DIGEST)
            .await
            .unwrap()
            .is_some(),
        "other sessions keep theirs"
    );
    drop(store);
    let store = fixture.open().await;
    assert_eq!(
        store.journal_get("s", "call_1", DIGEST).await.unwrap(),
        None
    );
    store
        .journal_start(&started("s", "call_1"))
        .await
        .expect("the id is new again");
}
