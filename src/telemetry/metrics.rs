//! Process-wide metrics in the Prometheus text format (version 0.0.4), through
//! prometheus-client: HTTP requests, model calls, tool calls, turn steps and overhead, active
//! turns and streams, MCP servers' state, the embedded store's mirror (`store_metrics.rs`).
//!
//! Callers record plain values through [`Metrics`]; each timed family is a counter and a
//! histogram over the same typed label set (`label_sets.rs`), and every label value comes from
//! a closed or bounded set (`labels.rs`), so the number of series has a fixed ceiling whatever
//! clients and the model send.

use std::hash::Hash;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeLabelSet, prometheus_text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::label_sets::{
    DecisionLabels, HttpLabels, HttpMethod, McpLabels, ModelLabels, ModelOutcome, ToolLabels,
};
use super::labels::{Admitted, CLOSED, LabelLimits, OTHER};
use super::store_metrics::StoreMetrics;

/// The `Content-Type` of [`Metrics::encode`]'s text.
pub(crate) const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The route of a request no route matched.
const UNMATCHED: &str = "unmatched";

/// Buckets (seconds) for calls to the network: model, tools, HTTP requests.
const LATENCY: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Buckets (seconds) for agentd's own time inside a turn.
const OVERHEAD: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];
/// Buckets for model calls per turn.
const STEPS: &[f64] = &[1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY.iter().copied())
}

/// A counter and a latency histogram over the same label set: `<name>_total` counts what
/// `<duration>` times.
#[derive(Debug)]
struct Timed<S> {
    calls: Family<S, Counter>,
    duration: Family<S, Histogram, fn() -> Histogram>,
}

impl<S> Timed<S>
where
    S: Clone + Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    /// Registers both families; `calls` is named without `_total` (the encoder appends it),
    /// and help texts without the final period (the encoder adds it).
    fn register(registry: &mut Registry, calls: (&str, &str), duration: (&str, &str)) -> Self {
        let timed = Self {
            calls: Family::default(),
            duration: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
        };
        registry.register(calls.0, calls.1, timed.calls.clone());
        registry.register(duration.0, duration.1, timed.duration.clone());
        timed
    }

    fn observe(&self, labels: &S, elapsed: Duration) {
        self.calls.get_or_create(labels).inc();
        self.duration
            .get_or_create(labels)
            .observe(elapsed.as_secs_f64());
    }
}

/// The registry and a handle on each of its metrics. One per process ([`metrics`]); a test
/// may build its own.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    http: Timed<HttpLabels>,
    model: Timed<ModelLabels>,
    tool: Timed<ToolLabels>,
    steps: Histogram,
    overhead: Histogram,
    active_turns: Gauge,
    active_streams: Gauge,
    mcp_up: Family<McpLabels, Gauge>,
    mcp_tools: Family<McpLabels, Gauge>,
    mcp_failures: Family<McpLabels, Counter>,
    approvals_pending: Gauge,
    approval_decisions: Family<DecisionLabels, Counter>,
    store: StoreMetrics,
    routes: Admitted,
    providers: Admitted,
    models: Admitted,
    tools: Admitted,
    tool_outcomes: Admitted,
    max_label_values: AtomicUsize,
    max_label_bytes: AtomicUsize,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::default);

/// The process's metrics, served at `/metrics`.
pub(crate) fn metrics() -> &'static Metrics {
    &METRICS
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let http = Timed::register(
            &mut registry,
            ("agentd_http_requests", "HTTP requests answered"),
            (
                "agentd_http_request_duration_seconds",
                "Time to answer an HTTP request (until the response head for streams)",
            ),
        );
        let model = Timed::register(
            &mut registry,
            ("agentd_model_calls", "Model calls made"),
            (
                "agentd_model_call_duration_seconds",
                "Duration of model calls",
            ),
        );
        let tool = Timed::register(
            &mut registry,
            ("agentd_tool_calls", "Server-tool calls run"),
            (
                "agentd_tool_call_duration_seconds",
                "Duration of tool calls",
            ),
        );
        let steps = Histogram::new(STEPS.iter().copied());
        registry.register(
            "agentd_turn_steps",
            "Model calls per finished turn",
            steps.clone(),
        );
        let overhead = Histogram::new(OVERHEAD.iter().copied());
        registry.register(
            "agentd_turn_overhead_seconds",
            "Turn wall time minus model time minus tool time",
            overhead.clone(),
        );
        let active_turns = Gauge::default();
        registry.register(
            "agentd_active_turns",
            "Turns running now",
            active_turns.clone(),
        );
        let active_streams = Gauge::default();
        registry.register(
            "agentd_active_streams",
            "Event streams open now",
            active_streams.clone(),
        );
        let mcp_up = Family::<McpLabels, Gauge>::default();
        registry.register(
            "agentd_mcp_server_up",
            "1 while the MCP server is connected and its tools are offered, else 0",
            mcp_up.clone(),
        );
        let mcp_tools = Family::<McpLabels, Gauge>::default();
        registry.register(
            "agentd_mcp_server_tools",
            "Tools taken from the MCP server's listing",
            mcp_tools.clone(),
        );
        let mcp_failures = Family::<McpLabels, Counter>::default();
        registry.register(
            "agentd_mcp_server_failures",
            "Times the MCP server failed to start or exited",
            mcp_failures.clone(),
        );
        let approvals_pending = Gauge::default();
        registry.register(
            "agentd_approvals_pending",
            "Tool calls waiting for a person's approval",
            approvals_pending.clone(),
        );
        let approval_decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "agentd_approval_decisions",
            "Held tool calls decided: approved, denied, expired or superseded",
            approval_decisions.clone(),
        );
        let store = StoreMetrics::register(&mut registry);
        let limits = LabelLimits::default();
        Self {
            registry,
            http,
            model,
            tool,
            steps,
            overhead,
            active_turns,
            active_streams,
            mcp_up,
            mcp_tools,
            mcp_failures,
            approvals_pending,
            approval_decisions,
            store,
            routes: Admitted::default(),
            providers: Admitted::default(),
            models: Admitted::default(),
            tools: Admitted::default(),
            tool_outcomes: Admitted::default(),
            max_label_values: AtomicUsize::new(limits.max_values),
            max_label_bytes: AtomicUsize::new(limits.max_bytes),
        }
    }
}

impl Metrics {
    /// The embedded store's metrics.
    pub(crate) fn store(&self) -> &StoreMetrics {
        &self.store
    }

    /// Sets the limits of open labels (model and tool names, tool error kinds) and keeps the
    /// configured model's name ahead of any other, so a flood of made-up names cannot push it
    /// into `other`. The last call wins.
    pub(crate) fn configure(&self, limits: LabelLimits, default_model: &str) {
        self.max_label_values
            .store(limits.max_values, Ordering::Relaxed);
        self.max_label_bytes
            .store(limits.max_bytes, Ordering::Relaxed);
        self.models.admit(default_model, limits);
    }

    fn limits(&self) -> LabelLimits {
        LabelLimits {
            max_values: self.max_label_values.load(Ordering::Relaxed),
            max_bytes: self.max_label_bytes.load(Ordering::Relaxed),
        }
    }

    /// One answered HTTP request: `route` is the matched route template (`None`: no route
    /// matched), never the raw path.
    pub(crate) fn record_http(
        &self,
        method: HttpMethod,
        route: Option<&str>,
        status: u16,
        elapsed: Duration,
    ) {
        let labels = HttpLabels {
            route: self.routes.admit(route.unwrap_or(UNMATCHED), CLOSED),
            method,
            status,
        };
        self.http.observe(&labels, elapsed);
    }

    /// One model call and how it ended. Model names past the label limits count as `other`.
    pub(crate) fn record_model_call(
        &self,
        provider: &str,
        model: &str,
        outcome: ModelOutcome,
        elapsed: Duration,
    ) {
        let labels = ModelLabels {
            provider: self.providers.admit(provider, CLOSED),
            model: self.models.admit(model, self.limits()),
            outcome,
        };
        self.model.observe(&labels, elapsed);
    }

    /// One tool call: `tool` is the catalog name (`None` for a name the model made up, counted
    /// as `other`); `outcome` is `ok`, `replayed` or the error kind. Names and kinds are kept
    /// up to the label limits.
    pub(crate) fn record_tool_call(&self, tool: Option<&str>, outcome: &str, elapsed: Duration) {
        let limits = self.limits();
        let labels = ToolLabels {
            tool: self.tools.admit(tool.unwrap_or(OTHER), limits),
            outcome: self.tool_outcomes.admit(outcome, limits),
        };
        self.tool.observe(&labels, elapsed);
    }

    /// An open event stream: counts in `agentd_active_streams` until dropped (the stream owns it).
    pub(crate) fn stream_opened(&self) -> Active {
        Active::raise(&self.active_streams)
    }

    /// Call when a turn starts; keep the value for the turn's lifetime.
    pub(crate) fn turn_started(&self) -> TurnTimer {
        TurnTimer {
            started: Instant::now(),
            _active: Active::raise(&self.active_turns),
        }
    }

    /// A turn finished with `steps` model calls, having waited `model` on the model and
    /// `tools` on handlers; the rest of its wall time is agentd's overhead.
    pub(crate) fn turn_finished(
        &self,
        timer: &TurnTimer,
        steps: u32,
        model: Duration,
        tools: Duration,
    ) {
        let overhead = timer.started.elapsed().saturating_sub(model + tools);
        self.steps.observe(f64::from(steps));
        self.overhead.observe(overhead.as_secs_f64());
    }

    /// An MCP server's state: up or not, its tool count, and its failures so far (the
    /// counter only grows; a restarted entry counting from zero again adds nothing until it
    /// passes the total).
    pub(crate) fn record_mcp_server(&self, server: &str, up: bool, tools: usize, failures: u64) {
        let labels = McpLabels {
            server: server.to_owned(),
        };
        self.mcp_up.get_or_create(&labels).set(i64::from(up));
        self.mcp_tools
            .get_or_create(&labels)
            .set(i64::try_from(tools).unwrap_or(i64::MAX));
        let counter = self.mcp_failures.get_or_create(&labels);
        let seen = counter.get();
        if failures > seen {
            counter.inc_by(failures - seen);
        }
    }

    /// A held call ended: `approved`, `denied`, `expired` or `superseded` (anything else is
    /// not counted).
    pub(crate) fn record_approval_decision(&self, decision: &str) {
        let decision = match decision {
            "approved" => "approved",
            "denied" => "denied",
            "expired" => "expired",
            "superseded" => "superseded",
            _ => return,
        };
        self.approval_decisions
            .get_or_create(&DecisionLabels { decision })
            .inc();
    }

    /// Calls waiting for a decision now.
    pub(crate) fn set_approvals_pending(&self, pending: u64) {
        self.approvals_pending
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
    }

    /// Drops the series of an MCP server no longer configured.
    pub(crate) fn forget_mcp_server(&self, server: &str) {
        let labels = McpLabels {
            server: server.to_owned(),
        };
        self.mcp_up.remove(&labels);
        self.mcp_tools.remove(&labels);
        self.mcp_failures.remove(&labels);
    }

    /// Everything, in the Prometheus text format (version 0.0.4, [`CONTENT_TYPE`]).
    pub(crate) fn encode(&self) -> String {
        let mut out = String::with_capacity(8192);
        // Writing into a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// Keeps a gauge raised while alive.
#[must_use]
#[derive(Debug)]
pub(crate) struct Active {
    gauge: Gauge,
}

impl Active {
    fn raise(gauge: &Gauge) -> Self {
        gauge.inc();
        Self {
            gauge: gauge.clone(),
        }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// A running turn: counts in `agentd_active_turns` until dropped.
#[must_use]
#[derive(Debug)]
pub(crate) struct TurnTimer {
    started: Instant,
    _active: Active,
}
