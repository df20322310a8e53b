//! A request's `tool_choice` against what the turn offers: a choice no provider would take
//! (a function not offered, `required` with nothing offered) is the client's 422 before any
//! model call, not the provider's 400 passed on as a 502; `auto` and `none` with nothing
//! offered say nothing and are not sent.

use serde_json::Value;

use super::TurnError;
use super::prompt::Offer;

pub(super) fn settle(choice: Option<Value>, offer: &Offer) -> Result<Option<Value>, TurnError> {
    let Some(choice) = choice else {
        return Ok(None);
    };
    let forced = choice
        .get("function")
        .and_then(|f| f.get("name"))
        .and_then(Value::as_str);
    if let Some(name) = forced {
        if offer.names.iter().any(|n| n == name) {
            return Ok(Some(choice));
        }
        return Err(TurnError::invalid(
            "tool_choice",
            format!("`{name}` is not a tool this turn offers"),
        ));
    }
    if offer.names.is_empty() {
        return match choice.as_str() {
            Some("required") => Err(TurnError::invalid(
                "tool_choice",
                "`required` needs a tool to call, and this turn offers none",
            )),
            _ => Ok(None),
        };
    }
    Ok(Some(choice))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn offering(names: &[&str]) -> Offer {
        Offer {
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            ..Offer::default()
        }
    }

    #[test]
    fn choices_against_the_offer() {
        let echo = offering(&["echo"]);
        let none = offering(&[]);
        let forced = json!({"type": "function", "function": {"name": "echo"}});
        assert_eq!(settle(None, &echo).unwrap(), None);
        assert_eq!(
            settle(Some(forced.clone()), &echo).unwrap(),
            Some(forced.clone())
        );
        assert!(settle(Some(forced), &none).is_err());
        let other = json!({"function": {"name": "send_email"}});
        assert!(settle(Some(other), &echo).is_err());
        assert_eq!(settle(Some(json!("auto")), &none).unwrap(), None);
        assert_eq!(settle(Some(json!("none")), &none).unwrap(), None);
        assert!(settle(Some(json!("required")), &none).is_err());
        assert_eq!(
            settle(Some(json!("required")), &echo).unwrap(),
            Some(json!("required"))
        );
    }
}
