//! Integer fields of request bodies, read as JSON Schema's `integer` is defined: any JSON
//! number without a fractional part, so `3.0` is 3 (clients that hold numbers as floats send
//! that form). Out of range or fractional is the field's 422, as a wrong type is.

use serde::Deserialize;
use serde::de::{Deserializer, Error};

/// A JSON number as serde_json hands it over.
#[derive(Deserialize)]
#[serde(untagged)]
enum Number {
    Unsigned(u64),
    Signed(i64),
    Float(f64),
}

/// The whole number `value` is, if any, as `i128` (which holds every `u64` and `i64`).
fn whole(number: Number) -> Option<i128> {
    match number {
        Number::Unsigned(n) => Some(i128::from(n)),
        Number::Signed(n) => Some(i128::from(n)),
        // Every whole f64 within ±2^64 converts exactly; larger ones are out of any field's range.
        Number::Float(f) if f.fract() == 0.0 && f.abs() < 18_446_744_073_709_551_616.0 => {
            Some(f as i128)
        }
        Number::Float(_) => None,
    }
}

/// `#[serde(default, deserialize_with = "whole::optional")]`: `null` or absent is `None`.
pub(super) fn optional<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128>,
{
    let Some(number) = Option::<Number>::deserialize(deserializer)
        .map_err(|_| D::Error::custom("expected an integer"))?
    else {
        return Ok(None);
    };
    let n = whole(number).ok_or_else(|| D::Error::custom("expected an integer"))?;
    T::try_from(n)
        .map(Some)
        .map_err(|_| D::Error::custom(format!("{n} is out of range")))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Deserialize, Debug)]
    struct Fields {
        #[serde(default, deserialize_with = "super::optional")]
        count: Option<u32>,
        #[serde(default, deserialize_with = "super::optional")]
        seed: Option<i64>,
    }

    fn read(value: serde_json::Value) -> Result<(Option<u32>, Option<i64>), String> {
        Fields::deserialize(value)
            .map(|f| (f.count, f.seed))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn whole_numbers_in_any_form() {
        assert_eq!(read(json!({})), Ok((None, None)));
        assert_eq!(read(json!({"count": null, "seed": null})), Ok((None, None)));
        assert_eq!(
            read(json!({"count": 7, "seed": -3})),
            Ok((Some(7), Some(-3)))
        );
        assert_eq!(
            read(json!({"count": 7.0, "seed": -3.0})),
            Ok((Some(7), Some(-3)))
        );
        assert!(read(json!({"count": 7.5})).unwrap_err().contains("integer"));
        assert!(
            read(json!({"count": -1}))
                .unwrap_err()
                .contains("out of range")
        );
        assert!(
            read(json!({"count": 4294967296u64}))
                .unwrap_err()
                .contains("out of range")
        );
        assert!(
            read(json!({"count": 1e300}))
                .unwrap_err()
                .contains("integer")
        );
        assert!(read(json!({"count": "7"})).unwrap_err().contains("integer"));
        assert!(
            read(json!({"count": true}))
                .unwrap_err()
                .contains("integer")
        );
    }
}
