//! Sessions' durable state: the message vocabulary, the [`Store`] boundary and its SQLite
//! implementation, and the per-session turn lock.

pub mod lock;
pub mod message;
pub mod sqlite;
pub mod store;

pub use message::{ChatMessage, Entry, EntrySource, FunctionCall, Role, ToolCallRequest};
pub use store::{
    CallStatus, Collection, Direction, JournalRecord, ListQuery, Record, SortBy, Store,
    StoreError, StoreResult,
};
