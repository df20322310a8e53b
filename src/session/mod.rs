//! A session's conversation: the message vocabulary history is made of, the identity of a
//! tool call (its content digest), and the per-session turn lock.

mod call_digest;
pub mod history;
pub mod lock;
pub mod message;

/// The ids of an entry and of its session, held inline.
pub use crate::ids::Id;
pub use call_digest::{call_digest, call_digest_of_text};
pub use history::{History, StoredEntry};
pub use message::{
    ChatMessage, Entry, EntrySource, FunctionCall, MessageJson, PromptMessage, Role,
    ToolCallRequest, write_messages,
};
