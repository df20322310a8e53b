//! Where label values come from. Each is from a closed set (HTTP method, status, outcome, and
//! the route templates and provider names callers own) or from a bounded set of admitted values
//! (model and tool names, tool error kinds): neither a client nor the model can add series
//! without limit. Anything outside the set is [`OTHER`].

use std::sync::{Arc, Mutex, PoisonError};

/// The value of a label whose real value is not kept: an unknown method, a model name past
/// the limits, a tool name the model made up.
pub(crate) const OTHER: &str = "other";

/// How many values an open label keeps and how long one may be
/// (`server.metrics_max_label_values`, `server.metrics_max_label_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LabelLimits {
    pub max_values: usize,
    pub max_bytes: usize,
}

impl Default for LabelLimits {
    fn default() -> Self {
        Self {
            max_values: 100,
            max_bytes: 100,
        }
    }
}

/// The limits of a label whose values callers take from a closed set of their own (route
/// templates, provider names). Far above any real set; they only keep a caller that passed a
/// raw value by mistake from growing the series without limit.
pub(super) const CLOSED: LabelLimits = LabelLimits {
    max_values: 1024,
    max_bytes: 4096,
};

/// The values one label has taken, first come first kept, up to the limits. A kept value is
/// handed out shared, so building a label set copies no text.
#[derive(Debug)]
pub(super) struct Admitted {
    values: Mutex<Vec<Arc<str>>>,
    other: Arc<str>,
}

impl Default for Admitted {
    fn default() -> Self {
        Self {
            values: Mutex::default(),
            other: Arc::from(OTHER),
        }
    }
}

impl Admitted {
    /// `value` if it is kept (already, or now as a new value within the limits), else
    /// [`OTHER`]. Allocates only when a value is admitted, which happens at most
    /// `max_values` times.
    pub(super) fn admit(&self, value: &str, limits: LabelLimits) -> Arc<str> {
        let mut values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(kept) = values.iter().find(|kept| ***kept == *value) {
            return Arc::clone(kept);
        }
        if value == OTHER || value.len() > limits.max_bytes || values.len() >= limits.max_values {
            return Arc::clone(&self.other);
        }
        let kept: Arc<str> = Arc::from(value);
        values.push(Arc::clone(&kept));
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_labels_keep_the_first_values_within_the_limits() {
        let limits = LabelLimits {
            max_values: 2,
            max_bytes: 8,
        };
        let admitted = Admitted::default();
        assert_eq!(&*admitted.admit("a", limits), "a");
        assert_eq!(&*admitted.admit("far-too-long", limits), OTHER);
        assert_eq!(&*admitted.admit("b", limits), "b");
        assert_eq!(&*admitted.admit("c", limits), OTHER);
        assert_eq!(&*admitted.admit("a", limits), "a");
        assert_eq!(admitted.values.lock().unwrap().len(), 2);
    }

    #[test]
    fn a_kept_value_is_shared_not_copied() {
        let admitted = Admitted::default();
        let first = admitted.admit("m", LabelLimits::default());
        let again = admitted.admit("m", LabelLimits::default());
        assert!(Arc::ptr_eq(&first, &again));
    }
}
