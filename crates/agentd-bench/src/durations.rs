//! Durations as the bench's options write them: `300`, `300s`, `5m`, `1h`, `500ms` (a bare
//! number is seconds; whole or decimal numbers), read by the parser agentd's configuration and
//! its plugins use.

use std::time::Duration;

use agentd_sdk::{DurationError, PositiveDuration};

pub(crate) use agentd_sdk::parse_duration;

/// [`parse_duration`], refusing zero: for spans something must happen within.
pub(crate) fn parse_positive_duration(text: &str) -> Result<Duration, DurationError> {
    PositiveDuration::parse(text).map(PositiveDuration::get)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{parse_duration, parse_positive_duration};

    #[test]
    fn reads_durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("300"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn spans_parse_with_units() {
        assert_eq!(
            parse_positive_duration("30m"),
            Ok(Duration::from_secs(1800))
        );
        assert_eq!(parse_positive_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_positive_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_positive_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(
            parse_positive_duration("250ms"),
            Ok(Duration::from_millis(250))
        );
        assert_eq!(parse_positive_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert!(parse_positive_duration("5x").is_err());
        assert!(parse_positive_duration("m").is_err());
        assert!(parse_positive_duration("0s").is_err());
    }
}
