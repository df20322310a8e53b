//! The one error type of the HTTP API: every failure leaves as
//! `{"error": {"message", "code", "type", "details"?}}` with the right status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use crate::provider::ProviderError;
use crate::store::{Collection, StoreError};
use crate::turn::TurnError;

/// Where a validation problem is (`messages.0.role`) and what it is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct FieldError {
    pub loc: String,
    pub msg: String,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("missing API key: send `Authorization: Bearer <key>` or `X-Auth-Key: <key>`")]
    Unauthenticated,
    #[error("invalid API key")]
    Forbidden,
    #[error("{noun} `{id}` not found")]
    NotFound { noun: &'static str, id: String },
    #[error("no route for {0}")]
    NoRoute(String),
    #[error("{0} is not allowed on this route")]
    MethodNotAllowed(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("request validation failed")]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    Conflict(String),
    #[error("request body exceeds the size limit (server.max_body_bytes)")]
    TooLarge,
    #[error(
        "the request body did not arrive within {}s (limits.body_read_timeout)",
        .0.as_secs_f64()
    )]
    BodyTimeout(std::time::Duration),
    /// Something the request would make agentd hold is over a `[limits]` ceiling; `code` says
    /// which (`history_full`, `prompt_too_large`).
    #[error("{message}")]
    LimitExceeded { code: &'static str, message: String },
    #[error("{0}")]
    Upstream(String),
    #[error("agentd is shutting down; retry against another instance")]
    Draining,
    /// Work the request needs could not start in time because others hold every slot.
    #[error("{0}")]
    Overloaded(String),
    #[error("internal error; see the daemon log")]
    Internal,
}

impl ApiError {
    pub(crate) fn not_found(collection: Collection, id: impl Into<String>) -> Self {
        ApiError::NotFound {
            noun: collection.noun(),
            id: id.into(),
        }
    }

    /// One validation problem.
    pub(crate) fn invalid(loc: impl Into<String>, msg: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError {
            loc: loc.into(),
            msg: msg.into(),
        }])
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } | ApiError::NoRoute(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge | ApiError::LimitExceeded { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ApiError::Draining | ApiError::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable machine-readable code.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::Forbidden => "forbidden",
            ApiError::NotFound { .. } => "not_found",
            ApiError::NoRoute(_) => "no_route",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Validation(_) => "validation_error",
            ApiError::Conflict(_) => "conflict",
            ApiError::TooLarge => "payload_too_large",
            ApiError::BodyTimeout(_) => "request_timeout",
            ApiError::LimitExceeded { code, .. } => code,
            ApiError::Upstream(_) => "upstream_error",
            ApiError::Draining => "draining",
            ApiError::Overloaded(_) => "overloaded",
            ApiError::Internal => "internal_error",
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated | ApiError::Forbidden => "authentication_error",
            ApiError::Upstream(_) | ApiError::Draining => "upstream_error",
            ApiError::Internal | ApiError::Overloaded(_) => "server_error",
            _ => "invalid_request_error",
        }
    }

    /// The JSON body (also used for the error chunk of a stream).
    pub(crate) fn body(&self) -> serde_json::Value {
        let mut error = json!({
            "message": self.to_string(),
            "code": self.code(),
            "type": self.kind(),
        });
        if let ApiError::Validation(details) = self {
            error["details"] = json!(details);
            if let Some(first) = details.first() {
                error["message"] = json!(format!("{}: {}", first.loc, first.msg));
            }
        }
        json!({ "error": error })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status(), Json(self.body())).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => ApiError::Conflict(format!("{what} already exists")),
            StoreError::PageTooLarge(limit) => ApiError::invalid(
                "query.limit",
                format!(
                    "the page would hold more than {limit} bytes (limits.max_list_bytes); \
                     ask for fewer items with `limit`"
                ),
            ),
            backend @ StoreError::Backend { .. } => {
                tracing::error!(error = %backend, "store failure");
                ApiError::Internal
            }
        }
    }
}

impl From<ProviderError> for ApiError {
    fn from(e: ProviderError) -> Self {
        ApiError::Upstream(e.to_string())
    }
}

impl From<TurnError> for ApiError {
    fn from(e: TurnError) -> Self {
        match e {
            TurnError::Provider(p) => p.into(),
            TurnError::Store(s) => s.into(),
            TurnError::Invalid { loc, msg } => ApiError::invalid(loc, msg),
            TurnError::Limit { code, message } => ApiError::LimitExceeded { code, message },
            TurnError::Cancelled => ApiError::Draining,
        }
    }
}
