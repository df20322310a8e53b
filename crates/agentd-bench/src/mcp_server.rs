//! The `mcp` scenario's tool source: the reference MCP server (`server-everything`, run by
//! node over stdio) found on disk, its `[[mcp]]` entry in the scratch tools.toml, waiting on
//! agentd's `/readyz` until it is up, and the server's process among agentd's children.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `[[mcp]]` entry's name, the prefix of its tools.
const SERVER_NAME: &str = "everything";

/// The server's `echo` tool as the model calls it.
pub(crate) const ECHO_TOOL: &str = "everything__echo";

/// Where `npm ci --prefix tests/mcp` puts the server's entry point, from the repository root.
const SCRIPT_IN_REPO: &str =
    "tests/mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js";

/// The entry point: `explicit` (`--mcp-server`) when given, else [`SCRIPT_IN_REPO`] under the
/// current directory or one of its parents, else under the bench executable's directory or
/// one of its parents. The error is one line saying how to install it.
pub(crate) fn locate(explicit: Option<&Path>) -> Result<PathBuf, String> {
    let found = match explicit {
        Some(path) => path.is_file().then(|| path.to_path_buf()),
        None => {
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
        }
    };
    let looked_for = explicit.map_or_else(
        || format!("{SCRIPT_IN_REPO} above the current directory or the bench executable"),
        |path| path.display().to_string(),
    );
    let script = found.ok_or_else(|| {
        format!(
            "mcp: skipped, the reference MCP server is not installed (no {looked_for}); \
             install it with `npm ci --prefix tests/mcp --no-audit --no-fund` at the repository \
             root, or pass --mcp-server PATH"
        )
    })?;
    std::path::absolute(&script).map_err(|e| format!("mcp: {}: {e}", script.display()))
}

/// The `[[mcp]]` entry offering only `echo`, and only to requests that name it (`offer =
/// false`), so the other scenarios' turns offer the model nothing more than before.
pub(crate) fn tools_entry(script: &Path) -> String {
    let script = serde_json::to_string(&script.display().to_string()).unwrap_or_default();
    format!(
        "\n[[mcp]]\nname = \"{SERVER_NAME}\"\ncommand = [\"node\", {script}, \"stdio\"]\n\
         tools = [\"echo\"]\noffer = false\n"
    )
}

/// Polls agentd's `/readyz` until the server is `up` with its tool listed; the error carries
/// the last state agentd reported.
pub(crate) async fn wait_up(
    http: &reqwest::Client,
    agentd_origin: &str,
    timeout: Duration,
) -> Result<Duration, String> {
    let began = Instant::now();
    let url = format!("{agentd_origin}/readyz");
    let mut last = Value::Null;
    while began.elapsed() < timeout {
        if let Ok(response) = http.get(&url).send().await
            && let Ok(body) = response.json::<Value>().await
        {
            last = body["mcp"][SERVER_NAME].clone();
            if last["state"] == "up" && last["tools"].as_u64().unwrap_or(0) >= 1 {
                return Ok(began.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!(
        "mcp: skipped, the MCP server was not up within {timeout:?} (agentd's /readyz: {last})"
    ))
}

/// The server's process: the child of agentd whose command line names `script` (agentd starts
/// node directly, in its own process group).
pub(crate) fn server_pid(agentd_pid: u32, script: &Path) -> Option<u32> {
    let script = script.display().to_string();
    crate::procs::children(agentd_pid)
        .into_iter()
        .find(|&pid| crate::procs::command_line(pid).is_some_and(|line| line.contains(&script)))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{locate, tools_entry};

    #[test]
    fn a_missing_server_is_one_line_saying_how_to_install_it() {
        let error = locate(Some(Path::new("/nonexistent/index.js"))).unwrap_err();
        assert!(!error.contains('\n'), "{error}");
        assert!(error.contains("npm ci --prefix tests/mcp"), "{error}");
        assert!(error.contains("/nonexistent/index.js"), "{error}");
    }

    #[test]
    fn the_entry_quotes_the_path_and_offers_echo_only_on_request() {
        let entry = tools_entry(Path::new("/a b/\"q\"/index.js"));
        assert!(
            entry.contains(r#"command = ["node", "/a b/\"q\"/index.js", "stdio"]"#),
            "{entry}"
        );
        assert!(entry.contains("tools = [\"echo\"]"), "{entry}");
        assert!(entry.contains("offer = false"), "{entry}");
    }
}
