//! API-key check for every route but health: `Authorization: Bearer <key>` or
//! `X-Auth-Key: <key>` (a leading `Bearer ` is stripped there too). No key: 401; wrong key: 403.

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use secrecy::{ExposeSecret, SecretString};
use subtle::{Choice, ConstantTimeEq};

use super::AppState;
use super::error::ApiError;

/// The key a request presents, if any.
fn presented(headers: &HeaderMap) -> Option<&str> {
    let raw = headers
        .get(axum::http::header::AUTHORIZATION)
        .or_else(|| headers.get("x-auth-key"))?
        .to_str()
        .ok()?
        .trim();
    let key = raw
        .strip_prefix("Bearer ")
        .or_else(|| raw.strip_prefix("bearer "))
        .unwrap_or(raw)
        .trim();
    (!key.is_empty()).then_some(key)
}

/// Whether `key` is one of `keys`. Each comparison takes the same time wherever the first
/// differing byte is (`subtle`), and every key is compared, so timing tells nothing of a key.
pub(super) fn key_matches(keys: &[SecretString], key: &str) -> bool {
    keys.iter()
        .fold(Choice::from(0), |found, k| {
            found | k.expose_secret().as_bytes().ct_eq(key.as_bytes())
        })
        .into()
}

pub(super) async fn require_key(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let key = presented(request.headers()).ok_or(ApiError::Unauthenticated)?;
    if !key_matches(&state.keys.current(), key) {
        return Err(ApiError::Forbidden);
    }
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_forms() {
        let mut h = HeaderMap::new();
        assert_eq!(presented(&h), None);
        h.insert("x-auth-key", "Bearer k1".parse().unwrap());
        assert_eq!(presented(&h), Some("k1"));
        h.insert("authorization", "Bearer k2".parse().unwrap());
        assert_eq!(presented(&h), Some("k2"));
        let keys = vec![SecretString::from("k2")];
        assert!(key_matches(&keys, "k2"));
        assert!(!key_matches(&keys, "k3"));
        assert!(!key_matches(&keys, "k"));
    }
}
