//! Plausible tool-call arguments made from a tool's JSON Schema and the user's words: e-mail
//! addresses for recipient fields, a short phrase for subjects, a sentence for bodies, and the
//! simplest valid value for everything else.

use serde_json::{Map, Value};

/// Schemas nested deeper than this get `null` (guards against `$ref` cycles).
const MAX_DEPTH: usize = 8;
/// Most items of a generated array, whatever `minItems` the schema asks for.
const MAX_ITEMS: usize = 64;
/// Most characters of a generated string, whatever `minLength` the schema asks for.
const MAX_LENGTH: usize = 64 * 1024;
const FALLBACK_ADDRESS: &str = "user@example.com";

/// What the user asked for, pre-digested once per request.
pub(crate) struct Hints<'a> {
    text: &'a str,
    address: Option<&'a str>,
    phrase: String,
}

impl<'a> Hints<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Self {
            text,
            address: first_email(text),
            phrase: subject_phrase(text),
        }
    }
}

/// What a property is for, judged by the last word of its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Address,
    Subject,
    Body,
    Other,
}

fn purpose(name: &str, schema: &Value) -> Purpose {
    if schema.get("format").and_then(Value::as_str) == Some("email") {
        return Purpose::Address;
    }
    match last_word(name).to_ascii_lowercase().as_str() {
        "to" | "email" | "emails" | "recipient" | "recipients" | "cc" | "bcc" | "from" => {
            Purpose::Address
        }
        "subject" | "title" | "topic" | "query" | "name" | "headline" => Purpose::Subject,
        "body" | "text" | "content" | "message" | "description" | "note" | "notes" | "prompt" => {
            Purpose::Body
        }
        _ => Purpose::Other,
    }
}

/// The last word of a snake, kebab or camel case name: `email_body`, `emailBody` -> `body`.
fn last_word(name: &str) -> &str {
    let segment = name.rsplit(['_', '-', '.']).next().unwrap_or(name);
    let bytes = segment.as_bytes();
    let hump = (1..bytes.len())
        .rev()
        .find(|&at| bytes[at].is_ascii_uppercase() && bytes[at - 1].is_ascii_lowercase());
    hump.map_or(segment, |at| &segment[at..])
}

/// Arguments for a tool whose `parameters` schema is `schema`.
pub(crate) fn synthesize(schema: Option<&Value>, hints: &Hints<'_>) -> Value {
    match schema {
        Some(schema) => Synth {
            root: schema,
            hints,
        }
        .object(schema, 0),
        None => Value::Object(Map::new()),
    }
}

struct Synth<'s, 'h> {
    root: &'s Value,
    hints: &'h Hints<'h>,
}

impl<'s> Synth<'s, '_> {
    /// Follows a local `$ref` (`#/$defs/X`, `#/definitions/X`) or the first `anyOf`/`oneOf`/
    /// `allOf` branch.
    fn resolve(&self, schema: &'s Value) -> &'s Value {
        if let Some(pointer) = schema.get("$ref").and_then(Value::as_str) {
            return pointer
                .strip_prefix('#')
                .and_then(|pointer| self.root.pointer(pointer))
                .unwrap_or(schema);
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            let first = schema
                .get(key)
                .and_then(Value::as_array)
                .and_then(|branches| {
                    branches
                        .iter()
                        .find(|b| b.get("type") != Some(&"null".into()))
                });
            if let Some(first) = first {
                return first;
            }
        }
        schema
    }

    fn object(&self, schema: &'s Value, depth: usize) -> Value {
        let schema = self.resolve(schema);
        let mut out = Map::new();
        let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
            return Value::Object(out);
        };
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|names| names.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for (name, property) in properties {
            let property = self.resolve(property);
            let wanted =
                required.contains(&name.as_str()) || self.trivially_fillable(name, property);
            if wanted {
                out.insert(name.clone(), self.value(name, property, depth + 1));
            }
        }
        Value::Object(out)
    }

    /// Optional properties are filled only when the schema fixes their value: a model asked
    /// to "send an email to X" does not also copy X into cc, bcc and reply-to.
    fn trivially_fillable(&self, _name: &str, property: &Value) -> bool {
        property.get("const").is_some()
    }

    fn value(&self, name: &str, schema: &'s Value, depth: usize) -> Value {
        let schema = self.resolve(schema);
        if depth > MAX_DEPTH {
            return Value::Null;
        }
        if let Some(constant) = schema.get("const") {
            return constant.clone();
        }
        if let Some(first) = schema
            .get("enum")
            .and_then(Value::as_array)
            .and_then(|v| v.first())
        {
            return first.clone();
        }
        match schema_type(schema) {
            "string" => Value::String(self.string(name, schema)),
            "integer" => Value::from(integer(schema)),
            "number" => Value::from(number(schema)),
            "boolean" => Value::Bool(false),
            "null" => Value::Null,
            "array" => {
                let item = schema.get("items").unwrap_or(&Value::Null);
                let count = schema
                    .get("minItems")
                    .and_then(Value::as_u64)
                    .unwrap_or(1)
                    .max(1);
                let element = if item.is_null() {
                    Value::String(self.string(name, item))
                } else {
                    self.value(name, item, depth + 1)
                };
                let count = usize::try_from(count).unwrap_or(MAX_ITEMS).min(MAX_ITEMS);
                Value::Array(vec![element; count])
            }
            _ => self.object(schema, depth),
        }
    }

    fn string(&self, name: &str, schema: &Value) -> String {
        let text = match schema.get("format").and_then(Value::as_str) {
            Some("date-time") => "2025-01-01T09:00:00Z".to_owned(),
            Some("date") => "2025-01-01".to_owned(),
            Some("time") => "09:00:00".to_owned(),
            Some("uri" | "url") => "http://127.0.0.1/".to_owned(),
            Some("uuid") => "00000000-0000-4000-8000-000000000000".to_owned(),
            _ => match purpose(name, schema) {
                Purpose::Address => self.hints.address.unwrap_or(FALLBACK_ADDRESS).to_owned(),
                Purpose::Subject | Purpose::Other => self.hints.phrase.clone(),
                Purpose::Body => body_sentence(self.hints),
            },
        };
        fit_length(text, schema)
    }
}

/// The schema's type; the first non-null one of a type list; `object` when it has properties.
fn schema_type(schema: &Value) -> &str {
    match schema.get("type") {
        Some(Value::String(kind)) => kind,
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .find(|kind| *kind != "null")
            .unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ if schema.get("items").is_some() => "array",
        _ => "string",
    }
}

fn integer(schema: &Value) -> i64 {
    let min = schema.get("minimum").and_then(Value::as_i64).or_else(|| {
        schema
            .get("exclusiveMinimum")
            .and_then(Value::as_i64)
            .map(|m| m + 1)
    });
    let max = schema.get("maximum").and_then(Value::as_i64);
    match (min, max) {
        (Some(min), _) => min,
        (None, Some(max)) if max < 1 => max,
        _ => 1,
    }
}

fn number(schema: &Value) -> f64 {
    let min = schema.get("minimum").and_then(Value::as_f64);
    let max = schema.get("maximum").and_then(Value::as_f64);
    match (min, max) {
        (Some(min), _) => min,
        (None, Some(max)) if max < 1.0 => max,
        _ => 1.0,
    }
}

/// Truncates to `maxLength` and pads to `minLength` (in characters).
fn fit_length(mut text: String, schema: &Value) -> String {
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        if let Some((cut, _)) = text.char_indices().nth(max) {
            text.truncate(cut);
        }
    }
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
        let min = usize::try_from(min).unwrap_or(MAX_LENGTH).min(MAX_LENGTH);
        let have = text.chars().count();
        text.extend(std::iter::repeat_n('x', min.saturating_sub(have)));
    }
    text
}

fn body_sentence(hints: &Hints<'_>) -> String {
    if hints.text.trim().is_empty() {
        "Hello.".to_owned()
    } else {
        format!("Hello, this is a message about {}.", hints.phrase)
    }
}

/// The first `local@domain.tld` in `text`, without surrounding punctuation.
pub(crate) fn first_email(text: &str) -> Option<&str> {
    text.split(|c: char| c.is_whitespace() || ",;<>()[]\"'".contains(c))
        .map(|word| {
            word.trim_start_matches("mailto:")
                .trim_end_matches(['.', ':', '!', '?'])
        })
        .find(|word| {
            let Some((local, domain)) = word.split_once('@') else {
                return false;
            };
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
}

/// The words after "about " up to the end of that sentence, else the first six words.
pub(crate) fn subject_phrase(text: &str) -> String {
    let lowered = text.to_ascii_lowercase();
    let after_about = if lowered.starts_with("about ") {
        Some(6)
    } else {
        lowered.find(" about ").map(|at| at + 7)
    };
    let source = match after_about {
        Some(start) => sentence_prefix(&text[start..]),
        None => text,
    };
    let limit = if after_about.is_some() { 12 } else { 6 };
    let words: Vec<&str> = source.split_whitespace().take(limit).collect();
    let phrase = words
        .join(" ")
        .trim_end_matches(['.', ',', ';', ':', '!', '?'])
        .to_owned();
    if phrase.is_empty() {
        "Hello".to_owned()
    } else {
        phrase
    }
}

/// `text` up to the first sentence end: `.`, `!` or `?` followed by whitespace or the end, or a
/// newline.
fn sentence_prefix(text: &str) -> &str {
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let next_is_space = chars.peek().is_none_or(|(_, next)| next.is_whitespace());
        if c == '\n' || (matches!(c, '.' | '!' | '?') && next_is_space) {
            return &text[..at];
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SEED: &str = "Send an email to john@example.com about our meeting tomorrow.";

    fn make(schema: Value, text: &str) -> Value {
        synthesize(Some(&schema), &Hints::new(text))
    }

    #[test]
    fn the_seed_prompt_fills_an_email() {
        let args = make(
            json!({"type": "object", "required": ["to", "subject", "body"], "properties": {
                "to": {"type": "string"}, "subject": {"type": "string"}, "body": {"type": "string"},
                "cc": {"type": "array", "items": {"type": "string"}}
            }}),
            SEED,
        );
        assert_eq!(args["to"], "john@example.com");
        assert_eq!(args["subject"], "our meeting tomorrow");
        let body = args["body"].as_str().expect("body is a string");
        assert!(body.contains("our meeting tomorrow"), "{body}");
        assert!(args.get("cc").is_none(), "optional array left out: {args}");
    }

    #[test]
    fn every_type_gets_its_simplest_valid_value() {
        let args = make(
            json!({"type": "object", "required": ["n", "x", "flag", "kind", "tags", "inner", "when", "maybe", "ref"],
            "$defs": {"Point": {"type": "object", "required": ["lat"], "properties": {"lat": {"type": "number", "minimum": -90}}}},
            "properties": {
                "n": {"type": "integer", "minimum": 3},
                "x": {"type": "number", "maximum": 0.5},
                "flag": {"type": "boolean"},
                "kind": {"type": "string", "enum": ["urgent", "low"]},
                "tags": {"type": "array", "items": {"type": "integer"}, "minItems": 2},
                "inner": {"type": "object", "required": ["recipient_email"], "properties": {"recipient_email": {"type": "string"}}},
                "when": {"type": "string", "format": "date"},
                "maybe": {"type": ["null", "string"], "maxLength": 3},
                "ref": {"$ref": "#/$defs/Point"},
                "skipped": {"type": "string"},
                "fixed": {"const": "v1"}
            }}),
            "no address here",
        );
        assert_eq!(
            args,
            json!({"n": 3, "x": 0.5, "flag": false, "kind": "urgent", "tags": [1, 1],
                "inner": {"recipient_email": "user@example.com"}, "when": "2025-01-01",
                "maybe": "no ", "ref": {"lat": -90.0}, "fixed": "v1"})
        );
    }

    #[test]
    fn addresses_and_phrases_come_from_the_text() {
        assert_eq!(
            first_email("mail <ann@corp.io>, please"),
            Some("ann@corp.io")
        );
        assert_eq!(first_email("to bob@x.org."), Some("bob@x.org"));
        assert_eq!(first_email("at @ home or a@b"), None);
        assert_eq!(
            subject_phrase("About v1.2 release. Then more"),
            "v1.2 release"
        );
        assert_eq!(
            subject_phrase("please summarise the quarterly numbers for the board now"),
            "please summarise the quarterly numbers for"
        );
        assert_eq!(subject_phrase(""), "Hello");
    }

    #[test]
    fn purposes_follow_the_last_word_of_the_name() {
        let plain = json!({"type": "string"});
        assert_eq!(purpose("email_body", &plain), Purpose::Body);
        assert_eq!(purpose("emailBody", &plain), Purpose::Body);
        assert_eq!(purpose("recipient_email", &plain), Purpose::Address);
        assert_eq!(purpose("title", &plain), Purpose::Subject);
        assert_eq!(
            purpose("owner", &json!({"type": "string", "format": "email"})),
            Purpose::Address
        );
        assert_eq!(purpose("city", &plain), Purpose::Other);
        assert_eq!(last_word("bodyHTML"), "HTML");
        assert_eq!(last_word("HTML"), "HTML");
    }
}
