//! Secret references: a secret is named in configuration, never written there.
//!
//! Lookup order: `$CREDENTIALS_DIRECTORY/<credential>` (systemd `LoadCredential=`), then a file
//! path, then an environment variable. Trailing newlines are trimmed from file contents.

use std::fmt;
use std::path::PathBuf;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// Where to find one secret. In TOML: `password = { credential = "smtp_password" }`,
/// `{ file = "/etc/agentd/smtp.pass" }` or `{ env = "SMTP_PASSWORD" }` (several may be given;
/// the first that resolves wins, in that order).
///
/// A plain string where a reference belongs is refused with a message that does not repeat
/// it: it is most likely the secret itself, and configuration errors end up in logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretRef {
    pub credential: Option<String>,
    pub file: Option<PathBuf>,
    pub env: Option<String>,
}

/// A reference as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReferenceFields {
    credential: Option<String>,
    file: Option<PathBuf>,
    env: Option<String>,
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ReferenceVisitor)
    }
}

struct ReferenceVisitor;

impl<'de> Visitor<'de> for ReferenceVisitor {
    type Value = SecretRef;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a secret reference: { credential = \"name\" }, { file = \"/path\" } or \
             { env = \"VARIABLE\" }",
        )
    }

    fn visit_str<E: de::Error>(self, _secret: &str) -> Result<SecretRef, E> {
        Err(E::custom(
            "expected a secret reference ({ credential = \"name\" }, { file = \"/path\" } \
             or { env = \"VARIABLE\" }), not the secret itself; the value is not shown",
        ))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<SecretRef, A::Error> {
        let fields = ReferenceFields::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(SecretRef {
            credential: fields.credential,
            file: fields.file,
            env: fields.env,
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("secret reference names no credential, file or env variable")]
    Empty,
    #[error("secret not found (looked in: {0})")]
    NotFound(String),
    #[error("cannot read secret file {path}: {reason}")]
    Unreadable { path: String, reason: String },
}

/// Resolves a secret reference to its value.
pub fn resolve_secret(reference: &SecretRef) -> Result<String, SecretError> {
    if reference.credential.is_none() && reference.file.is_none() && reference.env.is_none() {
        return Err(SecretError::Empty);
    }
    let mut looked = Vec::new();
    if let Some(name) = &reference.credential {
        match std::env::var_os("CREDENTIALS_DIRECTORY") {
            Some(dir) => {
                let path = PathBuf::from(dir).join(name);
                if path.exists() {
                    return read_trimmed(&path);
                }
                looked.push(format!("credential {}", path.display()));
            }
            None => looked.push(format!("credential {name} (CREDENTIALS_DIRECTORY unset)")),
        }
    }
    if let Some(path) = &reference.file {
        if path.exists() {
            return read_trimmed(path);
        }
        looked.push(format!("file {}", path.display()));
    }
    if let Some(var) = &reference.env {
        if let Ok(value) = std::env::var(var) {
            return Ok(value);
        }
        looked.push(format!("env {var}"));
    }
    Err(SecretError::NotFound(looked.join(", ")))
}

fn read_trimmed(path: &std::path::Path) -> Result<String, SecretError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
        .map_err(|e| SecretError::Unreadable {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_is_read_and_trimmed_and_missing_is_reported() {
        let dir = std::env::temp_dir().join(format!("agentd-sdk-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pw");
        std::fs::write(&path, "hunter2\n").unwrap();
        let found = resolve_secret(&SecretRef {
            file: Some(path.clone()),
            ..Default::default()
        });
        assert_eq!(found.unwrap(), "hunter2");
        let missing = resolve_secret(&SecretRef {
            file: Some(dir.join("nope")),
            env: Some("AGENTD_SDK_TEST_UNSET_VAR".into()),
            ..Default::default()
        });
        assert!(
            matches!(missing, Err(SecretError::NotFound(s)) if s.contains("nope") && s.contains("AGENTD_SDK_TEST_UNSET_VAR"))
        );
        assert_eq!(
            resolve_secret(&SecretRef::default()),
            Err(SecretError::Empty)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_inline_secret_is_refused_without_being_repeated() {
        let error = serde_json::from_value::<SecretRef>(serde_json::json!("sk-inline-secret"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("not the secret itself"), "{error}");
        assert!(!error.contains("sk-inline-secret"), "{error}");
        let reference: SecretRef =
            serde_json::from_value(serde_json::json!({"env": "X", "file": "/f"})).unwrap();
        assert_eq!(reference.env.as_deref(), Some("X"));
        assert!(serde_json::from_value::<SecretRef>(serde_json::json!({"envv": "X"})).is_err());
    }
}
