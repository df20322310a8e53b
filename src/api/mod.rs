//! The HTTP API: shared state and the one route table. Handlers live in one file per resource.

mod agent_tools;
mod agents;
pub(crate) mod approvals;
mod auth;
pub(crate) mod chat;
pub(crate) mod error;
pub(crate) mod extract;
mod health;
mod history;
mod http_metrics;
mod known_schemas;
mod metrics;
mod prompt_text;
mod records;
mod resources;
mod sessions;
mod sse;
pub(crate) mod tool_schemas;
mod users;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};
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
}

impl Shared {
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// The route table: every API path under `base_path`, health routes at the root.
/// `/metrics` is served at the root and needs a key unless `metrics_public`.
pub(crate) fn router(
    state: AppState,
    base_path: &str,
    max_body_bytes: usize,
    metrics_public: bool,
) -> Router {
    let api = Router::new()
        .route(
            "/agents",
            post(resources::create::<Agents>).get(resources::list::<Agents>),
        )
        .route(
            "/agents/{id}",
            get(resources::get::<Agents>)
                .put(resources::replace::<Agents>)
                .patch(resources::patch::<Agents>)
                .delete(resources::delete::<Agents>)
                .post(resources::create_or_update::<Agents>),
        )
        .route(
            "/agents/{id}/tools",
            get(agent_tools::list).post(agent_tools::create),
        )
        .route(
            "/agents/{id}/tools/{tool_id}",
            axum::routing::put(agent_tools::replace)
                .patch(agent_tools::patch)
                .delete(agent_tools::delete),
        )
        .route(
            "/users",
            post(resources::create::<Users>).get(resources::list::<Users>),
        )
        .route(
            "/users/{id}",
            get(resources::get::<Users>)
                .put(resources::replace::<Users>)
                .patch(resources::patch::<Users>)
                .delete(resources::delete::<Users>)
                .post(resources::create_or_update::<Users>),
        )
        .route(
            "/sessions",
            post(resources::create::<Sessions>).get(resources::list::<Sessions>),
        )
        .route(
            "/sessions/{id}",
            get(resources::get::<Sessions>)
                .put(resources::replace::<Sessions>)
                .patch(resources::patch::<Sessions>)
                .delete(sessions::delete)
                .post(resources::create_or_update::<Sessions>),
        )
        .route("/sessions/{id}/chat", post(chat::chat))
        .route("/sessions/{id}/approvals", get(approvals::list))
        .route(
            "/sessions/{id}/approvals/{call_id}",
            post(approvals::decide),
        )
        .route(
            "/sessions/{id}/history",
            get(history::get).delete(history::clear),
        )
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ));
    let api = if base_path.is_empty() {
        api
    } else {
        Router::new().nest(base_path, api)
    };
    let metrics = Router::new().route("/metrics", get(metrics::serve));
    let metrics = if metrics_public {
        metrics
    } else {
        metrics.route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ))
    };
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
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
