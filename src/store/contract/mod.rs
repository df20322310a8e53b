//! What every store must do, written once. Each test takes a [`Fixture`]: a fresh database
//! and a way to open a store on it, and to open one again after the last was dropped (a
//! restart). A store's test module runs the whole list with [`contract_tests!`]; what only one
//! store has (SQLite's mirror, file lock and schema file, PostgreSQL's shared instances and
//! TLS) is tested beside it.

pub(crate) mod approvals;
pub(crate) mod history;
pub(crate) mod resources;

use crate::store::Store;

/// A fresh database for one test, and stores opened on it.
pub(crate) trait Fixture: Sized {
    type Opened: Store + Clone;

    /// An empty database of its own.
    async fn new() -> Self;

    /// A store on the database (migrating it when new); once every earlier store is dropped,
    /// the next is a restart.
    async fn open(&self) -> Self::Opened;
}

/// One `#[tokio::test]` per contract test, each on a fresh `$fixture`.
macro_rules! contract_tests {
    ($fixture:ty) => {
        $crate::store::contract::contract_tests!(@each $fixture, tokio::test,
            resources::crud_round_trips_in_every_collection,
            resources::collections_are_separate_namespaces,
            resources::upsert_creates_then_replaces_keeping_created_at,
            resources::list_sorts_both_ways_breaks_ties_by_id_and_pages,
            resources::list_filters_on_metadata_strings_numbers_bools_and_odd_keys,
            resources::list_filters_on_parent,
            resources::deleting_an_agent_deletes_only_its_tools,
            resources::deleting_a_session_deletes_its_history_and_journal,
            history::history_keeps_append_order_and_pages_across_reopen,
            history::clear_history_empties_only_that_session,
            history::journal_records_start_once_and_finish,
            history::everything_survives_reopen,
            history::a_step_commits_entries_and_journal_together_and_reports_calls_journaled_before,
            history::one_call_id_with_two_digests_is_two_calls,
            history::clearing_history_forgets_the_journal_of_its_calls,
            approvals::holds_commit_with_a_steps_entries_or_alone_and_list_oldest_first,
            approvals::a_step_that_fails_holds_nothing,
            approvals::a_call_held_again_keeps_its_first_record,
            approvals::approving_and_denying_record_state_reason_and_time,
            approvals::deciding_an_unknown_call_is_not_found,
            approvals::a_digest_mismatch_leaves_the_call_pending,
            approvals::a_second_decision_is_already_decided_and_changes_nothing,
            approvals::a_call_past_its_time_is_recorded_expired_instead_of_decided,
            approvals::only_decisions_are_taken,
            approvals::the_pending_count_leaves_out_decided_and_expired_calls,
            approvals::clearing_history_or_deleting_the_session_removes_its_held_calls,
            approvals::held_calls_and_decisions_survive_a_restart,
        );
        $crate::store::contract::contract_tests!(@each $fixture,
            tokio::test(flavor = "multi_thread", worker_threads = 4),
            history::concurrent_appends_all_land_in_per_task_order,
        );
    };
    (@each $fixture:ty, $test:meta, $($part:ident::$name:ident),* $(,)?) => {
        $(
            #[$test]
            async fn $name() {
                let fixture = <$fixture as $crate::store::contract::Fixture>::new().await;
                $crate::store::contract::$part::$name(&fixture).await;
            }
        )*
    };
}
pub(crate) use contract_tests;
