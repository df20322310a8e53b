//! Tests of catalog compilation: the shipped tools.toml, the fixture catalogs under
//! tests/fixtures/catalogs, and single problems with their positions.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use super::validate::{ArgumentError, check};
use super::{Catalog, CatalogError, Registry};

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn fixture(name: &str) -> PathBuf {
    repo_path("tests/fixtures/catalogs").join(name)
}

fn problems_of(text: &str) -> Vec<String> {
    match Catalog::parse(text, Path::new("tools.toml"), &Registry::builtin()) {
        Ok(catalog) => panic!("expected problems, got {} tools", catalog.len()),
        Err(CatalogError { problems }) => problems,
    }
}

fn assert_has(problems: &[String], expected: &str) {
    assert!(
        problems.iter().any(|p| p.contains(expected)),
        "no problem contains {expected:?}; problems:\n{}",
        problems.join("\n")
    );
}

#[test]
fn shipped_catalog_compiles() {
    let catalog = Catalog::load(&repo_path("tools.toml"), &Registry::builtin())
        .unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = catalog.tools().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["send_email", "notify_webhook", "echo"]);

    let send_email = catalog.get("send_email").unwrap();
    assert!(send_email.offer);
    assert_eq!(send_email.handler_name, "smtp");
    assert_eq!(send_email.timeout, Duration::from_secs(30));
    assert_eq!(send_email.concurrency.available_permits(), 4);
    assert_eq!(
        send_email.parameters["required"],
        json!(["to", "subject", "body"])
    );
    let ok = check(
        send_email,
        r#"{"to": "a@example.com", "subject": "Hi", "body": "Hello", "cc": ["b@example.com"], "bcc": "c@example.com"}"#,
    );
    assert!(ok.is_ok(), "{ok:?}");
    let Err(ArgumentError::Invalid(violations)) = check(
        send_email,
        r#"{"to": ["a@example.com"], "subject": "Hi", "body": "x"}"#,
    ) else {
        panic!("an array `to` must be refused");
    };
    assert_eq!(violations[0].pointer, "/to");

    let webhook = catalog.get("notify_webhook").unwrap();
    assert!(!webhook.offer);
    assert_eq!(webhook.timeout, Duration::from_secs(10));
    assert_eq!(webhook.concurrency.available_permits(), 16);
    assert!(!catalog.get("echo").unwrap().offer);
}

#[test]
fn good_fixture_compiles_with_defaults_file_schema_and_limits() {
    let catalog = Catalog::load(&fixture("good.toml"), &Registry::builtin())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(catalog.len(), 3);

    let lookup = catalog.get("lookup_order").unwrap();
    assert_eq!(lookup.timeout, Duration::from_secs(5), "from [defaults]");
    assert_eq!(lookup.concurrency.available_permits(), 3, "from [defaults]");
    assert!(lookup.offer, "offered unless told otherwise");
    assert_eq!(lookup.parameters["properties"]["order"]["minimum"], 1);
    assert!(check(lookup, r#"{"order": 12}"#).is_ok());
    assert!(matches!(
        check(lookup, r#"{"order": 0, "x": 1}"#),
        Err(ArgumentError::Invalid(v)) if v.len() == 2
    ));

    let quick = catalog.get("quick-echo").unwrap();
    assert_eq!(quick.timeout, Duration::from_millis(250));
    assert_eq!(quick.concurrency.available_permits(), 1);
    assert!(!quick.offer);
    assert!(matches!(
        check(quick, r#"{"text": "far too long for ten"}"#),
        Err(ArgumentError::Invalid(v)) if v[0].pointer == "/text"
    ));

    let hook = catalog.get("hook").unwrap();
    assert_eq!(hook.timeout, Duration::from_secs(120));
    assert_eq!(hook.handler_name, "http");
    assert_eq!(
        hook.definition(),
        json!({
            "type": "function",
            "function": {
                "name": "hook",
                "description": "Post to a local webhook",
                "parameters": {"type": "object"}
            }
        })
    );
}

#[test]
fn bad_fixture_reports_every_problem_in_one_run() {
    let Err(error) = Catalog::load(&fixture("bad.toml"), &Registry::builtin()) else {
        panic!("bad.toml must not compile");
    };
    let file = fixture("bad.toml").display().to_string();
    let p = &error.problems;
    assert_has(
        p,
        &format!("{file}:9:1: tool `typo_field`: unknown field `handlr`, expected one of"),
    );
    assert_has(
        p,
        &format!(
            "{file}:16:14: tool `bad_schema`: parameters/properties/to/type: not a valid JSON Schema"
        ),
    );
    assert_has(
        p,
        &format!("{file}:16:14: tool `bad_schema`: parameters/required: not a valid JSON Schema"),
    );
    assert_has(
        p,
        &format!(
            "{file}:21:11: tool `no_such_handler`: unknown handler `smtpx` (known handlers: echo, http, lookup, smtp; `agentd handlers` shows their options)"
        ),
    );
    assert_has(
        p,
        &format!("{file}:31:8: tool `twice`: duplicate tool name (first defined at {file}:25:8)"),
    );
    assert_has(
        p,
        &format!(
            "{file}:42:1: tool `bad_options`: options (echo): echo takes no options (unknown option `loud`)"
        ),
    );
    assert_has(
        p,
        &format!("{file}:46:8: tool `not an identifier`: invalid name"),
    );
    assert_has(
        p,
        &format!("{file}:49:11: tool `not an identifier`: timeout: invalid duration `soon`"),
    );
    assert_has(
        p,
        &format!("{file}:50:15: tool `not an identifier`: concurrency: must be between 1"),
    );
    assert_has(
        p,
        &format!(
            "{file}:51:14: tool `not an identifier`: parameters: must be a JSON Schema with `type = \"object\"`"
        ),
    );
    assert_eq!(p.len(), 10, "{}", p.join("\n"));
}

#[test]
fn entries_that_do_not_fit_are_reported_and_the_rest_still_checked() {
    let text = "[[tool]]\nname = \"a\"\nparameters = { type = \"object\" }\n\n[[tool]]\nname = \"b\"\nhandler = \"nope\"\noffer = \"yes\"\nparameters = { type = \"object\" }\n\n[[tool]]\nhandler = \"nope\"\n";
    let problems = problems_of(text);
    assert_has(
        &problems,
        "tools.toml:1:1: tool `a`: missing field `handler`",
    );
    assert_has(
        &problems,
        "tools.toml:8:9: tool `b`: invalid type: string \"yes\", expected a boolean",
    );
    assert_has(&problems, "tools.toml:11:1: missing field `name`");
    assert_eq!(problems.len(), 3, "{problems:?}");
}

#[test]
fn a_syntax_error_is_one_problem_with_its_position() {
    let problems = problems_of("[[tool]]\nname = \"x\"\nhandler = echo\n");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("tools.toml:3:11: "), "{problems:?}");
}

#[test]
fn top_level_and_defaults_fields_are_checked() {
    let problems = problems_of("tools = []\n[defaults]\ntimeout = \"1s\"\nretries = 3\n");
    assert_has(
        &problems,
        "tools.toml:1:1: unknown field `tools`, expected `defaults`, `tool` or `mcp`",
    );
    assert_has(&problems, "tools.toml:4:1: unknown field `retries`");
    let problems = problems_of("[defaults]\nconcurrency = -1\n[tool]\nname = \"x\"\n");
    assert_has(&problems, "tools.toml:2:15: concurrency: must be between 1");
    assert_has(&problems, "`tool` must be an array of tables");
}

#[test]
fn schema_source_must_be_exactly_one_and_readable() {
    let both = "[[tool]]\nname = \"a\"\nhandler = \"echo\"\nparameters = { type = \"object\" }\nparameters_file = \"x.json\"\n";
    assert_has(
        &problems_of(both),
        "tools.toml:5:19: tool `a`: set either `parameters` or `parameters_file`, not both",
    );
    let neither = "[[tool]]\nname = \"a\"\nhandler = \"echo\"\n";
    assert_has(
        &problems_of(neither),
        "tools.toml:2:8: tool `a`: missing `parameters`",
    );
    let missing =
        "[[tool]]\nname = \"a\"\nhandler = \"echo\"\nparameters_file = \"does/not/exist.json\"\n";
    assert_has(
        &problems_of(missing),
        "tools.toml:4:19: tool `a`: parameters_file: cannot read does/not/exist.json",
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broken.json"),
        "{\n  \"type\": \"object\",\n}\n",
    )
    .unwrap();
    let origin = dir.path().join("tools.toml");
    let text = "[[tool]]\nname = \"a\"\nhandler = \"echo\"\nparameters_file = \"broken.json\"\n";
    let Err(error) = Catalog::parse(text, &origin, &Registry::builtin()) else {
        panic!("broken.json must be refused");
    };
    let expected = format!(
        "{}:3:1: tool `a`: parameters_file is not valid JSON",
        dir.path().join("broken.json").display()
    );
    assert_has(&error.problems, &expected);
}

#[test]
fn unknown_meta_schema_and_unresolvable_refs_are_problems_not_panics() {
    let text = "[[tool]]\nname = \"a\"\nhandler = \"echo\"\n[tool.parameters]\ntype = \"object\"\n\"$schema\" = \"https://example.invalid/meta\"\n";
    assert_has(
        &problems_of(text),
        "tool `a`: parameters: cannot find its meta-schema",
    );
    let text = "[[tool]]\nname = \"a\"\nhandler = \"echo\"\n[tool.parameters]\ntype = \"object\"\nproperties = { x = { \"$ref\" = \"https://example.invalid/x.json\" } }\n";
    assert_has(
        &problems_of(text),
        "tool `a`: parameters: cannot compile the schema",
    );
}

#[test]
fn a_missing_file_is_reported_with_its_path() {
    let path = fixture("no-such-catalog.toml");
    let Err(error) = Catalog::load(&path, &Registry::builtin()) else {
        panic!("a missing file must be an error");
    };
    assert_eq!(error.problems.len(), 1);
    assert!(
        error.problems[0].starts_with(&path.display().to_string()),
        "{error}"
    );
}

#[test]
fn mcp_entries_compile_with_their_defaults() {
    let text = r#"
[defaults]
timeout = "5s"
concurrency = 3

[[mcp]]
name = "files"
command = ["npx", "-y", "some-server"]
env = { ROOT = "/srv", TOKEN = { credential = "files_token" } }

[[mcp]]
name = "remote"
url = "https://mcp.example.com/mcp"
headers = { Authorization = { env = "REMOTE_AUTH" } }
tools = ["search"]
offer = false
timeout = "2m"
start_timeout = "5s"
max_tools = 10
max_tool_bytes = 2048
"#;
    let catalog = Catalog::parse(text, Path::new("tools.toml"), &Registry::builtin())
        .unwrap_or_else(|e| panic!("{e}"));
    let [files, remote] = catalog.mcp_servers() else {
        panic!("two servers")
    };
    assert_eq!(files.timeout, Duration::from_secs(5));
    assert_eq!(files.concurrency, 3);
    assert!(files.offer);
    assert!(files.allows("anything"));
    assert_eq!(files.tool_name("read"), "files__read");
    match &files.transport {
        super::McpTransport::Stdio { command, env } => {
            assert_eq!(command, &["npx", "-y", "some-server"]);
            assert_eq!(env.len(), 2);
            assert!(
                matches!(&env[1].1, super::SettingValue::Secret(r) if r.credential.as_deref() == Some("files_token"))
            );
        }
        other => panic!("stdio expected, got {other:?}"),
    }
    assert!(!remote.offer);
    assert!(remote.allows("search") && !remote.allows("delete"));
    assert_eq!(remote.timeout, Duration::from_secs(120));
    assert_eq!(remote.start_timeout, Duration::from_secs(5));
    assert_eq!((remote.max_tools, remote.max_tool_bytes), (10, 2048));
    assert!(catalog.is_mcp_name("remote__search"));
    assert!(!catalog.is_mcp_name("remote_search"));
    assert!(!catalog.is_mcp_name("remotex__search"));
}

#[test]
fn mcp_entries_report_every_problem() {
    let problems = problems_of(
        r#"
[[tool]]
name = "files__read"
handler = "echo"
parameters = { type = "object" }

[[mcp]]
name = "files"
command = ["server"]

[[mcp]]
name = "files"
url = "http://127.0.0.1:1/mcp"

[[mcp]]
name = "bad__name"
command = []

[[mcp]]
name = "both"
command = ["x"]
url = "http://127.0.0.1:1/mcp"

[[mcp]]
name = "neither"

[[mcp]]
name = "web"
url = "ftp://example.com/mcp"

[[mcp]]
name = "envs"
command = ["x"]
env = { "1BAD" = "x", TOKEN = { password = "inline" }, NUM = 3 }
headers = { A = "b" }

[[mcp]]
name = "limits"
url = "http://127.0.0.1:1/mcp"
timeout = "soon"
max_tools = 0
tools = []

[[mcp]]
name = "typo"
command = ["x"]
comand = ["y"]
"#,
    );
    assert_has(
        &problems,
        "mcp server `files`: tool `files__read` uses the prefix",
    );
    assert_has(&problems, "mcp server `files`: duplicate mcp server name");
    assert_has(&problems, "mcp server `bad__name`: invalid name");
    assert_has(
        &problems,
        "mcp server `bad__name`: command: give the program",
    );
    assert_has(
        &problems,
        "mcp server `both`: set either `command` or `url`, not both",
    );
    assert_has(&problems, "mcp server `neither`: missing `command`");
    assert_has(
        &problems,
        "mcp server `web`: url: must be an http:// or https:// URL",
    );
    assert_has(&problems, "mcp server `envs`: env: invalid name `1BAD`");
    assert_has(
        &problems,
        "mcp server `envs`: env.TOKEN: unknown field `password`",
    );
    assert_has(
        &problems,
        "mcp server `envs`: env.NUM: expected a string or a secret reference",
    );
    assert_has(
        &problems,
        "mcp server `envs`: headers: only for a server reached by `url`",
    );
    assert_has(&problems, "mcp server `limits`: timeout:");
    assert_has(
        &problems,
        "mcp server `limits`: max_tools: must be between 1",
    );
    assert_has(
        &problems,
        "mcp server `limits`: tools: an empty list takes no tool",
    );
    assert_has(&problems, "mcp server `typo`: unknown field `comand`");
}

#[test]
fn approval_policies_compile_and_their_problems_are_reported() {
    let text = r#"
[[tool]]
name = "pay"
handler = "echo"
approval = { when = { properties = { amount = { minimum = 100 } }, required = ["amount"] } }
parameters = { type = "object" }

[[tool]]
name = "mail"
handler = "echo"
approval = { outside_domains = ["example.com"] }
parameters = { type = "object" }

[[tool]]
name = "ping"
handler = "echo"
approval = "always"
parameters = { type = "object" }

[[mcp]]
name = "files"
command = ["x"]
approval = "always"
"#;
    let catalog = Catalog::parse(text, Path::new("tools.toml"), &Registry::builtin())
        .unwrap_or_else(|e| panic!("{e}"));
    let pay = catalog.get("pay").unwrap();
    assert!(pay.approval.requires(&json!({"amount": 500})));
    assert!(!pay.approval.requires(&json!({"amount": 5})));
    let mail = catalog.get("mail").unwrap();
    assert!(mail.approval.requires(&json!({"to": "x@other.org"})));
    assert!(!mail.approval.requires(&json!({"to": "x@example.com"})));
    assert!(catalog.get("ping").unwrap().approval.requires(&json!({})));
    assert_eq!(
        catalog.mcp_servers()[0].approval,
        super::ApprovalSpec::Always
    );

    let problems = problems_of(
        r#"
[[tool]]
name = "a"
handler = "echo"
approval = "sometimes"
parameters = { type = "object" }

[[mcp]]
name = "b"
command = ["x"]
approval = { outside_domain = ["example.com"] }
"#,
    );
    assert_has(
        &problems,
        "tool `a`: approval: expected \"never\", \"always\"",
    );
    assert_has(
        &problems,
        "mcp server `b`: approval: unknown field `outside_domain`",
    );
}
