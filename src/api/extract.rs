//! Request parsing with the API's error shape: JSON bodies (read within
//! `limits.body_read_timeout`, 408 otherwise) whose type errors become 422 with a `loc` path,
//! and list query parameters (`limit`, `offset`, `sort_by`, `direction`,
//! `metadata_filter.<key>`, or `metadata_filter` as a JSON object; at most
//! `limits.max_list_filters` filters).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;
use crate::store::{Direction, ListQuery, SortBy};

/// A JSON body; unknown fields are ignored by the target types, wrong types are 422.
pub(crate) struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        // A client that sends its body a byte at a time holds a connection and a task: the
        // whole body has one deadline, not one per read.
        let deadline = state.limits.body_read_timeout;
        let read = tokio::time::timeout(deadline, Bytes::from_request(req, state))
            .await
            .map_err(|_| {
                tracing::info!(
                    timeout_ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
                    "request body not read within limits.body_read_timeout; answered 408"
                );
                ApiError::BodyTimeout(deadline)
            })?;
        let bytes = read.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge
            } else {
                ApiError::BadRequest(format!("cannot read request body: {rejection}"))
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses JSON into `T`, reporting the failing path as `loc`.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid(
            "body",
            "request body is empty; expected a JSON object",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let loc = match e.path().to_string() {
            p if p == "." => "body".to_owned(),
            p => dotted(&p),
        };
        let msg = e.inner().to_string();
        let msg = match msg.find(" at line ") {
            Some(i) if e.inner().is_data() => msg[..i].to_owned(),
            _ => msg,
        };
        ApiError::invalid(loc, msg)
    })
}

/// `messages[0].role` → `messages.0.role`, the API's `loc` form.
fn dotted(path: &str) -> String {
    path.replace('[', ".").replace(']', "")
}

/// List parameters from the query string.
pub(crate) struct ListParams(pub ListQuery);

impl FromRequestParts<AppState> for ListParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let mut list = parse_list_query(query, state.limits.max_list_filters)?;
        list.max_bytes = state.limits.max_list_bytes;
        Ok(ListParams(list))
    }
}

/// Adds a problem unless it is already listed: a parameter repeated a thousand times is
/// reported once.
fn note(problems: &mut Vec<(&'static str, &'static str)>, problem: (&'static str, &'static str)) {
    if !problems.contains(&problem) {
        problems.push(problem);
    }
}

/// Reads list parameters; more than `max_filters` metadata filters is a 422 (each one is a
/// clause of the query the database plans and runs).
pub(crate) fn parse_list_query(query: &str, max_filters: usize) -> Result<ListQuery, ApiError> {
    let mut list = ListQuery::default();
    let mut problems = Vec::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if list.metadata_filter.len() > max_filters {
            break;
        }
        match key.as_ref() {
            "limit" => match value.parse::<u32>() {
                Ok(n) if (1..=1000).contains(&n) => list.limit = n,
                _ => note(
                    &mut problems,
                    ("limit", "must be an integer from 1 to 1000"),
                ),
            },
            "offset" => match value.parse::<u32>() {
                Ok(n) => list.offset = n,
                Err(_) => note(&mut problems, ("offset", "must be a non-negative integer")),
            },
            "sort_by" => match value.as_ref() {
                "created_at" => list.sort_by = SortBy::CreatedAt,
                "updated_at" => list.sort_by = SortBy::UpdatedAt,
                _ => note(
                    &mut problems,
                    ("sort_by", "must be `created_at` or `updated_at`"),
                ),
            },
            "direction" => match value.as_ref() {
                "asc" => list.direction = Direction::Asc,
                "desc" => list.direction = Direction::Desc,
                _ => note(&mut problems, ("direction", "must be `asc` or `desc`")),
            },
            "metadata_filter" => {
                match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&value) {
                    Ok(map) => list.metadata_filter.extend(map.into_iter().map(|(k, v)| {
                        let v = match v {
                            serde_json::Value::String(s) => s,
                            other => other.to_string(),
                        };
                        (k, v)
                    })),
                    Err(_) => note(&mut problems, ("metadata_filter", "must be a JSON object")),
                }
            }
            other => {
                if let Some(meta_key) = other.strip_prefix("metadata_filter.")
                    && !meta_key.is_empty()
                {
                    list.metadata_filter
                        .push((meta_key.to_owned(), value.into_owned()));
                } else if let Some(meta_key) = other
                    .strip_prefix("metadata_filter[")
                    .and_then(|k| k.strip_suffix(']'))
                {
                    list.metadata_filter
                        .push((meta_key.to_owned(), value.into_owned()));
                }
            }
        }
    }
    if list.metadata_filter.len() > max_filters {
        return Err(ApiError::invalid(
            "query.metadata_filter",
            format!("at most {max_filters} metadata filters per query (limits.max_list_filters)"),
        ));
    }
    if problems.is_empty() {
        Ok(list)
    } else {
        Err(ApiError::Validation(
            problems
                .into_iter()
                .map(|(loc, msg)| super::error::FieldError {
                    loc: format!("query.{loc}"),
                    msg: msg.to_owned(),
                })
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_query_forms() {
        let q = parse_list_query("limit=5&offset=2&sort_by=updated_at&direction=asc&metadata_filter.team=a%20b&metadata_filter[x]=1", 16).unwrap();
        assert_eq!((q.limit, q.offset), (5, 2));
        assert_eq!(q.sort_by, SortBy::UpdatedAt);
        assert_eq!(q.direction, Direction::Asc);
        assert_eq!(
            q.metadata_filter,
            vec![("team".into(), "a b".into()), ("x".into(), "1".into())]
        );
        let q = parse_list_query("metadata_filter=%7B%22k%22%3A2%7D", 16).unwrap();
        assert_eq!(q.metadata_filter, vec![("k".into(), "2".into())]);
        assert!(
            matches!(parse_list_query("limit=0&direction=up", 16), Err(ApiError::Validation(v)) if v.len() == 2)
        );
    }

    #[test]
    fn json_errors_carry_the_path() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct M {
            role: String,
        }
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct B {
            messages: Vec<M>,
        }
        let err = parse_json::<B>(br#"{"messages":[{"role":1}]}"#).unwrap_err();
        match err {
            ApiError::Validation(v) => assert_eq!(v[0].loc, "messages.0.role"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            parse_json::<B>(b"  "),
            Err(ApiError::Validation(_))
        ));
    }
}
