//! What only the PostgreSQL store does with calls held for approval, beyond the store
//! contract (`store/contract`): the pending count's index, and two stores deciding one call at
//! once.

use crate::store::contract::approvals::{held, hold};
use crate::store::postgres::approvals::COUNT_PENDING;
use crate::store::postgres::test_server::{TestDatabase, connect_store};
use crate::store::test_support::{DIGEST, at};
use crate::store::{ApprovalDecision, ApprovalRecord, ApprovalState, Store};

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
