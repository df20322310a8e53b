//! The conversation of one turn as it grows: the session's history (a snapshot shared with the
//! store's in-memory copy, never copied), then what the turn added, and which of that is not
//! stored yet.

use std::collections::HashSet;
use std::sync::Arc;

use time::OffsetDateTime;

use crate::session::{ChatMessage, Entry, EntrySource, History, MessageJson, PromptMessage};
use crate::store::{CallResult, StepWrite, Store};
use crate::turn::TurnError;

/// The conversation a turn sends to the model: the session's history (a snapshot shared with
/// the store's in-memory copy, not copied), then what this turn added, the last `unsaved` of it
/// not stored yet.
pub(super) struct Transcript<'a> {
    session_id: &'a str,
    save: bool,
    history: History,
    added: Vec<Arc<Entry>>,
    unsaved: usize,
}

impl<'a> Transcript<'a> {
    pub(super) fn new(session_id: &'a str, save: bool, history: History) -> Self {
        Self {
            session_id,
            save,
            history,
            added: Vec::new(),
            unsaved: 0,
        }
    }

    fn entries(&self) -> impl Iterator<Item = &Arc<Entry>> + Clone {
        self.history.iter().chain(&self.added)
    }

    /// Entries in the conversation.
    pub(super) fn len(&self) -> usize {
        self.history.len() + self.added.len()
    }

    /// Bytes of the conversation's message JSON, as stored and as sent to the model. Stored
    /// history's sum is kept with it, so this touches only what the turn added.
    pub(super) fn json_bytes(&self) -> usize {
        self.added
            .iter()
            .map(|entry| entry.message_text().len())
            .fold(self.history.json_bytes(), usize::saturating_add)
    }

    pub(super) fn messages(&self) -> impl Iterator<Item = &ChatMessage> + Clone {
        self.entries().map(|entry| &entry.message)
    }

    /// The conversation as model-request messages: stored history written from its joined
    /// text, what the turn added from each entry's kept text.
    pub(super) fn prompt(&self) -> impl Iterator<Item = PromptMessage<'_>> {
        let history = &self.history;
        (0..history.len())
            .map(move |index| PromptMessage::Stored { history, index })
            .chain(self.added.iter().map(|entry| PromptMessage::Entry(entry)))
    }

    /// Gives a new id to every call whose id the conversation already has (some servers number
    /// calls per response): each call then has its own result in history and its own journal
    /// entry, instead of being taken for a replay of the earlier call and never run.
    pub(super) fn fresh_call_ids(&self, message: &mut ChatMessage) {
        let Some(calls) = message.tool_calls.as_mut() else {
            return;
        };
        if calls.is_empty() {
            return;
        }
        // A few calls look through history each (an entry still unparsed is parsed only if
        // its text holds the id); many get one pass into a set, so an answer with thousands
        // of calls costs history + calls, not history × calls.
        let many: Option<HashSet<&str>> = (calls.len() > 4).then(|| {
            self.messages()
                .flat_map(ChatMessage::calls)
                .map(|call| call.id.as_str())
                .collect()
        });
        let used = |id: &str| match &many {
            Some(set) => set.contains(id),
            None => {
                self.history.has_call(id)
                    || self
                        .added
                        .iter()
                        .any(|entry| entry.message.calls().iter().any(|call| call.id == id))
            }
        };
        let mut seen = HashSet::new();
        for call in calls {
            if used(&call.id) || !seen.insert(call.id.clone()) {
                call.id = crate::provider::openai::generated_call_id();
                seen.insert(call.id.clone());
            }
        }
    }

    /// Adds messages to the conversation; they are stored at the next [`Transcript::save`].
    pub(super) fn add(&mut self, messages: Vec<(ChatMessage, EntrySource)>) {
        let now = OffsetDateTime::now_utc();
        for (message, source) in messages {
            self.added.push(Arc::new(Entry {
                id: crate::ids::Id::new_v7(),
                session_id: self.session_id.into(),
                source,
                message,
                created_at: now,
                json: MessageJson::default(),
            }));
            if self.save {
                self.unsaved += 1;
            }
        }
    }

    /// Hands over what was added since the last save, for a caller that commits it.
    pub(super) fn take_unsaved(&mut self) -> Vec<Arc<Entry>> {
        let first = self.added.len() - self.unsaved;
        self.unsaved = 0;
        // Shared with the store: the JSON text the store makes of each entry is the one the
        // next model request is written from.
        self.added[first..].to_vec()
    }

    /// Stores what was added since the last save, in one transaction.
    pub(super) async fn save(&mut self, store: &dyn Store) -> Result<(), TurnError> {
        self.save_finishing(store, Vec::new()).await
    }

    /// Stores what was added since the last save, and journals `finish`, in one transaction.
    pub(super) async fn save_finishing(
        &mut self,
        store: &dyn Store,
        finish: Vec<CallResult>,
    ) -> Result<(), TurnError> {
        let entries = self.take_unsaved();
        if entries.is_empty() && finish.is_empty() {
            return Ok(());
        }
        store
            .write_step(StepWrite {
                entries,
                finish,
                ..StepWrite::default()
            })
            .await?;
        Ok(())
    }
}
