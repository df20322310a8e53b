//! Sessions' durable state: the message vocabulary, the [`Store`] boundary and its SQLite
//! implementation, and the per-session turn lock.

mod call_digest;
pub mod lock;
pub mod message;
pub mod sqlite;
mod sqlite_cache;
mod sqlite_checkpoint;
mod sqlite_rows;
mod sqlite_schema;
mod sqlite_step;
#[cfg(test)]
mod sqlite_tests;
#[cfg(test)]
mod sqlite_tests_history;
#[cfg(test)]
mod sqlite_tests_mirror;
mod sqlite_writer;
pub mod store;
mod worker_thread;

pub use call_digest::{call_digest, call_digest_of_text};
pub use message::{
    ChatMessage, Entry, EntrySource, FunctionCall, MessageJson, PromptMessage, Role,
    ToolCallRequest,
};
pub use store::{
    CallResult, CallStatus, Collection, Direction, JournalRecord, ListQuery, Record, SortBy,
    StepWrite, Store, StoreError, StoreResult,
};
