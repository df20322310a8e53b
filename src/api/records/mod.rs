//! The stored shape of every resource: the one definition of the fields of agents, users,
//! sessions and agent tools, their defaults and their JSON names.
//!
//! The store keeps documents (`store::Record::body`, a JSON object) and knows nothing of their
//! fields; the API owns their shape, here. A record is written by serializing its type and read
//! by deserializing the stored body into it. Reading borrows: text fields are [`Text`], which
//! points into the stored body instead of copying it, and a reader names the fields it skips
//! as [`Unread`] (the chat path does not copy an agent's metadata on every turn). A body stored
//! by an older build with fields missing reads with the fields' defaults.
//!
//! A new field goes on the record with a serde default (so stored documents without it still
//! read), on its `…Patch` and in its `apply`, and in the request fields of the resource's
//! handler file (`api/agents.rs`, …), which validates it.

mod agent;
mod agent_tool;
mod session;
mod user;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, IgnoredAny};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub(super) use agent::{AgentPatch, AgentRecord, ModelSettings};
pub(super) use agent_tool::{AgentToolRecord, ToolPatch, no_parameters};
pub(super) use session::{ContextOverflow, SessionPatch, SessionRecord};
pub(super) use user::{UserPatch, UserRecord};

use super::error::ApiError;
use crate::store::Record;

/// A free-form JSON object of a record (`metadata`, an agent's `default_settings`).
pub(super) type Object = Map<String, Value>;

/// Text of a record: borrowed from the stored body when read, owned when built from a request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(super) struct Text<'a>(#[serde(borrow)] pub Cow<'a, str>);

impl Text<'_> {
    pub(super) fn as_str(&self) -> &str {
        &self.0
    }

    pub(super) fn into_owned(self) -> String {
        self.0.into_owned()
    }
}

impl From<String> for Text<'_> {
    fn from(text: String) -> Self {
        Text(Cow::Owned(text))
    }
}

impl<'a> From<&'a str> for Text<'a> {
    fn from(text: &'a str) -> Self {
        Text(Cow::Borrowed(text))
    }
}

impl std::ops::Deref for Text<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A field its reader does not need: skipped without being copied. A record read with an
/// `Unread` field cannot be written back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Unread;

impl<'de> Deserialize<'de> for Unread {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(deserializer).map(|_| Unread)
    }
}

/// Reads a stored record's body as `T`, borrowing its text. A body that does not have the
/// shape of `T` is a 500 for the client and an error line for the operator.
pub(super) fn read<'a, T: Deserialize<'a>>(record: &'a Record) -> Result<T, ApiError> {
    T::deserialize(&record.body).map_err(|e| {
        tracing::error!(id = %record.id, error = %e, "a stored record does not have its resource's shape");
        ApiError::Internal
    })
}

/// Reads a stored record's body as an owned `T` (for handlers that keep it across awaits).
pub(super) fn read_owned<T: Deserialize<'static>>(record: &Record) -> Result<T, ApiError> {
    T::deserialize(record.body.clone()).map_err(|e| {
        tracing::error!(id = %record.id, error = %e, "a stored record does not have its resource's shape");
        ApiError::Internal
    })
}

/// The stored body of a record (a JSON object).
pub(super) fn to_body<T: Serialize>(record: &T) -> Result<Object, ApiError> {
    match serde_json::to_value(record) {
        Ok(Value::Object(body)) => Ok(body),
        Ok(_) => {
            tracing::error!("a record did not serialize to a JSON object");
            Err(ApiError::Internal)
        }
        Err(e) => {
            tracing::error!(error = %e, "a record did not serialize");
            Err(ApiError::Internal)
        }
    }
}

/// Replaces `field` with `change` when there is one.
fn set<T>(field: &mut T, change: Option<impl Into<T>>) {
    if let Some(value) = change {
        *field = value.into();
    }
}

/// Merges `change` into `object` key by key (a PATCH of `metadata`).
fn merge(object: &mut Object, change: Option<Object>) {
    if let Some(change) = change {
        object.extend(change);
    }
}

/// `Vec<String>` into stored text.
fn texts<'a>(list: Vec<String>) -> Vec<Text<'a>> {
    list.into_iter().map(Text::from).collect()
}
