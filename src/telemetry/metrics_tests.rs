//! What `/metrics` shows for what is recorded: names, label order, cumulative buckets,
//! escaping, the bounded label sets and the gauges.

use std::time::Duration;

use super::metrics::Metrics;
use super::{HttpMethod, LabelLimits, ModelOutcome};

/// 2⁻⁷ s: exact in binary, so sums print exactly.
const SHORT: Duration = Duration::from_nanos(7_812_500);

#[test]
fn histograms_are_cumulative_and_counters_match() {
    let metrics = Metrics::default();
    for elapsed in [SHORT, Duration::from_millis(500), Duration::from_secs(64)] {
        metrics.record_http(HttpMethod::Get, Some("/a/{id}"), 200, elapsed);
    }
    metrics.record_http(HttpMethod::Post, None, 404, SHORT);
    let out = metrics.encode();
    let labels = r#"route="/a/{id}",method="GET",status="200""#;
    for line in [
        "# HELP agentd_http_requests_total HTTP requests answered.\n".to_owned(),
        "# TYPE agentd_http_requests_total counter\n".to_owned(),
        "# TYPE agentd_http_request_duration_seconds histogram\n".to_owned(),
        format!("agentd_http_requests_total{{{labels}}} 3\n"),
        format!("agentd_http_request_duration_seconds_bucket{{{labels},le=\"0.005\"}} 0\n"),
        format!("agentd_http_request_duration_seconds_bucket{{{labels},le=\"0.01\"}} 1\n"),
        format!("agentd_http_request_duration_seconds_bucket{{{labels},le=\"0.5\"}} 2\n"),
        format!("agentd_http_request_duration_seconds_bucket{{{labels},le=\"60\"}} 2\n"),
        format!("agentd_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} 3\n"),
        format!("agentd_http_request_duration_seconds_sum{{{labels}}} 64.5078125\n"),
        format!("agentd_http_request_duration_seconds_count{{{labels}}} 3\n"),
        "agentd_http_requests_total{route=\"unmatched\",method=\"POST\",status=\"404\"} 1\n"
            .to_owned(),
    ] {
        assert!(out.contains(&line), "missing {line:?} in:\n{out}");
    }
}

#[test]
fn unlabelled_histograms_and_gauges_render_without_stray_braces() {
    let metrics = Metrics::default();
    let timer = metrics.turn_started();
    assert!(metrics.encode().contains("agentd_active_turns 1\n"));
    metrics.turn_finished(&timer, 2, Duration::ZERO, Duration::ZERO);
    drop(timer);
    let out = metrics.encode();
    for line in [
        "agentd_turn_steps_bucket{le=\"1\"} 0\n",
        "agentd_turn_steps_bucket{le=\"2\"} 1\n",
        "agentd_turn_steps_sum 2.0\n",
        "agentd_turn_steps_count 1\n",
        "agentd_turn_overhead_seconds_count 1\n",
        "agentd_active_turns 0\n",
        "agentd_active_streams 0\n",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    assert!(!out.contains("{}"), "{out}");
}

#[test]
fn open_streams_are_counted_while_held() {
    let metrics = Metrics::default();
    let first = metrics.stream_opened();
    let second = metrics.stream_opened();
    assert!(metrics.encode().contains("agentd_active_streams 2\n"));
    drop(first);
    assert!(metrics.encode().contains("agentd_active_streams 1\n"));
    drop(second);
    assert!(metrics.encode().contains("agentd_active_streams 0\n"));
}

#[test]
fn label_values_are_escaped() {
    let metrics = Metrics::default();
    metrics.record_model_call("openai", "a\\b\"c\nd", ModelOutcome::Ok, SHORT);
    let out = metrics.encode();
    assert!(
        out.contains(
            r#"agentd_model_calls_total{provider="openai",model="a\\b\"c\nd",outcome="ok"} 1"#
        ),
        "{out}"
    );
    assert!(
        out.lines()
            .all(|line| line.starts_with('#') || line.starts_with("agentd_")),
        "a label value broke a line:\n{out}"
    );
}

#[test]
fn open_labels_overflow_into_other_and_closed_ones_do_not() {
    let metrics = Metrics::default();
    let limits = LabelLimits {
        max_values: 2,
        max_bytes: 10,
    };
    metrics.configure(limits, "m1");
    for model in ["m2", "m3", "m4", "a-very-long-model-name", "m1"] {
        metrics.record_model_call("openai", model, ModelOutcome::Ok, SHORT);
    }
    metrics.record_model_call("custom", "m2", ModelOutcome::Cancelled, SHORT);
    let out = metrics.encode();
    for line in [
        r#"agentd_model_calls_total{provider="openai",model="m1",outcome="ok"} 1"#,
        r#"agentd_model_calls_total{provider="openai",model="m2",outcome="ok"} 1"#,
        r#"agentd_model_calls_total{provider="openai",model="other",outcome="ok"} 3"#,
        r#"agentd_model_calls_total{provider="custom",model="m2",outcome="cancelled"} 1"#,
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    assert_eq!(out.matches("agentd_model_calls_total{").count(), 4, "{out}");
}

#[test]
fn made_up_tools_and_kinds_past_the_limits_are_other() {
    let metrics = Metrics::default();
    let limits = LabelLimits {
        max_values: 2,
        max_bytes: 16,
    };
    metrics.configure(limits, "m");
    metrics.record_tool_call(Some("alpha"), "ok", SHORT);
    metrics.record_tool_call(None, "unknown_tool", SHORT);
    metrics.record_tool_call(Some("beta"), "timeout", SHORT);
    metrics.record_tool_call(Some("gamma"), "ok", SHORT);
    let out = metrics.encode();
    for line in [
        r#"agentd_tool_calls_total{tool="alpha",outcome="ok"} 1"#,
        r#"agentd_tool_calls_total{tool="other",outcome="unknown_tool"} 1"#,
        r#"agentd_tool_calls_total{tool="beta",outcome="other"} 1"#,
        r#"agentd_tool_calls_total{tool="other",outcome="ok"} 1"#,
        r#"agentd_tool_call_duration_seconds_count{tool="alpha",outcome="ok"} 1"#,
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    assert_eq!(out.matches("agentd_tool_calls_total{").count(), 4, "{out}");
}
