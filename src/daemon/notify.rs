//! The systemd notify protocol: `READY=1`, `RELOADING=1`, `STOPPING=1`, `STATUS=` and watchdog
//! pings sent as datagrams to `$NOTIFY_SOCKET`. Without that variable every call is a no-op.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::store::Store;

/// Where the service manager listens.
#[derive(Debug, Clone)]
enum Target {
    Path(PathBuf),
    Abstract(Vec<u8>),
}

/// A connection to the service manager; cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct Notifier {
    target: Option<Arc<Target>>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET` (a path, or `@name` for an abstract socket).
    pub(crate) fn from_env() -> Self {
        let target = std::env::var_os("NOTIFY_SOCKET")
            .filter(|s| !s.is_empty())
            .map(|s| {
                let bytes = s.as_encoded_bytes();
                match bytes.strip_prefix(b"@") {
                    Some(name) => Target::Abstract(name.to_vec()),
                    None => Target::Path(PathBuf::from(s)),
                }
            });
        Self {
            target: target.map(Arc::new),
        }
    }

    /// True when a service manager listens.
    pub(crate) fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends `state` (newline-separated `KEY=VALUE` lines). Failures are logged, never fatal.
    pub(crate) fn send(&self, state: &str) {
        let Some(target) = &self.target else {
            return;
        };
        if let Err(error) = send_to(target, state) {
            tracing::warn!(%error, "cannot notify the service manager");
        }
    }

    pub(crate) fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    pub(crate) fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=draining");
    }

    /// `RELOADING=1` with the `MONOTONIC_USEC` systemd 253+ expects alongside it.
    pub(crate) fn reloading(&self) {
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading",
            monotonic_usec()
        ));
    }

    pub(crate) fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    /// Starts the watchdog task when systemd asked for one (`WATCHDOG_USEC`, and
    /// `WATCHDOG_PID` unset or ours). Every half interval it pings, but only after the store
    /// answers within `check_timeout`; a wedged daemon stops pinging and systemd restarts it.
    /// A store shared with other instances (PostgreSQL) is a server of its own: when it does not
    /// answer, restarting agentd would not bring it back, so the ping goes on (the task running
    /// shows the daemon is not wedged) while `/readyz` reports the store down.
    pub(crate) fn spawn_watchdog(
        &self,
        store: Arc<dyn Store>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        if !self.enabled() {
            return None;
        }
        let interval = watchdog_interval(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        )?;
        let notifier = self.clone();
        let check_timeout = interval.min(Duration::from_secs(5));
        let external = store.shared();
        Some(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if external {
                    notifier.watchdog();
                    continue;
                }
                notifier
                    .watchdog_if_healthy(store.ping(), check_timeout)
                    .await;
            }
        }))
    }

    /// Pings the watchdog when `check` succeeds within `timeout`; logs and skips it otherwise.
    /// Returns whether it pinged.
    pub(crate) async fn watchdog_if_healthy<E: std::fmt::Display>(
        &self,
        check: impl Future<Output = Result<(), E>>,
        timeout: Duration,
    ) -> bool {
        match tokio::time::timeout(timeout, check).await {
            Ok(Ok(())) => {
                self.watchdog();
                true
            }
            Ok(Err(error)) => {
                tracing::error!(%error, "watchdog: store does not answer; not pinging");
                false
            }
            Err(_) => {
                tracing::error!(
                    timeout_ms = timeout.as_millis() as u64,
                    "watchdog: store check timed out; not pinging"
                );
                false
            }
        }
    }
}

/// Half the watchdog period, when the watchdog is meant for this process.
pub(crate) fn watchdog_interval(
    usec: Option<&str>,
    pid: Option<&str>,
    own_pid: u32,
) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|u| *u > 0)?;
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok() != Some(own_pid)
    {
        return None;
    }
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

fn send_to(target: &Target, state: &str) -> std::io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    match target {
        Target::Path(path) => socket.send_to(state.as_bytes(), path)?,
        Target::Abstract(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(state.as_bytes(), &addr)?
        }
    };
    Ok(())
}

fn one_line(text: &str) -> String {
    text.replace('\n', " ")
}

/// CLOCK_MONOTONIC in microseconds.
fn monotonic_usec() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(now.tv_nsec).unwrap_or(0);
    secs * 1_000_000 + nanos / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_interval_is_half_and_respects_the_pid() {
        assert_eq!(
            watchdog_interval(Some("200000"), None, 7),
            Some(Duration::from_millis(100))
        );
        assert_eq!(
            watchdog_interval(Some("200000"), Some("7"), 7),
            Some(Duration::from_millis(100))
        );
        assert_eq!(watchdog_interval(Some("200000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(None, None, 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("x"), None, 7), None);
    }

    #[test]
    fn datagrams_reach_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let receiver = UnixDatagram::bind(&path).unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let notifier = Notifier {
            target: Some(Arc::new(Target::Path(path))),
        };
        notifier.ready("listening on x\ny");
        let mut buf = [0u8; 256];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=listening on x y");
        notifier.reloading();
        let n = receiver.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(text.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{text}");
        let usec: u64 = text.lines().nth(1).unwrap()["MONOTONIC_USEC=".len()..]
            .parse()
            .unwrap();
        assert!(usec > 0);
    }

    #[test]
    fn datagrams_reach_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("agentd-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let receiver = UnixDatagram::bind_addr(&addr).unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let notifier = Notifier {
            target: Some(Arc::new(Target::Abstract(name.into_bytes()))),
        };
        notifier.stopping();
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1\nSTATUS=draining");
    }

    #[tokio::test]
    async fn a_failing_or_hanging_health_check_skips_the_ping() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let receiver = UnixDatagram::bind(&path).unwrap();
        receiver.set_nonblocking(true).unwrap();
        let notifier = Notifier {
            target: Some(Arc::new(Target::Path(path))),
        };
        let short = Duration::from_millis(50);
        let hung = std::future::pending::<Result<(), String>>();
        assert!(!notifier.watchdog_if_healthy(hung, short).await);
        let failed = async { Err::<(), _>("database is locked".to_owned()) };
        assert!(!notifier.watchdog_if_healthy(failed, short).await);
        let mut buf = [0u8; 64];
        assert!(
            receiver.recv(&mut buf).is_err(),
            "nothing sent while unhealthy"
        );
        let healthy = async { Ok::<(), String>(()) };
        assert!(notifier.watchdog_if_healthy(healthy, short).await);
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1");
    }

    #[test]
    fn without_a_socket_nothing_is_sent() {
        let notifier = Notifier::default();
        assert!(!notifier.enabled());
        notifier.ready("nothing");
    }
}
