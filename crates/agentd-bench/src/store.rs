//! The store the load scenarios run agentd on: SQLite in each instance's data directory (the
//! default), or one PostgreSQL database every instance shares, named on the command line or
//! created on a private server that `agentd-testpg` starts; the `--set` settings that point
//! agentd at it, and the server's processes whose CPU time the tables report.

use std::path::{Path, PathBuf};

/// Which store agentd runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum StoreKind {
    Sqlite,
    Postgres,
}

/// A PostgreSQL database for the run.
pub(crate) struct Database {
    /// `postgres://user@host:port/db`, without the password.
    pub url: String,
    pub password_file: Option<PathBuf>,
    /// Set when the bench created the database on its private server.
    private: Option<agentd_testpg::TestDatabase>,
}

impl Database {
    /// The database `url` names (its password in `password_file`), or, without a URL, a new
    /// one on a private server; its password is then written to `scratch`.
    pub(crate) async fn open(
        url: Option<&str>,
        password_file: Option<&Path>,
        scratch: &Path,
    ) -> Result<Self, String> {
        if let Some(url) = url {
            return Ok(Self {
                url: url.to_owned(),
                password_file: password_file.map(Path::to_path_buf),
                private: None,
            });
        }
        let created = agentd_testpg::TestDatabase::create().await;
        let password_file = match created.password() {
            Some(password) => {
                let path = scratch.join("postgres-password");
                std::fs::write(&path, password).map_err(|e| format!("{}: {e}", path.display()))?;
                Some(path)
            }
            None => None,
        };
        Ok(Self {
            url: created.url(),
            password_file,
            private: Some(created),
        })
    }

    /// Where it comes from, for the run's header.
    pub(crate) fn origin(&self) -> &'static str {
        if self.private.is_some() {
            "a private server started through agentd-testpg"
        } else {
            "--postgres-url"
        }
    }

    /// The `--set key=value` settings that put agentd on this database.
    pub(crate) fn sets(&self) -> Vec<String> {
        let mut sets = vec![format!("storage.url={}", toml_string(&self.url))];
        if let Some(file) = &self.password_file {
            sets.push(format!(
                "storage.password={{ file = {} }}",
                toml_string(&file.display().to_string())
            ));
        }
        sets
    }

    /// The server's postmaster, when it runs on this machine and its command line names the
    /// URL's port (a server started with `-p PORT`, as the private one is).
    pub(crate) fn server_pid(&self) -> Option<u32> {
        let port = port_of(&self.url)?;
        let flag = format!(" -p {port} ");
        std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
            .find(|&pid| {
                crate::procs::command_line(pid).is_some_and(|line| {
                    line.split_whitespace()
                        .next()
                        .is_some_and(|program| program.ends_with("/postgres"))
                        && format!("{line} ").contains(&flag)
                })
            })
    }
}

/// A TOML basic string holding `text`.
fn toml_string(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

/// The port of a `postgres://user@host:port/db` URL (5432 when it names none).
fn port_of(url: &str) -> Option<u16> {
    let authority = url.split("://").nth(1)?.split(['/', '?']).next()?;
    let host_port = authority.rsplit('@').next()?;
    match host_port.rsplit_once(':') {
        Some((_, port)) if !port.contains(']') => port.parse().ok(),
        _ => Some(5432),
    }
}

#[cfg(test)]
mod tests {
    use super::{port_of, toml_string};

    #[test]
    fn reads_the_port_of_a_url() {
        assert_eq!(port_of("postgres://u@127.0.0.1:4312/db?x=1"), Some(4312));
        assert_eq!(port_of("postgres://u@db.example/agentd"), Some(5432));
        assert_eq!(port_of("postgres://u@[::1]/agentd"), Some(5432));
    }

    #[test]
    fn quotes_a_toml_string() {
        assert_eq!(toml_string(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
