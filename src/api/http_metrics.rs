//! The middleware recording every HTTP request in the metrics: its route template (never the
//! raw path; `unmatched` when no route matched), its method (`other` for a non-standard one),
//! its status and the time until the response head.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use crate::telemetry::{self, HttpMethod};

pub(super) async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = method_label(request.method());
    let response = next.run(request).await;
    telemetry::metrics().record_http(
        method,
        route.as_ref().map(MatchedPath::as_str),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// The standard methods by name; any other method (clients may send any token) is `other`.
fn method_label(method: &Method) -> HttpMethod {
    match *method {
        Method::GET => HttpMethod::Get,
        Method::HEAD => HttpMethod::Head,
        Method::POST => HttpMethod::Post,
        Method::PUT => HttpMethod::Put,
        Method::PATCH => HttpMethod::Patch,
        Method::DELETE => HttpMethod::Delete,
        Method::OPTIONS => HttpMethod::Options,
        Method::CONNECT => HttpMethod::Connect,
        Method::TRACE => HttpMethod::Trace,
        _ => HttpMethod::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_methods_are_other() {
        assert_eq!(method_label(&Method::PATCH).as_str(), "PATCH");
        let made_up = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&made_up).as_str(), "other");
    }
}
