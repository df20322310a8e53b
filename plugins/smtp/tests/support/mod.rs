//! Test harness: runs `tests/smtp_server.py` (aiosmtpd) as a real SMTP server on a free
//! loopback port, generates its certificates, and reads what it received from its spool file.
//!
//! The server needs python3 with `aiosmtpd` and `cryptography`; when they are missing the tests
//! fail with instructions instead of skipping.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

const INSTALL_HINT: &str = "the SMTP integration tests need python3 with aiosmtpd and \
    cryptography: `pip install aiosmtpd cryptography` (set PYTHON to choose the interpreter)";

fn python() -> Command {
    Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
}

/// The server script, from this crate's tests or from the workspace root's (the daemon's own
/// tests include this module too).
fn script() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    ["tests/smtp_server.py", "plugins/smtp/tests/smtp_server.py"]
        .iter()
        .map(|p| root.join(p))
        .find(|p| p.exists())
        .unwrap_or_else(|| root.join("tests/smtp_server.py"))
}

/// A fresh directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(label: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "agentd-smtp-{label}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Certificates made by the script: a CA, a server certificate it signed for 127.0.0.1 and
/// localhost, and an unrelated CA.
pub(crate) struct Certs {
    pub ca: PathBuf,
    pub wrong_ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub(crate) fn gen_certs(dir: &TempDir) -> Certs {
    let out = python()
        .arg(script())
        .arg("--gen-certs")
        .arg(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}); {INSTALL_HINT}"));
    assert!(
        out.status.success(),
        "certificate generation failed: {}\n{INSTALL_HINT}",
        String::from_utf8_lossy(&out.stderr)
    );
    Certs {
        ca: dir.join("ca.pem"),
        wrong_ca: dir.join("wrong-ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    }
}

/// A running aiosmtpd server; killed on drop.
pub(crate) struct SmtpServer {
    child: Child,
    pub port: u16,
    spool: PathBuf,
}

impl SmtpServer {
    /// Starts the server with extra `args`, spooling into `dir`, and waits for `READY <port>`.
    pub(crate) fn start(dir: &TempDir, args: &[&str]) -> Self {
        let spool = dir.join("spool.jsonl");
        let mut child = python()
            .arg(script())
            .args(["--port", "0", "--spool"])
            .arg(&spool)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start python3 ({e}); {INSTALL_HINT}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        let port = line
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse().ok());
        let Some(port) = port else {
            let _ = child.kill();
            let mut stderr = String::new();
            if let Some(mut err) = child.stderr.take() {
                let _ = err.read_to_string(&mut stderr);
            }
            let _ = child.wait();
            panic!("SMTP test server did not start (stdout: {line:?}):\n{stderr}\n{INSTALL_HINT}");
        };
        Self { child, port, spool }
    }

    /// Every spooled event, in order.
    pub(crate) fn events(&self) -> Vec<Value> {
        match std::fs::read_to_string(&self.spool) {
            Ok(text) => text
                .lines()
                .map(|l| serde_json::from_str(l).expect("spool line is JSON"))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Spooled events of one kind (`message`, `mail`, `rcpt`).
    pub(crate) fn events_of(&self, kind: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == kind)
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port that refuses connections for as long as this value lives.
///
/// The socket is bound but never listens, so a connection attempt is refused, and no other
/// socket can bind the port meanwhile. A port that is merely bound and released can be handed
/// at once to another test's listener, which would then answer in its place.
pub(crate) struct ClosedPort(tokio::net::TcpSocket);

impl ClosedPort {
    pub(crate) fn new() -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind");
        Self(socket)
    }

    pub(crate) fn port(&self) -> u16 {
        self.0.local_addr().expect("addr").port()
    }
}

/// The unfolded value of header `name` in a raw message, if present.
pub(crate) fn header(raw: &str, name: &str) -> Option<String> {
    let head = raw
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .replace("\r\n ", " ")
        .replace("\r\n\t", " ");
    head.split("\r\n").find_map(|line| {
        let (field, value) = line.split_once(':')?;
        field
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}
