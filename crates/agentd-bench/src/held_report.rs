//! Printing the held-streams scenario: its table and its rows in the targets table.

use crate::held::{HOLD, Held, RECOVERY_WAIT, SETTLE_WAIT};
use crate::report;

fn kb(value: Option<u64>) -> String {
    value.map_or_else(|| "unknown".into(), |kb| format!("{kb} kB"))
}

fn per_kb(value: Option<f64>) -> String {
    value.map_or_else(|| "unknown".into(), |v| format!("{v:.1} KB"))
}

fn count(value: Option<u64>) -> String {
    value.map_or_else(|| "unknown".into(), |n| n.to_string())
}

/// Prints the scenario's table.
pub(crate) fn print(held: &Held) {
    println!(
        "\n### held: {} streaming chats held open at once (mock latency {} s, one per session)\n",
        held.attempted,
        HOLD.as_secs()
    );
    if let Some(clamp) = &held.clamp {
        println!("NOTE: {clamp}\n");
    }
    println!("| measure | value |");
    println!("|---|---:|");
    let rows = [
        ("streams requested", held.requested.to_string()),
        ("streams opened", held.attempted.to_string()),
        (
            "confirmed open (agentd_active_streams)",
            held.confirmed.to_string(),
        ),
        ("200 heads at the client", held.heads.to_string()),
        (
            "model calls waiting at the mock",
            held.mock_in_flight.to_string(),
        ),
        ("errors", held.errors.to_string()),
        ("time to all open", format!("{:.1} s", held.open_secs)),
        ("agentd VmRSS before", kb(held.rss_before_kb)),
        (
            "agentd VmRSS with the first half open",
            format!("{} ({} streams)", kb(held.rss_half_kb), held.confirmed_half),
        ),
        ("agentd VmRSS with all open", kb(held.rss_after_kb)),
        (
            "agentd memory per open stream (all vs before)",
            per_kb(held.kb_per_stream()),
        ),
        (
            "agentd memory per extra stream (all vs half)",
            per_kb(held.kb_per_stream_marginal()),
        ),
        (
            "agentd fds before → all open (peak)",
            format!(
                "{} → {} ({})",
                count(held.fds_before),
                count(held.fds_after),
                held.fds_peak
            ),
        ),
        (
            "recovered (0 streams, 0 turns) after hang-up",
            held.recovered_in.map_or_else(
                || format!("NO, not within {} s", RECOVERY_WAIT.as_secs()),
                |d| format!("{:.2} s", d.as_secs_f64()),
            ),
        ),
        ("agentd VmRSS after recovery", kb(held.rss_recovered_kb)),
        ("agentd fds after recovery", count(held.fds_recovered)),
        (
            "streamed turn on a held session after recovery",
            match &held.serves_after {
                Some(Ok(())) => "ok".into(),
                Some(Err(e)) => format!("FAILED: {e}"),
                None => "not run".into(),
            },
        ),
        (
            &format!("agentd VmRSS {} s after hang-up", SETTLE_WAIT.as_secs()),
            kb(held.rss_settled_kb),
        ),
    ];
    for (what, value) in rows {
        println!("| {what} | {value} |");
    }
    if let Some(error) = &held.first_error {
        println!("  first error: {error}");
    }
}

/// The held-streams rows of the targets table; `None` when the run failed.
pub(crate) fn print_targets(held: Option<&Held>) {
    report::print_target(
        "held streams: agentd memory per open stream",
        held.and_then(Held::kb_per_stream),
        20.0,
        true,
        "KB",
    );
    report::print_target(
        "held streams: streams held open at once",
        held.map(|h| h.confirmed as f64),
        10_000.0,
        false,
        "streams",
    );
    if let Some(clamp) = held.and_then(|h| h.clamp.as_ref()) {
        println!("\nheld streams {clamp}");
    }
}
