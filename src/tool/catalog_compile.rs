//! The two stages behind [`Catalog::parse`](super::Catalog::parse): deserialize the file
//! (stage one, in `catalog_raw`), then check and compile every tool, collecting every problem.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agentd_sdk::PositiveDuration;
use serde_json::Value;
use toml::Spanned;

use super::approval::ApprovalSpec;
use super::catalog::{Catalog, CatalogError, CatalogTool};
use super::catalog_raw::{
    Locator, RawDefaults, RawTool, is_valid_tool_name, read, table_to_json, toml_to_json,
};
use super::registry::Registry;

/// Used when neither the tool nor `[defaults]` sets a timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Used when neither the tool nor `[defaults]` sets a concurrency limit.
pub const DEFAULT_CONCURRENCY: usize = 16;
const MAX_CONCURRENCY: i64 = 1_000_000;

pub(super) fn compile(
    text: &str,
    origin: &Path,
    registry: &Registry,
) -> Result<Catalog, CatalogError> {
    let locator = Locator::new(text, origin);
    let mut problems = Vec::new();
    let Some(raw) = read(&locator, &mut problems) else {
        return Err(CatalogError { problems });
    };
    let mut compiler = Compiler {
        locator,
        base_dir: origin
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
        registry,
        problems,
    };
    let defaults = compiler.defaults(&raw.defaults);
    let mut first_seen: HashMap<String, String> = HashMap::new();
    let mut tools = Vec::new();
    for entry in &raw.tools {
        let name = entry.name.get_ref();
        let at = compiler.locator.at(Some(entry.name.span()));
        if let Some(first) = first_seen.get(name) {
            compiler.problems.push(format!(
                "{at}: tool `{name}`: duplicate tool name (first defined at {first})"
            ));
        } else {
            first_seen.insert(name.clone(), at);
        }
        if let Some(tool) = compiler.tool(entry, &defaults) {
            tools.push(tool);
        }
    }
    let servers = compiler.mcp_servers(&raw.servers, &raw.tools, &defaults);
    if compiler.problems.is_empty() {
        Ok(Catalog::from_tools(tools).with_mcp_servers(servers))
    } else {
        Err(CatalogError {
            problems: compiler.problems,
        })
    }
}

pub(super) struct Defaults {
    pub(super) timeout: Duration,
    pub(super) concurrency: usize,
}

pub(super) struct Compiler<'a> {
    pub(super) locator: Locator<'a>,
    base_dir: PathBuf,
    registry: &'a Registry,
    pub(super) problems: Vec<String>,
}

impl Compiler<'_> {
    pub(super) fn problem(
        &mut self,
        span: Range<usize>,
        tool: Option<&str>,
        message: impl AsRef<str>,
    ) {
        let at = self.locator.at(Some(span));
        let message = message.as_ref();
        self.problems.push(match tool {
            Some(name) => format!("{at}: tool `{name}`: {message}"),
            None => format!("{at}: {message}"),
        });
    }

    fn defaults(&mut self, raw: &RawDefaults) -> Defaults {
        Defaults {
            timeout: self
                .timeout(raw.timeout.as_ref(), None)
                .unwrap_or(DEFAULT_TIMEOUT),
            concurrency: self
                .concurrency(raw.concurrency.as_ref(), None)
                .unwrap_or(DEFAULT_CONCURRENCY),
        }
    }

    pub(super) fn timeout(
        &mut self,
        raw: Option<&Spanned<String>>,
        tool: Option<&str>,
    ) -> Option<Duration> {
        let raw = raw?;
        match PositiveDuration::parse(raw.get_ref()) {
            Ok(duration) => Some(duration.get()),
            Err(message) => {
                self.problem(raw.span(), tool, format!("timeout: {message}"));
                None
            }
        }
    }

    pub(super) fn concurrency(
        &mut self,
        raw: Option<&Spanned<i64>>,
        tool: Option<&str>,
    ) -> Option<usize> {
        let raw = raw?;
        let value = *raw.get_ref();
        if (1..=MAX_CONCURRENCY).contains(&value) {
            usize::try_from(value).ok()
        } else {
            self.problem(
                raw.span(),
                tool,
                format!("concurrency: must be between 1 and {MAX_CONCURRENCY}, got {value}"),
            );
            None
        }
    }

    /// Checks and compiles one entry; `None` when it has problems (they are recorded).
    fn tool(&mut self, raw: &RawTool, defaults: &Defaults) -> Option<CatalogTool> {
        let before = self.problems.len();
        let name = raw.name.get_ref().as_str();
        if !is_valid_tool_name(name) {
            self.problem(
                raw.name.span(),
                Some(name),
                "invalid name: use 1 to 64 characters from a-z, A-Z, 0-9, `_` and `-`",
            );
        }
        let timeout = self
            .timeout(raw.timeout.as_ref(), Some(name))
            .unwrap_or(defaults.timeout);
        let concurrency = self
            .concurrency(raw.concurrency.as_ref(), Some(name))
            .unwrap_or(defaults.concurrency);
        let schema = self.schema(raw);
        let handler = self.handler(raw);
        let approval = self.approval(raw.approval.as_ref(), &format!("tool `{name}`"));
        if self.problems.len() > before {
            return None;
        }
        let (parameters, validator) = schema?;
        Some(CatalogTool {
            name: name.to_owned(),
            description: raw.description.clone(),
            parameters,
            validator,
            handler_name: raw.handler.get_ref().clone(),
            handler: handler?,
            timeout,
            concurrency: Arc::new(tokio::sync::Semaphore::new(concurrency)),
            offer: raw.offer,
            approval: approval?.compile(),
        })
    }

    /// Reads an entry's `approval` (absent: `never`); `None` when it has problems (recorded,
    /// each prefixed with `owner`).
    pub(super) fn approval(
        &mut self,
        raw: Option<&Spanned<toml::Value>>,
        owner: &str,
    ) -> Option<ApprovalSpec> {
        let Some(raw) = raw else {
            return Some(ApprovalSpec::Never);
        };
        let parsed = toml_to_json(raw.get_ref(), "approval")
            .map_err(|problem| vec![problem])
            .and_then(|value| ApprovalSpec::parse(&value));
        match parsed {
            Ok(spec) => Some(spec),
            Err(problems) => {
                for problem in problems {
                    self.problem(raw.span(), None, format!("{owner}: {problem}"));
                }
                None
            }
        }
    }

    /// Loads the schema (inline or from its file), checks it against its meta-schema and
    /// compiles it.
    fn schema(&mut self, raw: &RawTool) -> Option<(Value, jsonschema::Validator)> {
        let name = raw.name.get_ref().as_str();
        let (schema, span) = match (&raw.parameters, &raw.parameters_file) {
            (Some(_), Some(file)) => {
                self.problem(
                    file.span(),
                    Some(name),
                    "set either `parameters` or `parameters_file`, not both",
                );
                return None;
            }
            (None, None) => {
                self.problem(
                    raw.name.span(),
                    Some(name),
                    "missing `parameters` (a JSON Schema table) or `parameters_file`",
                );
                return None;
            }
            (Some(inline), None) => match toml_to_json(inline.get_ref(), "parameters") {
                Ok(schema) => (schema, inline.span()),
                Err(message) => {
                    self.problem(inline.span(), Some(name), message);
                    return None;
                }
            },
            (None, Some(file)) => (self.schema_file(file, name)?, file.span()),
        };
        if schema.get("type").and_then(Value::as_str) != Some("object") {
            self.problem(
                span,
                Some(name),
                "parameters: must be a JSON Schema with `type = \"object\"` (tool arguments are always an object)",
            );
            return None;
        }
        let meta = match jsonschema::meta::validator_for(&schema) {
            Ok(meta) => meta,
            Err(error) => {
                self.problem(
                    span,
                    Some(name),
                    format!("parameters: cannot find its meta-schema: {error}"),
                );
                return None;
            }
        };
        let meta_problems: Vec<String> = meta
            .iter_errors(&schema)
            .map(|error| {
                format!(
                    "parameters{}: not a valid JSON Schema: {error}",
                    error.instance_path()
                )
            })
            .collect();
        if !meta_problems.is_empty() {
            for message in meta_problems {
                self.problem(span.clone(), Some(name), message);
            }
            return None;
        }
        match jsonschema::validator_for(&schema) {
            Ok(validator) => Some((schema, validator)),
            Err(error) => {
                self.problem(
                    span,
                    Some(name),
                    format!("parameters: cannot compile the schema: {error}"),
                );
                None
            }
        }
    }

    fn schema_file(&mut self, file: &Spanned<String>, name: &str) -> Option<Value> {
        let path = self.base_dir.join(file.get_ref());
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) => {
                self.problem(
                    file.span(),
                    Some(name),
                    format!("parameters_file: cannot read {}: {error}", path.display()),
                );
                return None;
            }
        };
        match serde_json::from_str(&text) {
            Ok(schema) => Some(schema),
            Err(error) => {
                self.problems.push(format!(
                    "{}:{}:{}: tool `{name}`: parameters_file is not valid JSON: {error}",
                    path.display(),
                    error.line(),
                    error.column()
                ));
                None
            }
        }
    }

    /// Resolves the handler in the registry and builds it from the entry's options.
    fn handler(&mut self, raw: &RawTool) -> Option<Arc<dyn agentd_sdk::ToolHandler>> {
        let name = raw.name.get_ref().as_str();
        let handler_name = raw.handler.get_ref();
        let Some(factory) = self.registry.get(handler_name) else {
            let known: Vec<&str> = self.registry.names().collect();
            self.problem(
                raw.handler.span(),
                Some(name),
                format!(
                    "unknown handler `{handler_name}` (known handlers: {}; `agentd handlers` \
                     shows their options)",
                    known.join(", ")
                ),
            );
            return None;
        };
        let factory = Arc::clone(factory);
        let (options, span) = match &raw.options {
            Some(table) => match table_to_json(table.get_ref(), "options") {
                Ok(options) => (options, table.span()),
                Err(message) => {
                    self.problem(table.span(), Some(name), message);
                    return None;
                }
            },
            None => (Value::Object(Default::default()), raw.handler.span()),
        };
        match factory.build_with(&options, self.registry.build_context()) {
            Ok(handler) => Some(handler),
            Err(error) => {
                for message in error.0 {
                    self.problem(
                        span.clone(),
                        Some(name),
                        format!("options ({handler_name}): {message}"),
                    );
                }
                None
            }
        }
    }
}
