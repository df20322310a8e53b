//! Borrowed views of JSON values for reading a request body in one pass without building a
//! `Value` tree: strings that borrow from the body unless they hold escapes ([`Text`]), fields
//! that are text or else a `Value` ([`Field`]), values checked and dropped ([`Checked`]), and
//! values read only when they have the expected shape ([`Shape`]).
//!
//! Every value is parsed as strictly as `serde_json::from_slice::<Value>` parses it (number
//! ranges, escapes, UTF-8, nesting depth), so a body is refused with the same parse error.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{Deserialize, Deserializer, Error, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// A JSON string; borrowed from the body unless it contains escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Text<'a>(pub Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a string")
    }

    fn visit_borrowed_str<E: Error>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Borrowed(text)))
    }

    fn visit_str<E: Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Owned(text.to_owned())))
    }

    fn visit_string<E: Error>(self, text: String) -> Result<Self::Value, E> {
        Ok(Text(Cow::Owned(text)))
    }
}

/// A field's value: text (the common case, without allocating), or any other JSON value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Field<'a> {
    Text(Cow<'a, str>),
    /// Never a `Value::String`: strings are always [`Field::Text`].
    Other(Value),
}

impl Field<'_> {
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Field::Text(text) => Some(text),
            Field::Other(_) => None,
        }
    }
}

impl<'de> Deserialize<'de> for Field<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FieldVisitor)
    }
}

struct FieldVisitor;

impl<'de> Visitor<'de> for FieldVisitor {
    type Value = Field<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: Error>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Field::Text(Cow::Borrowed(text)))
    }

    fn visit_str<E: Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Field::Text(Cow::Owned(text.to_owned())))
    }

    fn visit_string<E: Error>(self, text: String) -> Result<Self::Value, E> {
        Ok(Field::Text(Cow::Owned(text)))
    }

    fn visit_bool<E: Error>(self, value: bool) -> Result<Self::Value, E> {
        Ok(Field::Other(Value::from(value)))
    }

    fn visit_i64<E: Error>(self, value: i64) -> Result<Self::Value, E> {
        Ok(Field::Other(Value::from(value)))
    }

    fn visit_u64<E: Error>(self, value: u64) -> Result<Self::Value, E> {
        Ok(Field::Other(Value::from(value)))
    }

    fn visit_f64<E: Error>(self, value: f64) -> Result<Self::Value, E> {
        Ok(Field::Other(Value::from(value)))
    }

    fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
        Ok(Field::Other(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Value::deserialize(SeqAccessDeserializer::new(seq)).map(Field::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Value::deserialize(MapAccessDeserializer::new(map)).map(Field::Other)
    }
}

/// A value of a type that reads only one JSON shape (object or array) and stands for every
/// other value, which is still checked in full, by [`Shape::other`].
pub(crate) trait Shape<'de>: Sized {
    /// What a value of another shape reads as.
    fn other() -> Self;

    fn from_object<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        while map.next_entry::<Checked, Checked>()?.is_some() {}
        Ok(Self::other())
    }

    fn from_array<A: SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Self::other())
    }
}

/// Reads `T` from an object or array as `T` says, and any other value as [`Shape::other`].
pub(crate) fn deserialize_shaped<'de, T: Shape<'de>, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<T, D::Error> {
    deserializer.deserialize_any(ShapeVisitor(PhantomData))
}

struct ShapeVisitor<T>(PhantomData<T>);

impl<'de, T: Shape<'de>> Visitor<'de> for ShapeVisitor<T> {
    type Value = T;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_str<E: Error>(self, _: &str) -> Result<T, E> {
        Ok(T::other())
    }

    fn visit_bool<E: Error>(self, _: bool) -> Result<T, E> {
        Ok(T::other())
    }

    fn visit_i64<E: Error>(self, _: i64) -> Result<T, E> {
        Ok(T::other())
    }

    fn visit_u64<E: Error>(self, _: u64) -> Result<T, E> {
        Ok(T::other())
    }

    fn visit_f64<E: Error>(self, _: f64) -> Result<T, E> {
        Ok(T::other())
    }

    fn visit_unit<E: Error>(self) -> Result<T, E> {
        Ok(T::other())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<T, A::Error> {
        T::from_array(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::from_object(map)
    }
}

/// Any JSON value, parsed as strictly as into a `Value` but not kept.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Checked;

impl Shape<'_> for Checked {
    fn other() -> Self {
        Checked
    }
}

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_shaped(deserializer)
    }
}

/// Keeps in `first` the smallest of the keys seen so far, the order a `serde_json::Map` lists
/// them in.
pub(crate) fn keep_first_key<'a>(first: &mut Option<Cow<'a, str>>, key: Cow<'a, str>) {
    if first.as_ref().is_none_or(|kept| key < *kept) {
        *first = Some(key);
    }
}
