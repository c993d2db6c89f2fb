//! App variables and `wasi:config/store` for Wharf guests.
//!
//! What this crate owns:
//! - [`resolve`]: turning an app's declared variables (name, default, required) into
//!   values at deploy, from the operator's secrets file, then the server's environment
//!   (app-scoped only: `WHARF_VAR_<APP>__<NAME>`), then the manifest default;
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
        "variable `{name}` of app `{app}` is required but has no value; set {app_env} in the server's environment, or add `{name} = \"...\"` under `[{app}]` in the secrets file (--secrets-file)"
    )]
    Required {
        /// The app.
        app: String,
        /// The variable.
        name: String,
        /// The app-scoped environment variable that would provide it.
        app_env: String,
    },
    /// A declared variable's name contains `__`, which is the separator between app and
    /// variable in `WHARF_VAR_<APP>__<NAME>` (the deploy's fault: 400).
    #[error(
        "variable `{name}` of app `{app}`: a variable name must not contain `__` (two underscores), which separates the app from the variable in WHARF_VAR_<APP>__<NAME>; rename it"
    )]
    InvalidName {
        /// The app.
        app: String,
        /// The variable.
        name: String,
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

impl VariableError {
    /// Whether the deploy is at fault (answer 400) rather than the server (500).
    pub fn is_deploy_error(&self) -> bool {
        matches!(
            self,
            VariableError::Required { .. } | VariableError::InvalidName { .. }
        )
    }
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

/// `WHARF_VAR_<APP>__<NAME>`: the app-scoped environment variable of `name`.
///
/// Unambiguous: app names are `[a-z0-9-]` starting with a letter and not ending with
/// `-`, variable names are `[a-z0-9_]` starting with a letter and (checked by
/// [`resolve`]) without `__`, so the last `__` of the key always separates the app from
/// the variable and no app can name another app's variable.
pub fn app_env_key(app: &str, name: &str) -> String {
    format!("WHARF_VAR_{}__{}", app, name)
        .to_ascii_uppercase()
        .replace('-', "_")
}

/// Resolves `declared` variables of `app`: the secrets file (`[app]` table, then top
/// level), then `WHARF_VAR_<APP>__<NAME>` (see [`app_env_key`]) in the server's
/// environment, then the default. Variables without a value are left out unless
/// required, which fails.
///
/// There is no global environment fallback (`WHARF_VAR_<NAME>`): a value every app may
/// read goes at the top level of the secrets file. Before this rule, the app-scoped key
/// was `WHARF_VAR_<APP>_<NAME>`, which app `evil` could read as its own variable
/// `shop_db_password`; such old keys are ignored (a warning names them, never the value).
pub fn resolve<'a>(
    app: &str,
    declared: impl IntoIterator<Item = Declared<'a>>,
    secrets_file: Option<&Path>,
) -> Result<Vec<(String, String)>, VariableError> {
    resolve_in(app, declared, secrets_file, &|key| std::env::var(key).ok())
}

/// [`resolve`] with `env` as the server's environment.
fn resolve_in<'a>(
    app: &str,
    declared: impl IntoIterator<Item = Declared<'a>>,
    secrets_file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, VariableError> {
    let declared: Vec<Declared<'a>> = declared.into_iter().collect();
    if let Some(bad) = declared.iter().find(|v| v.name.contains("__")) {
        return Err(VariableError::InvalidName {
            app: app.to_string(),
            name: bad.name.to_string(),
        });
    }
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
        let app_env = app_env_key(app, name);
        let from_env = || {
            let value = env(&app_env);
            if value.is_none() {
                let old = format!("WHARF_VAR_{app}_{name}")
                    .to_ascii_uppercase()
                    .replace('-', "_");
                if env(&old).is_some() {
                    tracing::warn!(
                        app,
                        variable = name,
                        "{old} is set but ignored: app-scoped variables are now {app_env} (two underscores)"
                    );
                }
            }
            value
        };
        let value = from_secrets
            .or_else(from_env)
            .or_else(|| var.default.map(str::to_string));
        match value {
            Some(v) => out.push((name.to_string(), v)),
            None if var.required => {
                return Err(VariableError::Required {
                    app: app.to_string(),
                    name: name.to_string(),
                    app_env,
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
        assert!(msg.contains("WHARF_VAR_SHOP__API_KEY_XYZ_UNSET"), "{msg}");
        assert!(!msg.contains("WHARF_VAR_API_KEY_XYZ_UNSET"), "{msg}");
        assert!(err.is_deploy_error());
    }

    /// A server environment of `vars`.
    fn env_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |key| {
            vars.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn another_apps_scoped_variable_cannot_be_read() {
        // The attack: app `evil` declares `shop_db_password` to read app `shop`'s
        // `db_password`. Under the old rule both were WHARF_VAR_SHOP_DB_PASSWORD (and
        // evil's WHARF_VAR_EVIL_SHOP_DB_PASSWORD fell back to it as a global). The
        // operator's environment below has the new key and a leftover old-style key.
        let env = env_of(&[
            ("WHARF_VAR_SHOP__DB_PASSWORD", "shop-secret"),
            ("WHARF_VAR_SHOP_DB_PASSWORD", "shop-secret-old-style"),
        ]);
        let got =
            resolve_in("shop", [decl("db_password", None, true)], None, &env).expect("resolve");
        assert_eq!(
            got,
            vec![("db_password".to_string(), "shop-secret".to_string())]
        );
        let evil = resolve_in("evil", [decl("shop_db_password", None, false)], None, &env)
            .expect("resolve");
        assert_eq!(evil, Vec::new(), "evil read shop's secret");
        let evil = resolve_in("evil", [decl("shop__db_password", None, false)], None, &env)
            .expect_err("`__` must be refused");
        assert!(evil.is_deploy_error());
        let msg = evil.to_string();
        assert!(
            msg.contains("`shop__db_password`") && msg.contains("`__`"),
            "{msg}"
        );
        // An app whose name folds onto the prefix gets nothing either.
        let evil =
            resolve_in("shop-db", [decl("password", None, false)], None, &env).expect("resolve");
        assert_eq!(evil, Vec::new());
        assert_eq!(
            app_env_key("shop-db", "password"),
            "WHARF_VAR_SHOP_DB__PASSWORD"
        );
    }

    #[test]
    fn no_global_environment_fallback() {
        let env = env_of(&[("WHARF_VAR_TOKEN", "global")]);
        let got =
            resolve_in("shop", [decl("token", Some("dflt"), false)], None, &env).expect("resolve");
        assert_eq!(got, vec![("token".to_string(), "dflt".to_string())]);
    }

    #[test]
    fn secrets_file_parse_error_reply_has_no_content_and_no_position() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secrets.toml");
        std::fs::write(
            &path,
            "[shop]\ndb_password = \"ok\"\ntoken = s3cr3t-unquoted\n",
        )
        .expect("write");
        let err = read_secrets(&path).expect_err("must fail");
        let msg = err.to_string();
        assert!(!err.is_deploy_error());
        for leaked in ["s3cr3t", "token", "db_password", "ok\"", "line", "column"] {
            assert!(!msg.contains(leaked), "{leaked} in {msg}");
        }
        assert_eq!(
            msg,
            format!(
                "the server's secrets file `{}` is not valid TOML (the server log has the position); fix it and deploy again",
                path.display()
            )
        );
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
