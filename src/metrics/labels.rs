//! Label values of the metric families. Each comes from a closed set (HTTP method, route
//! template, status, outcome) or from a bounded set of admitted values (model and tool names,
//! tool error kinds): neither a client nor the model can add series without limit. Anything
//! outside the set is [`OTHER`].

use axum::http::Method;

/// The value of a label whose real value is not kept: an unknown method, a model name past
/// the limits, a tool name the model made up.
pub const OTHER: &str = "other";

/// The standard methods by name; any other method (clients may send any token) is [`OTHER`].
pub fn method(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => OTHER,
    }
}

/// How many values an open label keeps and how long one may be
/// (`server.metrics_max_label_values`, `server.metrics_max_label_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelLimits {
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

/// The values one open label has taken, first come first kept, up to the limits.
#[derive(Debug, Default)]
pub struct Admitted {
    values: Vec<Box<str>>,
}

impl Admitted {
    /// `value` if it is kept (already, or now as a new value within the limits), else
    /// [`OTHER`]. Allocates only when a value is admitted, which happens at most
    /// `max_values` times.
    pub fn admit<'a>(&'a mut self, value: &str, limits: LabelLimits) -> &'a str {
        if let Some(at) = self.values.iter().position(|kept| **kept == *value) {
            return &self.values[at];
        }
        if value == OTHER
            || value.len() > limits.max_bytes
            || self.values.len() >= limits.max_values
        {
            return OTHER;
        }
        self.values.push(value.into());
        self.values.last().map_or(OTHER, |kept| kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_methods_are_other() {
        assert_eq!(method(&Method::PATCH), "PATCH");
        let made_up = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method(&made_up), OTHER);
    }

    #[test]
    fn open_labels_keep_the_first_values_within_the_limits() {
        let limits = LabelLimits {
            max_values: 2,
            max_bytes: 8,
        };
        let mut admitted = Admitted::default();
        assert_eq!(admitted.admit("a", limits), "a");
        assert_eq!(admitted.admit("far-too-long", limits), OTHER);
        assert_eq!(admitted.admit("b", limits), "b");
        assert_eq!(admitted.admit("c", limits), OTHER);
        assert_eq!(admitted.admit("a", limits), "a");
        assert_eq!(admitted.values.len(), 2);
    }
}
