//! An id as a key of the store's in-memory maps (the mirror, the history heads), held inline.
//!
//! Every id agentd makes or accepts in a path is a UUID, 36 bytes of text. As a `String`,
//! each key was an allocation of its own: building one to look a session up cost an
//! allocation and a free, and comparing one read a line far from the map's slot, which in a
//! mirror of many sessions is a cache miss on every lookup. Held inline, the key sits in
//! the slot and a lookup allocates nothing. Longer text (a path segment that is no UUID)
//! is boxed and still works.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};

/// Bytes held inline: a hyphenated UUID, with room to spare.
const INLINE: usize = 38;

#[derive(Clone)]
pub(crate) struct IdKey(Repr);

#[derive(Clone)]
enum Repr {
    Inline { len: u8, bytes: [u8; INLINE] },
    Boxed(Box<str>),
}

impl IdKey {
    pub(crate) fn new(id: &str) -> Self {
        if id.len() > INLINE {
            return Self(Repr::Boxed(id.into()));
        }
        let mut bytes = [0; INLINE];
        bytes[..id.len()].copy_from_slice(id.as_bytes());
        Self(Repr::Inline {
            len: id.len() as u8,
            bytes,
        })
    }

    /// The id's text, checked as UTF-8 again: for SQL parameters and logs, not for lookups.
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).expect("copied from a str")
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Repr::Boxed(text) => text.as_bytes(),
        }
    }
}

// Hash, equality and order are the text's bytes', so a map keyed by `IdKey` is looked up with
// `id.as_bytes()`, without a key built or the text checked as UTF-8 again.
impl Hash for IdKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl PartialEq for IdKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for IdKey {}

impl PartialOrd for IdKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for IdKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl Borrow<[u8]> for IdKey {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Debug for IdKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn a_uuid_is_held_inline_and_longer_text_boxed_both_reading_back_the_same() {
        let uuid = "01936b2e-7d4a-7c3e-9f00-0123456789ab";
        assert!(matches!(IdKey::new(uuid).0, Repr::Inline { .. }));
        let long = "x".repeat(INLINE + 1);
        assert!(matches!(IdKey::new(&long).0, Repr::Boxed(_)));
        for text in [uuid, long.as_str(), "", "ünï"] {
            assert_eq!(IdKey::new(text).as_str(), text);
        }
        assert_eq!(size_of::<IdKey>(), 40);
    }

    #[test]
    fn a_map_keyed_by_id_is_looked_up_with_its_bytes() {
        let mut map = HashMap::new();
        map.insert(IdKey::new("a"), 1);
        map.insert(IdKey::new(&"b".repeat(50)), 2);
        assert_eq!(map.get("a".as_bytes()), Some(&1));
        assert_eq!(map.get("b".repeat(50).as_bytes()), Some(&2));
        assert_eq!(map.get("ab".as_bytes()), None);
        assert_eq!(map.get(&IdKey::new("a")), Some(&1));
        assert!(IdKey::new("a") < IdKey::new("b"));
        assert_ne!(IdKey::new("a"), IdKey::new("a\0"));
    }
}
