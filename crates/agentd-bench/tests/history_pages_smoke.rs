//! Runs `agentd-bench history-pages` on a short history against real `agentd` and
//! `mock-model` processes and checks that every reading got the whole history back.

mod support;

#[test]
fn every_reading_pages_through_the_whole_history() {
    let Some(stdout) = support::run_bench(&["history-pages", "--turns", "12", "--page", "5"])
    else {
        return;
    };
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .filter(|line| line.starts_with("| ") && !line.starts_with("| read "))
        .map(|line| line.trim_matches('|').split('|').map(str::trim).collect())
        .collect();
    let labels: Vec<&str> = rows.iter().map(|row| row[0]).collect();
    assert_eq!(
        labels,
        ["held from the turns", "after a restart", "again"],
        "{stdout}"
    );
    for row in &rows {
        // 12 turns of 2 entries in pages of 5: four full pages and one of 4.
        assert_eq!((row[1], row[2]), ("24", "5"), "{stdout}");
        row[5]
            .parse::<f64>()
            .expect("agentd CPU per page, a number");
    }
}
