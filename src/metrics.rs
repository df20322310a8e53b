//! Process-wide metrics in the Prometheus text format: HTTP requests, model calls, tool calls,
//! turn steps and overhead, active turns and streams.
//!
//! A small registry instead of a metrics crate: every series is a histogram whose count is also
//! the matching `_total` counter, so one observation takes one short lock and a scan of a few series.
//! Every label value comes from a closed or bounded set (`labels.rs`), so the number of series
//! has a fixed ceiling whatever clients and the model send.

mod labels;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use labels::Admitted;
pub use labels::{LabelLimits, OTHER};

/// The most labels a family has.
const MAX_LABELS: usize = 3;

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

#[derive(Debug, Clone)]
struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    sum: f64,
}

impl Histogram {
    fn new(bounds: &[f64]) -> Self {
        Self {
            buckets: vec![0; bounds.len()],
            count: 0,
            sum: 0.0,
        }
    }

    fn observe(&mut self, bounds: &[f64], value: f64) {
        if let Some(i) = bounds.iter().position(|b| value <= *b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += value;
    }
}

/// One labelled family: a histogram per label set, plus (optionally) a `_total` counter.
struct Family {
    /// `agentd_http_requests_total`; `None` when the family is a plain histogram.
    counter: Option<(&'static str, &'static str)>,
    histogram: (&'static str, &'static str),
    labels: &'static [Label],
    bounds: &'static [f64],
    state: Mutex<FamilyState>,
}

/// A label's name and where its values come from.
struct Label {
    name: &'static str,
    /// Values named by clients or the model: only the admitted ones are kept (`labels.rs`).
    /// Closed labels get their values from a fixed set chosen by the caller.
    open: bool,
}

const fn closed(name: &'static str) -> Label {
    Label { name, open: false }
}

const fn open(name: &'static str) -> Label {
    Label { name, open: true }
}

#[derive(Default)]
struct FamilyState {
    /// Few series per family (routes × methods × statuses), so a scan beats hashing a key.
    series: Vec<(Box<[String]>, Histogram)>,
    /// The values kept so far, one set per label (used for open labels only).
    admitted: Vec<Admitted>,
}

impl Family {
    fn new(
        counter: Option<(&'static str, &'static str)>,
        histogram: (&'static str, &'static str),
        labels: &'static [Label],
        bounds: &'static [f64],
    ) -> Self {
        debug_assert!(labels.len() <= MAX_LABELS);
        Self {
            counter,
            histogram,
            labels,
            bounds,
            state: Mutex::new(FamilyState {
                series: Vec::new(),
                admitted: labels.iter().map(|_| Admitted::default()).collect(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FamilyState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `value` for the open label at `index` ahead of values seen later (the configured
    /// model, so a flood of made-up names cannot push it into `other`).
    fn admit(&self, index: usize, value: &str, limits: LabelLimits) {
        if let Some(admitted) = self.lock().admitted.get_mut(index) {
            admitted.admit(value, limits);
        }
    }

    /// One observation with one value per label (extra values are ignored).
    fn observe(&self, values: &[&str], value: f64) {
        self.observe_within(REGISTRY.limits(), values, value);
    }

    fn observe_within(&self, limits: LabelLimits, values: &[&str], value: f64) {
        let mut state = self.lock();
        let FamilyState { series, admitted } = &mut *state;
        let mut key = [""; MAX_LABELS];
        let count = values.len().min(self.labels.len());
        for (((slot, given), label), kept) in key
            .iter_mut()
            .zip(values)
            .zip(self.labels)
            .zip(admitted.iter_mut())
        {
            *slot = if label.open {
                kept.admit(given, limits)
            } else {
                given
            };
        }
        let key = &key[..count];
        // Look up without allocating; allocate the key only for a new series.
        let found = series
            .iter_mut()
            .find(|(k, _)| k.iter().map(String::as_str).eq(key.iter().copied()));
        match found {
            Some((_, histogram)) => histogram.observe(self.bounds, value),
            None => {
                let mut histogram = Histogram::new(self.bounds);
                histogram.observe(self.bounds, value);
                let key: Box<[String]> = key.iter().map(|v| (*v).to_owned()).collect();
                series.push((key, histogram));
            }
        }
    }

    fn render(&self, out: &mut String) {
        let mut series: Vec<(Box<[String]>, Histogram)> = self
            .lock()
            .series
            .iter()
            .map(|(k, h)| (k.clone(), h.clone()))
            .collect();
        series.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some((name, help)) = self.counter {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (values, histogram) in &series {
                let labels = label_text(self.labels, values, None);
                let _ = writeln!(out, "{name}{labels} {}", histogram.count);
            }
        }
        let (name, help) = self.histogram;
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (values, histogram) in &series {
            let mut cumulative = 0;
            for (bound, n) in self.bounds.iter().zip(&histogram.buckets) {
                cumulative += n;
                let labels = label_text(self.labels, values, Some(&bound.to_string()));
                let _ = writeln!(out, "{name}_bucket{labels} {cumulative}");
            }
            let labels = label_text(self.labels, values, Some("+Inf"));
            let _ = writeln!(out, "{name}_bucket{labels} {}", histogram.count);
            let labels = label_text(self.labels, values, None);
            let _ = writeln!(out, "{name}_sum{labels} {}", histogram.sum);
            let _ = writeln!(out, "{name}_count{labels} {}", histogram.count);
        }
    }
}

/// `{a="x",le="1"}`, or nothing when there are no labels.
fn label_text(labels: &[Label], values: &[String], le: Option<&str>) -> String {
    let mut text = String::new();
    for (Label { name, .. }, value) in labels.iter().zip(values) {
        if !text.is_empty() {
            text.push(',');
        }
        let _ = write!(text, "{name}=\"{}\"", escape(value));
    }
    if let Some(le) = le {
        if !text.is_empty() {
            text.push(',');
        }
        let _ = write!(text, "le=\"{le}\"");
    }
    if text.is_empty() {
        text
    } else {
        format!("{{{text}}}")
    }
}

/// A label value as the text format wants it: backslash, double quote and line feed escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Registry {
    http: Family,
    model: Family,
    tool: Family,
    steps: Family,
    overhead: Family,
    active_turns: AtomicI64,
    active_streams: AtomicI64,
    max_label_values: AtomicUsize,
    max_label_bytes: AtomicUsize,
}

impl Registry {
    fn limits(&self) -> LabelLimits {
        LabelLimits {
            max_values: self.max_label_values.load(Ordering::Relaxed),
            max_bytes: self.max_label_bytes.load(Ordering::Relaxed),
        }
    }
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| Registry {
    http: Family::new(
        Some(("agentd_http_requests_total", "HTTP requests answered.")),
        (
            "agentd_http_request_duration_seconds",
            "Time to answer an HTTP request (until the response head for streams).",
        ),
        const { &[closed("route"), closed("method"), closed("status")] },
        LATENCY,
    ),
    model: Family::new(
        Some(("agentd_model_calls_total", "Model calls made.")),
        (
            "agentd_model_call_duration_seconds",
            "Duration of model calls.",
        ),
        const { &[closed("provider"), open("model"), closed("outcome")] },
        LATENCY,
    ),
    tool: Family::new(
        Some(("agentd_tool_calls_total", "Server-tool calls run.")),
        (
            "agentd_tool_call_duration_seconds",
            "Duration of tool calls.",
        ),
        const { &[open("tool"), open("outcome")] },
        LATENCY,
    ),
    steps: Family::new(
        None,
        ("agentd_turn_steps", "Model calls per finished turn."),
        &[],
        STEPS,
    ),
    overhead: Family::new(
        None,
        (
            "agentd_turn_overhead_seconds",
            "Turn wall time minus model time minus tool time.",
        ),
        &[],
        OVERHEAD,
    ),
    active_turns: AtomicI64::new(0),
    active_streams: AtomicI64::new(0),
    max_label_values: AtomicUsize::new(LabelLimits::default().max_values),
    max_label_bytes: AtomicUsize::new(LabelLimits::default().max_bytes),
});

/// Sets the limits of open labels (model and tool names, tool error kinds) and keeps the
/// configured model's name ahead of any other. The registry is process-wide: the last call wins.
pub fn configure(limits: LabelLimits, default_model: &str) {
    REGISTRY
        .max_label_values
        .store(limits.max_values, Ordering::Relaxed);
    REGISTRY
        .max_label_bytes
        .store(limits.max_bytes, Ordering::Relaxed);
    REGISTRY.model.admit(MODEL_LABEL, default_model, limits);
}

/// Where `model` is among the model family's labels.
const MODEL_LABEL: usize = 1;

/// Keeps a gauge raised while alive.
#[must_use]
pub struct Active {
    gauge: &'static AtomicI64,
}

impl Drop for Active {
    fn drop(&mut self) {
        self.gauge.fetch_sub(1, Ordering::Relaxed);
    }
}

fn raise(gauge: &'static AtomicI64) -> Active {
    gauge.fetch_add(1, Ordering::Relaxed);
    Active { gauge }
}

/// An open event stream: counts in `agentd_active_streams` until dropped (the stream owns it).
pub fn stream_opened() -> Active {
    raise(&REGISTRY.active_streams)
}

/// A running turn: counts in `agentd_active_turns` until dropped.
#[must_use]
pub struct TurnTimer {
    started: Instant,
    _active: Active,
}

/// Call when a turn starts; keep the value for the turn's lifetime.
pub fn turn_started() -> TurnTimer {
    TurnTimer {
        started: Instant::now(),
        _active: raise(&REGISTRY.active_turns),
    }
}

/// A turn finished with `steps` model calls, having waited `model` on the model and `tools`
/// on handlers.
pub fn turn_finished(timer: &TurnTimer, steps: u32, model: Duration, tools: Duration) {
    let overhead = timer.started.elapsed().saturating_sub(model + tools);
    REGISTRY.steps.observe(&[], f64::from(steps));
    REGISTRY.overhead.observe(&[], overhead.as_secs_f64());
}

/// One model call and how it ended.
pub fn model_call<T>(
    provider: &str,
    model: &str,
    elapsed: Duration,
    result: &Result<T, crate::turn::TurnError>,
) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(crate::turn::TurnError::Cancelled) => "cancelled",
        Err(_) => "error",
    };
    REGISTRY
        .model
        .observe(&[provider, model, outcome], elapsed.as_secs_f64());
}

/// One tool call: `outcome` is `ok`, `replayed` or the error kind. A name the model made up
/// (`unknown_tool`) is reported as `other`; catalog names and error kinds are kept up to the
/// label limits.
pub fn tool_call(tool: &str, outcome: &str, elapsed: Duration) {
    let tool = if outcome == "unknown_tool" {
        OTHER
    } else {
        tool
    };
    REGISTRY
        .tool
        .observe(&[tool, outcome], elapsed.as_secs_f64());
}

/// Middleware recording every request by its route template (never the raw path; `unmatched`
/// when no route matched) and its method (`other` for a non-standard one).
pub async fn track_http(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = labels::method(request.method());
    let response = next.run(request).await;
    let status = response.status();
    REGISTRY.http.observe(
        &[
            route.as_ref().map_or("unmatched", MatchedPath::as_str),
            method,
            status.as_str(),
        ],
        started.elapsed().as_secs_f64(),
    );
    response
}

/// Everything, in the Prometheus text format (version 0.0.4).
pub fn render() -> String {
    let mut out = String::with_capacity(8192);
    REGISTRY.http.render(&mut out);
    REGISTRY.model.render(&mut out);
    REGISTRY.tool.render(&mut out);
    REGISTRY.steps.render(&mut out);
    REGISTRY.overhead.render(&mut out);
    for (name, help, gauge) in [
        (
            "agentd_active_turns",
            "Turns running now.",
            &REGISTRY.active_turns,
        ),
        (
            "agentd_active_streams",
            "Event streams open now.",
            &REGISTRY.active_streams,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
            gauge.load(Ordering::Relaxed)
        );
    }
    out
}

/// `GET /metrics`.
pub async fn serve_metrics() -> Response {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_counters_match() {
        let family = Family::new(
            Some(("t_total", "help")),
            ("t_seconds", "help"),
            const { &[closed("route")] },
            &[0.1, 1.0],
        );
        family.observe(&["/a/{id}"], 0.05);
        family.observe(&["/a/{id}"], 0.5);
        family.observe(&["/a/{id}"], 5.0);
        family.observe(&["/b\"x"], 0.5);
        let mut out = String::new();
        family.render(&mut out);
        assert!(out.contains("t_total{route=\"/a/{id}\"} 3\n"), "{out}");
        assert!(
            out.contains("t_seconds_bucket{route=\"/a/{id}\",le=\"0.1\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("t_seconds_bucket{route=\"/a/{id}\",le=\"1\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("t_seconds_bucket{route=\"/a/{id}\",le=\"+Inf\"} 3\n"),
            "{out}"
        );
        assert!(
            out.contains("t_seconds_sum{route=\"/a/{id}\"} 5.55\n"),
            "{out}"
        );
        assert!(out.contains("t_total{route=\"/b\\\"x\"} 1\n"), "{out}");
    }

    #[test]
    fn unlabelled_histograms_render_without_stray_commas() {
        let family = Family::new(None, ("s", "help"), &[], &[1.0]);
        family.observe(&[], 2.0);
        let mut out = String::new();
        family.render(&mut out);
        assert!(out.contains("s_bucket{le=\"1\"} 0\n"), "{out}");
        assert!(out.contains("s_count 1\n"), "{out}");
        assert!(!out.contains("t_total"));
    }

    #[test]
    fn label_values_are_escaped() {
        let family = Family::new(None, ("e", "help"), const { &[open("model")] }, &[1.0]);
        family.observe(&["a\\b\"c\nd"], 0.5);
        let mut out = String::new();
        family.render(&mut out);
        assert!(
            out.contains("e_count{model=\"a\\\\b\\\"c\\nd\"} 1\n"),
            "{out}"
        );
        assert_eq!(out.lines().count(), 6, "{out}");
    }

    #[test]
    fn open_labels_overflow_into_other_and_closed_ones_do_not() {
        let family = Family::new(
            Some(("o_total", "help")),
            ("o_seconds", "help"),
            const { &[closed("provider"), open("model")] },
            &[1.0],
        );
        let limits = LabelLimits {
            max_values: 2,
            max_bytes: 10,
        };
        for model in ["m1", "m2", "m3", "m4", "a-very-long-model-name", "m1"] {
            family.observe_within(limits, &["openai", model], 0.1);
        }
        family.observe_within(limits, &["custom", "m2"], 0.1);
        let mut out = String::new();
        family.render(&mut out);
        assert!(
            out.contains("o_total{provider=\"openai\",model=\"m1\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("o_total{provider=\"openai\",model=\"other\"} 3\n"),
            "{out}"
        );
        assert!(
            out.contains("o_total{provider=\"custom\",model=\"m2\"} 1\n"),
            "{out}"
        );
        assert_eq!(out.matches("o_total{").count(), 4, "{out}");
    }
}
