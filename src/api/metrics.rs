//! `GET /metrics`: the process's metrics in the Prometheus text format.

use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use crate::telemetry;

pub(super) async fn serve() -> Response {
    (
        [(CONTENT_TYPE, telemetry::CONTENT_TYPE)],
        telemetry::metrics().encode(),
    )
        .into_response()
}
