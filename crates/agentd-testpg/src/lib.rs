//! A PostgreSQL server for agentd's tests: a private one started once per test binary
//! (initdb into a temporary directory owned by `postgres`, on a free loopback port, password
//! authentication), or the server `AGENTD_TEST_POSTGRES_URL` names (a superuser connection).
//! Each test gets a database of its own. A test may also start a server of its own that
//! accepts TLS connections only ([`TestServer::start_with_tls`], in `tls.rs`).
//!
//! The private server lives in a process-wide `OnceLock`, which is never dropped, so a small
//! watcher process started with it stops the server and removes its directory once the test
//! binary has exited, however it exits.

mod tls;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use tokio_postgres::config::Host;
use tokio_postgres::{Config, NoTls};

/// Where Debian installs each PostgreSQL major version (`<dir>/<version>/bin`).
const PG_VERSIONS: &str = "/usr/lib/postgresql";
const SUPERUSER: &str = "postgres";
const PASSWORD: &str = "agentd-test-password";
/// Connections each test store keeps at most.
pub const POOL_SIZE: usize = 4;

/// Where the tests' databases are created.
pub struct TestServer {
    host: String,
    port: u16,
    user: String,
    password: Option<String>,
    /// The database the admin connection uses to create the others.
    admin_database: String,
    /// Databases on a server this process did not start are dropped after their test.
    external: bool,
    /// The directory of the server's Unix socket, which the admin connection uses when set
    /// (a TLS-only server refuses plain TCP).
    socket_dir: Option<PathBuf>,
}

static SERVER: OnceLock<TestServer> = OnceLock::new();

fn server() -> &'static TestServer {
    SERVER.get_or_init(|| match std::env::var("AGENTD_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => external(&url),
        _ => start_private(None),
    })
}

fn external(url: &str) -> TestServer {
    let config: Config = url
        .parse()
        .expect("AGENTD_TEST_POSTGRES_URL is a connection URL");
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        other => panic!("AGENTD_TEST_POSTGRES_URL must name a TCP host, not {other:?}"),
    };
    TestServer {
        host,
        port: config.get_ports().first().copied().unwrap_or(5432),
        user: config.get_user().unwrap_or(SUPERUSER).to_owned(),
        password: config
            .get_password()
            .map(|password| String::from_utf8_lossy(password).into_owned()),
        admin_database: config.get_dbname().unwrap_or("postgres").to_owned(),
        external: true,
        socket_dir: None,
    }
}

fn run(command: &mut Command) {
    let output = command.output().expect("run a postgres tool");
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The server binaries of the newest PostgreSQL installed.
fn pg_bin() -> PathBuf {
    let newest = std::fs::read_dir(PG_VERSIONS)
        .unwrap_or_else(|e| {
            panic!("{PG_VERSIONS}: {e}; install PostgreSQL (apt-get install postgresql)")
        })
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("initdb").exists())
        .max_by_key(|(version, _)| *version);
    match newest {
        Some((_, bin)) => bin,
        None => panic!("no PostgreSQL server under {PG_VERSIONS}; apt-get install postgresql"),
    }
}

fn as_postgres(tool: &str) -> Command {
    let mut command = Command::new("runuser");
    command
        .args(["-u", SUPERUSER, "--"])
        .arg(pg_bin().join(tool));
    command
}

/// Starts a private server; `tls` writes its certificate and configuration into the data
/// directory and gives the server options that turn TLS on.
fn start_private(tls: Option<&dyn Fn(&Path) -> String>) -> TestServer {
    let dir: PathBuf = tempfile::Builder::new()
        .prefix("agentd-pg-")
        .tempdir()
        .expect("temp dir")
        .keep();
    let data = dir.join("data");
    let password_file = dir.join("password");
    std::fs::write(&password_file, PASSWORD).expect("password file");
    run(Command::new("chown").args(["-R", SUPERUSER]).arg(&dir));
    run(as_postgres("initdb")
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            SUPERUSER,
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        ])
        .args(["--auth=scram-sha-256", "--pwfile"])
        .arg(&password_file));
    let tls_options = tls.map(|install| install(&data)).unwrap_or_default();
    let port = start_on_a_free_port(&dir, &data, &tls_options);
    watch_for_exit(&dir, &data);
    TestServer {
        host: "127.0.0.1".to_owned(),
        port,
        user: SUPERUSER.to_owned(),
        password: Some(PASSWORD.to_owned()),
        admin_database: "postgres".to_owned(),
        external: false,
        socket_dir: tls.map(|_| dir),
    }
}

/// Times a server start is tried, each on another port.
const START_ATTEMPTS: usize = 3;

/// Starts the server in `data` on a port that was free a moment before, and gives that port.
/// Another process may bind the port first, so a failed start is tried again on another one.
fn start_on_a_free_port(dir: &Path, data: &Path, tls_options: &str) -> u16 {
    let mut failures = Vec::new();
    for _ in 0..START_ATTEMPTS {
        let port = free_port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200 \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off {tls_options}",
            dir.display()
        );
        let output = as_postgres("pg_ctl")
            .arg("-D")
            .arg(data)
            .arg("-l")
            .arg(dir.join("server.log"))
            .args(["-o", &options, "-w", "start"])
            .output()
            .expect("run pg_ctl");
        if output.status.success() {
            return port;
        }
        failures.push(format!(
            "on port {port}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    panic!(
        "the PostgreSQL test server did not start (its log: {}):\n{}",
        dir.join("server.log").display(),
        failures.join("\n")
    );
}

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// Starts a process (in its own process group, so a Ctrl-C of the tests does not reach it)
/// that waits for this one to exit, then stops the server and removes its directory. The
/// shell started here puts the watcher in the background and exits at once, so the watcher
/// is not this process's child and leaves no zombie.
fn watch_for_exit(dir: &Path, data: &Path) {
    use std::os::unix::process::CommandExt;
    let script = format!(
        "(while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
          runuser -u {SUPERUSER} -- {bin}/pg_ctl -D '{data}' -m immediate stop; \
          rm -rf '{dir}') &",
        pid = std::process::id(),
        bin = pg_bin().display(),
        data = data.display(),
        dir = dir.display(),
    );
    let status = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .status()
        .expect("start the server's watcher");
    assert!(status.success(), "starting the server's watcher: {status}");
}

fn config(server: &TestServer, database: &str) -> Config {
    let mut config = Config::new();
    match &server.socket_dir {
        Some(dir) => config.host_path(dir),
        None => config.host(&server.host),
    };
    config.port(server.port).user(&server.user).dbname(database);
    if let Some(password) = &server.password {
        config.password(password);
    }
    config
}

/// A plain connection to `database`, its connection task on the current runtime.
async fn connect_raw(server: &TestServer, database: &str) -> tokio_postgres::Client {
    let (client, connection) = config(server, database)
        .connect(NoTls)
        .await
        .expect("connect to the test server");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// An empty database of one test.
pub struct TestDatabase {
    name: String,
    server: &'static TestServer,
}

impl TestDatabase {
    /// A new empty database on the test server.
    pub async fn create() -> Self {
        Self::create_on(server()).await
    }

    /// A new empty database on `server`.
    pub async fn create_on(server: &'static TestServer) -> Self {
        let name = format!("test_{}_{:016x}", std::process::id(), fastrand::u64(..));
        connect_raw(server, &server.admin_database)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
        Self { name, server }
    }

    /// The URL of the database, without the password.
    pub fn url(&self) -> String {
        self.url_with(&self.server.host, "disable")
    }

    /// The URL of the database through `host` (another name of the loopback address, say)
    /// with `sslmode`, without the password.
    pub fn url_with(&self, host: &str, sslmode: &str) -> String {
        let server = self.server;
        format!(
            "postgres://{}@{host}:{}/{}?sslmode={sslmode}",
            server.user, server.port, self.name
        )
    }

    /// The password the store is given apart from the URL.
    pub fn password(&self) -> Option<String> {
        self.server.password.clone()
    }

    /// A plain connection, for looking at what the store wrote.
    pub async fn raw(&self) -> tokio_postgres::Client {
        connect_raw(self.server, &self.name).await
    }
}

impl Drop for TestDatabase {
    /// On a server this process did not start, drops the database (closing the connections
    /// still open to it); a private server is removed whole when the tests end.
    fn drop(&mut self) {
        let server = self.server;
        if !server.external {
            return;
        }
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                connect_raw(server, &server.admin_database)
                    .await
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}
