//! Figures from a run (percentiles, per-round-trip overhead, CPU per round trip) and the
//! printed tables, plus the targets they are checked against.

use crate::load::{Outcome, Sample};

/// Counters read from the processes at the edges of the measured window.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counters {
    pub mock_busy_ns: u64,
    pub mock_requests: u64,
    /// utime+stime of the measured processes together (agentd's instances, or the mock for
    /// the floor).
    pub cpu_ticks: u64,
    /// utime+stime of each measured process, in instance order.
    pub cpu_ticks_each: Vec<u64>,
    /// utime+stime of the MCP server processes the turns call, when there are some.
    pub tool_server_cpu_ticks: Option<u64>,
    /// CPU of the PostgreSQL server (its postmaster and children), when it is measured.
    pub database_cpu_ticks: Option<u64>,
}

/// Latency percentiles in nanoseconds.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Percentiles {
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

pub(crate) fn percentiles(mut values: Vec<u64>) -> Percentiles {
    values.sort_unstable();
    let at = |p: f64| percentile(&values, p).unwrap_or_default();
    Percentiles {
        p50: at(50.0),
        p99: at(99.0),
        max: at(100.0),
    }
}

/// Nearest-rank percentile (`p` in 0..=100) of sorted values; `None` when empty.
pub(crate) fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// One side (agentd or floor) of one scenario at one concurrency.
#[derive(Debug, Clone, Default)]
pub(crate) struct Side {
    pub ops_per_sec: f64,
    pub round_trips_per_sec: f64,
    pub latency: Percentiles,
    pub first_byte: Option<Percentiles>,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Mean mock time per model call in the window (from `busy_ns_total`).
    pub busy_per_call_ns: f64,
    /// (latency - busy_per_call * calls) / calls, per request.
    pub overhead_per_rt: Percentiles,
    /// CPU of the measured process per round trip (per operation when the operation calls
    /// no model): agentd's, or for the floor the mock's own.
    pub cpu_per_rt_ns: Option<f64>,
    /// CPU of the MCP server process per tool call (one per turn), when the turns call one.
    pub tool_server_cpu_per_call_ns: Option<f64>,
    /// CPU of the PostgreSQL server per round trip, when it is measured.
    pub database_cpu_per_rt_ns: Option<f64>,
    /// Each agentd instance's share, when the load was spread over more than one.
    pub per_instance: Vec<crate::instance_report::InstanceFigures>,
}

pub(crate) fn side(
    outcome: &Outcome,
    calls: u64,
    before: &Counters,
    after: &Counters,
    ticks_per_sec: u64,
    measure_cpu: bool,
) -> Side {
    let secs = outcome.window.as_secs_f64();
    let ops = outcome.samples.len() as f64;
    let mock_calls = after.mock_requests.saturating_sub(before.mock_requests);
    let busy = after.mock_busy_ns.saturating_sub(before.mock_busy_ns);
    let busy_per_call = if mock_calls == 0 {
        0.0
    } else {
        busy as f64 / mock_calls as f64
    };
    let per = calls.max(1);
    let overhead = outcome
        .samples
        .iter()
        .map(|s: &Sample| {
            let floor = busy_per_call * calls as f64;
            ((s.total_ns as f64 - floor).max(0.0) / per as f64) as u64
        })
        .collect();
    let firsts: Vec<u64> = outcome.samples.iter().filter_map(|s| s.first_ns).collect();
    let ticks_ns = |ticks: u64| ticks as f64 * 1e9 / ticks_per_sec as f64;
    let cpu = measure_cpu.then(|| {
        let ticks = after.cpu_ticks.saturating_sub(before.cpu_ticks);
        let units = (ops * per as f64).max(1.0);
        ticks_ns(ticks) / units
    });
    let tool_server_cpu = before
        .tool_server_cpu_ticks
        .zip(after.tool_server_cpu_ticks)
        .map(|(b, a)| ticks_ns(a.saturating_sub(b)) / ops.max(1.0));
    let database_cpu = before
        .database_cpu_ticks
        .zip(after.database_cpu_ticks)
        .map(|(b, a)| ticks_ns(a.saturating_sub(b)) / (ops * per as f64).max(1.0));
    let per_instance = if measure_cpu && after.cpu_ticks_each.len() > 1 {
        crate::instance_report::figures(outcome, calls, before, after, ticks_per_sec)
    } else {
        Vec::new()
    };
    Side {
        ops_per_sec: ops / secs,
        round_trips_per_sec: ops * calls as f64 / secs,
        latency: percentiles(outcome.samples.iter().map(|s| s.total_ns).collect()),
        first_byte: (!firsts.is_empty()).then(|| percentiles(firsts)),
        errors: outcome.errors,
        first_error: outcome.first_error.clone(),
        busy_per_call_ns: busy_per_call,
        overhead_per_rt: percentiles(overhead),
        cpu_per_rt_ns: cpu,
        tool_server_cpu_per_call_ns: tool_server_cpu,
        database_cpu_per_rt_ns: database_cpu,
        per_instance,
    }
}

/// A table row: agentd and, when the scenario has one, the floor.
pub(crate) struct Row {
    pub clients: usize,
    pub agentd: Side,
    pub floor: Option<Side>,
}

pub(crate) fn ms(ns: u64) -> String {
    format!("{:.2}", ns as f64 / 1e6)
}

pub(crate) fn us(ns: f64) -> String {
    format!("{:.0}", ns / 1e3)
}

/// Prints one scenario's table.
pub(crate) fn print_table(title: &str, calls: u64, rows: &[Row]) {
    println!("\n### {title}\n");
    let stream = rows.iter().any(|r| r.agentd.first_byte.is_some());
    let mut header = vec![
        "clients", "req/s", "RT/s", "p50 ms", "p99 ms", "max ms", "err",
    ];
    if stream {
        header.extend(["TTFB p50", "TTFB p99"]);
    }
    if calls > 0 {
        header.extend(["mock µs/call", "ovh/RT p50 µs", "ovh/RT p99 µs"]);
    }
    header.push(if calls > 0 {
        "CPU µs/RT"
    } else {
        "CPU µs/op"
    });
    let tool_server = rows
        .iter()
        .any(|r| r.agentd.tool_server_cpu_per_call_ns.is_some());
    if tool_server {
        header.push("MCP server CPU µs/call");
    }
    let database = rows
        .iter()
        .any(|r| r.agentd.database_cpu_per_rt_ns.is_some());
    if database {
        header.push("postgres CPU µs/RT");
    }
    let instances = crate::instance_report::count(rows);
    if instances > 1 {
        header.extend(crate::instance_report::HEADER);
    }
    let has_floor = rows.iter().any(|r| r.floor.is_some());
    if has_floor {
        header.extend(["floor req/s", "floor p50", "floor p99"]);
        if stream {
            header.push("floor TTFB p50");
        }
        header.push("mock CPU µs/call");
        header.extend(["req/s ratio", "p50 ratio"]);
    }
    println!("| {} |", header.join(" | "));
    println!("|{}", "---:|".repeat(header.len()));
    for row in rows {
        let a = &row.agentd;
        let mut cells = vec![
            row.clients.to_string(),
            format!("{:.0}", a.ops_per_sec),
            if calls > 0 {
                format!("{:.0}", a.round_trips_per_sec)
            } else {
                "-".into()
            },
            ms(a.latency.p50),
            ms(a.latency.p99),
            ms(a.latency.max),
            a.errors.to_string(),
        ];
        if stream {
            let fb = a.first_byte.unwrap_or_default();
            cells.extend([ms(fb.p50), ms(fb.p99)]);
        }
        if calls > 0 {
            cells.extend([
                us(a.busy_per_call_ns),
                us(a.overhead_per_rt.p50 as f64),
                us(a.overhead_per_rt.p99 as f64),
            ]);
        }
        cells.push(a.cpu_per_rt_ns.map(us).unwrap_or_else(|| "-".into()));
        if tool_server {
            cells.push(
                a.tool_server_cpu_per_call_ns
                    .map(us)
                    .unwrap_or_else(|| "-".into()),
            );
        }
        if database {
            cells.push(
                a.database_cpu_per_rt_ns
                    .map(us)
                    .unwrap_or_else(|| "-".into()),
            );
        }
        if instances > 1 {
            cells.extend(crate::instance_report::cells(&a.per_instance, instances));
        }
        if has_floor {
            match &row.floor {
                Some(f) => {
                    cells.extend([
                        format!("{:.0}", f.ops_per_sec),
                        ms(f.latency.p50),
                        ms(f.latency.p99),
                    ]);
                    if stream {
                        cells.push(ms(f.first_byte.unwrap_or_default().p50));
                    }
                    cells.push(f.cpu_per_rt_ns.map(us).unwrap_or_else(|| "-".into()));
                    let ratio = |x: f64, y: f64| {
                        if y > 0.0 {
                            format!("{:.2}", x / y)
                        } else {
                            "-".into()
                        }
                    };
                    cells.push(ratio(a.ops_per_sec, f.ops_per_sec));
                    cells.push(ratio(a.latency.p50 as f64, f.latency.p50 as f64));
                }
                None => cells.extend(std::iter::repeat_n(
                    "-".to_owned(),
                    header.len() - cells.len(),
                )),
            }
        }
        println!("| {} |", cells.join(" | "));
    }
    for row in rows {
        let sides = [Some(&row.agentd), row.floor.as_ref()];
        for (side, name) in sides.into_iter().zip(["agentd", "floor"]) {
            if let Some(error) = side.and_then(|s| s.first_error.as_ref()) {
                println!("  first error ({name}, {} clients): {error}", row.clients);
            }
        }
    }
}

/// One target line: what, the number, the limit, pass or miss.
pub(crate) fn print_target(what: &str, value: Option<f64>, limit: f64, at_most: bool, unit: &str) {
    let (shown, verdict) = match value {
        Some(v) => {
            let pass = if at_most { v <= limit } else { v >= limit };
            (format!("{v:.3} {unit}"), if pass { "pass" } else { "MISS" })
        }
        None => ("not measured".to_owned(), "-"),
    };
    let relation = if at_most { "≤" } else { "≥" };
    println!("| {what} | {shown} | {relation} {limit} {unit} | {verdict} |");
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50.0), Some(50));
        assert_eq!(percentile(&values, 99.0), Some(99));
        assert_eq!(percentile(&values, 100.0), Some(100));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[3, 9], 50.0), Some(3));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
