//! The label sets of the metric families, typed: one struct per family, label names from its
//! field names, closed sets as enums. Callers map their own types onto these enums.

use std::fmt::Write as _;
use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};

use super::labels::OTHER;

/// An HTTP request method: the standard nine by name, any other token (clients may send any)
/// as [`OTHER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum HttpMethod {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
    Connect,
    Trace,
    Other,
}

impl HttpMethod {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Head => "HEAD",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Delete => "DELETE",
            HttpMethod::Options => "OPTIONS",
            HttpMethod::Connect => "CONNECT",
            HttpMethod::Trace => "TRACE",
            HttpMethod::Other => OTHER,
        }
    }
}

impl EncodeLabelValue for HttpMethod {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// How a model call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ModelOutcome {
    Ok,
    Error,
    Cancelled,
}

impl ModelOutcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ModelOutcome::Ok => "ok",
            ModelOutcome::Error => "error",
            ModelOutcome::Cancelled => "cancelled",
        }
    }
}

impl EncodeLabelValue for ModelOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// `agentd_http_requests_total`, `agentd_http_request_duration_seconds`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct HttpLabels {
    /// The route template, or `unmatched`; never the raw path.
    pub route: Arc<str>,
    pub method: HttpMethod,
    pub status: u16,
}

/// `agentd_model_calls_total`, `agentd_model_call_duration_seconds`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct ModelLabels {
    pub provider: Arc<str>,
    pub model: Arc<str>,
    pub outcome: ModelOutcome,
}

/// `agentd_tool_calls_total`, `agentd_tool_call_duration_seconds`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct ToolLabels {
    pub tool: Arc<str>,
    /// `ok`, `replayed` or the error kind.
    pub outcome: Arc<str>,
}

/// `agentd_mcp_server_up`, `agentd_mcp_server_tools`, `agentd_mcp_server_failures_total`: one
/// series per `[[mcp]]` entry (the operator's configuration bounds them).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct McpLabels {
    pub server: String,
}

/// `agentd_approval_decisions_total`: how held calls ended (`approved`, `denied`, `expired`,
/// `superseded`; a closed set).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct DecisionLabels {
    pub decision: &'static str,
}

/// The embedded store's mirror metrics: `part` is `records`, `children` or `history` (a
/// closed set).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct MirrorLabels {
    pub part: &'static str,
}

/// `agentd_store_mirror_lookups_total`: `result` is `hit` or `miss`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct MirrorLookupLabels {
    pub part: &'static str,
    pub result: &'static str,
}
