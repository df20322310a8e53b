//! The real binary under a stand-in service manager: readiness and watchdog datagrams on
//! `NOTIFY_SOCKET`, SIGHUP catalog reloads (good and bad), SIGTERM during a tool call that
//! never answers, and the `/metrics` series.

use crate::common;
use crate::systemd_support;

use std::time::{Duration, Instant};

use agentd_mock::{MockConfig, MockModel, Reply, ScriptedCall};
use common::binary::BinaryStore;
use common::{KEY, assert_history_valid, say};
use reqwest::StatusCode;
use serde_json::json;
use systemd_support::{Daemon, Setup, catalog, last, offered_tools, write_tools};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_after_the_port_answers_then_watchdog_pings_then_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let tools = write_tools(dir.path(), &catalog(&["alpha", "beta"]));
    let mock = MockModel::start(MockConfig::default()).await.unwrap();
    let mut daemon =
        Daemon::start(Setup::new(dir.path(), &tools, &mock).env(&[("WATCHDOG_USEC", "200000")]))
            .await;
    let (ready, before) = daemon.expect("READY=1").await;
    assert!(
        before.iter().all(|m| !m.contains("WATCHDOG=1")),
        "no watchdog ping before readiness: {before:?}"
    );
    // READY=1 means the port already answers.
    let health = reqwest::get(daemon.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert!(
        ready.contains(&format!("STATUS=listening on {}, 2 tools", daemon.addr)),
        "{ready}"
    );

    let started = Instant::now();
    let mut pings = 0;
    while pings < 4 && started.elapsed() < Duration::from_secs(5) {
        if let Some(msg) = daemon.datagram(Duration::from_millis(500)).await
            && msg == "WATCHDOG=1"
        {
            pings += 1;
        }
    }
    assert_eq!(pings, 4, "watchdog pings every 100ms");

    daemon.signal("TERM");
    daemon.expect("STOPPING=1").await;
    let status = daemon.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_for_another_pid_is_ignored_and_no_socket_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let tools = write_tools(dir.path(), &catalog(&["alpha"]));
    let mock = MockModel::start(MockConfig::default()).await.unwrap();
    let daemon = Daemon::start(
        Setup::new(dir.path(), &tools, &mock)
            .env(&[("WATCHDOG_USEC", "100000"), ("WATCHDOG_PID", "1")]),
    )
    .await;
    daemon.expect("READY=1").await;
    let mut extra = Vec::new();
    while let Some(msg) = daemon.datagram(Duration::from_millis(400)).await {
        extra.push(msg);
    }
    assert!(extra.is_empty(), "watchdog meant for pid 1: {extra:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_a_good_catalog_and_keeps_the_old_one_when_the_new_is_bad() {
    let dir = tempfile::tempdir().unwrap();
    let tools = write_tools(dir.path(), &catalog(&["alpha"]));
    let mock = MockModel::start(MockConfig::default()).await.unwrap();
    let daemon = Daemon::start(Setup::new(dir.path(), &tools, &mock)).await;
    daemon.expect("READY=1").await;
    let session = daemon.session().await;
    let (s, body) = daemon.chat(&session, say("hi")).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(offered_tools(&last(&mock)), ["alpha"]);

    write_tools(dir.path(), &catalog(&["gamma", "delta"]));
    daemon.signal("HUP");
    let (reloading, _) = daemon.expect("RELOADING=1").await;
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    let (ready, _) = daemon.expect("READY=1").await;
    assert!(ready.contains("2 tools"), "{ready}");
    let (s, body) = daemon.chat(&session, say("again")).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(offered_tools(&last(&mock)), ["gamma", "delta"]);

    write_tools(
        dir.path(),
        "[[tool]]\nname = \"broken\"\ndescription = \"x\"\nhandler = \"carrier_pigeon\"\nparameters = { type = \"object\" }\n",
    );
    daemon.signal("HUP");
    daemon.expect("RELOADING=1").await;
    let (ready, _) = daemon.expect("READY=1").await;
    assert!(ready.contains("failed"), "{ready}");
    assert!(ready.contains("2 tools kept"), "{ready}");
    let (s, body) = daemon.chat(&session, say("still there?")).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(offered_tools(&last(&mock)), ["gamma", "delta"]);
    let log = daemon.log_once_it_has("keeping the previous one");
    assert!(log.contains("carrier_pigeon"), "problem logged:\n{log}");
    assert!(log.contains("keeping the previous one"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_takes_a_rotated_key_file_and_keeps_the_keys_when_the_file_is_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let tools = write_tools(dir.path(), &catalog(&["alpha"]));
    let key_file = dir.path().join("rotating-key");
    std::fs::write(&key_file, "first-key-0123456789\n").unwrap();
    let keys = format!(
        "auth.api_keys=[{{ file = {:?} }}, {{ env = \"AGENTD_API_KEY\" }}]",
        key_file.display().to_string()
    );
    let mock = MockModel::start(MockConfig::default()).await.unwrap();
    let daemon = Daemon::start(Setup::new(dir.path(), &tools, &mock).sets(&[&keys])).await;
    daemon.expect("READY=1").await;
    let status = |key: &'static str| {
        let request = daemon.http.get(daemon.url("/api/agents")).bearer_auth(key);
        async move { request.send().await.expect("request").status() }
    };
    assert_eq!(status("first-key-0123456789").await, StatusCode::OK);
    assert_eq!(status("second-key-0123456789").await, StatusCode::FORBIDDEN);

    std::fs::write(&key_file, "second-key-0123456789\n").unwrap();
    daemon.signal("HUP");
    let (ready, _) = daemon.expect("READY=1").await;
    assert!(ready.contains("2 API keys"), "{ready}");
    assert_eq!(status("first-key-0123456789").await, StatusCode::FORBIDDEN);
    assert_eq!(status("second-key-0123456789").await, StatusCode::OK);
    assert_eq!(
        status(KEY).await,
        StatusCode::OK,
        "the other reference still counts"
    );

    // A key file that exists but cannot be read is an error: the keys in force stay.
    std::fs::remove_file(&key_file).unwrap();
    std::fs::create_dir(&key_file).unwrap();
    daemon.signal("HUP");
    let (ready, _) = daemon.expect("READY=1").await;
    assert!(ready.contains("API keys not reloaded"), "{ready}");
    assert_eq!(status("second-key-0123456789").await, StatusCode::OK);
    assert!(
        daemon
            .log_once_it_has("keeping the previous ones")
            .contains("keeping the previous ones")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_hung_tool_call_drains_cancels_and_history_stays_valid() {
    let dir = tempfile::tempdir().unwrap();
    // A webhook that accepts and never answers.
    let hook = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_addr = hook.local_addr().unwrap();
    let (accepted_tx, accepted_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in hook.incoming().map_while(Result::ok) {
            held.push(stream);
            let _ = accepted_tx.send(());
        }
    });
    let tools = write_tools(
        dir.path(),
        &format!(
            "[[tool]]\nname = \"hook\"\ndescription = \"Calls the hook\"\nhandler = \"http\"\ntimeout = \"30s\"\n\
             parameters = {{ type = \"object\", properties = {{ text = {{ type = \"string\" }} }} }}\n\
             [tool.options]\nurl = \"http://{hook_addr}/hook\"\nallowed_hosts = [\"127.0.0.1\"]\ntimeout = \"30s\"\n"
        ),
    );
    let mock = MockModel::start(MockConfig::default()).await.unwrap();
    let store = BinaryStore::new().await;
    let mut daemon = Daemon::start(
        Setup::new(dir.path(), &tools, &mock)
            .store(&store)
            .sets(&["server.drain_timeout=\"1s\""]),
    )
    .await;
    daemon.expect("READY=1").await;
    let session = daemon.session().await;
    mock.push(Reply::tool_calls(vec![
        ScriptedCall::new("hook", json!({"text": "ping"})).with_id("call_hung"),
    ]));
    let url = daemon.url(&format!("/api/sessions/{session}/chat"));
    let chat = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .bearer_auth(KEY)
            .json(&say("call the hook"))
            .send()
            .await
            .map(|r| r.status())
    });
    tokio::task::spawn_blocking(move || accepted_rx.recv_timeout(Duration::from_secs(15)))
        .await
        .unwrap()
        .expect("the tool call reaches the hook");

    let signalled = Instant::now();
    daemon.signal("TERM");
    daemon.expect("STOPPING=1").await;
    let status = daemon.wait_exit(Duration::from_secs(8));
    assert!(status.success(), "{status:?}\n{}", daemon.log());
    assert!(signalled.elapsed() < Duration::from_secs(8));
    let _ = tokio::time::timeout(Duration::from_secs(5), chat).await;
    drop(daemon);

    let daemon = Daemon::start(Setup::new(dir.path(), &tools, &mock).store(&store)).await;
    daemon.expect("READY=1").await;
    let (s, history) = daemon
        .call(
            reqwest::Method::GET,
            &format!("/api/sessions/{session}/history?limit=1000"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{history}");
    let entries = history["entries"].as_array().cloned().unwrap_or_default();
    assert_history_valid(&entries);
    let result = entries
        .iter()
        .find(|e| e["role"] == "tool" && e["tool_call_id"] == "call_hung")
        .unwrap_or_else(|| panic!("a result for the hung call: {entries:?}"));
    assert!(
        result["content"].to_string().contains("cancelled"),
        "{result}"
    );
    mock.push(Reply::text("Back."));
    let (s, body) = daemon.chat(&session, say("are you back?")).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_the_key_and_expose_every_series() {
    let dir = tempfile::tempdir().unwrap();
    let tools = write_tools(dir.path(), &catalog(&["alpha"]));
    let mock = MockModel::start(MockConfig::default()).await.unwrap();
    let daemon = Daemon::start(Setup::new(dir.path(), &tools, &mock)).await;
    daemon.expect("READY=1").await;
    let session = daemon.session().await;
    mock.push(Reply::tool_calls(vec![ScriptedCall::new(
        "alpha",
        json!({"text": "x"}),
    )]));
    let (s, body) = daemon.chat(&session, say("use alpha")).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");

    // Slow chunks keep the stream open long enough to be counted.
    mock.push(Reply::text("Streamed.").chunk_delay(Duration::from_millis(300)));
    let mut streamed = daemon
        .http
        .post(daemon.url(&format!("/api/sessions/{session}/chat")))
        .bearer_auth(KEY)
        .json(&json!({"messages": [{"role": "user", "content": "stream it"}], "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), StatusCode::OK);
    let mut events = String::new();
    while !events.contains("data:") {
        let chunk = streamed.chunk().await.unwrap().expect("a first event");
        events.push_str(&String::from_utf8_lossy(&chunk));
    }
    let (_, open) = daemon.call(reqwest::Method::GET, "/metrics", None).await;
    let open = open.as_str().expect("text body").to_owned();
    assert!(
        open.contains("agentd_active_streams 1"),
        "an open stream is counted:\n{open}"
    );
    while let Some(chunk) = streamed.chunk().await.unwrap() {
        events.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(events.contains("Streamed."), "{events}");

    let anonymous = reqwest::get(daemon.url("/metrics")).await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let (s, text) = daemon.call(reqwest::Method::GET, "/metrics", None).await;
    assert_eq!(s, StatusCode::OK);
    let text = text.as_str().expect("text body").to_owned();
    for needle in [
        "agentd_http_requests_total{route=\"/api/sessions/{id}/chat\",method=\"POST\",status=\"201\"} 1",
        "agentd_http_request_duration_seconds_bucket{route=\"/api/sessions/{id}/chat\"",
        "agentd_model_calls_total{provider=",
        "outcome=\"ok\"} 3",
        "agentd_model_call_duration_seconds_count",
        "agentd_tool_calls_total{tool=\"alpha\",outcome=\"ok\"} 1",
        "agentd_tool_call_duration_seconds_sum{tool=\"alpha\",outcome=\"ok\"}",
        "agentd_turn_overhead_seconds_count 2",
        "agentd_active_turns 0",
        "agentd_active_streams 0",
        "agentd_http_requests_total{route=\"/api/sessions/{id}/chat\",method=\"POST\",status=\"200\"} 1",
        "agentd_turn_steps_count 2",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
    assert!(!text.contains(&session), "raw ids never become labels");
    if !common::on_postgres() {
        let value = |series: &str| -> f64 {
            text.lines()
                .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
                .unwrap_or_else(|| panic!("no `{series}` in:\n{text}"))
        };
        // Both turns found the session's history in memory (filed empty at creation).
        assert!(value("agentd_store_mirror_lookups_total{part=\"history\",result=\"hit\"}") >= 2.0);
        assert!(value("agentd_store_mirror_bytes{part=\"history\"}") > 0.0);
        assert!(value("agentd_store_mirror_budget_bytes") >= 64.0 * 1024.0 * 1024.0);
        assert_eq!(
            value("agentd_store_mirror_evictions_total{part=\"history\"}"),
            0.0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_servers_down_show_in_the_status_and_a_sighup_restarts_only_the_changed_one() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("everything.pid");
    let entries = |broken_command: &str| {
        format!(
            "[[mcp]]\nname = \"everything\"\ncommand = {}\ntools = [\"echo\"]\n\n\
             [[mcp]]\nname = \"broken\"\ncommand = {broken_command}\ntools = [\"echo\"]\n",
            common::mcp::everything_command_with_pid(&pid_file),
        )
    };
    let tools = write_tools(dir.path(), &entries("[\"/nonexistent/mcp-server\"]"));
    let mock = MockModel::start(MockConfig::default()).await.unwrap();
    let daemon = Daemon::start(Setup::new(dir.path(), &tools, &mock)).await;
    let (ready, _) = daemon.expect("READY=1").await;
    assert!(
        ready.contains("MCP servers: 1 of 2 up; broken down"),
        "{ready}"
    );
    let log = daemon.log_once_it_has("stderr: Starting default");
    assert!(
        log.contains("mcp_server=everything"),
        "stderr logged with the server's name"
    );
    assert!(
        log.contains("MCP server did not start") && log.contains("/nonexistent/mcp-server"),
        "{log}"
    );
    let ready_body: serde_json::Value = reqwest::get(daemon.url("/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready_body["status"], "ready", "{ready_body}");
    assert_eq!(ready_body["mcp"]["broken"]["state"], "down", "{ready_body}");
    assert_eq!(ready_body["mcp"]["everything"]["tools"], 1, "{ready_body}");
    let (_, metrics) = daemon.call(reqwest::Method::GET, "/metrics", None).await;
    let metrics = metrics.as_str().unwrap_or_default().to_owned();
    assert!(
        metrics.contains("agentd_mcp_server_up{server=\"broken\"} 0"),
        "{metrics}"
    );
    let session = daemon.session().await;
    let (s, body) = daemon.chat(&session, say("hi")).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(offered_tools(&last(&mock)), ["everything__echo"]);
    let pid_before = common::mcp::read_pid(&pid_file);

    write_tools(dir.path(), &entries(&common::mcp::everything_command()));
    daemon.signal("HUP");
    daemon.expect("READY=1").await;
    daemon.expect("STATUS=MCP servers: 2 of 2 up").await;
    let (s, body) = daemon.chat(&session, say("again")).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(
        offered_tools(&last(&mock)),
        ["everything__echo", "broken__echo"]
    );
    assert_eq!(
        common::mcp::read_pid(&pid_file),
        pid_before,
        "the unchanged server kept running through the reload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_stops_answering_fails_readiness_but_not_the_watchdog() {
    let dir = tempfile::tempdir().unwrap();
    let tools = write_tools(dir.path(), &catalog(&["alpha"]));
    let mock = MockModel::start(MockConfig::default()).await.unwrap();
    let db = agentd_testpg::TestDatabase::create().await;
    let password = dir.path().join("pg-password");
    std::fs::write(&password, db.password().unwrap_or_default()).unwrap();
    let sets = [
        format!("storage.url={}", common::toml_str(&db.url())),
        format!(
            "storage.password={{ file = {} }}",
            common::toml_str(&password.display().to_string())
        ),
    ];
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let daemon = Daemon::start(
        Setup::new(dir.path(), &tools, &mock)
            .sets(&sets)
            .env(&[("WATCHDOG_USEC", "400000")]),
    )
    .await;
    daemon.expect("READY=1").await;
    let ready = reqwest::get(daemon.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);

    // The database refuses new connections and drops agentd's (done from the server's
    // `postgres` database: a database cannot shut itself off).
    let name = db
        .url()
        .rsplit('/')
        .next()
        .and_then(|tail| tail.split('?').next())
        .unwrap()
        .to_owned();
    let mut admin_config: tokio_postgres::Config = db
        .url()
        .replace(&format!("/{name}?"), "/postgres?")
        .parse()
        .unwrap();
    if let Some(password) = db.password() {
        admin_config.password(password);
    }
    let (admin, connection) = admin_config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false;
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}';"
        ))
        .await
        .expect("cut the database off");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ready = reqwest::get(daemon.url("/readyz")).await.unwrap();
        if ready.status() == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        assert!(Instant::now() < deadline, "readiness never failed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut pings = 0;
    let started = Instant::now();
    while pings < 3 && started.elapsed() < Duration::from_secs(5) {
        if daemon.datagram(Duration::from_millis(500)).await.as_deref() == Some("WATCHDOG=1") {
            pings += 1;
        }
    }
    assert_eq!(pings, 3, "the watchdog goes on while the database is down");

    admin
        .batch_execute(&format!(
            "ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true"
        ))
        .await
        .expect("let connections in again");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ready = reqwest::get(daemon.url("/readyz")).await.unwrap();
        if ready.status() == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "readiness never came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
