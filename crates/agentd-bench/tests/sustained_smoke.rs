//! Runs `agentd-bench sustained --smoke` (200 sessions, 8 clients, three 1 s windows per
//! kind) against real `agentd` and `mock-model` processes and checks the tables it prints.
//!
//! The binaries are found as `support` says.

mod support;

const COLUMNS: [&str; 20] = [
    "window",
    "t s",
    "RT/s",
    "CPU µs/RT",
    "store µs/RT",
    "mock µs/RT",
    "p50 ms",
    "p99 ms",
    "err",
    "RSS MB",
    "hist hit %",
    "all hit %",
    "evictions",
    "mirror MB",
    "reads/turn",
    "db MB",
    "wal MB",
    "hist mean",
    "hist/turn",
    "new",
];

/// Where a column stands in a row.
fn column(name: &str) -> usize {
    COLUMNS
        .iter()
        .position(|c| *c == name)
        .expect("a column of the table")
}

/// The bench's stdout for `sustained --smoke` with `extra` options; `None` (after saying so)
/// when the binaries it starts are not built.
fn run_smoke(extra: &[&str]) -> Option<String> {
    let mut args = vec!["sustained", "--smoke"];
    args.extend_from_slice(extra);
    support::run_bench(&args)
}

/// The cells of one markdown table row.
fn cells(line: &str) -> Vec<String> {
    line.trim()
        .trim_matches('|')
        .split('|')
        .map(|cell| cell.trim().to_owned())
        .collect()
}

/// Each table of the output: its title and its data rows.
fn tables(stdout: &str) -> Vec<(String, Vec<Vec<String>>)> {
    let mut found: Vec<(String, Vec<Vec<String>>)> = Vec::new();
    let mut lines = stdout.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(title) = line.strip_prefix("### ") {
            found.push((title.to_owned(), Vec::new()));
            continue;
        }
        let Some((_, rows)) = found.last_mut() else {
            continue;
        };
        if line.starts_with("| window ") {
            assert_eq!(cells(line), COLUMNS, "header");
            lines.next();
            while let Some(row) = lines.peek().filter(|l| l.starts_with("| ")) {
                rows.push(cells(row));
                lines.next();
            }
        }
    }
    found
}

fn check_table(title: &str, rows: &[Vec<String>], kind: &str) {
    assert!(title.starts_with(&format!("sustained {kind}:")), "{title}");
    assert_eq!(rows.len(), 3, "three 1 s windows in 3 s: {rows:?}");
    let mut round_trips = 0.0;
    for row in rows {
        assert_eq!(row.len(), COLUMNS.len(), "{row:?}");
        let rate: f64 = row[column("RT/s")].parse().expect("RT/s is a number");
        round_trips += rate;
        // "store µs/RT" is a number only if agentd's store threads have the name the bench
        // looks for.
        for cpu in ["CPU µs/RT", "store µs/RT", "mock µs/RT"] {
            let cell = &row[column(cpu)];
            assert!(
                rate == 0.0 || cell.parse::<f64>().is_ok(),
                "{cpu} is a number in a window with round trips: {row:?}"
            );
        }
        let db = &row[column("db MB")];
        assert!(
            db.parse::<f64>().is_ok(),
            "agentd.db's size on SQLite: {row:?}"
        );
        assert_eq!(row[column("err")], "0", "{row:?}");
    }
    assert!(round_trips > 0.0, "{kind}: no round trips in {rows:?}");
    let mean: f64 = rows[2][column("hist mean")].parse().expect("hist mean");
    assert!(mean > 0.0, "histories grew: {rows:?}");
}

#[test]
fn round_robin_chat_then_tool_turns_on_one_agentd() {
    // Sessions never replaced, so the mean history only grows (a release build reaches the
    // default caps within the chat turns' three seconds).
    let Some(stdout) = run_smoke(&["--kind", "chat,tool", "--max-history", "0"]) else {
        return;
    };
    let tables = tables(&stdout);
    assert_eq!(tables.len(), 2, "{stdout}");
    check_table(&tables[0].0, &tables[0].1, "chat");
    check_table(&tables[1].0, &tables[1].1, "tool");
    // The tool turns continue the chat turns' histories on the same process.
    let mean = |rows: &[Vec<String>]| {
        rows[2][column("hist mean")]
            .parse::<f64>()
            .expect("hist mean")
    };
    assert!(mean(&tables[1].1) > mean(&tables[0].1), "{stdout}");
    assert!(
        stdout.contains("summary (chat): RT/s in the last"),
        "{stdout}"
    );
    // agentd holds as many entries as the bench counted: 2 per chat turn, 4 per tool turn.
    let check = stdout
        .lines()
        .find_map(|line| line.strip_prefix("history check: session "))
        .expect("a history check line");
    let numbers: Vec<&str> = check
        .split_whitespace()
        .filter(|word| word.parse::<u64>().is_ok())
        .collect();
    assert_eq!(numbers.len(), 2, "{check}");
    assert_eq!(numbers[0], numbers[1], "{check}");
    assert_ne!(numbers[0], "0", "{check}");
    assert!(
        stdout.contains("summary (tool): RT/s in the last"),
        "{stdout}"
    );
}

#[test]
fn zipf_pattern_prints_its_seed() {
    let Some(stdout) = run_smoke(&["--pattern", "zipf", "--seed", "7"]) else {
        return;
    };
    assert!(
        stdout.contains("zipf s = 1 over the sessions (seed 7"),
        "{stdout}"
    );
    let tables = tables(&stdout);
    assert_eq!(tables.len(), 1, "{stdout}");
    check_table(&tables[0].0, &tables[0].1, "chat");
}

#[test]
fn sessions_are_replaced_when_their_history_reaches_its_cap() {
    // Caps of 3 to 6 entries: every session is replaced after two or three chat turns.
    let Some(stdout) = run_smoke(&["--max-history", "6"]) else {
        return;
    };
    let tables = tables(&stdout);
    assert_eq!(tables.len(), 1, "{stdout}");
    check_table(&tables[0].0, &tables[0].1, "chat");
    let rows = &tables[0].1;
    let replaced: u64 = rows
        .iter()
        .map(|row| row[column("new")].parse::<u64>().expect("new is a count"))
        .sum();
    assert!(replaced > 0, "no session was replaced: {stdout}");
    for row in rows {
        let held: f64 = row[column("hist/turn")].parse().expect("hist/turn");
        assert!(held <= 4.0, "a turn started past its cap: {row:?}");
    }
    assert!(
        stdout.contains("a session is replaced by a new one"),
        "{stdout}"
    );
}
