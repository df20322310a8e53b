//! Process telemetry: the tracing subscriber (`logging.rs`) and the metrics registry behind
//! `/metrics` (`metrics.rs`), with its typed label sets (`label_sets.rs`) and the closed or
//! capped sets every label value comes from (`labels.rs`).
//!
//! Nothing here knows HTTP frameworks or turns: callers record plain values and the small
//! enums defined here, and adapt their own types at the call.

mod label_sets;
mod labels;
mod logging;
mod metrics;
#[cfg(test)]
mod metrics_tests;
mod store_metrics;

pub(crate) use label_sets::{HttpMethod, ModelOutcome};
pub(crate) use labels::LabelLimits;
pub(crate) use logging::init;
pub(crate) use metrics::{Active, CONTENT_TYPE, TurnTimer, metrics};
pub(crate) use store_metrics::MirrorMeters;
