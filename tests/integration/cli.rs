//! The real binary: `agentd validate` on good and bad configuration, and `agentd serve`
//! answering over HTTP with the generated key.

use std::process::Command;
use std::time::Duration;

use crate::common;

use common::binary::{self, AGENTD};

fn validate(dir: &std::path::Path, args: &[&str]) -> (i32, String) {
    validate_with_env(dir, args, &[])
}

/// `agentd ARGS validate` in `dir` with extra environment variables; exit code and output.
fn validate_with_env(
    dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &std::path::Path)],
) -> (i32, String) {
    let output = Command::new(AGENTD)
        .args(args)
        .arg("validate")
        .current_dir(dir)
        .env_remove("AGENTD_CONFIG")
        .env_remove("AGENTD_TOOLS")
        .envs(env.iter().copied())
        .output()
        .expect("run agentd");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

#[test]
fn validate_accepts_the_shipped_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/tools.toml");
    let (code, out) = validate(dir.path(), &["--tools", shipped]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("configuration ok"), "{out}");
}

#[test]
fn validate_reports_every_problem_and_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("tools.toml");
    std::fs::write(
        &bad,
        r#"
[[tool]]
name = "ok_tool"
description = "fine"
handler = "echo"
parameters = { type = "object", properties = {} }

[[tool]]
name = "bad_schema"
description = "schema is wrong"
handler = "echo"
parameters = { type = "object", properties = { x = { type = "strng" } } }

[[tool]]
name = "bad_handler"
description = "no such handler"
handler = "carrier_pigeon"
parameters = { type = "object", properties = {} }

[[tool]]
name = "ok_tool"
description = "duplicate name"
handler = "echo"
parameters = { type = "object", properties = {} }
"#,
    )
    .unwrap();
    let (code, out) = validate(dir.path(), &["--tools", bad.to_str().unwrap()]);
    assert_eq!(code, 64, "{out}");
    assert!(out.contains("bad_schema"), "{out}");
    assert!(out.contains("carrier_pigeon"), "{out}");
    assert!(out.contains("ok_tool"), "duplicate reported: {out}");

    std::fs::write(&bad, "[[tool]]\nname = \"x\"\nhandlr = \"echo\"\n").unwrap();
    let (code, out) = validate(dir.path(), &["--tools", bad.to_str().unwrap()]);
    assert_eq!(code, 64, "{out}");
    assert!(
        out.contains(":3:"),
        "line number of the unknown field: {out}"
    );

    let config = dir.path().join("agentd.toml");
    std::fs::write(&config, "[server]\nlisten = \"not an address\"\n").unwrap();
    let (code, out) = validate(dir.path(), &["--config", config.to_str().unwrap()]);
    assert_eq!(code, 64, "{out}");
    std::fs::write(&config, "[sever]\nlisten = \"127.0.0.1:1\"\n").unwrap();
    let (code, out) = validate(dir.path(), &["--config", config.to_str().unwrap()]);
    assert_eq!(code, 64, "{out}");
    assert!(out.contains("sever"), "{out}");
    std::fs::write(&config, "[server]\nheader_timeout = \"0s\"\n").unwrap();
    let (code, out) = validate(dir.path(), &["--config", config.to_str().unwrap()]);
    assert_eq!(code, 64, "{out}");
    assert!(out.contains("server.header_timeout"), "{out}");
    let not_pem = dir.path().join("not-a-ca.pem");
    std::fs::write(&not_pem, "no certificate here\n").unwrap();
    for ca_file in [not_pem, dir.path().join("missing.pem")] {
        let text = format!(
            "[provider]\nca_file = {:?}\n",
            ca_file.display().to_string()
        );
        std::fs::write(&config, text).unwrap();
        let (code, out) = validate(dir.path(), &["--config", config.to_str().unwrap()]);
        assert_eq!(code, 64, "{out}");
        assert!(out.contains("provider.ca_file"), "{out}");
    }
}

#[test]
fn only_https_endpoints_need_ca_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let issuer = rcgen::CertifiedIssuer::self_signed(
        rcgen::CertificateParams::new(Vec::<String>::new()).unwrap(),
        rcgen::KeyPair::generate().unwrap(),
    )
    .unwrap();
    std::fs::write(&ca, issuer.pem()).unwrap();
    let ca_set = format!("provider.ca_file={:?}", ca.display().to_string());
    // A host without a CA bundle: rustls-native-certs reads only these, and they are empty.
    let empty = tempfile::tempdir().unwrap();
    let bundle = empty.path().join("bundle.pem");
    std::fs::write(&bundle, "").unwrap();
    let no_system_roots = |sets: &[&str]| {
        let args: Vec<&str> = sets.iter().flat_map(|set| ["--set", set]).collect();
        let env = [
            ("SSL_CERT_FILE", bundle.as_path()),
            ("SSL_CERT_DIR", empty.path()),
        ];
        validate_with_env(dir.path(), &args, &env)
    };
    let (code, out) = no_system_roots(&["provider.base_url=\"http://127.0.0.1:11434/v1\""]);
    assert_eq!(code, 0, "{out}");
    let https = "provider.base_url=\"https://models.internal/v1\"";
    let (code, out) = no_system_roots(&[https]);
    assert_eq!(code, 64, "{out}");
    assert!(out.contains("provider.ca_file"), "{out}");
    let (code, out) = no_system_roots(&[https, &ca_set]);
    assert_eq!(code, 0, "{out}");
    // The shipped catalog's webhook posts to a plain-http URL.
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/tools.toml");
    let (code, out) = no_system_roots(&[&format!("tools.catalog={shipped:?}")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("configuration ok"), "{out}");
}

#[test]
fn serve_starts_with_embedded_defaults_and_a_generated_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(AGENTD);
    command
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .arg("serve")
        .env_remove("AGENTD_API_KEY")
        .env_remove("CREDENTIALS_DIRECTORY");
    let mut daemon = binary::spawn(command);
    let addr = daemon.addr.clone();
    let key = std::fs::read_to_string(dir.path().join("api-key")).unwrap();
    let key = key.trim();
    let get = |path: &str, key: Option<&str>| {
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        use std::io::{Read, Write};
        let auth = key
            .map(|k| format!("Authorization: Bearer {k}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    };
    assert!(get("/healthz", None).starts_with("HTTP/1.1 200"));
    assert!(get("/api/agents", None).starts_with("HTTP/1.1 401"));
    assert!(get("/api/agents", Some(key)).starts_with("HTTP/1.1 200"));
    daemon.signal("TERM");
    let status = daemon.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "SIGTERM ends agentd cleanly: {status:?}");
}

#[test]
fn handlers_lists_every_registered_handler_with_its_options_schema() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(AGENTD)
        .args(["handlers", "--json"])
        .current_dir(dir.path())
        .output()
        .expect("run agentd");
    assert!(output.status.success(), "{output:?}");
    let listing: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let names: Vec<&String> = listing.as_object().unwrap().keys().collect();
    assert_eq!(names, ["echo", "http", "lookup", "smtp"]);
    assert_eq!(
        listing["lookup"]["required"],
        serde_json::json!(["entries"])
    );
    assert_eq!(listing["smtp"]["properties"]["password"]["type"], "object");
    assert_eq!(listing["echo"]["additionalProperties"], false);

    let output = Command::new(AGENTD)
        .arg("handlers")
        .current_dir(dir.path())
        .output()
        .expect("run agentd");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    for name in ["\necho\n", "\nhttp\n", "\nlookup\n", "\nsmtp\n"] {
        assert!(text.contains(name), "{name:?} in:\n{text}");
    }
    assert!(text.contains("\"case_sensitive\""), "{text}");
}

#[test]
fn validate_names_the_registered_handlers_when_one_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let tools = dir.path().join("tools.toml");
    let entry = |handler: &str| {
        format!(
            "[[tool]]\nname = \"office_info\"\nhandler = \"{handler}\"\n\
             parameters = {{ type = \"object\", properties = {{ key = {{ type = \"string\" }} }} }}\n\
             [tool.options]\nentries = {{ hours = \"9-17\" }}\n"
        )
    };
    std::fs::write(&tools, entry("lookpu")).unwrap();
    let (code, out) = validate(dir.path(), &["--tools", tools.to_str().unwrap()]);
    assert_eq!(code, 64, "{out}");
    assert!(
        out.contains(
            "tool `office_info`: unknown handler `lookpu` (known handlers: echo, http, lookup, \
             smtp; `agentd handlers` shows their options)"
        ),
        "{out}"
    );
    std::fs::write(&tools, entry("lookup")).unwrap();
    let (code, out) = validate(dir.path(), &["--tools", tools.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 tools"), "{out}");
}
