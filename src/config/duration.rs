//! Serde adapter for durations in agentd.toml (the syntax is `agentd_sdk::parse_duration`'s).

use std::time::Duration;

use agentd_sdk::parse_duration;
use serde::{Deserialize, Deserializer};

/// Serde adapter: accepts a duration string or a number of seconds.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Seconds(f64),
    }
    match Raw::deserialize(deserializer)? {
        Raw::Text(text) => parse_duration(&text).map_err(serde::de::Error::custom),
        Raw::Seconds(s) => Duration::try_from_secs_f64(s).map_err(serde::de::Error::custom),
    }
}
