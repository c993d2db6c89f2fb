//! App variables and `wasi:config/store` for Wharf guests.
//!
//! What this crate owns:
//! - [`resolve`]: turning an app's declared variables (name, default, required) into
//!   values at deploy, from the operator's secrets file, then the server's environment,
//!   then the manifest default;
//! - [`ConfigGrant`]: the resolved values one component may read, built once per app
//!   version and shared by its stores;
//! - [`add_to_linker`]: `wasi:config/store`, reading the grant of the store.
//!
//! A variable the manifest does not declare does not exist for the guest; values are
//! never logged.
#![deny(missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtime_wasi_config::{WasiConfig, WasiConfigVariables};
use wharf_engine::wasmtime::component::Linker;

/// One declared variable, as the resolver needs it.
#[derive(Clone, Debug)]
pub struct Declared<'a> {
    /// The variable's name.
    pub name: &'a str,
    /// Used when neither the secrets file nor the environment has a value.
    pub default: Option<&'a str>,
    /// A variable without a value fails the deploy.
    pub required: bool,
}

/// Why variables could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum VariableError {
    /// A required variable has no value anywhere (the deploy's fault: 400).
    #[error(
        "variable `{name}` of app `{app}` is required but has no value; set {app_env} (or {env}) in the server's environment, or add `{name} = \"...\"` under `[{app}]` in the secrets file (--secrets-file)"
    )]
    Required {
        /// The app.
        app: String,
        /// The variable.
        name: String,
        /// The app-scoped environment variable that would provide it.
        app_env: String,
        /// The global environment variable that would provide it.
        env: String,
    },
    /// The secrets file cannot be read or parsed (the operator's fault: 500). The
    /// message names the file but never quotes its content.
    #[error("the server's secrets file `{path}` {problem}; fix it and deploy again")]
    SecretsFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it, without its content.
        problem: String,
    },
}

/// Reads the secrets file: a TOML table of `name = "value"` for every app, or tables
/// `[app-name]` for one app. Parse errors are logged with their detail and reported
/// without it, so a deploy's reply never quotes a secret.
pub fn read_secrets(path: &Path) -> Result<toml::Table, VariableError> {
    let text = std::fs::read_to_string(path).map_err(|e| VariableError::SecretsFile {
        path: path.to_path_buf(),
        problem: format!("cannot be read ({})", e.kind()),
    })?;
    text.parse().map_err(|e: toml::de::Error| {
        tracing::error!(file = %path.display(), "the secrets file is not valid TOML: {}", e.message());
        VariableError::SecretsFile {
            path: path.to_path_buf(),
            problem: "is not valid TOML (the server log has the position)".into(),
        }
    })
}

fn env_key(parts: &[&str]) -> String {
    format!("WHARF_VAR_{}", parts.join("_"))
        .to_ascii_uppercase()
        .replace('-', "_")
}

/// Resolves `declared` variables of `app`: the secrets file (`[app]` table, then top
/// level), then `WHARF_VAR_<APP>_<NAME>` and `WHARF_VAR_<NAME>` in the server's
/// environment, then the default. Variables without a value are left out unless
/// required, which fails.
pub fn resolve<'a>(
    app: &str,
    declared: impl IntoIterator<Item = Declared<'a>>,
    secrets_file: Option<&Path>,
) -> Result<Vec<(String, String)>, VariableError> {
    let secrets = match secrets_file {
        Some(path) => read_secrets(path)?,
        None => toml::Table::new(),
    };
    let mut out = Vec::new();
    for var in declared {
        let name = var.name;
        let from_secrets = secrets
            .get(app)
            .and_then(|t| t.get(name))
            .or_else(|| secrets.get(name))
            .and_then(|v| v.as_str().map(str::to_string));
        let value = from_secrets
            .or_else(|| std::env::var(env_key(&[app, name])).ok())
            .or_else(|| std::env::var(env_key(&[name])).ok())
            .or_else(|| var.default.map(str::to_string));
        match value {
            Some(v) => out.push((name.to_string(), v)),
            None if var.required => {
                return Err(VariableError::Required {
                    app: app.to_string(),
                    name: name.to_string(),
                    app_env: env_key(&[app, name]),
                    env: env_key(&[name]),
                });
            }
            None => {}
        }
    }
    Ok(out)
}

/// The variables one component may read, resolved at deploy.
#[derive(Clone, Default)]
pub struct ConfigGrant {
    vars: Arc<WasiConfigVariables>,
}

impl std::fmt::Debug for ConfigGrant {
    // Values may be secrets: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConfigGrant(..)")
    }
}

impl ConfigGrant {
    /// A grant of these name/value pairs.
    pub fn new(values: &[(String, String)]) -> ConfigGrant {
        ConfigGrant {
            vars: Arc::new(
                values
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect(),
            ),
        }
    }

    /// The variables, as `wasmtime-wasi-config` serves them.
    pub fn variables(&self) -> &WasiConfigVariables {
        &self.vars
    }
}

/// Store data that carries a [`ConfigGrant`].
pub trait ConfigView {
    /// The store's grant.
    fn config_grant(&self) -> &ConfigGrant;
}

/// Adds `wasi:config/store` to `linker`, reading each store's [`ConfigGrant`].
pub fn add_to_linker<T: ConfigView + 'static>(
    linker: &mut Linker<T>,
) -> wharf_engine::wasmtime::Result<()> {
    wasmtime_wasi_config::add_to_linker(linker, |h: &mut T| {
        WasiConfig::from(h.config_grant().variables())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(name: &str, default: Option<&'static str>, required: bool) -> Declared<'static> {
        Declared {
            name: Box::leak(name.to_string().into_boxed_str()),
            default,
            required,
        }
    }

    #[test]
    fn secrets_file_app_table_wins_over_top_level_and_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secrets.toml");
        std::fs::write(&path, "token = \"global\"\n[shop]\ntoken = \"shop-only\"\n")
            .expect("write");
        let got =
            resolve("shop", [decl("token", Some("dflt"), false)], Some(&path)).expect("resolve");
        assert_eq!(got, vec![("token".to_string(), "shop-only".to_string())]);
        let got = resolve("other", [decl("token", None, false)], Some(&path)).expect("resolve");
        assert_eq!(got, vec![("token".to_string(), "global".to_string())]);
    }

    #[test]
    fn required_without_value_names_the_variable_and_where_to_set_it() {
        let err =
            resolve("shop", [decl("api_key_xyz_unset", None, true)], None).expect_err("must fail");
        let msg = err.to_string();
        assert!(msg.contains("`api_key_xyz_unset`"), "{msg}");
        assert!(msg.contains("WHARF_VAR_SHOP_API_KEY_XYZ_UNSET"), "{msg}");
    }

    #[test]
    fn invalid_secrets_file_error_does_not_quote_its_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secrets.toml");
        std::fs::write(&path, "password = hunter2-not-quoted\n").expect("write");
        let err =
            resolve("shop", [decl("password", None, false)], Some(&path)).expect_err("must fail");
        let msg = err.to_string();
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(msg.contains("not valid TOML"), "{msg}");
    }
}
