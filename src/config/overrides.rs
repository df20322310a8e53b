//! Overrides layered onto agentd.toml: `AGENTD_PROVIDER__MODEL=x` and `--set provider.model=x`.
//! A value is read as TOML when it parses as a TOML value (numbers, booleans, arrays,
//! quoted strings, inline tables), otherwise as a bare string.

use super::ConfigError;

/// Variables that name a section and key (`AGENTD_<SECTION>__<KEY>`); others are ignored.
const ENV_PREFIX: &str = "AGENTD_";

/// Applies environment variables, then `section.key=value` settings, to the parsed file.
pub fn apply_overrides(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
    sets: &[String],
) -> Result<(), ConfigError> {
    let mut env: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k.contains("__"))
        .collect();
    env.sort();
    for (key, value) in env {
        let path: Vec<String> = key[ENV_PREFIX.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        set_path(table, &path, &value).map_err(|e| ConfigError(format!("{key}: {e}")))?;
    }
    for set in sets {
        let (key, value) = set
            .split_once('=')
            .ok_or_else(|| ConfigError(format!("--set `{set}`: expected section.key=value")))?;
        let path: Vec<String> = key.trim().split('.').map(str::to_owned).collect();
        set_path(table, &path, value.trim())
            .map_err(|e| ConfigError(format!("--set {key}: {e}")))?;
    }
    Ok(())
}

fn set_path(table: &mut toml::Table, path: &[String], raw: &str) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("empty key".into());
    };
    if path.iter().any(String::is_empty) {
        return Err("empty key segment".into());
    }
    let mut current = table;
    for segment in parents {
        let entry = current
            .entry(segment.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{segment}` is not a section"))?;
    }
    current.insert(last.clone(), parse_value(raw));
    Ok(())
}

fn parse_value(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match toml::from_str::<toml::Table>(&doc) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_owned())),
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_then_sets_override_file_values() {
        let mut table: toml::Table = toml::from_str("[provider]\nmodel = \"a\"\n").unwrap();
        let env = vec![
            ("AGENTD_PROVIDER__MODEL".to_owned(), "b".to_owned()),
            ("AGENTD_TURN__MAX_STEPS".to_owned(), "7".to_owned()),
            ("AGENTD_UNRELATED".to_owned(), "x".to_owned()),
            ("HOME".to_owned(), "/root".to_owned()),
        ];
        apply_overrides(&mut table, env, &["server.listen=127.0.0.1:0".to_owned()]).unwrap();
        assert_eq!(table["provider"]["model"].as_str(), Some("b"));
        assert_eq!(table["turn"]["max_steps"].as_integer(), Some(7));
        assert_eq!(table["server"]["listen"].as_str(), Some("127.0.0.1:0"));
        assert!(!table.contains_key("unrelated"));
        let err = apply_overrides(&mut table, Vec::new(), &["nonsense".to_owned()]);
        assert!(err.is_err());
    }
}
