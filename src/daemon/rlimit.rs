//! The open-file limit: every open chat stream holds two sockets (the client's and the one to
//! the model), so the daemon raises its soft limit to the hard limit at start.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the limit now in force.
pub fn raise_open_files() -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return limit.current;
    }
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => limit.maximum,
        Err(error) => {
            tracing::warn!(%error, "cannot raise the open-file limit");
            limit.current
        }
    }
}

/// Raises the hard `RLIMIT_NOFILE` to `wanted` when it is lower (only a process with
/// CAP_SYS_RESOURCE may); the error says why it stayed. The soft limit is left as it is.
pub fn raise_hard_open_files(wanted: u64) -> rustix::io::Result<()> {
    let limit = getrlimit(Resource::Nofile);
    if limit.maximum.is_none_or(|hard| hard >= wanted) {
        return Ok(());
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.current,
            maximum: Some(wanted),
        },
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let now = super::raise_open_files();
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        assert_eq!(now, limit.current);
        assert_eq!(limit.current, limit.maximum);
    }
}
