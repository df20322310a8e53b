//! The stored user: name, about, metadata.

use serde::{Deserialize, Serialize};

use super::{Object, Text, merge, set};

/// A user as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct UserRecord<'a> {
    #[serde(borrow, default)]
    pub name: Text<'a>,
    #[serde(borrow, default)]
    pub about: Text<'a>,
    #[serde(default)]
    pub metadata: Object,
}

/// Changes to a user; `None` keeps a field, `metadata` is merged key by key.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct UserPatch {
    pub name: Option<String>,
    pub about: Option<String>,
    pub metadata: Option<Object>,
}

impl UserRecord<'_> {
    pub(crate) fn apply(&mut self, patch: UserPatch) {
        set(&mut self.name, patch.name);
        set(&mut self.about, patch.about);
        merge(&mut self.metadata, patch.metadata);
    }
}
