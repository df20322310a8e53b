//! `/healthz` (the process answers) and `/readyz` (the store answers and the daemon is not
//! draining; it also lists each MCP server's state, and a server that is down makes the daemon
//! no less ready: its tools are just not offered); neither needs a key.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;

pub(super) async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub(super) async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    if state.is_draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "draining" })),
        );
    }
    match state.store.ping().await {
        Ok(()) => {
            let mut body = json!({ "status": "ready", "tools": state.engine.catalog().len() });
            let servers = state.mcp.statuses();
            if !servers.is_empty() {
                body["mcp"] = mcp_servers(&servers);
            }
            (StatusCode::OK, Json(body))
        }
        Err(e) => {
            tracing::error!(error = %e, "readiness: store does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "store unavailable" })),
            )
        }
    }
}

/// `{"name": {"state": "up", "tools": 3, "failures": 0}}`. Why a server is down goes to the
/// log, not here: `/readyz` answers without a key, and the reason names paths and hosts.
fn mcp_servers(servers: &[crate::mcp::ServerStatus]) -> Value {
    let mut out = serde_json::Map::new();
    for server in servers {
        out.insert(
            server.name.clone(),
            json!({
                "state": server.phase.as_str(),
                "tools": server.tools,
                "failures": server.failures,
            }),
        );
    }
    Value::Object(out)
}
