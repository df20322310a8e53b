//! What only the embedded store does with calls held for approval, beyond the store contract
//! (`store/contract`): the pending count's index, and a database from before approvals
//! gaining them at open.

use crate::store::Store;
use crate::store::contract::approvals::{call_ids, held, hold, listed};
use crate::store::sqlite::approvals::COUNT_PENDING;
use crate::store::sqlite::tests::{DIGEST, open, query_plan, raw, raw_at_version, temp_db};

#[tokio::test]
async fn the_pending_count_reads_the_pending_index() {
    let (_dir, path) = temp_db();
    drop(open(&path));
    let conn = raw(&path);
    let plan = query_plan(&conn, COUNT_PENDING, [0i64]);
    assert!(
        plan.iter()
            .any(|step| step.contains("approvals_pending_by_expiry")),
        "{plan:?}"
    );
}

/// A file from before approvals existed gains the table at open, its journal untouched.
#[tokio::test]
async fn a_database_from_before_approvals_gains_them_at_open() {
    let (_dir, path) = temp_db();
    {
        let conn = raw_at_version(&path, 2);
        conn.execute(
            "INSERT INTO journal VALUES ('s', 'c1', 'digest-0', 'send_email', '{}',
             'finished', 'sent', 1, 2)",
            [],
        )
        .expect("journal row");
    }
    let store = open(&path);
    let journaled = store
        .journal_get("s", "c1", DIGEST)
        .await
        .expect("journal")
        .expect("kept");
    assert_eq!(journaled.result.as_deref(), Some("sent"));
    hold(&store, vec![held("s", "c2", 1, 100)]).await;
    assert_eq!(call_ids(&listed(&store, "s").await), ["c2"]);
}
