//! API keys: every configured secret reference that resolves is a valid key. With none, a key
//! is generated once into `<data_dir>/api-key` (mode 0600) so a fresh install is never open.
//! SIGHUP resolves the references again, so a rotated key file takes effect without a restart.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use agentd_sdk::{SecretError, resolve_secret};
use secrecy::SecretString;

use crate::config::Config;

/// File name of the generated key inside the data directory.
pub(crate) const GENERATED_KEY_FILE: &str = "api-key";

/// The keys requests are checked against; replaced whole on reload.
pub(crate) struct ApiKeys(RwLock<Arc<Vec<SecretString>>>);

impl ApiKeys {
    pub(crate) fn new(keys: Vec<SecretString>) -> Self {
        Self(RwLock::new(Arc::new(keys)))
    }

    /// The keys in force now (a reload does not change a set already taken).
    pub(crate) fn current(&self) -> Arc<Vec<SecretString>> {
        Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    pub(crate) fn replace(&self, keys: Vec<SecretString>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
    }
}

pub(crate) fn resolve(config: &Config) -> Result<Vec<SecretString>, String> {
    let mut keys = Vec::new();
    for reference in &config.auth.api_keys {
        match resolve_secret(reference) {
            Ok(key) if !key.trim().is_empty() => {
                keys.push(SecretString::from(key.trim().to_owned()))
            }
            Ok(_) | Err(SecretError::NotFound(_)) => {}
            Err(e) => return Err(format!("auth.api_keys: {e}")),
        }
    }
    if keys.is_empty() {
        let path = config.storage.data_dir.join(GENERATED_KEY_FILE);
        let key = read_or_generate(&path)?;
        tracing::info!(path = %path.display(), "no API key configured; using the generated key in this file");
        keys.push(SecretString::from(key));
    }
    Ok(keys)
}

fn read_or_generate(path: &Path) -> Result<String, String> {
    if let Ok(existing) = std::fs::read_to_string(path)
        && !existing.trim().is_empty()
    {
        return Ok(existing.trim().to_owned());
    }
    let key = format!(
        "agentd_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| format!("cannot write generated API key to {}: {e}", path.display()))?;
    file.write_all(format!("{key}\n").as_bytes())
        .map_err(|e| format!("cannot write generated API key to {}: {e}", path.display()))?;
    Ok(key)
}
