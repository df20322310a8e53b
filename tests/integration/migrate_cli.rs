//! The real binary: `agentd migrate` copying an SQLite data directory into PostgreSQL, and
//! its exit codes (64 without `storage.url`, 0 copied, 1 into a database that holds data or
//! from a directory a running agentd holds).

use std::path::Path;
use std::process::Command;

use agentd::store::postgres::PostgresStore;
use agentd::store::sqlite::SqliteStore;
use agentd::store::{Collection, ListQuery, Record, Store};
use serde_json::json;
use time::OffsetDateTime;

use crate::common::binary::AGENTD;

/// `agentd ARGS` in `dir`; exit code, stdout and stderr.
fn agentd(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(AGENTD)
        .args(args)
        .current_dir(dir)
        .env_remove("AGENTD_CONFIG")
        .env_remove("AGENTD_DATA_DIR")
        .output()
        .expect("run agentd");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A data directory whose database holds one agent.
async fn data_dir_with_an_agent(dir: &Path) -> std::path::PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let store = SqliteStore::open(&data.join("agentd.db")).unwrap();
    let now = OffsetDateTime::now_utc();
    let agent = Record {
        id: "agent-1".to_owned(),
        parent: None,
        body: json!({ "name": "copied" }),
        created_at: now,
        updated_at: now,
    };
    store.insert(Collection::Agents, agent).await.unwrap();
    data
}

#[tokio::test]
async fn migrate_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let data = data_dir_with_an_agent(dir.path()).await;
    let data_arg = data.to_str().unwrap();

    let (code, _, err) = agentd(dir.path(), &["--data-dir", data_arg, "migrate"]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("storage.url is not set"), "{err}");

    let db = agentd_testpg::TestDatabase::create().await;
    let password = db.password().unwrap_or_default();
    let password_file = dir.path().join("postgres-password");
    std::fs::write(&password_file, &password).unwrap();
    let config = dir.path().join("agentd.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\nurl = {:?}\npassword = {{ file = {:?} }}\n",
            db.url(),
            password_file.display().to_string()
        ),
    )
    .unwrap();
    let config_arg = config.to_str().unwrap();

    let (code, _, err) = agentd(
        dir.path(),
        &[
            "--config",
            config_arg,
            "migrate",
            "--from",
            dir.path().join("nothing").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("no agentd database"), "{err}");

    let (code, out, err) = agentd(
        dir.path(),
        &["--config", config_arg, "migrate", "--from", data_arg],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("agents           1"), "{out}");
    assert!(out.contains("history entries  0"), "{out}");
    let target = PostgresStore::connect(&db.url(), db.password(), 2)
        .await
        .unwrap();
    let agents = target
        .list(Collection::Agents, &ListQuery::default())
        .await
        .unwrap();
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0].body, json!({ "name": "copied" }));

    let (code, out, err) = agentd(
        dir.path(),
        &["--config", config_arg, "migrate", "--from", data_arg],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("already holds agentd data"), "{err}");
    assert!(
        !format!("{out}{err}").contains(&password),
        "no password printed"
    );

    // A daemon still running on the directory holds its lock.
    let running = SqliteStore::open(&data.join("agentd.db")).unwrap();
    let (code, _, err) = agentd(
        dir.path(),
        &["--config", config_arg, "migrate", "--from", data_arg],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("stop the agentd using"), "{err}");
    drop(running);
}
