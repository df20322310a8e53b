//! The crash campaign's SMTP relay: the smtp plugin's test server (`smtp_server.py`, aiosmtpd)
//! found on disk and run as a process on a free loopback port, and its spool of events read
//! back (`data_start`, `message`, `data_aborted`, one JSON object per line).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// The server script, from the repository root.
const SCRIPT_IN_REPO: &str = "plugins/smtp/tests/smtp_server.py";

const INSTALL_HINT: &str = "the SMTP relay needs python3 with aiosmtpd and cryptography: \
    `python3 -m pip install -r .ci/requirements.txt` (PYTHON selects the interpreter)";

/// The script: `explicit` when given, else [`SCRIPT_IN_REPO`] above the current directory or
/// above the bench executable.
pub(crate) fn locate(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = explicit {
        return path
            .is_file()
            .then(|| path.to_path_buf())
            .ok_or_else(|| format!("{}: no such file", path.display()));
    }
    let cwd = std::env::current_dir().ok();
    let exe_dir = crate::procs::bin_dir().ok();
    [cwd, exe_dir]
        .into_iter()
        .flatten()
        .flat_map(|start| {
            start
                .ancestors()
                .map(|dir| dir.join(SCRIPT_IN_REPO))
                .collect::<Vec<_>>()
        })
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            format!(
                "no {SCRIPT_IN_REPO} above the current directory or the bench executable; \
                 run from the repository or pass --smtp-server PATH"
            )
        })
}

/// A running relay; killed on drop.
pub(crate) struct SmtpRelay {
    child: Child,
    pub port: u16,
    spool: PathBuf,
}

impl SmtpRelay {
    /// Starts `script` answering each message `data_delay` after its data arrived, spooling
    /// into `spool`; waits for its `READY <port>` line.
    pub(crate) fn start(script: &Path, spool: &Path, data_delay: Duration) -> Result<Self, String> {
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = Command::new(python)
            .arg(script)
            .args(["--port", "0", "--spool"])
            .arg(spool)
            .arg("--data-delay")
            .arg(format!("{:.3}", data_delay.as_secs_f64()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the SMTP relay ({e}); {INSTALL_HINT}"))?;
        let stdout = child.stdout.take().ok_or("SMTP relay: no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        let Some(port) = line
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse().ok())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "the SMTP relay did not start (it printed {line:?}); {INSTALL_HINT}"
            ));
        };
        Ok(Self {
            child,
            port,
            spool: spool.to_path_buf(),
        })
    }

    /// Every event spooled so far, in order.
    pub(crate) fn events(&self) -> Result<Vec<Value>, String> {
        let text = match std::fs::read_to_string(&self.spool) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(format!("{}: {e}", self.spool.display())),
        };
        text.lines()
            .map(|line| serde_json::from_str(line).map_err(|e| format!("spool line: {e}")))
            .collect()
    }
}

impl Drop for SmtpRelay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a spooled event is about a message to `recipient`.
pub(crate) fn is_for(event: &Value, recipient: &str) -> bool {
    event["rcpt_tos"]
        .as_array()
        .is_some_and(|to| to.iter().any(|address| address == recipient))
}
