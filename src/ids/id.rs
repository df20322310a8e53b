//! An id's text held inline ([`Id`]): the ids of history entries and their sessions, and the
//! keys of the store's in-memory maps (the mirror, the history heads).
//!
//! Every id agentd makes or accepts in a path is a UUID, 36 bytes of text. As a `String`, each
//! was an allocation of its own: a stored history entry carried two (its id and its session's),
//! made when the store's mirror copied it and freed when the mirror evicted it, and a map key
//! built to look a session up cost an allocation and a free, and comparing it read a line far
//! from the map's slot, a cache miss in a mirror of many sessions. Held inline, the text sits
//! in the entry or the map's slot. Longer text (a path segment that is no UUID) is boxed and
//! still works.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// Bytes held inline: a hyphenated UUID, with room to spare.
const INLINE: usize = 38;

/// An id's text; compares, hashes and orders as its bytes, and reads as a `str`.
#[derive(Clone)]
pub struct Id(Repr);

#[derive(Clone)]
enum Repr {
    Inline { len: u8, bytes: [u8; INLINE] },
    Boxed(Box<str>),
}

impl Id {
    pub fn new(id: &str) -> Self {
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

    /// A new UUIDv7 ([`super::new_v7`]), hyphenated, written straight into the inline bytes.
    pub(crate) fn new_v7() -> Self {
        Self::from(super::new_v7())
    }

    /// The text, checked as UTF-8 again (a few instructions for 36 bytes of ASCII).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).expect("copied from a str")
    }

    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Repr::Boxed(text) => text.as_bytes(),
        }
    }

    /// The length of the text when it is too long to be held inline and is boxed instead
    /// (for the mirror's weights: an inline id holds no heap).
    pub fn boxed_len(&self) -> Option<usize> {
        match &self.0 {
            Repr::Inline { .. } => None,
            Repr::Boxed(text) => Some(text.len()),
        }
    }
}

impl Default for Id {
    fn default() -> Self {
        Self::new("")
    }
}

impl From<Uuid> for Id {
    fn from(uuid: Uuid) -> Self {
        let mut bytes = [0; INLINE];
        let len = uuid.hyphenated().encode_lower(&mut bytes).len();
        Self(Repr::Inline {
            len: len as u8,
            bytes,
        })
    }
}

impl From<&str> for Id {
    fn from(id: &str) -> Self {
        Self::new(id)
    }
}

impl From<String> for Id {
    fn from(id: String) -> Self {
        Self::new(&id)
    }
}

impl Deref for Id {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

// Hash, equality and order are the text's bytes', so a map keyed by `Id` is looked up with
// `id.as_bytes()`, without a key built or the text checked as UTF-8 again.
impl Hash for Id {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl PartialEq for Id {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Id {}

impl PartialEq<str> for Id {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<&str> for Id {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<String> for Id {
    fn eq(&self, other: &String) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialOrd for Id {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Id {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl Borrow<[u8]> for Id {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;

        impl serde::de::Visitor<'_> for Text {
            type Value = Id;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Id, E> {
                Ok(Id::new(text))
            }
        }

        deserializer.deserialize_str(Text)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn a_uuid_is_held_inline_and_longer_text_boxed_both_reading_back_the_same() {
        let uuid = "01936b2e-7d4a-7c3e-9f00-0123456789ab";
        assert!(matches!(Id::new(uuid).0, Repr::Inline { .. }));
        assert_eq!(Id::new(uuid).boxed_len(), None);
        let long = "x".repeat(INLINE + 1);
        assert!(matches!(Id::new(&long).0, Repr::Boxed(_)));
        assert_eq!(Id::new(&long).boxed_len(), Some(INLINE + 1));
        for text in [uuid, long.as_str(), "", "ünï"] {
            assert_eq!(Id::new(text).as_str(), text);
            assert_eq!(Id::new(text), text);
            assert_eq!(Id::new(text).to_string(), text);
        }
        assert_eq!(size_of::<Id>(), 40);
    }

    #[test]
    fn a_new_v7_id_is_the_uuid_hyphenated_and_inline() {
        let uuid = Uuid::now_v7();
        let id = Id::from(uuid);
        assert_eq!(id.as_str(), uuid.hyphenated().to_string());
        assert_eq!(id.boxed_len(), None);
        let made = Id::new_v7();
        assert_eq!(Uuid::parse_str(&made).unwrap().get_version_num(), 7);
    }

    #[test]
    fn an_id_serializes_as_its_text_and_reads_back_from_it() {
        let id = Id::new("01936b2e-7d4a-7c3e-9f00-0123456789ab");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, r#""01936b2e-7d4a-7c3e-9f00-0123456789ab""#);
        assert_eq!(serde_json::from_str::<Id>(&json).unwrap(), id);
        let escaped: Id = serde_json::from_str(r#""a\"b""#).unwrap();
        assert_eq!(escaped, "a\"b");
        assert!(serde_json::from_str::<Id>("7").is_err());
    }

    #[test]
    fn a_map_keyed_by_id_is_looked_up_with_its_bytes() {
        let mut map = HashMap::new();
        map.insert(Id::new("a"), 1);
        map.insert(Id::new(&"b".repeat(50)), 2);
        assert_eq!(map.get("a".as_bytes()), Some(&1));
        assert_eq!(map.get("b".repeat(50).as_bytes()), Some(&2));
        assert_eq!(map.get("ab".as_bytes()), None);
        assert_eq!(map.get(&Id::new("a")), Some(&1));
        assert!(Id::new("a") < Id::new("b"));
        assert_ne!(Id::new("a"), Id::new("a\0"));
    }
}
