//! The contract's tests of calls held for approval: holds committed with a step, decisions
//! and their outcomes, expiry, the pending count and removal with a session's history.

use serde_json::json;
use time::OffsetDateTime;

use super::Fixture;
use crate::store::test_support::{DIGEST, at, entry, record, shared, started};
use crate::store::{
    ApprovalDecision, ApprovalRecord, ApprovalState, CallResult, Collection, StepWrite, Store,
};

/// A call of `session` held at `at(requested)` until `at(expires)`, digest [`DIGEST`].
pub(crate) fn held(session: &str, call: &str, requested: i64, expires: i64) -> ApprovalRecord {
    ApprovalRecord {
        session_id: session.to_owned(),
        call_id: call.to_owned(),
        digest: DIGEST.to_owned(),
        tool: "send_email".to_owned(),
        arguments: r#"{"to":"a@example.org"}"#.to_owned(),
        requested_at: at(requested),
        expires_at: at(expires),
        state: ApprovalState::Pending,
        reason: None,
        decided_at: None,
    }
}

pub(crate) async fn hold(store: &impl Store, records: Vec<ApprovalRecord>) {
    store
        .write_step(StepWrite {
            hold: records,
            ..StepWrite::default()
        })
        .await
        .expect("hold");
}

pub(crate) async fn decide(
    store: &impl Store,
    session: &str,
    call: &str,
    digest: &str,
    state: ApprovalState,
    reason: Option<&str>,
    now: OffsetDateTime,
) -> ApprovalDecision {
    store
        .approval_decide(session, call, digest, state, reason.map(str::to_owned), now)
        .await
        .expect("decide")
}

pub(crate) async fn listed(store: &impl Store, session: &str) -> Vec<ApprovalRecord> {
    store.approvals(session).await.expect("approvals")
}

pub(crate) fn call_ids(records: &[ApprovalRecord]) -> Vec<&str> {
    records.iter().map(|r| r.call_id.as_str()).collect()
}

/// `record` as a decision leaves it.
pub(crate) fn decided(
    record: ApprovalRecord,
    state: ApprovalState,
    reason: Option<&str>,
    now: OffsetDateTime,
) -> ApprovalRecord {
    ApprovalRecord {
        state,
        reason: reason.map(str::to_owned),
        decided_at: Some(now),
        ..record
    }
}

pub(crate) async fn holds_commit_with_a_steps_entries_or_alone_and_list_oldest_first(
    fixture: &impl Fixture,
) {
    let store = fixture.open().await;
    let started_call = started("s", "run_1");
    let fresh = store
        .write_step(StepWrite {
            entries: shared(vec![entry("s", "e1", "send it")]),
            start: vec![started_call.clone()],
            hold: vec![held("s", "c2", 2, 100)],
            ..StepWrite::default()
        })
        .await
        .expect("step");
    assert_eq!(
        fresh,
        vec![true],
        "the start is answered, the hold adds nothing"
    );
    assert_eq!(store.full_history("s").await.expect("history").len(), 1);
    assert_eq!(
        store
            .journal_get("s", "run_1", DIGEST)
            .await
            .expect("journal"),
        Some(started_call)
    );

    // A step of holds only; a record handed in already decided is still stored pending.
    let mut claims_approval = held("s", "c0", 2, 100);
    claims_approval.state = ApprovalState::Approved;
    claims_approval.reason = Some("trust me".to_owned());
    claims_approval.decided_at = Some(at(3));
    hold(
        &store,
        vec![
            held("s", "c1", 1, 100),
            claims_approval,
            held("other", "c9", 0, 100),
        ],
    )
    .await;

    let records = listed(&store, "s").await;
    assert_eq!(call_ids(&records), ["c1", "c0", "c2"], "by time, then id");
    assert_eq!(records[1], held("s", "c0", 2, 100));
    assert_eq!(records[2], held("s", "c2", 2, 100), "nanoseconds kept");
    assert_eq!(call_ids(&listed(&store, "other").await), ["c9"]);
    assert!(listed(&store, "nobody").await.is_empty());
}

pub(crate) async fn a_step_that_fails_holds_nothing(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let failed = store
        .write_step(StepWrite {
            finish: vec![CallResult {
                session_id: "s".to_owned(),
                call_id: "never_started".to_owned(),
                digest: DIGEST.to_owned(),
                result: "done".to_owned(),
            }],
            hold: vec![held("s", "c1", 1, 100)],
            ..StepWrite::default()
        })
        .await;
    assert!(failed.is_err(), "a finish without a start fails the step");
    assert!(listed(&store, "s").await.is_empty(), "the hold rolled back");
}

pub(crate) async fn a_call_held_again_keeps_its_first_record(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let first = held("s", "c1", 1, 100);
    hold(&store, vec![first.clone()]).await;
    let other_content = ApprovalRecord {
        digest: "digest-1".to_owned(),
        arguments: r#"{"to":"b@example.org"}"#.to_owned(),
        requested_at: at(5),
        expires_at: at(500),
        ..first.clone()
    };
    hold(&store, vec![other_content.clone()]).await;
    assert_eq!(listed(&store, "s").await, vec![first.clone()]);

    // Once decided, holding it again does not make it pending.
    let decision = decide(
        &store,
        "s",
        "c1",
        DIGEST,
        ApprovalState::Denied,
        None,
        at(10),
    )
    .await;
    let denied = decided(first, ApprovalState::Denied, None, at(10));
    assert_eq!(decision, ApprovalDecision::Decided(denied.clone()));
    hold(&store, vec![other_content]).await;
    assert_eq!(listed(&store, "s").await, vec![denied]);
}

pub(crate) async fn approving_and_denying_record_state_reason_and_time(fixture: &impl Fixture) {
    let store = fixture.open().await;
    hold(
        &store,
        vec![held("s", "c1", 1, 100), held("s", "c2", 2, 100)],
    )
    .await;
    let approve = decide(
        &store,
        "s",
        "c1",
        DIGEST,
        ApprovalState::Approved,
        None,
        at(10),
    )
    .await;
    let deny = decide(
        &store,
        "s",
        "c2",
        DIGEST,
        ApprovalState::Denied,
        Some("not this recipient"),
        at(11),
    )
    .await;
    let approved = decided(
        held("s", "c1", 1, 100),
        ApprovalState::Approved,
        None,
        at(10),
    );
    let denied = decided(
        held("s", "c2", 2, 100),
        ApprovalState::Denied,
        Some("not this recipient"),
        at(11),
    );
    assert_eq!(approve, ApprovalDecision::Decided(approved.clone()));
    assert_eq!(deny, ApprovalDecision::Decided(denied.clone()));
    assert_eq!(listed(&store, "s").await, vec![approved, denied]);
}

pub(crate) async fn deciding_an_unknown_call_is_not_found(fixture: &impl Fixture) {
    let store = fixture.open().await;
    hold(&store, vec![held("s", "c1", 1, 100)]).await;
    for (session, call) in [("s", "c2"), ("other", "c1")] {
        let decision = decide(
            &store,
            session,
            call,
            DIGEST,
            ApprovalState::Approved,
            None,
            at(10),
        )
        .await;
        assert_eq!(decision, ApprovalDecision::NotFound, "{session}/{call}");
    }
    assert_eq!(listed(&store, "s").await[0].state, ApprovalState::Pending);
}

pub(crate) async fn a_digest_mismatch_leaves_the_call_pending(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let pending = held("s", "c1", 1, 100);
    hold(&store, vec![pending.clone()]).await;
    let decision = decide(
        &store,
        "s",
        "c1",
        "digest-of-other-arguments",
        ApprovalState::Approved,
        None,
        at(10),
    )
    .await;
    assert_eq!(decision, ApprovalDecision::DigestMismatch(pending.clone()));
    assert_eq!(listed(&store, "s").await, vec![pending.clone()]);
    assert_eq!(store.approvals_pending(at(10)).await.expect("count"), 1);
    // The right digest still decides it.
    let decision = decide(
        &store,
        "s",
        "c1",
        DIGEST,
        ApprovalState::Approved,
        None,
        at(11),
    )
    .await;
    assert!(
        matches!(decision, ApprovalDecision::Decided(ref r) if r.state == ApprovalState::Approved),
        "{decision:?}"
    );
}

pub(crate) async fn a_second_decision_is_already_decided_and_changes_nothing(
    fixture: &impl Fixture,
) {
    let store = fixture.open().await;
    hold(&store, vec![held("s", "c1", 1, 100)]).await;
    let first = decide(
        &store,
        "s",
        "c1",
        DIGEST,
        ApprovalState::Approved,
        None,
        at(10),
    )
    .await;
    let ApprovalDecision::Decided(approved) = first else {
        panic!("first decision: {first:?}");
    };
    for state in [
        ApprovalState::Denied,
        ApprovalState::Superseded,
        ApprovalState::Approved,
    ] {
        let again = decide(
            &store,
            "s",
            "c1",
            DIGEST,
            state,
            Some("changed my mind"),
            at(20),
        )
        .await;
        assert_eq!(again, ApprovalDecision::AlreadyDecided(approved.clone()));
    }
    assert_eq!(listed(&store, "s").await, vec![approved]);
}

pub(crate) async fn a_call_past_its_time_is_recorded_expired_instead_of_decided(
    fixture: &impl Fixture,
) {
    let store = fixture.open().await;
    hold(
        &store,
        vec![held("s", "late", 1, 10), held("s", "in_time", 2, 10)],
    )
    .await;
    // `expires_at` itself is already too late; a nanosecond before is in time.
    let late = decide(
        &store,
        "s",
        "late",
        DIGEST,
        ApprovalState::Approved,
        None,
        at(10),
    )
    .await;
    let expired = decided(
        held("s", "late", 1, 10),
        ApprovalState::Expired,
        Some("expired"),
        at(10),
    );
    assert_eq!(late, ApprovalDecision::Expired(expired.clone()));
    let just_before = at(10) - time::Duration::nanoseconds(1);
    let in_time = decide(
        &store,
        "s",
        "in_time",
        DIGEST,
        ApprovalState::Approved,
        None,
        just_before,
    )
    .await;
    assert!(
        matches!(in_time, ApprovalDecision::Decided(ref r) if r.state == ApprovalState::Approved),
        "{in_time:?}"
    );
    assert_eq!(
        listed(&store, "s").await[0],
        expired,
        "the expiry is stored"
    );
    let again = decide(
        &store,
        "s",
        "late",
        DIGEST,
        ApprovalState::Approved,
        None,
        at(5),
    )
    .await;
    assert_eq!(again, ApprovalDecision::AlreadyDecided(expired));
}

pub(crate) async fn only_decisions_are_taken(fixture: &impl Fixture) {
    let store = fixture.open().await;
    hold(&store, vec![held("s", "c1", 1, 100)]).await;
    for state in [ApprovalState::Pending, ApprovalState::Expired] {
        let refused = store
            .approval_decide("s", "c1", DIGEST, state, None, at(10))
            .await;
        assert!(refused.is_err(), "{state:?}: {refused:?}");
    }
    assert_eq!(listed(&store, "s").await, vec![held("s", "c1", 1, 100)]);
}

pub(crate) async fn the_pending_count_leaves_out_decided_and_expired_calls(fixture: &impl Fixture) {
    let store = fixture.open().await;
    hold(
        &store,
        vec![
            held("s1", "soon", 1, 50),
            held("s1", "later", 1, 100),
            held("s2", "later", 1, 100),
            held("s2", "approved", 1, 100),
            held("s2", "denied", 1, 100),
        ],
    )
    .await;
    let count = |now| {
        let store = store.clone();
        async move { store.approvals_pending(now).await.expect("count") }
    };
    assert_eq!(count(at(10)).await, 5);
    decide(
        &store,
        "s2",
        "approved",
        DIGEST,
        ApprovalState::Approved,
        None,
        at(10),
    )
    .await;
    decide(
        &store,
        "s2",
        "denied",
        DIGEST,
        ApprovalState::Denied,
        None,
        at(10),
    )
    .await;
    assert_eq!(count(at(10)).await, 3);
    assert_eq!(
        count(at(50)).await,
        2,
        "expiring exactly now is not pending"
    );
    assert_eq!(count(at(100)).await, 0);
    // Once recorded expired, it is no longer pending at any time.
    decide(
        &store,
        "s1",
        "soon",
        DIGEST,
        ApprovalState::Approved,
        None,
        at(60),
    )
    .await;
    assert_eq!(count(at(10)).await, 2);
}

pub(crate) async fn clearing_history_or_deleting_the_session_removes_its_held_calls(
    fixture: &impl Fixture,
) {
    let store = fixture.open().await;
    for session in ["s1", "s2", "s3"] {
        store
            .insert(Collection::Sessions, record(session, json!({}), 0, 0))
            .await
            .expect("session");
        hold(
            &store,
            vec![held(session, "c1", 1, 100), held(session, "c2", 2, 100)],
        )
        .await;
    }
    store.clear_history("s1").await.expect("clear");
    assert!(listed(&store, "s1").await.is_empty());
    assert_eq!(
        decide(
            &store,
            "s1",
            "c1",
            DIGEST,
            ApprovalState::Approved,
            None,
            at(10)
        )
        .await,
        ApprovalDecision::NotFound
    );
    assert!(
        store
            .delete(Collection::Sessions, "s2")
            .await
            .expect("delete")
    );
    assert!(listed(&store, "s2").await.is_empty());
    assert_eq!(call_ids(&listed(&store, "s3").await), ["c1", "c2"]);
    assert_eq!(store.approvals_pending(at(10)).await.expect("count"), 2);
    // A cleared session holds calls again under the same ids.
    hold(&store, vec![held("s1", "c1", 3, 100)]).await;
    assert_eq!(listed(&store, "s1").await, vec![held("s1", "c1", 3, 100)]);
}

pub(crate) async fn held_calls_and_decisions_survive_a_restart(fixture: &impl Fixture) {
    let before = {
        let store = fixture.open().await;
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
    let store = fixture.open().await;
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
