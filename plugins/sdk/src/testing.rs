//! A test kit for handler crates (feature `testing`, for dev-dependencies): contexts with a
//! deadline, a cancellation token and an idempotency key; handlers built from a JSON or TOML
//! options table through their factory, optionally inside a private data directory; calls run
//! and their result checked by outcome or error kind; cancellation and deadlines exercised.
//!
//! ```toml
//! [dev-dependencies]
//! agentd-sdk = { workspace = true, features = ["testing"] }
//! ```
//!
//! ```ignore
//! use agentd_sdk::testing::{self, expect_error_kind, expect_ok};
//!
//! let tool = testing::build(&MyFactory, json!({ "entries": { "a": "1" } }));
//! assert_eq!(expect_ok(tool.call(json!({ "key": "a" })).await), json!({ "value": "1" }));
//! expect_error_kind(tool.call(json!({ "key": "b" })).await, "not_found");
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{
    BuildContext, CallContext, HandlerError, HandlerFactory, OptionsError, ToolCall, ToolHandler,
    ToolOutput,
};

/// A handler that honours cancellation and deadlines stops well within this; the helpers that
/// check it fail the test when it does not.
pub const PROMPT_STOP: Duration = Duration::from_secs(5);

/// The session id of contexts built with the defaults.
pub const SESSION_ID: &str = "test-session";
/// The call id of contexts built with the defaults.
pub const CALL_ID: &str = "call_1";
/// The time a call gets when the test does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A [`CallContext`] with the defaults: session [`SESSION_ID`], call [`CALL_ID`], a deadline
/// [`DEFAULT_TIMEOUT`] from now, a fresh cancellation token, and the idempotency key agentd
/// derives from the session and call ids.
pub fn context() -> ContextBuilder {
    ContextBuilder {
        session_id: SESSION_ID.to_owned(),
        call_id: CALL_ID.to_owned(),
        timeout: DEFAULT_TIMEOUT,
        cancel: CancellationToken::new(),
        cancelled: false,
        content_digest: None,
        idempotency_key: None,
    }
}

/// Builds a [`CallContext`]; see [`context`] for the defaults.
#[derive(Debug, Clone)]
pub struct ContextBuilder {
    session_id: String,
    call_id: String,
    timeout: Duration,
    cancel: CancellationToken,
    cancelled: bool,
    content_digest: Option<String>,
    idempotency_key: Option<String>,
}

impl ContextBuilder {
    /// The chat session the call belongs to (part of the idempotency key).
    pub fn session(mut self, session_id: impl Into<String>) -> Self {
        self.session_id = session_id.into();
        self
    }

    /// The model's id for the call (part of the idempotency key): two contexts with the same
    /// session and call id are the same call to a handler.
    pub fn call_id(mut self, call_id: impl Into<String>) -> Self {
        self.call_id = call_id.into();
        self
    }

    /// The time from now to the deadline.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// A deadline that has already passed when the call starts.
    pub fn deadline_passed(self) -> Self {
        self.timeout(Duration::ZERO)
    }

    /// The token the context carries (keep a clone to cancel the call from the test).
    pub fn cancel_token(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// A context whose token is already cancelled (the turn was abandoned before the call).
    pub fn cancelled(mut self) -> Self {
        self.cancelled = true;
        self
    }

    /// The key as agentd dispatches it: the call's content digest (a SHA-256 hex of its tool
    /// and arguments) names the content too, so another call under the same id gets another key.
    pub fn content_digest(mut self, digest: impl Into<String>) -> Self {
        self.content_digest = Some(digest.into());
        self
    }

    /// Replaces the derived idempotency key with this one.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    pub fn build(self) -> CallContext {
        let mut ctx = CallContext::new(self.session_id, self.call_id, self.timeout, self.cancel);
        if let Some(digest) = &self.content_digest {
            ctx = ctx.with_content_digest(digest);
        }
        if let Some(key) = self.idempotency_key {
            ctx.idempotency_key = key;
        }
        if self.cancelled {
            ctx.cancel.cancel();
        }
        ctx
    }
}

/// Options written as TOML, as they appear under `[tool.options]` in tools.toml, converted to
/// the JSON a factory receives. Panics on a syntax error.
pub fn options_from_toml(text: &str) -> Value {
    let table: toml::Table =
        toml::from_str(text).unwrap_or_else(|error| panic!("options are not valid TOML: {error}"));
    serde_json::to_value(table).expect("a TOML table converts to JSON")
}

/// Builds a handler from `options` without a data directory (like `agentd validate` outside a
/// daemon); panics listing every problem when the factory refuses the options.
pub fn build(factory: &dyn HandlerFactory, options: Value) -> TestTool {
    try_build(factory, &options, &BuildContext::default())
        .unwrap_or_else(|error| panic!("{} refused the options {options}: {error}", factory.name()))
}

/// Builds a handler inside a fresh private data directory (see [`TestTool::data_dir`]), as the
/// daemon does with `storage.data_dir`; the directory is removed when the tool is dropped.
pub fn build_in_data_dir(factory: &dyn HandlerFactory, options: Value) -> TestTool {
    let dir = ScratchDir::new(factory.name());
    let mut tool = try_build(factory, &options, &dir.build_context()).unwrap_or_else(|error| {
        panic!("{} refused the options {options}: {error}", factory.name())
    });
    tool.data_dir = Some(Arc::new(dir));
    tool
}

/// Builds a handler with an explicit [`BuildContext`]; the factory's problems when it refuses.
pub fn try_build(
    factory: &dyn HandlerFactory,
    options: &Value,
    context: &BuildContext,
) -> Result<TestTool, OptionsError> {
    let handler = factory.build_with(options, context)?;
    Ok(TestTool::new(handler).named(factory.name()))
}

/// Every problem the factory reports for `options`; panics when it builds a handler instead.
pub fn options_problems(factory: &dyn HandlerFactory, options: Value) -> Vec<String> {
    match factory.build_with(&options, &BuildContext::default()) {
        Ok(_) => panic!(
            "{} accepted options it should refuse: {options}",
            factory.name()
        ),
        Err(error) => error.0,
    }
}

/// A built handler ready to be called, with the directory it was built in (if any).
#[derive(Clone)]
pub struct TestTool {
    handler: Arc<dyn ToolHandler>,
    tool: String,
    data_dir: Option<Arc<ScratchDir>>,
}

impl TestTool {
    /// Wraps a handler built by other means (a constructor the crate exposes to its tests).
    pub fn new(handler: Arc<dyn ToolHandler>) -> Self {
        Self {
            handler,
            tool: "tool".to_owned(),
            data_dir: None,
        }
    }

    /// The catalog name calls carry (`ToolCall::tool`); the factory's name by default.
    pub fn named(mut self, tool: impl Into<String>) -> Self {
        self.tool = tool.into();
        self
    }

    pub fn handler(&self) -> &Arc<dyn ToolHandler> {
        &self.handler
    }

    /// The data directory the handler was built in ([`build_in_data_dir`]).
    pub fn data_dir(&self) -> Option<&Path> {
        self.data_dir.as_deref().map(ScratchDir::path)
    }

    /// The call as agentd hands it over: this tool's name and already-validated arguments.
    pub fn tool_call(&self, arguments: Value) -> ToolCall {
        ToolCall {
            tool: self.tool.clone(),
            arguments,
        }
    }

    /// One call with a default [`context`].
    pub async fn call(&self, arguments: Value) -> Result<ToolOutput, HandlerError> {
        self.call_with(arguments, context().build()).await
    }

    /// One call with the given context.
    pub async fn call_with(
        &self,
        arguments: Value,
        ctx: CallContext,
    ) -> Result<ToolOutput, HandlerError> {
        self.handler.call(self.tool_call(arguments), ctx).await
    }

    /// Starts a call with a long deadline, cancels its token `after` it started, and returns
    /// what the handler answered. Fails the test when the handler does not stop within
    /// [`PROMPT_STOP`] of the cancel.
    pub async fn cancel_mid_call(
        &self,
        arguments: Value,
        after: Duration,
    ) -> Result<ToolOutput, HandlerError> {
        let cancel = CancellationToken::new();
        let ctx = context()
            .timeout(Duration::from_secs(3600))
            .cancel_token(cancel.clone())
            .build();
        let call = self.call_with(arguments, ctx);
        tokio::pin!(call);
        tokio::select! {
            result = &mut call => return result,
            () = tokio::time::sleep(after) => cancel.cancel(),
        }
        let cancelled_at = Instant::now();
        tokio::time::timeout(PROMPT_STOP, call)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the handler kept running {:?} after its call was cancelled",
                    cancelled_at.elapsed()
                )
            })
    }

    /// A call whose deadline has passed before it starts; fails the test when the handler does
    /// not answer within [`PROMPT_STOP`].
    pub async fn call_past_deadline(&self, arguments: Value) -> Result<ToolOutput, HandlerError> {
        let ctx = context().deadline_passed().build();
        tokio::time::timeout(PROMPT_STOP, self.call_with(arguments, ctx))
            .await
            .unwrap_or_else(|_| panic!("the handler kept running past its deadline"))
    }
}

/// The output of a call that must have succeeded; fails the test with the error the model
/// would have read otherwise.
#[track_caller]
pub fn expect_ok(result: Result<ToolOutput, HandlerError>) -> Value {
    match result {
        Ok(output) => output.content,
        Err(error) => panic!("expected success, got {}", error.to_result_json()),
    }
}

/// The error of a call that must have failed with `kind`; fails the test on success or on
/// another kind.
#[track_caller]
pub fn expect_error_kind(result: Result<ToolOutput, HandlerError>, kind: &str) -> HandlerError {
    match result {
        Ok(output) => panic!("expected a `{kind}` error, got success: {}", output.content),
        Err(error) if error.kind == kind => error,
        Err(error) => panic!("expected a `{kind}` error, got {}", error.to_result_json()),
    }
}

/// A private directory under the system's temporary directory, removed on drop: the data
/// directory a handler under test is built in.
#[derive(Debug)]
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// Creates `agentd-test-<label>-<pid>-<n>` with mode 0700 on Unix.
    pub fn new(label: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("agentd-test-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(&dir)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", dir.display()));
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// What a factory is told when the daemon's data directory is this one.
    pub fn build_context(&self) -> BuildContext {
        BuildContext {
            data_dir: Some(self.0.clone()),
        }
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use serde_json::json;

    use super::*;

    /// Answers with what it was given, or waits for `wait_ms` while honouring the context.
    struct Probe;

    #[async_trait]
    impl ToolHandler for Probe {
        async fn call(&self, call: ToolCall, ctx: CallContext) -> Result<ToolOutput, HandlerError> {
            let wait = Duration::from_millis(call.arguments["wait_ms"].as_u64().unwrap_or(0));
            tokio::select! {
                () = tokio::time::sleep(wait.min(ctx.remaining())) => {}
                () = ctx.cancel.cancelled() => return Err(HandlerError::new("cancelled", "stopped")),
            }
            if ctx.remaining().is_zero() {
                return Err(HandlerError::new("timeout", "out of time").retryable());
            }
            Ok(ToolOutput::new(json!({
                "tool": call.tool, "key": ctx.idempotency_key, "session": ctx.session_id,
            })))
        }
    }

    struct ProbeFactory;

    impl HandlerFactory for ProbeFactory {
        fn name(&self) -> &'static str {
            "probe"
        }
        fn build(&self, options: &Value) -> Result<Arc<dyn ToolHandler>, OptionsError> {
            match options.get("bad") {
                Some(_) => Err(OptionsError(vec!["`bad` is bad".into(), "second".into()])),
                None => Ok(Arc::new(Probe)),
            }
        }
    }

    #[test]
    fn contexts_carry_the_defaults_and_what_the_test_sets() {
        let ctx = context().build();
        assert_eq!(ctx.session_id, SESSION_ID);
        assert_eq!(
            ctx.idempotency_key,
            crate::context::idempotency_key(SESSION_ID, CALL_ID)
        );
        assert!(ctx.remaining() > Duration::from_secs(4));
        assert!(!ctx.cancel.is_cancelled());
        let digest = "ab".repeat(32);
        let digested = context().content_digest(&digest).build();
        assert_ne!(digested.idempotency_key, ctx.idempotency_key);
        assert!(digested.idempotency_key.ends_with(&digest[..16]));
        let set = context()
            .session("s")
            .call_id("c")
            .idempotency_key("k")
            .deadline_passed()
            .cancelled()
            .build();
        assert_eq!((set.session_id.as_str(), set.call_id.as_str()), ("s", "c"));
        assert_eq!(set.idempotency_key, "k");
        assert!(set.remaining().is_zero() && set.cancel.is_cancelled());
    }

    #[tokio::test]
    async fn built_tools_run_and_results_are_checked_by_kind() {
        let tool = build(&ProbeFactory, options_from_toml("unused = 1"));
        let out = expect_ok(tool.call(json!({})).await);
        assert_eq!(out["tool"], "probe");
        let error = expect_error_kind(
            tool.call_past_deadline(json!({"wait_ms": 60_000})).await,
            "timeout",
        );
        assert!(error.retryable);
        let started = Instant::now();
        let cancelled = tool.cancel_mid_call(json!({"wait_ms": 60_000}), Duration::from_millis(20));
        expect_error_kind(cancelled.await, "cancelled");
        assert!(started.elapsed() < PROMPT_STOP);
        assert_eq!(
            options_problems(&ProbeFactory, json!({"bad": true})).len(),
            2
        );
    }

    #[test]
    #[should_panic(expected = "expected a `denied` error, got {\"error\"")]
    fn another_kind_fails_the_test() {
        expect_error_kind(Err(HandlerError::new("timeout", "late")), "denied");
    }

    #[test]
    fn a_data_dir_is_private_and_removed_with_the_tool() {
        let tool = build_in_data_dir(&ProbeFactory, json!({}));
        let dir = tool.data_dir().unwrap().to_path_buf();
        assert!(dir.is_dir());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700);
        }
        drop(tool);
        assert!(!dir.exists());
    }
}
