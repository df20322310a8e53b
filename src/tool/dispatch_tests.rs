//! Tests of dispatch: ordering, concurrency caps, timeout, panic, cancel, unknown tools,
//! argument errors and the journal (replay, outcome unknown).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use agentd_sdk::HandlerFactory;
use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::test_support::{FailFactory, MemoryJournal, SleepFactory};
use super::{
    Catalog, DispatchFailure, DispatchRequest, Dispatcher, FailureKind, Outcome, Progress,
    Registry, StepRuns, ToolRun,
};
use crate::session::{FunctionCall, ToolCallRequest};
use crate::store::{CallResult, CallStatus, JournalRecord, Store};

const CATALOG: &str = r#"
[[tool]]
name = "slow"
handler = "sleep"
parameters = { type = "object" }
options = { ms = 300 }

[[tool]]
name = "mid"
handler = "sleep"
parameters = { type = "object" }
options = { ms = 120 }

[[tool]]
name = "fast"
handler = "sleep"
parameters = { type = "object", properties = { n = { type = "integer" } }, required = ["n"] }
options = { ms = 5 }

[[tool]]
name = "one_at_a_time"
handler = "sleep"
concurrency = 1
parameters = { type = "object" }
options = { ms = 40 }

[[tool]]
name = "stuck"
handler = "sleep"
timeout = "100ms"
parameters = { type = "object" }
options = { ms = 60000 }

[[tool]]
name = "explode"
handler = "fail"
parameters = { type = "object" }
options = { mode = "panic" }

[[tool]]
name = "deny"
handler = "fail"
parameters = { type = "object" }
options = { mode = "deny" }
"#;

struct Harness {
    catalog: Catalog,
    journal: Arc<MemoryJournal>,
    dispatcher: Dispatcher,
    sleep: Arc<SleepFactory>,
    offered: Vec<String>,
    keep_arguments: bool,
}

fn harness(max_concurrent_calls: usize) -> Harness {
    let sleep = Arc::new(SleepFactory::default());
    let mut registry = Registry::builtin();
    registry.register(Arc::clone(&sleep) as Arc<dyn HandlerFactory>);
    registry.register(Arc::new(FailFactory));
    let catalog = Catalog::parse(CATALOG, Path::new("test.toml"), &registry)
        .unwrap_or_else(|e| panic!("{e}"));
    let journal = Arc::new(MemoryJournal::default());
    let dispatcher = Dispatcher::new(Arc::clone(&journal) as Arc<dyn Store>, max_concurrent_calls);
    let offered = catalog.tools().iter().map(|t| t.name.clone()).collect();
    Harness {
        catalog,
        journal,
        dispatcher,
        sleep,
        offered,
        keep_arguments: true,
    }
}

fn call(id: &str, name: &str, arguments: &str) -> ToolCallRequest {
    ToolCallRequest {
        id: id.to_owned(),
        kind: "function".to_owned(),
        function: FunctionCall {
            name: name.to_owned(),
            arguments: arguments.to_owned(),
        },
    }
}

impl Harness {
    async fn run(&self, calls: &[ToolCallRequest]) -> Vec<ToolRun> {
        self.run_with(calls, &CancellationToken::new(), None).await
    }

    async fn run_with(
        &self,
        calls: &[ToolCallRequest],
        cancel: &CancellationToken,
        progress: Option<mpsc::UnboundedSender<ToolRun>>,
    ) -> Vec<ToolRun> {
        let report = progress.map(|tx| {
            move |run: &ToolRun| -> BoxFuture<'static, ()> {
                let _ = tx.send(run.clone());
                Box::pin(async {})
            }
        });
        let step = self
            .step(calls, cancel, report.as_ref().map(|f| f as _))
            .await;
        // Commit a deferred finish the way the turn does, with the step's results.
        for result in step.finish {
            self.journal
                .journal_finish(
                    &result.session_id,
                    &result.call_id,
                    &result.digest,
                    &result.result,
                )
                .await
                .expect("finish");
        }
        step.runs
    }

    async fn step(
        &self,
        calls: &[ToolCallRequest],
        cancel: &CancellationToken,
        progress: Option<Progress<'_>>,
    ) -> StepRuns {
        self.dispatcher
            .run(DispatchRequest {
                catalog: &self.catalog,
                session_id: "s1",
                keep_arguments: self.keep_arguments,
                calls,
                offered: &self.offered,
                cancel,
                progress,
                entries: Vec::new(),
                approved: false,
            })
            .await
            .expect("journal")
    }
}

fn error_of(run: &ToolRun) -> Value {
    let content: Value = serde_json::from_str(&run.content).unwrap();
    content["error"].clone()
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn parallel_calls_come_back_in_call_order_and_stream_as_they_finish() {
    let h = harness(16);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let calls = [
        call("c1", "slow", "{}"),
        call("c2", "fast", r#"{"n": 1}"#),
        call("c3", "mid", ""),
    ];
    let started = std::time::Instant::now();
    let runs = h
        .run_with(&calls, &CancellationToken::new(), Some(tx))
        .await;
    let elapsed = started.elapsed();

    let ids: Vec<&str> = runs.iter().map(|r| r.call_id.as_str()).collect();
    assert_eq!(ids, ["c1", "c2", "c3"]);
    assert!(runs.iter().all(|r| r.outcome == Outcome::Ok), "{runs:?}");
    let fast: Value = serde_json::from_str(&runs[1].content).unwrap();
    assert_eq!(fast, json!({"slept": 5, "arguments": {"n": 1}}));
    assert_eq!(runs[1].name, "fast");
    // All three ran at once: the batch takes about as long as its slowest call.
    assert_eq!(h.sleep.most_at_once.load(Ordering::SeqCst), 3);
    assert!(elapsed >= Duration::from_millis(300), "took {elapsed:?}");
    assert!(runs[0].duration >= Duration::from_millis(300));

    let mut streamed = Vec::new();
    while let Some(run) = rx.recv().await {
        streamed.push(run.call_id);
    }
    assert_eq!(
        streamed,
        ["c2", "c3", "c1"],
        "progress follows completion order"
    );

    for id in ["c1", "c2", "c3"] {
        let record = h.journal.record("s1", id).unwrap();
        assert_eq!(record.status, CallStatus::Finished);
    }
    assert_eq!(
        h.journal.record("s1", "c2").unwrap().result.as_deref(),
        Some(runs[1].content.as_str())
    );
}

#[tokio::test]
async fn per_tool_and_daemon_wide_limits_cap_calls_running_at_once() {
    let h = harness(16);
    let calls: Vec<_> = (0..4)
        .map(|i| call(&format!("t{i}"), "one_at_a_time", "{}"))
        .collect();
    let runs = h.run(&calls).await;
    assert!(runs.iter().all(|r| r.outcome == Outcome::Ok));
    assert_eq!(
        h.sleep.most_at_once.load(Ordering::SeqCst),
        1,
        "tool concurrency = 1"
    );

    let h = harness(2);
    let calls: Vec<_> = (0..6)
        .map(|i| call(&format!("m{i}"), "mid", "{}"))
        .collect();
    let runs = h.run(&calls).await;
    assert!(runs.iter().all(|r| r.outcome == Outcome::Ok));
    assert_eq!(h.sleep.calls.load(Ordering::SeqCst), 6);
    assert_eq!(
        h.sleep.most_at_once.load(Ordering::SeqCst),
        2,
        "daemon-wide cap = 2"
    );
}

#[tokio::test]
async fn a_call_past_its_timeout_is_stopped_and_journaled() {
    let h = harness(16);
    let runs = h.run(&[call("c1", "stuck", "{}")]).await;
    assert_eq!(
        runs[0].outcome,
        Outcome::Error(FailureKind::Dispatch(DispatchFailure::Timeout))
    );
    assert!(
        runs[0].duration < Duration::from_secs(5),
        "{:?}",
        runs[0].duration
    );
    let error = error_of(&runs[0]);
    assert_eq!(error["kind"], "timeout");
    assert!(
        error["message"].as_str().unwrap().contains("100ms"),
        "{error}"
    );
    let record = h.journal.record("s1", "c1").unwrap();
    assert_eq!(record.status, CallStatus::Finished);
    assert_eq!(record.result.as_deref(), Some(runs[0].content.as_str()));
    // The aborted handler gives its permit back (once the runtime has dropped the task).
    let permits = &h.catalog.get("stuck").unwrap().concurrency;
    for _ in 0..100 {
        if permits.available_permits() == 16 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(permits.available_permits(), 16);
}

#[tokio::test]
async fn a_panicking_handler_becomes_an_error_result() {
    let h = harness(16);
    let runs = h
        .run(&[
            call("c1", "explode", "{}"),
            call("c2", "fast", r#"{"n": 2}"#),
        ])
        .await;
    assert_eq!(
        runs[0].outcome,
        Outcome::Error(FailureKind::Dispatch(DispatchFailure::Panic))
    );
    let error = error_of(&runs[0]);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("boom: the handler broke"),
        "{error}"
    );
    assert_eq!(runs[1].outcome, Outcome::Ok, "other calls are unaffected");
    assert_eq!(
        h.journal.record("s1", "c1").unwrap().status,
        CallStatus::Finished
    );
}

#[tokio::test]
async fn handler_errors_pass_through_with_their_details() {
    let h = harness(16);
    let runs = h.run(&[call("c1", "deny", "{}")]).await;
    assert_eq!(
        runs[0].outcome,
        Outcome::Error(FailureKind::Handler("denied".into()))
    );
    assert_eq!(
        error_of(&runs[0]),
        json!({"kind": "denied", "message": "recipient not allowed", "retryable": false, "recipient": "x@y"})
    );
}

#[tokio::test]
async fn cancelling_the_turn_stops_running_calls() {
    let h = harness(16);
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        trigger.cancel();
    });
    let runs = h
        .run_with(
            &[call("c1", "slow", "{}"), call("c2", "fast", r#"{"n": 3}"#)],
            &cancel,
            None,
        )
        .await;
    assert_eq!(
        runs[0].outcome,
        Outcome::Error(FailureKind::Dispatch(DispatchFailure::Cancelled))
    );
    assert_eq!(runs[1].outcome, Outcome::Ok, "finished before the cancel");
    assert_eq!(
        h.journal.record("s1", "c1").unwrap().status,
        CallStatus::Finished
    );

    // Already cancelled: nothing runs.
    let before = h.sleep.calls.load(Ordering::SeqCst);
    let runs = h
        .run_with(&[call("c3", "fast", r#"{"n": 4}"#)], &cancel, None)
        .await;
    assert_eq!(
        runs[0].outcome,
        Outcome::Error(FailureKind::Dispatch(DispatchFailure::Cancelled))
    );
    assert_eq!(h.sleep.calls.load(Ordering::SeqCst), before);
}

#[tokio::test]
async fn unknown_tools_get_a_suggestion_and_are_not_journaled() {
    let h = harness(16);
    let runs = h
        .run(&[call("c1", "fsat", "{}"), call("c2", "weather", "{}")])
        .await;
    assert_eq!(
        runs[0].outcome,
        Outcome::Error(FailureKind::Dispatch(DispatchFailure::UnknownTool))
    );
    let error = error_of(&runs[0]);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("did you mean `fast`?"),
        "{error}"
    );
    assert_eq!(
        error["available"].as_array().unwrap().len(),
        h.offered.len()
    );
    let far = error_of(&runs[1]);
    assert!(
        !far["message"].as_str().unwrap().contains("did you mean"),
        "{far}"
    );
    assert!(h.journal.record("s1", "c1").is_none());
}

#[tokio::test]
async fn bad_arguments_never_reach_the_handler() {
    let h = harness(16);
    let runs = h
        .run(&[
            call("c1", "fast", r#"{"n": 1"#),
            call("c2", "fast", r#"{"n": "one"}"#),
            call("c3", "fast", "{}"),
        ])
        .await;
    assert_eq!(
        runs[0].outcome,
        Outcome::Error(FailureKind::Dispatch(DispatchFailure::MalformedArguments))
    );
    assert!(
        error_of(&runs[0])["message"]
            .as_str()
            .unwrap()
            .contains("line 1 column")
    );
    assert_eq!(
        runs[1].outcome,
        Outcome::Error(FailureKind::Dispatch(DispatchFailure::InvalidArguments))
    );
    let violations = &error_of(&runs[1])["violations"];
    assert_eq!(violations[0]["pointer"], "/n");
    assert!(
        violations[0]["message"]
            .as_str()
            .unwrap()
            .contains("integer")
    );
    assert_eq!(error_of(&runs[2])["violations"][0]["pointer"], "");
    assert_eq!(h.sleep.calls.load(Ordering::SeqCst), 0);
    for id in ["c1", "c2", "c3"] {
        assert!(h.journal.record("s1", id).is_none(), "{id} was journaled");
    }
}

#[tokio::test]
async fn a_finished_call_is_replayed_from_the_journal_not_run_again() {
    let h = harness(16);
    let first = h.run(&[call("c1", "fast", r#"{"n": 5}"#)]).await;
    assert_eq!(first[0].outcome, Outcome::Ok);
    let second = h.run(&[call("c1", "fast", r#"{"n": 5}"#)]).await;
    assert_eq!(second[0].outcome, Outcome::Replayed);
    assert_eq!(second[0].content, first[0].content);
    assert_eq!(h.sleep.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_call_started_but_never_finished_is_not_run_again() {
    let h = harness(16);
    h.journal
        .journal_start(&JournalRecord {
            session_id: "s1".into(),
            call_id: "c1".into(),
            digest: crate::session::call_digest_of_text("fast", r#"{"n": 6}"#),
            tool: "fast".into(),
            arguments: r#"{"n": 6}"#.into(),
            status: CallStatus::Started,
            result: None,
            started_at: OffsetDateTime::now_utc(),
            finished_at: None,
        })
        .await
        .unwrap();
    let runs = h.run(&[call("c1", "fast", r#"{"n": 6}"#)]).await;
    assert_eq!(
        runs[0].outcome,
        Outcome::Error(FailureKind::Dispatch(DispatchFailure::OutcomeUnknown))
    );
    let message = error_of(&runs[0])["message"].as_str().unwrap().to_owned();
    assert!(message.contains("was not run again"), "{message}");
    assert_eq!(h.sleep.calls.load(Ordering::SeqCst), 0);

    // The same call id twice in one batch: one runs, the other cannot be started.
    let runs = h
        .run(&[
            call("d1", "fast", r#"{"n": 7}"#),
            call("d1", "fast", r#"{"n": 7}"#),
        ])
        .await;
    let outcomes: Vec<&Outcome> = runs.iter().map(|r| &r.outcome).collect();
    assert!(outcomes.contains(&&Outcome::Ok), "{outcomes:?}");
    assert!(
        outcomes.contains(&&Outcome::Error(FailureKind::Dispatch(
            DispatchFailure::OutcomeUnknown
        ))),
        "{outcomes:?}"
    );
    assert_eq!(h.sleep.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_lone_running_call_leaves_its_finish_to_the_caller_and_several_finish_themselves() {
    let h = harness(16);
    let cancel = CancellationToken::new();
    // One call runs (the other is refused before running): its finish comes back, to be
    // committed with its result, and the journal still says started.
    let lone = [call("c1", "slow", "{}"), call("c2", "no_such_tool", "{}")];
    let step = h.step(&lone, &cancel, None).await;
    assert_eq!(step.runs.len(), 2);
    assert!(step.runs[0].ran && !step.runs[1].ran);
    assert_eq!(
        step.finish,
        vec![CallResult {
            session_id: "s1".into(),
            call_id: "c1".into(),
            digest: step.runs[0].digest.clone(),
            result: step.runs[0].content.clone(),
        }]
    );
    assert_eq!(
        h.journal.record("s1", "c1").unwrap().status,
        CallStatus::Started
    );
    assert!(h.journal.record("s1", "c2").is_none());

    // Two running calls each journal their finish as they end.
    let pair = [call("c3", "slow", "{}"), call("c4", "mid", "{}")];
    let step = h.step(&pair, &cancel, None).await;
    assert!(step.finish.is_empty());
    for id in ["c3", "c4"] {
        assert_eq!(
            h.journal.record("s1", id).unwrap().status,
            CallStatus::Finished
        );
    }
}

#[tokio::test]
async fn a_catalog_tool_the_step_did_not_offer_never_runs() {
    let mut h = harness(16);
    h.offered = vec!["fast".to_owned()];
    let runs = h
        .run(&[call("c1", "slow", "{}"), call("c2", "fast", r#"{"n": 1}"#)])
        .await;
    assert_eq!(
        runs[0].outcome,
        Outcome::Error(FailureKind::Dispatch(DispatchFailure::UnknownTool))
    );
    assert_eq!(error_of(&runs[0])["available"], json!(["fast"]));
    assert!(
        !error_of(&runs[0])["message"]
            .as_str()
            .unwrap()
            .contains("mid"),
        "tools kept from the model are not named to it"
    );
    assert_eq!(runs[1].outcome, Outcome::Ok);
    assert_eq!(
        h.sleep.calls.load(Ordering::SeqCst),
        1,
        "only the offered call ran"
    );
    assert!(
        h.journal.record("s1", "c1").is_none(),
        "refused before the journal"
    );
}

#[tokio::test]
async fn the_same_id_with_other_content_is_a_new_call_and_the_same_content_a_replay() {
    let h = harness(16);
    let first = h.run(&[call("call_0", "fast", r#"{"n": 5}"#)]).await;
    assert_eq!(first[0].outcome, Outcome::Ok);
    let other = h.run(&[call("call_0", "fast", r#"{"n": 6}"#)]).await;
    assert_eq!(other[0].outcome, Outcome::Ok, "other arguments run");
    assert_eq!(h.sleep.calls.load(Ordering::SeqCst), 2);
    // The same content, spelled differently, is the same call: answered from the journal.
    let again = h.run(&[call("call_0", "fast", r#"{ "n" : 6 }"#)]).await;
    assert_eq!(again[0].outcome, Outcome::Replayed);
    assert_eq!(again[0].content, other[0].content);
    assert_eq!(h.sleep.calls.load(Ordering::SeqCst), 2);
    let records = h.journal.records("s1", "call_0");
    assert_eq!(records.len(), 2);
    assert_ne!(records[0].digest, records[1].digest);
    assert!(records.iter().all(|r| r.status == CallStatus::Finished));
}

#[tokio::test]
async fn a_turn_that_keeps_no_history_journals_no_arguments() {
    let mut h = harness(16);
    h.keep_arguments = false;
    let runs = h.run(&[call("c1", "fast", r#"{"n": 9}"#)]).await;
    assert_eq!(runs[0].outcome, Outcome::Ok);
    let record = h.journal.record("s1", "c1").expect("journaled");
    assert_eq!(record.arguments, "");
    assert_eq!(record.digest, runs[0].digest);
    assert_eq!(record.status, CallStatus::Finished);
    // Exactly-once still holds without the arguments.
    let again = h.run(&[call("c1", "fast", r#"{"n": 9}"#)]).await;
    assert_eq!(again[0].outcome, Outcome::Replayed);
}
