//! When a call needs a person's approval before it runs: a tool's `approval` in tools.toml,
//! `"never"` (the default), `"always"`, or rules (`when`: a JSON Schema the arguments match;
//! `outside_domains`: an address argument outside the listed domains), any rule that holds
//! requiring approval.

use serde_json::Value;

/// Address arguments `outside_domains` looks at when the entry names no `fields`.
pub const DEFAULT_ADDRESS_FIELDS: &[&str] = &["to", "cc", "bcc", "reply_to"];

/// A tool's approval policy, compiled.
#[derive(Debug, Default)]
pub enum ApprovalPolicy {
    #[default]
    Never,
    Always,
    When(ApprovalRules),
}

/// The rule form: approval is required when any rule holds.
#[derive(Debug, Default)]
pub struct ApprovalRules {
    /// Arguments matching this schema need approval.
    pub when: Option<jsonschema::Validator>,
    /// Addresses in these arguments (a string, or a list of strings) outside `domains`
    /// need approval.
    pub fields: Vec<String>,
    /// Lower-case domains whose addresses need no approval.
    pub domains: Vec<String>,
}

impl ApprovalPolicy {
    /// Whether a call with these (valid) arguments must wait for a person.
    pub fn requires(&self, arguments: &Value) -> bool {
        match self {
            ApprovalPolicy::Never => false,
            ApprovalPolicy::Always => true,
            ApprovalPolicy::When(rules) => rules.hold(arguments),
        }
    }

    /// `never`, `always` or `rules`, for listings.
    pub fn as_str(&self) -> &'static str {
        match self {
            ApprovalPolicy::Never => "never",
            ApprovalPolicy::Always => "always",
            ApprovalPolicy::When(_) => "rules",
        }
    }
}

impl ApprovalRules {
    fn hold(&self, arguments: &Value) -> bool {
        if self
            .when
            .as_ref()
            .is_some_and(|schema| schema.is_valid(arguments))
        {
            return true;
        }
        if self.domains.is_empty() {
            return false;
        }
        self.fields.iter().any(|field| {
            let addresses: Vec<&str> = match arguments.get(field) {
                Some(Value::String(one)) => vec![one.as_str()],
                Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            addresses.iter().any(|address| !self.inside(address))
        })
    }

    /// Whether an address's domain is one of `domains` (an address without a domain is not).
    fn inside(&self, address: &str) -> bool {
        let Some((_, domain)) = address.trim().trim_end_matches('>').rsplit_once('@') else {
            return false;
        };
        let domain = domain.trim().to_ascii_lowercase();
        self.domains.contains(&domain)
    }
}

/// A policy as written in tools.toml, checked but not compiled: comparable (a reload restarts
/// an MCP server whose policy changed) and compiled for each tool that has it.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum ApprovalSpec {
    #[default]
    Never,
    Always,
    When {
        when: Option<Value>,
        fields: Vec<String>,
        domains: Vec<String>,
    },
}

impl ApprovalSpec {
    /// Reads `approval = "never" | "always" | { when = {...}, outside_domains = [...],
    /// fields = [...] }` (already converted to JSON); every problem is returned.
    pub fn parse(value: &Value) -> Result<Self, Vec<String>> {
        match value {
            Value::String(word) if word == "never" => Ok(ApprovalSpec::Never),
            Value::String(word) if word == "always" => Ok(ApprovalSpec::Always),
            Value::Object(table) => {
                let mut problems = Vec::new();
                for key in table.keys() {
                    if !matches!(key.as_str(), "when" | "outside_domains" | "fields") {
                        problems.push(format!(
                            "approval: unknown field `{key}`, expected `when`, `outside_domains` or `fields`"
                        ));
                    }
                }
                let when = table.get("when").cloned();
                if let Some(schema) = &when
                    && let Err(error) = jsonschema::validator_for(schema)
                {
                    problems.push(format!("approval.when: not a usable JSON Schema: {error}"));
                }
                let strings = |key: &str, problems: &mut Vec<String>| -> Vec<String> {
                    match table.get(key) {
                        None => Vec::new(),
                        Some(Value::Array(items)) if items.iter().all(Value::is_string) => items
                            .iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect(),
                        Some(_) => {
                            problems.push(format!("approval.{key}: expected a list of strings"));
                            Vec::new()
                        }
                    }
                };
                let domains: Vec<String> = strings("outside_domains", &mut problems)
                    .into_iter()
                    .map(|d| d.to_ascii_lowercase())
                    .collect();
                let mut fields = strings("fields", &mut problems);
                if fields.is_empty() {
                    fields = DEFAULT_ADDRESS_FIELDS
                        .iter()
                        .map(|f| (*f).to_owned())
                        .collect();
                }
                if when.is_none() && domains.is_empty() {
                    problems.push(
                        "approval: give `when` (a JSON Schema) or `outside_domains` (a list of domains)"
                            .to_owned(),
                    );
                }
                if problems.is_empty() {
                    Ok(ApprovalSpec::When {
                        when,
                        fields,
                        domains,
                    })
                } else {
                    Err(problems)
                }
            }
            _ => Err(vec![
                "approval: expected \"never\", \"always\" or a table of rules \
                 ({ when = {...}, outside_domains = [...] })"
                    .to_owned(),
            ]),
        }
    }

    /// The policy to enforce. The schema compiled when the spec was parsed, so this does not
    /// fail for a parsed spec; a schema that does not compile is treated as always matching.
    pub fn compile(&self) -> ApprovalPolicy {
        match self {
            ApprovalSpec::Never => ApprovalPolicy::Never,
            ApprovalSpec::Always => ApprovalPolicy::Always,
            ApprovalSpec::When {
                when,
                fields,
                domains,
            } => match when.as_ref().map(jsonschema::validator_for).transpose() {
                Ok(when) => ApprovalPolicy::When(ApprovalRules {
                    when,
                    fields: fields.clone(),
                    domains: domains.clone(),
                }),
                Err(_) => ApprovalPolicy::Always,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rules(when: Option<Value>, domains: &[&str]) -> ApprovalPolicy {
        ApprovalPolicy::When(ApprovalRules {
            when: when.map(|schema| jsonschema::validator_for(&schema).unwrap()),
            fields: DEFAULT_ADDRESS_FIELDS
                .iter()
                .map(|f| (*f).to_owned())
                .collect(),
            domains: domains.iter().map(|d| (*d).to_owned()).collect(),
        })
    }

    #[test]
    fn specs_are_read_with_every_problem() {
        assert_eq!(
            ApprovalSpec::parse(&json!("always")),
            Ok(ApprovalSpec::Always)
        );
        assert_eq!(
            ApprovalSpec::parse(&json!("never")),
            Ok(ApprovalSpec::Never)
        );
        assert!(ApprovalSpec::parse(&json!("sometimes")).is_err());
        let spec = ApprovalSpec::parse(&json!({"outside_domains": ["Example.com"]})).unwrap();
        assert!(spec.compile().requires(&json!({"to": "x@other.org"})));
        assert!(!spec.compile().requires(&json!({"to": "x@example.com"})));
        let problems =
            ApprovalSpec::parse(&json!({"when": {"type": 5}, "fields": "to", "extra": 1}))
                .unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(ApprovalSpec::parse(&json!({})).is_err());
    }

    #[test]
    fn never_and_always() {
        assert!(!ApprovalPolicy::Never.requires(&json!({})));
        assert!(ApprovalPolicy::Always.requires(&json!({})));
    }

    #[test]
    fn an_address_outside_the_domains_needs_approval() {
        let policy = rules(None, &["example.com"]);
        assert!(!policy.requires(&json!({"to": "a@example.com"})));
        assert!(!policy.requires(&json!({"to": "Ann <a@EXAMPLE.com>"})));
        assert!(policy.requires(&json!({"to": "a@elsewhere.org"})));
        assert!(
            policy
                .requires(&json!({"to": "a@example.com", "cc": ["b@example.com", "c@evil.test"]}))
        );
        assert!(policy.requires(&json!({"to": "a@example.com.evil.test"})));
        assert!(policy.requires(&json!({"to": "no-domain"})));
        assert!(!policy.requires(&json!({"subject": "hi"})));
    }

    #[test]
    fn arguments_matching_the_schema_need_approval() {
        let policy = rules(
            Some(json!({"properties": {"amount": {"minimum": 1000}}, "required": ["amount"]})),
            &[],
        );
        assert!(policy.requires(&json!({"amount": 5000})));
        assert!(!policy.requires(&json!({"amount": 10})));
        assert!(!policy.requires(&json!({})));
    }
}
