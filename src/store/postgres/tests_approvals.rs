//! What only the PostgreSQL store does with calls held for approval, beyond the store
//! contract (`store/contract`): holds and decisions seen by a new store on the same database,
//! the pending count's index, and two stores deciding one call at once.

use crate::store::contract::approvals::{decide, held, hold, listed};
use crate::store::postgres::approvals::COUNT_PENDING;
use crate::store::postgres::test_server::{TestDatabase, connect_store};
use crate::store::test_support::{DIGEST, at};
use crate::store::{ApprovalDecision, ApprovalRecord, ApprovalState, Store};

#[tokio::test]
async fn held_calls_and_decisions_survive_a_new_store_on_the_database() {
    let db = TestDatabase::create().await;
    let before = {
        let store = connect_store(&db).await;
        hold(
            &store,
            vec![
                held("s", "c1", 1, 100),
                held("s", "c2", 2, 100),
                held("s", "c3", 3, 5),
            ],
        )
        .await;
        decide(
            &store,
            "s",
            "c1",
            DIGEST,
            ApprovalState::Denied,
            Some("no"),
            at(10),
        )
        .await;
        decide(
            &store,
            "s",
            "c3",
            DIGEST,
            ApprovalState::Approved,
            None,
            at(10),
        )
        .await;
        listed(&store, "s").await
    };
    let states: Vec<ApprovalState> = before.iter().map(|r| r.state).collect();
    assert_eq!(
        states,
        [
            ApprovalState::Denied,
            ApprovalState::Pending,
            ApprovalState::Expired
        ]
    );
    let store = connect_store(&db).await;
    assert_eq!(listed(&store, "s").await, before);
    assert_eq!(store.approvals_pending(at(10)).await.expect("count"), 1);
    let decision = decide(
        &store,
        "s",
        "c2",
        DIGEST,
        ApprovalState::Approved,
        None,
        at(20),
    )
    .await;
    assert!(
        matches!(decision, ApprovalDecision::Decided(_)),
        "{decision:?}"
    );
}

#[tokio::test]
async fn the_pending_count_can_read_the_pending_index() {
    let db = TestDatabase::create().await;
    drop(connect_store(&db).await);
    let raw = db.raw().await;
    // The tables are tiny, so the planner is told to avoid a sequential scan if it can.
    raw.batch_execute("SET enable_seqscan = off")
        .await
        .expect("set");
    let plan: Vec<String> = raw
        .query(&format!("EXPLAIN {COUNT_PENDING}"), &[&0i64])
        .await
        .expect("explain")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(
        plan.iter()
            .any(|step| step.contains("approvals_pending_by_expiry")),
        "{plan:?}"
    );
}

/// Two instances deciding the same held call at once: exactly one decision is taken, the
/// other finds it decided.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_decisions_from_two_stores_take_exactly_one() {
    let db = TestDatabase::create().await;
    let (first, second) = (connect_store(&db).await, connect_store(&db).await);
    let calls: Vec<String> = (0..20).map(|n| format!("c{n}")).collect();
    hold(
        &first,
        calls.iter().map(|call| held("s", call, 1, 100)).collect(),
    )
    .await;
    for call in &calls {
        let (a, b) = tokio::join!(
            first.approval_decide("s", call, DIGEST, ApprovalState::Approved, None, at(10)),
            second.approval_decide(
                "s",
                call,
                DIGEST,
                ApprovalState::Denied,
                Some("no".to_owned()),
                at(11)
            ),
        );
        let outcomes = [a.expect("first"), b.expect("second")];
        let decided: Vec<&ApprovalRecord> = outcomes
            .iter()
            .filter_map(|o| match o {
                ApprovalDecision::Decided(record) => Some(record),
                _ => None,
            })
            .collect();
        let already: Vec<&ApprovalRecord> = outcomes
            .iter()
            .filter_map(|o| match o {
                ApprovalDecision::AlreadyDecided(record) => Some(record),
                _ => None,
            })
            .collect();
        assert_eq!((decided.len(), already.len()), (1, 1), "{outcomes:?}");
        assert_eq!(
            decided[0], already[0],
            "the loser sees the winner's decision"
        );
    }
    assert_eq!(first.approvals_pending(at(10)).await.expect("count"), 0);
}
