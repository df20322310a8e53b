//! Stage one of catalog compilation: the tools.toml file as written (unknown fields rejected,
//! positions kept), plus the small conversions stage two needs (positions to line:column,
//! TOML values to JSON).

use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Number, Value};
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

/// The file after stage one: what could be read, entry by entry.
#[derive(Debug, Default)]
pub(super) struct RawCatalog {
    pub defaults: RawDefaults,
    pub tools: Vec<RawTool>,
    pub servers: Vec<RawMcp>,
}

/// Reads the file. A syntax error ends stage one (nothing after it can be trusted); an entry
/// that does not fit its shape (unknown field, wrong type) is reported and skipped, so one run
/// reports the problems of every entry.
pub(super) fn read(locator: &Locator<'_>, problems: &mut Vec<String>) -> Option<RawCatalog> {
    let root = match DeTable::parse(locator.text) {
        Ok(root) => root.into_inner(),
        Err(error) => {
            problems.push(deserialize_problem(locator, &error));
            return None;
        }
    };
    let mut catalog = RawCatalog::default();
    for (key, value) in root {
        match key.get_ref().as_ref() {
            "defaults" => match RawDefaults::deserialize(ValueDeserializer::from(value)) {
                Ok(defaults) => catalog.defaults = defaults,
                Err(error) => problems.push(deserialize_problem(locator, &error)),
            },
            "tool" => read_entries(locator, value, "tool", problems, &mut catalog.tools),
            "mcp" => read_entries(locator, value, "mcp", problems, &mut catalog.servers),
            other => problems.push(format!(
                "{}: unknown field `{other}`, expected `defaults`, `tool` or `mcp`",
                locator.at(Some(key.span()))
            )),
        }
    }
    Some(catalog)
}

/// Reads an array of tables (`[[tool]]`, `[[mcp]]`), one entry at a time: an entry that does
/// not fit is reported (with its name when it has one) and skipped.
fn read_entries<T: serde::de::DeserializeOwned>(
    locator: &Locator<'_>,
    value: Spanned<DeValue<'_>>,
    key: &str,
    problems: &mut Vec<String>,
    into: &mut Vec<T>,
) {
    let span = value.span();
    let DeValue::Array(entries) = value.into_inner() else {
        problems.push(format!(
            "{}: `{key}` must be an array of tables: write each entry as [[{key}]]",
            locator.at(Some(span))
        ));
        return;
    };
    for entry in entries {
        let name = entry
            .get_ref()
            .get("name")
            .and_then(|name| name.get_ref().as_str())
            .map(str::to_owned);
        match T::deserialize(ValueDeserializer::from(entry)) {
            Ok(parsed) => into.push(parsed),
            Err(error) => problems.push(match name {
                Some(name) => entry_problem(locator, key, &name, &error),
                None => deserialize_problem(locator, &error),
            }),
        }
    }
}

/// `[defaults]`: limits applied to every tool that does not set its own.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename = "defaults")]
pub(super) struct RawDefaults {
    pub timeout: Option<Spanned<String>>,
    pub concurrency: Option<Spanned<i64>>,
}

/// One `[[tool]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename = "tool")]
pub(super) struct RawTool {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: String,
    pub handler: Spanned<String>,
    #[serde(default = "offered_by_default")]
    pub offer: bool,
    pub timeout: Option<Spanned<String>>,
    pub concurrency: Option<Spanned<i64>>,
    pub parameters: Option<Spanned<toml::Value>>,
    pub parameters_file: Option<Spanned<String>>,
    pub options: Option<Spanned<toml::Table>>,
    pub approval: Option<Spanned<toml::Value>>,
}

/// One `[[mcp]]` entry: an MCP server whose tools become `<name>__<tool>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename = "mcp")]
pub(super) struct RawMcp {
    pub name: Spanned<String>,
    pub command: Option<Spanned<Vec<String>>>,
    pub url: Option<Spanned<String>>,
    pub env: Option<Spanned<toml::Table>>,
    pub headers: Option<Spanned<toml::Table>>,
    pub tools: Option<Spanned<Vec<String>>>,
    #[serde(default = "offered_by_default")]
    pub offer: bool,
    pub timeout: Option<Spanned<String>>,
    pub start_timeout: Option<Spanned<String>>,
    pub concurrency: Option<Spanned<i64>>,
    pub max_tools: Option<Spanned<i64>>,
    pub max_tool_bytes: Option<Spanned<i64>>,
    pub approval: Option<Spanned<toml::Value>>,
}

fn offered_by_default() -> bool {
    true
}

/// Turns byte offsets of one text into `file:line:col` prefixes.
pub(super) struct Locator<'a> {
    text: &'a str,
    file: String,
}

impl<'a> Locator<'a> {
    pub(super) fn new(text: &'a str, file: &Path) -> Self {
        Self {
            text,
            file: file.display().to_string(),
        }
    }

    /// `file:line:col` for the start of `span`, or just `file` when there is none.
    pub(super) fn at(&self, span: Option<Range<usize>>) -> String {
        match span {
            Some(span) => {
                let (line, col) = line_col(self.text, span.start);
                format!("{}:{line}:{col}", self.file)
            }
            None => self.file.clone(),
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// The stage-one failure as one problem line: `tools.toml:12:3: unknown field ...`.
pub(super) fn deserialize_problem(locator: &Locator<'_>, error: &toml::de::Error) -> String {
    let message = error.message().trim_end();
    format!("{}: {message}", locator.at(error.span()))
}

/// A stage-one failure inside a `[[tool]]` or `[[mcp]]` entry whose name is known.
fn entry_problem(locator: &Locator<'_>, key: &str, name: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end();
    let what = if key == "mcp" { "mcp server" } else { key };
    format!("{}: {what} `{name}`: {message}", locator.at(error.span()))
}

/// Converts a TOML value (a schema or an options table) to JSON. Datetimes become strings;
/// floats that JSON cannot hold are an error naming where they are.
pub(super) fn toml_to_json(value: &toml::Value, path: &str) -> Result<Value, String> {
    Ok(match value {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::Number((*i).into()),
        toml::Value::Float(f) => match Number::from_f64(*f) {
            Some(n) => Value::Number(n),
            None => return Err(format!("{path}: {f} cannot be represented in JSON")),
        },
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| toml_to_json(item, &format!("{path}/{i}")))
                .collect::<Result<_, _>>()?,
        ),
        toml::Value::Table(table) => table_to_json(table, path)?,
    })
}

pub(super) fn table_to_json(table: &toml::Table, path: &str) -> Result<Value, String> {
    let mut map = Map::new();
    for (key, item) in table {
        map.insert(key.clone(), toml_to_json(item, &format!("{path}/{key}"))?);
    }
    Ok(Value::Object(map))
}

/// `true` when `name` matches `^[a-zA-Z0-9_-]{1,64}$` (the function-name rule of OpenAI's API).
pub fn is_valid_tool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_lines_and_characters() {
        let text = "a = 1\nbé = 2\n  x";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        // "bé = " is 6 bytes but 5 characters.
        assert_eq!(line_col(text, 12), (2, 6));
        assert_eq!(line_col(text, text.len() - 1), (3, 3));
    }

    #[test]
    fn tool_names_follow_the_function_name_rule() {
        assert!(is_valid_tool_name("send_email"));
        assert!(is_valid_tool_name("a-B_9"));
        assert!(!is_valid_tool_name(""));
        assert!(!is_valid_tool_name("send email"));
        assert!(!is_valid_tool_name("héllo"));
        assert!(!is_valid_tool_name(&"x".repeat(65)));
        assert!(is_valid_tool_name(&"x".repeat(64)));
    }

    #[test]
    fn toml_values_become_json() {
        let table: toml::Table = toml::from_str(
            "a = 1\nb = [true, \"x\"]\nc = { d = 1.5 }\ne = 1979-05-27T07:32:00Z\nf = nan",
        )
        .unwrap();
        let err = table_to_json(&table, "options").unwrap_err();
        assert!(err.contains("options/f"), "{err}");
        let mut table = table;
        table.remove("f");
        let json = table_to_json(&table, "options").unwrap();
        assert_eq!(
            json,
            serde_json::json!({"a": 1, "b": [true, "x"], "c": {"d": 1.5}, "e": "1979-05-27T07:32:00Z"})
        );
    }
}
