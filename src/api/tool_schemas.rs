//! Schemas of tools a client declares (chat `tools`, `/agents/{id}/tools`) are hostile input,
//! and compiling one is CPU work proportional to what the client wrote: a few hundred
//! Unicode-class `pattern`s take seconds. So a declared schema is bounded before it is compiled
//! (`tools.max_schema_bytes`, `tools.max_schema_patterns`; `tools.max_declared_tools` per request
//! or agent), compiled on a blocking thread, never on an async worker, at most
//! `tools.max_concurrent_schema_compiles` at once, and given `tools.schema_compile_timeout`:
//! past it the client gets a 422 and the compile stops before its next pattern, freeing its slot.
//! Schemas accepted once are remembered (`known_schemas`) and not compiled again.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::error::ApiError;
use super::known_schemas;
use crate::config::ToolsConfig;

/// Guards the compiling of declared schemas; one per daemon.
pub(crate) struct ToolSchemas {
    max_tools: usize,
    max_bytes: usize,
    max_patterns: usize,
    timeout: Duration,
    slots: Arc<Semaphore>,
}

/// Why a compile on the blocking thread did not accept the schema.
enum CompileError {
    Invalid(String),
    /// The deadline passed between two patterns.
    Overran,
}

impl ToolSchemas {
    pub(crate) fn new(config: &ToolsConfig) -> Self {
        Self {
            max_tools: config.max_declared_tools,
            max_bytes: config.max_schema_bytes,
            max_patterns: config.max_schema_patterns,
            timeout: config.schema_compile_timeout,
            slots: Arc::new(Semaphore::new(config.max_concurrent_schema_compiles)),
        }
    }

    /// Most tools one request or one agent may declare.
    pub(crate) fn max_tools(&self) -> usize {
        self.max_tools
    }

    /// Checks the count of `tools` (normalized bodies), then each one's schema, all within one
    /// `schema_compile_timeout`; `loc` names the list (`tools`).
    pub(crate) async fn check_all(&self, tools: &[Value], loc: &str) -> Result<(), ApiError> {
        let deadline = Instant::now() + self.timeout;
        if tools.len() > self.max_tools {
            return Err(ApiError::invalid(
                loc,
                format!(
                    "{} tools declared; at most {} are allowed (tools.max_declared_tools)",
                    tools.len(),
                    self.max_tools
                ),
            ));
        }
        for (i, tool) in tools.iter().enumerate() {
            let schema = &tool["function"]["parameters"];
            self.check_by(schema, &format!("{loc}.{i}.function.parameters"), deadline)
                .await?;
        }
        Ok(())
    }

    /// `Ok` when `schema` is a JSON Schema within the limits that compiles in time.
    pub(crate) async fn check(&self, schema: &Value, loc: &str) -> Result<(), ApiError> {
        self.check_by(schema, loc, Instant::now() + self.timeout)
            .await
    }

    async fn check_by(&self, schema: &Value, loc: &str, deadline: Instant) -> Result<(), ApiError> {
        let text = schema.to_string();
        if text.len() > self.max_bytes {
            return Err(ApiError::invalid(
                loc,
                format!(
                    "the schema is {} bytes; at most {} are allowed (tools.max_schema_bytes)",
                    text.len(),
                    self.max_bytes
                ),
            ));
        }
        if known_schemas::is_known(&text) {
            return Ok(());
        }
        let patterns = count_patterns(schema);
        if patterns > self.max_patterns {
            return Err(ApiError::invalid(
                loc,
                format!(
                    "the schema has {patterns} regular expressions (`pattern`, \
                     `patternProperties`); at most {} are allowed (tools.max_schema_patterns)",
                    self.max_patterns
                ),
            ));
        }
        let slot = self.slot(deadline).await?;
        let owned = schema.clone();
        let compile = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            compile(&owned, deadline.into_std())
        });
        let overran = || {
            let limit_ms = self.timeout.as_millis() as u64;
            tracing::warn!(
                loc,
                limit_ms,
                "a declared tool schema did not compile in time; refused"
            );
            ApiError::invalid(
                loc,
                format!(
                    "the schema did not compile within {limit_ms} ms (tools.schema_compile_timeout, \
                     for all tools of one request together); use fewer or simpler regular \
                     expressions"
                ),
            )
        };
        match tokio::time::timeout_at(deadline, compile).await {
            Err(_) | Ok(Ok(Err(CompileError::Overran))) => Err(overran()),
            Ok(Ok(Err(CompileError::Invalid(reason)))) => Err(ApiError::invalid(
                loc,
                format!("invalid JSON Schema: {reason}"),
            )),
            Ok(Ok(Ok(()))) => {
                known_schemas::remember(text);
                Ok(())
            }
            Ok(Err(join)) => {
                tracing::error!(error = %join, "a declared schema's compile panicked");
                Err(ApiError::invalid(loc, "the schema cannot be compiled"))
            }
        }
    }

    /// A compile slot, waited for until `deadline`.
    async fn slot(&self, deadline: Instant) -> Result<OwnedSemaphorePermit, ApiError> {
        match tokio::time::timeout_at(deadline, self.slots.clone().acquire_owned()).await {
            Ok(Ok(slot)) => Ok(slot),
            // The semaphore is never closed; either way no slot came in time.
            Ok(Err(_)) | Err(_) => {
                tracing::warn!(
                    "every declared-schema compile slot stayed busy for {} ms; refusing a schema",
                    self.timeout.as_millis()
                );
                Err(ApiError::Overloaded(format!(
                    "agentd is busy compiling other tool schemas (tools.max_concurrent_schema_compiles); \
                     retry in {} s",
                    self.timeout.as_secs().max(1)
                )))
            }
        }
    }
}

/// Compiles on the blocking thread: each regular expression alone first, checking the deadline
/// between them (they are what costs; a compile cannot be interrupted once started), then the
/// schema, which finds them compiled in the shared cache.
fn compile(schema: &Value, deadline: std::time::Instant) -> Result<(), CompileError> {
    let cache = jsonschema::PatternCache::new();
    let mut patterns = Vec::new();
    collect_patterns(schema, &mut patterns);
    for pattern in patterns {
        if std::time::Instant::now() >= deadline {
            return Err(CompileError::Overran);
        }
        // A string under a `pattern` key may sit where no schema is (an example, a const): its
        // compile error is the schema compile's to report, or not.
        let _ = jsonschema::options()
            .with_pattern_cache(cache.clone())
            .build(&json!({ "pattern": pattern }));
    }
    if std::time::Instant::now() >= deadline {
        return Err(CompileError::Overran);
    }
    jsonschema::options()
        .with_pattern_cache(cache)
        .build(schema)
        .map(drop)
        .map_err(|e| CompileError::Invalid(e.to_string()))
}

/// Strings under a `pattern` key and keys of a `patternProperties` object, anywhere.
fn collect_patterns<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    walk_patterns(value, &mut |pattern| out.push(pattern));
}

fn count_patterns(value: &Value) -> usize {
    let mut count = 0;
    walk_patterns(value, &mut |_| count += 1);
    count
}

fn walk_patterns<'a>(value: &'a Value, found: &mut impl FnMut(&'a str)) {
    match value {
        Value::Object(map) => {
            visit_object(map, found);
        }
        Value::Array(items) => items.iter().for_each(|item| walk_patterns(item, found)),
        _ => {}
    }
}

fn visit_object<'a>(map: &'a Map<String, Value>, found: &mut impl FnMut(&'a str)) {
    if let Some(Value::String(pattern)) = map.get("pattern") {
        found(pattern);
    }
    if let Some(Value::Object(properties)) = map.get("patternProperties") {
        properties.keys().for_each(|key| found(key));
    }
    map.values().for_each(|child| walk_patterns(child, found));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schemas(adjust: impl FnOnce(&mut ToolsConfig)) -> ToolSchemas {
        let mut config = ToolsConfig::default();
        adjust(&mut config);
        ToolSchemas::new(&config)
    }

    /// A schema of `n` distinct Unicode-class patterns, each costly to compile.
    fn costly(n: usize, salt: &str) -> Value {
        let properties: Map<String, Value> = (0..n)
            .map(|i| {
                let pattern = format!("^[\\p{{L}}\\p{{N}}]{{1,64}}{salt}{i}\\w{{16}}$");
                (
                    format!("p{i}"),
                    json!({"type": "string", "pattern": pattern}),
                )
            })
            .collect();
        json!({"type": "object", "properties": properties})
    }

    /// A schema without regular expressions, never compiled before (for its description).
    fn plain(description: &str) -> Value {
        json!({"type": "object", "description": description, "properties": {"a": {"type": "string"}}})
    }

    fn message(error: ApiError) -> String {
        match error {
            ApiError::Validation(details) => format!("{}: {}", details[0].loc, details[0].msg),
            other => panic!("expected a 422, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn valid_and_invalid_schemas_are_told_apart() {
        let gate = schemas(|_| {});
        let good = json!({"type": "object", "properties": {"city": {"type": "string", "pattern": "^[A-Z]"}}});
        let bad = json!({"type": "object", "properties": {"city": {"type": 7}}});
        for _ in 0..2 {
            gate.check(&good, "p").await.unwrap();
            let msg = message(gate.check(&bad, "p").await.unwrap_err());
            assert!(msg.starts_with("p: invalid JSON Schema"), "{msg}");
        }
        let bad_regex = json!({"type": "string", "pattern": "(unclosed"});
        assert!(gate.check(&bad_regex, "p").await.is_err());
        // A `pattern` string where no schema is does not make the schema invalid.
        let example = json!({"type": "object", "examples": [{"pattern": "(unclosed"}]});
        gate.check(&example, "p").await.unwrap();
    }

    #[tokio::test]
    async fn size_pattern_count_and_tool_count_are_capped() {
        let gate = schemas(|c| {
            c.max_schema_bytes = 200;
            c.max_schema_patterns = 2;
            c.max_declared_tools = 1;
        });
        let big = json!({"type": "object", "description": "x".repeat(200)});
        let msg = message(gate.check(&big, "tools.0").await.unwrap_err());
        assert!(msg.contains("tools.max_schema_bytes"), "{msg}");
        let three = json!({
            "type": "object",
            "properties": {"a": {"type": "string", "pattern": "a"}},
            "patternProperties": {"^b": {}, "^c": {}}
        });
        let msg = message(gate.check(&three, "tools.0").await.unwrap_err());
        assert!(msg.contains("3 regular expressions"), "{msg}");
        let tool = json!({"function": {"parameters": {"type": "object"}}});
        gate.check_all(std::slice::from_ref(&tool), "tools")
            .await
            .unwrap();
        let msg = message(
            gate.check_all(&[tool.clone(), tool], "tools")
                .await
                .unwrap_err(),
        );
        assert!(msg.starts_with("tools: 2 tools"), "{msg}");
    }

    #[tokio::test]
    async fn a_compile_past_its_deadline_is_refused_and_frees_its_slot() {
        let gate = schemas(|c| {
            c.schema_compile_timeout = Duration::from_millis(200);
            c.max_schema_patterns = 10_000;
            c.max_schema_bytes = 1 << 20;
            c.max_concurrent_schema_compiles = 1;
        });
        let started = std::time::Instant::now();
        let msg = message(gate.check(&costly(2_000, "a"), "p").await.unwrap_err());
        assert!(msg.contains("did not compile within 200 ms"), "{msg}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        // The abandoned compile stops at its next pattern and gives its slot back.
        let slot = tokio::time::timeout(Duration::from_secs(2), gate.slots.clone().acquire_owned())
            .await
            .expect("the slot came back")
            .unwrap();
        drop(slot);
        gate.check(&plain("after a deadline"), "p").await.unwrap();
    }

    #[tokio::test]
    async fn no_free_slot_until_the_deadline_is_overloaded() {
        let gate = schemas(|c| {
            c.schema_compile_timeout = Duration::from_millis(100);
            c.max_concurrent_schema_compiles = 1;
        });
        let held = gate.slots.clone().acquire_owned().await.unwrap();
        let error = gate.check(&plain("no slot"), "p").await.unwrap_err();
        assert!(matches!(error, ApiError::Overloaded(_)), "{error:?}");
        drop(held);
        gate.check(&plain("no slot"), "p").await.unwrap();
    }
}
