//! Durations as written in agentd.toml and tools.toml: `"250ms"`, `"1.5s"`, `"2m"`, `"1h"`,
//! or a bare number of seconds. One parser for the daemon and every plugin: [`parse_duration`]
//! (zero allowed), [`PositiveDuration`] (a timeout, an interval: zero refused) and
//! [`deserialize_duration`] (a serde adapter for `Duration` fields).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Why a duration was refused. The message quotes what was written and says what to write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not a number with a known unit, or out of range.
    #[error("invalid duration `{0}` (write e.g. \"250ms\", \"30s\", \"2m\", \"1h\")")]
    Unreadable(String),
    /// Zero where only a positive duration makes sense.
    #[error("invalid duration `{0}`: must be greater than zero")]
    Zero(String),
}

/// Parses a duration; zero is allowed (use [`PositiveDuration`] where it is not).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let invalid = || DurationError::Unreadable(text.to_owned());
    let value: f64 = number.parse().map_err(|_| invalid())?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(invalid()),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| invalid())
}

/// A number of seconds as written in configuration (`timeout = 2.5`); zero is allowed.
fn seconds_to_duration(seconds: f64) -> Result<Duration, DurationError> {
    Duration::try_from_secs_f64(seconds).map_err(|_| DurationError::Unreadable(seconds.to_string()))
}

/// A duration greater than zero: a timeout, an interval, a deadline.
///
/// Parses like [`parse_duration`] and refuses zero with `invalid duration `0s`: must be greater
/// than zero`. Deserializes from a string or a number of seconds; displays in the largest unit
/// that keeps it whole (`"90s"`, `"2m"`, `"250ms"`), which parses back to the same value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PositiveDuration(Duration);

impl PositiveDuration {
    /// `None` for zero.
    pub const fn new(duration: Duration) -> Option<Self> {
        if duration.is_zero() {
            None
        } else {
            Some(Self(duration))
        }
    }

    /// A whole number of seconds; `None` for zero.
    pub const fn from_secs(seconds: u64) -> Option<Self> {
        Self::new(Duration::from_secs(seconds))
    }

    /// The duration itself.
    pub const fn get(self) -> Duration {
        self.0
    }

    /// Parses `"250ms"`, `"30s"`, `"2m"`, `"1h"` or a bare number of seconds.
    pub fn parse(text: &str) -> Result<Self, DurationError> {
        Self::positive(parse_duration(text)?, text.trim())
    }

    /// A number of seconds as written in configuration.
    pub fn from_secs_f64(seconds: f64) -> Result<Self, DurationError> {
        Self::positive(seconds_to_duration(seconds)?, &seconds.to_string())
    }

    fn positive(duration: Duration, written: &str) -> Result<Self, DurationError> {
        Self::new(duration).ok_or_else(|| DurationError::Zero(written.to_owned()))
    }
}

impl From<PositiveDuration> for Duration {
    fn from(duration: PositiveDuration) -> Self {
        duration.0
    }
}

impl FromStr for PositiveDuration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, DurationError> {
        Self::parse(text)
    }
}

impl fmt::Display for PositiveDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        const MS: u128 = 1_000_000;
        for (unit, size) in [
            ("h", 3600 * 1000 * MS),
            ("m", 60 * 1000 * MS),
            ("s", 1000 * MS),
        ] {
            if nanos.is_multiple_of(size) {
                return write!(f, "{}{unit}", nanos / size);
            }
        }
        if nanos.is_multiple_of(MS) {
            return write!(f, "{}ms", nanos / MS);
        }
        write!(f, "{}s", self.0.as_secs_f64())
    }
}

impl Serialize for PositiveDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PositiveDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurationVisitor(PositiveDuration::parse, |s| {
            PositiveDuration::from_secs_f64(s)
        }))
    }
}

/// Serde adapter for a `Duration` field that may be zero (`#[serde(deserialize_with =
/// "agentd_sdk::deserialize_duration")]`): a duration string or a number of seconds.
pub fn deserialize_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    deserializer.deserialize_any(DurationVisitor(parse_duration, seconds_to_duration))
}

/// Accepts a string (parsed by `.0`) or a number of seconds (converted by `.1`).
struct DurationVisitor<T>(
    fn(&str) -> Result<T, DurationError>,
    fn(f64) -> Result<T, DurationError>,
);

impl<T> Visitor<'_> for DurationVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"250ms\", \"30s\", \"2m\" or a number of seconds")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        (self.0)(text).map_err(E::custom)
    }

    fn visit_f64<E: de::Error>(self, seconds: f64) -> Result<T, E> {
        (self.1)(seconds).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, seconds: u64) -> Result<T, E> {
        // Exact for any realistic number of seconds (below 2^53).
        self.visit_f64(seconds as f64)
    }

    fn visit_i64<E: de::Error>(self, seconds: i64) -> Result<T, E> {
        self.visit_f64(seconds as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_decimals_and_garbage() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration(" 30 "), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in ["soon", "s", "5 parsecs", "", "1.2.3s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn positive_durations_refuse_zero_and_garbage_naming_the_text() {
        let parse = |text| PositiveDuration::parse(text).map(PositiveDuration::get);
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse(" 30 "), Ok(Duration::from_secs(30)));
        let zero = parse(" 0s ").unwrap_err();
        assert_eq!(zero, DurationError::Zero("0s".to_owned()));
        assert_eq!(
            zero.to_string(),
            "invalid duration `0s`: must be greater than zero"
        );
        let negative = parse("-1s").unwrap_err();
        assert_eq!(negative, DurationError::Unreadable("-1s".to_owned()));
        assert_eq!(
            negative.to_string(),
            "invalid duration `-1s` (write e.g. \"250ms\", \"30s\", \"2m\", \"1h\")"
        );
        assert!(
            PositiveDuration::from_secs_f64(-2.0)
                .unwrap_err()
                .to_string()
                .contains("`-2`")
        );
        assert_eq!(PositiveDuration::new(Duration::ZERO), None);
        assert_eq!(
            "1h".parse::<PositiveDuration>(),
            Ok(PositiveDuration::from_secs(3600).unwrap())
        );
    }

    #[test]
    fn positive_durations_parse_with_units_and_reject_the_rest() {
        let parse_duration = |text| PositiveDuration::parse(text).map(PositiveDuration::get);
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert!(parse_duration("s").is_err());
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(matches!(parse_duration("0s"), Err(DurationError::Zero(_))));
    }

    #[test]
    fn display_uses_the_largest_whole_unit_and_parses_back() {
        for (duration, shown) in [
            (Duration::from_secs(7200), "2h"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(120), "2m"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_micros(1500), "0.0015s"),
        ] {
            let positive = PositiveDuration::new(duration).unwrap();
            assert_eq!(positive.to_string(), shown);
            assert_eq!(PositiveDuration::parse(shown), Ok(positive), "{shown}");
        }
    }

    #[test]
    fn deserializes_from_strings_and_seconds_with_the_parser_errors() {
        let from = |value| serde_json::from_value::<PositiveDuration>(value);
        assert_eq!(
            from(serde_json::json!("250ms")).unwrap().get(),
            Duration::from_millis(250)
        );
        assert_eq!(
            from(serde_json::json!(2.5)).unwrap().get(),
            Duration::from_millis(2500)
        );
        assert_eq!(
            from(serde_json::json!(3)).unwrap().get(),
            Duration::from_secs(3)
        );
        let zero = from(serde_json::json!("0ms")).unwrap_err().to_string();
        assert_eq!(zero, "invalid duration `0ms`: must be greater than zero");
        let soon = from(serde_json::json!("soon")).unwrap_err().to_string();
        assert!(
            soon.starts_with("invalid duration `soon` (write e.g."),
            "{soon}"
        );
        let table = from(serde_json::json!({"s": 1})).unwrap_err().to_string();
        assert!(table.contains("a duration such as"), "{table}");
        assert_eq!(
            serde_json::to_value(PositiveDuration::from_secs(60).unwrap()).unwrap(),
            serde_json::json!("1m")
        );
    }

    #[test]
    fn the_plain_adapter_allows_zero_but_not_negatives() {
        #[derive(Deserialize)]
        struct Config {
            #[serde(deserialize_with = "deserialize_duration")]
            wait: Duration,
        }
        let wait = |value| {
            serde_json::from_value::<Config>(serde_json::json!({ "wait": value })).map(|c| c.wait)
        };
        assert_eq!(wait(serde_json::json!("0s")).unwrap(), Duration::ZERO);
        assert_eq!(
            wait(serde_json::json!(1.5)).unwrap(),
            Duration::from_millis(1500)
        );
        assert!(wait(serde_json::json!(-1)).is_err());
        assert!(wait(serde_json::json!("later")).is_err());
    }
}
