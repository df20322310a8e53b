//! Secret references: a secret is named in configuration, never written there.
//!
//! Lookup order: `$CREDENTIALS_DIRECTORY/<credential>` (systemd `LoadCredential=`), then a file
//! path, then an environment variable. Trailing newlines are trimmed from file contents.

use std::path::PathBuf;

use serde::Deserialize;

/// Where to find one secret. In TOML: `password = { credential = "smtp_password" }`,
/// `{ file = "/etc/agentd/smtp.pass" }` or `{ env = "SMTP_PASSWORD" }` (several may be given;
/// the first that resolves wins, in that order).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    pub credential: Option<String>,
    pub file: Option<PathBuf>,
    pub env: Option<String>,
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
    }
}
