//! Durations as the bench's options write them: `300`, `300s`, `5m`, `1h`, `500ms` (a bare
//! number is seconds; whole or decimal numbers).

use std::time::Duration;

/// `300`, `300s`, `5m`, `1h`, `500ms` (whole or decimal numbers).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a number with s, m, h or ms"))?;
    let seconds = match unit.trim() {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        other => return Err(format!("{text:?}: unknown unit {other:?} (s, m, h or ms)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

/// [`parse_duration`], refusing zero: for spans something must happen within.
pub(crate) fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err(format!("{:?}: must be more than zero", text.trim())),
        span => Ok(span),
    }
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
