//! How the PostgreSQL store's values map to columns and back: timestamps as BIGINT unix
//! nanoseconds, enums as text keys, and driver failures as [`StoreError`]s naming the
//! operation.

use time::OffsetDateTime;

use crate::session::message::EntrySource;
use crate::store::{CallStatus, StoreError, StoreResult};

/// A driver or pool failure during `operation`, as the store reports it. The driver's errors
/// say little at the top ("db error") and the server's reason in their sources, so the whole
/// chain is spelled out in the one message.
pub(super) fn backend(
    operation: &str,
    source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> StoreError {
    StoreError::backend(
        format!("postgres {operation}"),
        spelled_out(&*source.into()),
    )
}

/// `error` and each of its sources, joined with ": ", a source that repeats its parent's text
/// left out.
fn spelled_out(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A closure mapping a driver error into [`backend`] for `operation`.
pub(super) fn fail<E>(operation: &'static str) -> impl FnOnce(E) -> StoreError
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    move |error| backend(operation, error)
}

/// Unix nanoseconds, UTC; covers the years 1677 to 2262.
pub(super) fn to_nanos(operation: &str, at: OffsetDateTime) -> StoreResult<i64> {
    i64::try_from(at.unix_timestamp_nanos()).map_err(|_| {
        backend(
            operation,
            format!("timestamp {at} is outside the storable range"),
        )
    })
}

pub(super) fn from_nanos(operation: &str, nanos: i64) -> StoreResult<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos)).map_err(|e| {
        backend(
            operation,
            format!("stored timestamp {nanos} is invalid: {e}"),
        )
    })
}

pub(super) fn source_key(source: EntrySource) -> &'static str {
    match source {
        EntrySource::ApiRequest => "api_request",
        EntrySource::ApiResponse => "api_response",
        EntrySource::ToolResponse => "tool_response",
        EntrySource::Internal => "internal",
    }
}

pub(super) fn parse_source(operation: &str, text: &str) -> StoreResult<EntrySource> {
    Ok(match text {
        "api_request" => EntrySource::ApiRequest,
        "api_response" => EntrySource::ApiResponse,
        "tool_response" => EntrySource::ToolResponse,
        "internal" => EntrySource::Internal,
        other => {
            return Err(backend(
                operation,
                format!("unknown entry source {other:?}"),
            ));
        }
    })
}

pub(super) fn status_key(status: CallStatus) -> &'static str {
    match status {
        CallStatus::Started => "started",
        CallStatus::Finished => "finished",
    }
}

pub(super) fn parse_status(operation: &str, text: &str) -> StoreResult<CallStatus> {
    match text {
        "started" => Ok(CallStatus::Started),
        "finished" => Ok(CallStatus::Finished),
        other => Err(backend(operation, format!("unknown call status {other:?}"))),
    }
}
