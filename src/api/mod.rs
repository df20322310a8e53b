//! The HTTP API: shared state and the one route table. Handlers live in one file per resource.

mod agent_tools;
mod agents;
pub(crate) mod approvals;
mod auth;
pub(crate) mod chat;
mod chat_messages;
pub(crate) mod error;
pub(crate) mod extract;
mod health;
mod history;
mod http_metrics;
mod known_schemas;
mod metrics;
mod openapi;
mod prompt_text;
mod records;
mod resources;
mod sessions;
mod sse;
pub(crate) mod tool_schemas;
pub(crate) mod turn_claim;
mod users;
mod whole;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use tokio_util::sync::CancellationToken;

use crate::session::lock::TurnLocks;
use crate::store::Store;
use crate::turn::Engine;
use agents::Agents;
use error::ApiError;
use sessions::Sessions;
use users::Users;

/// Everything a handler can reach, behind one `Arc`: handlers and middleware clone the state
/// for every request, and one reference count is cheaper than one per field.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Shared>);

impl AppState {
    pub(crate) fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] shares.
pub(crate) struct Shared {
    pub store: Arc<dyn Store>,
    pub engine: Arc<Engine>,
    /// The MCP servers whose tools join the catalog while they run.
    pub mcp: crate::mcp::McpHub,
    pub keys: Arc<crate::daemon::keys::ApiKeys>,
    pub locks: Arc<TurnLocks>,
    /// Set when the daemon stops taking new turns.
    pub draining: Arc<AtomicBool>,
    /// Cancelled when turns still running at the end of the drain must stop.
    pub abort: CancellationToken,
    /// Interval of a stream's keep-alive comments (`server.sse_keep_alive`).
    pub sse_keep_alive: Duration,
    /// Compiles and bounds the schemas of declared tools (request and agent tools).
    pub tool_schemas: tool_schemas::ToolSchemas,
    /// Agent and session text that goes into the system prompt is refused above this
    /// (`turn.max_system_prompt_bytes`).
    pub max_system_prompt_bytes: usize,
    /// Ceilings on what a request may make the daemon hold or wait for (`[limits]`).
    pub limits: crate::config::LimitsConfig,
    /// The catalog tool told when a call is held for approval (`turn.approval_webhook`).
    pub approval_webhook: Option<String>,
    /// This process among the agentd instances sharing the store (whose turn claims are
    /// whose).
    pub instance_id: String,
    /// How long a turn claim lasts unless renewed (`storage.turn_claim_ttl`).
    pub turn_claim_ttl: Duration,
}

impl Shared {
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// A group of routes, declared once: the router serving them and the table listing them
/// (the OpenAPI document is checked against the table).
struct Routes {
    router: Router<AppState>,
    /// Each path with the methods it answers, as written in `routes!` (read by the tests that
    /// hold the OpenAPI document to the routes).
    #[cfg_attr(not(test), allow(dead_code))]
    table: &'static [(&'static str, &'static [&'static str])],
}

/// `routes! { "/path" => get(handler).post(handler), ... }`: the router of these routes and
/// their table, from the same text.
macro_rules! routes {
    ($($path:literal => $first:ident($h0:expr) $(.$method:ident($h:expr))*),+ $(,)?) => {
        Routes {
            router: Router::new()
                $(.route($path, axum::routing::$first($h0) $(.$method($h))*))+,
            table: &[$(($path, &[stringify!($first) $(, stringify!($method))*])),+],
        }
    };
}

/// The API's resources, under `base_path`, each behind the API key.
fn api_routes() -> Routes {
    routes! {
        "/agents" => post(resources::create::<Agents>).get(resources::list::<Agents>),
        "/agents/{id}" => get(resources::get::<Agents>)
            .put(resources::replace::<Agents>)
            .patch(resources::patch::<Agents>)
            .delete(resources::delete::<Agents>)
            .post(resources::create_or_update::<Agents>),
        "/agents/{id}/tools" => get(agent_tools::list).post(agent_tools::create),
        "/agents/{id}/tools/{tool_id}" => put(agent_tools::replace)
            .patch(agent_tools::patch)
            .delete(agent_tools::delete),
        "/users" => post(resources::create::<Users>).get(resources::list::<Users>),
        "/users/{id}" => get(resources::get::<Users>)
            .put(resources::replace::<Users>)
            .patch(resources::patch::<Users>)
            .delete(resources::delete::<Users>)
            .post(resources::create_or_update::<Users>),
        "/sessions" => post(resources::create::<Sessions>).get(resources::list::<Sessions>),
        "/sessions/{id}" => get(resources::get::<Sessions>)
            .put(resources::replace::<Sessions>)
            .patch(resources::patch::<Sessions>)
            .delete(sessions::delete)
            .post(resources::create_or_update::<Sessions>),
        "/sessions/{id}/chat" => post(chat::chat),
        "/sessions/{id}/approvals" => get(approvals::list),
        "/sessions/{id}/approvals/{call_id}" => post(approvals::decide),
        "/sessions/{id}/history" => get(history::get).delete(history::clear),
    }
}

/// The API's description, under `base_path`, without a key: it is the same for every
/// client and holds nothing of the daemon's state.
fn document_routes(document: openapi::Document) -> Routes {
    routes! {
        "/openapi.json" => get(move || openapi::serve(document.clone())),
    }
}

/// Health, at the root, without a key.
fn health_routes() -> Routes {
    routes! {
        "/healthz" => get(health::healthz),
        "/readyz" => get(health::readyz),
    }
}

/// Metrics, at the root, behind the key unless `server.metrics_public`.
fn metrics_routes() -> Routes {
    routes! {
        "/metrics" => get(metrics::serve),
    }
}

/// Every route the daemon serves with `base_path`: its method (upper case) and path.
#[cfg(test)]
pub(crate) fn route_list(base_path: &str) -> Vec<(String, String)> {
    let under_base = [api_routes(), document_routes(openapi::Document::default())];
    let at_root = [health_routes(), metrics_routes()];
    let prefixed = under_base.iter().map(|r| (base_path, r.table));
    let rooted = at_root.iter().map(|r| ("", r.table));
    prefixed
        .chain(rooted)
        .flat_map(|(prefix, table)| table.iter().map(move |entry| (prefix, entry)))
        .flat_map(|(prefix, (path, methods))| {
            methods
                .iter()
                .map(move |m| (m.to_ascii_uppercase(), format!("{prefix}{path}")))
        })
        .collect()
}

/// The route table: every API path under `base_path`, health routes at the root.
/// `/metrics` is served at the root and needs a key unless `metrics_public`.
pub(crate) fn router(
    state: AppState,
    base_path: &str,
    max_body_bytes: usize,
    metrics_public: bool,
) -> Router {
    let document = openapi::Document::for_base_path(base_path);
    let api = api_routes()
        .router
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ))
        .merge(document_routes(document).router)
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed);
    let api = if base_path.is_empty() {
        api
    } else {
        Router::new().nest(base_path, api)
    };
    let metrics = metrics_routes().router;
    let metrics = if metrics_public {
        metrics
    } else {
        metrics.route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ))
    };
    health_routes()
        .router
        .merge(metrics)
        .merge(api)
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(http_metrics::track))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

async fn no_route(uri: axum::http::Uri) -> ApiError {
    ApiError::NoRoute(uri.path().to_owned())
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} {}", uri.path()))
}
