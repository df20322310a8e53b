//! Process-wide metrics in the Prometheus text format: HTTP requests, model calls, tool calls,
//! turn steps and overhead, active turns and streams.
//!
//! A small registry instead of a metrics crate: every series is a histogram whose count is also
//! the matching `_total` counter, so one observation takes one short lock and a scan of a few series.
//! Some label values come from clients (a chat's `model`, an HTTP method): each family keeps at
//! most `limits.max_metric_series` series, label values are cut to [`MAX_LABEL_BYTES`], and
//! label sets past the cap are counted together under `(other)`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

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

/// Longest label value kept; a longer one is cut (at a character boundary).
pub const MAX_LABEL_BYTES: usize = 128;

/// The label value of every series past a family's cap.
const OTHER: &str = "(other)";

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
    labels: &'static [&'static str],
    bounds: &'static [f64],
    /// Few series per family (routes × methods × statuses), so a scan beats hashing a key.
    series: Mutex<Vec<(Box<[String]>, Histogram)>>,
    /// Series kept before new label sets go to the `(other)` one.
    max_series: AtomicUsize,
}

impl Family {
    fn new(
        counter: Option<(&'static str, &'static str)>,
        histogram: (&'static str, &'static str),
        labels: &'static [&'static str],
        bounds: &'static [f64],
    ) -> Self {
        Self {
            counter,
            histogram,
            labels,
            bounds,
            series: Mutex::new(Vec::new()),
            max_series: AtomicUsize::new(crate::config::LimitsConfig::default().max_metric_series),
        }
    }

    fn observe(&self, values: &[&str], value: f64) {
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        // Look up without allocating; allocate the key only for a new series.
        let found = series
            .iter()
            .position(|(k, _)| k.iter().map(String::as_str).eq(values.iter().copied()));
        let index = match found {
            Some(index) => index,
            None => {
                // A cut value may have its series already; a new label set past the cap is
                // counted under `(other)`.
                let mut key: Box<[String]> =
                    values.iter().map(|v| cut_label(v).to_owned()).collect();
                let full = series.len() >= self.max_series.load(Ordering::Relaxed);
                if full && !series.iter().any(|(k, _)| *k == key) {
                    key = values.iter().map(|_| OTHER.to_owned()).collect();
                }
                match series.iter().position(|(k, _)| *k == key) {
                    Some(index) => index,
                    None => {
                        series.push((key, Histogram::new(self.bounds)));
                        series.len() - 1
                    }
                }
            }
        };
        series[index].1.observe(self.bounds, value);
    }

    fn render(&self, out: &mut String) {
        let mut series: Vec<(Box<[String]>, Histogram)> = self
            .series
            .lock()
            .unwrap_or_else(|e| e.into_inner())
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

/// `value` cut to at most [`MAX_LABEL_BYTES`].
fn cut_label(value: &str) -> &str {
    if value.len() <= MAX_LABEL_BYTES {
        return value;
    }
    let mut end = MAX_LABEL_BYTES;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

/// Sets how many series each family keeps (`limits.max_metric_series`).
pub fn set_max_series(max_series: usize) {
    let registry = &*REGISTRY;
    for family in [
        &registry.http,
        &registry.model,
        &registry.tool,
        &registry.steps,
        &registry.overhead,
    ] {
        family.max_series.store(max_series, Ordering::Relaxed);
    }
}

/// `{a="x",le="1"}`, or nothing when there are no labels.
fn label_text(names: &[&str], values: &[String], le: Option<&str>) -> String {
    let mut text = String::new();
    for (name, value) in names.iter().zip(values) {
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
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| Registry {
    http: Family::new(
        Some(("agentd_http_requests_total", "HTTP requests answered.")),
        (
            "agentd_http_request_duration_seconds",
            "Time to answer an HTTP request (until the response head for streams).",
        ),
        &["route", "method", "status"],
        LATENCY,
    ),
    model: Family::new(
        Some(("agentd_model_calls_total", "Model calls made.")),
        (
            "agentd_model_call_duration_seconds",
            "Duration of model calls.",
        ),
        &["provider", "model", "outcome"],
        LATENCY,
    ),
    tool: Family::new(
        Some(("agentd_tool_calls_total", "Server-tool calls run.")),
        (
            "agentd_tool_call_duration_seconds",
            "Duration of tool calls.",
        ),
        &["tool", "outcome"],
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
});

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

/// One tool call: `outcome` is `ok`, `replayed` or the error kind. Names the model made up
/// (`unknown_tool`) are not labels, so they cannot grow the series without bound.
pub fn tool_call(tool: &str, outcome: &str, elapsed: Duration) {
    let tool = if outcome == "unknown_tool" {
        "(unknown)"
    } else {
        tool
    };
    REGISTRY
        .tool
        .observe(&[tool, outcome], elapsed.as_secs_f64());
}

/// Middleware recording every request by its route template (never the raw path), and the
/// number of open event streams.
pub async fn track_http(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let response = next.run(request).await;
    let status = response.status();
    REGISTRY.http.observe(
        &[
            route.as_ref().map_or("unmatched", MatchedPath::as_str),
            method.as_str(),
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
            &["route"],
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
    fn label_sets_past_the_cap_share_one_series_and_long_values_are_cut() {
        let family = Family::new(
            Some(("m_total", "help")),
            ("m_seconds", "help"),
            &["model", "outcome"],
            &[1.0],
        );
        family.max_series.store(2, Ordering::Relaxed);
        let long = "é".repeat(200);
        family.observe(&[&long, "ok"], 0.5);
        family.observe(&[&long, "ok"], 0.5);
        for i in 0..50 {
            family.observe(&[&format!("model-{i}"), "ok"], 0.5);
        }
        family.observe(&[&long, "ok"], 0.5);
        let series = family.series.lock().unwrap();
        let keys: Vec<&[String]> = series.iter().map(|(k, _)| &k[..]).collect();
        assert_eq!(keys.len(), 3, "two series and the overflow: {keys:?}");
        assert!(keys[0][0].len() <= MAX_LABEL_BYTES && long.starts_with(&keys[0][0]));
        assert_eq!(series[0].1.count, 3, "a cut value still finds its series");
        assert_eq!(keys[1], ["model-0", "ok"]);
        assert_eq!(keys[2], [OTHER, OTHER]);
        assert_eq!(series[2].1.count, 49);
    }
}
