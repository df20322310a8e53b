//! Open-file limits for the held-streams run: raising this process's RLIMIT_NOFILE (children
//! inherit it) with the daemon's own code ([`agentd::bench::raise_open_files`]), and reading
//! limits and open descriptors of any process from `/proc`.

/// RLIMIT_NOFILE of a process: (soft, hard). `None` for unlimited or unreadable.
pub(crate) fn open_files_limit(pid: u32) -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut numbers = line["Max open files".len()..]
        .split_whitespace()
        .map(|n| n.parse::<u64>().ok());
    Some((numbers.next()??, numbers.next()??))
}

/// Descriptors a process has open now.
pub(crate) fn open_fds(pid: u32) -> Option<u64> {
    let entries = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(entries.count() as u64)
}

/// What raising the limit did, to print.
pub(crate) struct Raised {
    pub soft: u64,
    pub hard: u64,
    /// Why the hard limit could not be raised to `wanted_hard`, when it could not.
    pub hard_refused: Option<String>,
}

/// Raises this process's soft RLIMIT_NOFILE to its hard limit, after trying to raise the hard
/// limit to `wanted_hard` (allowed with CAP_SYS_RESOURCE). Processes started afterwards inherit
/// the result.
pub(crate) fn raise_nofile(wanted_hard: u64) -> Result<Raised, String> {
    let me = std::process::id();
    let (_, hard) = open_files_limit(me).ok_or("cannot read /proc/self/limits")?;
    let hard_refused = agentd::bench::raise_hard_open_files(wanted_hard)
        .err()
        .map(|e| {
            format!(
                "hard limit {hard} kept, raising it to {wanted_hard} failed ({e}; needs CAP_SYS_RESOURCE)"
            )
        });
    agentd::bench::raise_open_files();
    let (soft, hard) = open_files_limit(me).ok_or("cannot read /proc/self/limits")?;
    Ok(Raised {
        soft,
        hard,
        hard_refused,
    })
}

/// [`raise_nofile`], printing the limits now in force.
pub(crate) fn raise_nofile_and_report(wanted_hard: u64) {
    match raise_nofile(wanted_hard) {
        Ok(raised) => {
            println!("open files: soft {}, hard {}", raised.soft, raised.hard);
            if let Some(refused) = raised.hard_refused {
                println!("open files: {refused}");
            }
        }
        Err(e) => println!("open files: limit not raised: {e}"),
    }
}

/// Streams that fit in one process's descriptors: its soft limit minus what it holds now minus
/// `margin`, divided by the descriptors each stream costs it.
pub(crate) fn streams_that_fit(pid: u32, per_stream: u64, margin: u64) -> Option<u64> {
    let (soft, _) = open_files_limit(pid)?;
    let open = open_fds(pid)?;
    Some(soft.saturating_sub(open + margin) / per_stream.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_limit_and_descriptors() {
        let me = std::process::id();
        let (soft, hard) = open_files_limit(me).expect("limits of this process");
        assert!(soft >= 3 && soft <= hard);
        let open = open_fds(me).expect("fds of this process");
        assert!(open >= 3, "stdin, stdout, stderr at least: {open}");
        let fit = streams_that_fit(me, 2, 10).expect("fit");
        assert!(fit <= (soft - 10) / 2);
    }
}
