//! `wharf call`: call one export of a component with typed (WAVE) arguments.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use http::Method;
use wharf_engine::WharfEngine;
use wharf_engine::config::EngineOptions;
use wharf_engine::wasmtime::component::{Val, wasm_wave};
use wharf_plugin::{Plugin, PluginConfig};

use wharf_admin::api::{InvokeReply, InvokeRequest};
use wharf_engine::error::{EXIT_INTERNAL, EXIT_MEMORY, EXIT_TIMEOUT, EXIT_TRAP, EXIT_USAGE};
use wharf_plugin::PluginError;

use super::{CompileArgs, parse_duration, parse_size};
use crate::client::{ServerArgs, error_message, parse_reply};
use crate::error::CliError;

/// Call an export of a component with typed arguments, as a plugin.
///
/// TARGET is a component file (.wasm, .wat, or a .cwasm from `wharf compile`), or the
/// name of an app on a server, whose component is then called through the admin API.
/// Each ARG is one parameter as a WAVE value; results are printed as WAVE (or JSON with
/// --json). Use `wharf inspect FILE` to see the exports and their types.
///
/// Examples:
///   wharf call calc.wasm add 3 4                      # 7
///   wharf call calc.wasm midpoint '{x: 0.0, y: 0.0}' '{x: 2.0, y: 4.0}'
///   wharf call calc.wasm divide 1 0                   # err("division by zero")
///   wharf call --json calculator add 3 4              # an app on a server
#[derive(Args)]
pub struct CallCommand {
    /// Print results as JSON instead of WAVE.
    #[arg(long)]
    json: bool,
    /// Cap on the plugin's total linear memory.
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_size)]
    max_memory: u64,
    /// Deadline for the call.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    compile: CompileArgs,
    #[command(flatten)]
    server: ServerArgs,
    /// A component file, or an app name on the server.
    #[arg(value_name = "FILE|APP")]
    target: String,
    /// The export: `name`, or `interface#name`.
    #[arg(value_name = "EXPORT")]
    export: String,
    /// One WAVE value per parameter.
    #[arg(value_name = "ARGS", allow_negative_numbers = true)]
    args: Vec<String>,
}

impl CallCommand {
    /// Runs the command.
    pub async fn execute(self) -> Result<(), CliError> {
        let path = PathBuf::from(&self.target);
        if path.exists()
            || self.target.ends_with(".wasm")
            || self.target.ends_with(".wat")
            || self.target.ends_with(".cwasm")
        {
            self.call_local(&path).await
        } else {
            self.call_remote().await
        }
    }

    async fn call_local(&self, path: &std::path::Path) -> Result<(), CliError> {
        let engine = WharfEngine::new(&EngineOptions::default())
            .map_err(|e| CliError::new(EXIT_INTERNAL, format!("{e:#}")))?;
        let load = self.compile.load_options()?;
        let config = PluginConfig {
            max_memory: Some(self.max_memory),
            timeout: Some(self.timeout),
            output: wharf_host::Output::Inherit,
            ..PluginConfig::default()
        };
        let plugin = Plugin::load(&engine, path, &load, config).map_err(|e| match e {
            PluginError::Load(w) => CliError::from(w),
            other => CliError::usage(other.to_string()),
        })?;
        let info = plugin
            .export(&self.export)
            .map_err(|e| CliError::usage(e.to_string()))?
            .clone();
        if info.params.len() != self.args.len() {
            return Err(CliError::usage(format!(
                "`{}` takes {} argument(s), {} given",
                info.signature,
                info.params.len(),
                self.args.len()
            )));
        }
        let mut vals = Vec::new();
        for (i, ((pname, ty), text)) in info.params.iter().zip(&self.args).enumerate() {
            let v: Val = wasm_wave::from_str(ty, text).map_err(|e| {
                CliError::usage(format!(
                    "argument {} (`{pname}`) of `{}`: `{text}` is not a WAVE {}: {e}",
                    i + 1,
                    info.signature,
                    wharf_engine::exports::wit_type_name(ty)
                ))
            })?;
            vals.push(v);
        }
        let results = plugin.call(&info.name, &vals).await.map_err(|e| {
            let code = match &e {
                PluginError::Timeout(_) => EXIT_TIMEOUT,
                PluginError::Trap(_) => EXIT_TRAP,
                PluginError::MemoryCap(_) => EXIT_MEMORY,
                PluginError::Args(_) | PluginError::NoSuchExport { .. } => EXIT_USAGE,
                _ => EXIT_INTERNAL,
            };
            CliError::new(code, e.to_string())
        })?;
        self.print(&results);
        Ok(())
    }

    fn print(&self, results: &[Val]) {
        if self.json {
            let v: Vec<serde_json::Value> = results
                .iter()
                .map(wharf_plugin::json::val_to_json)
                .collect();
            let out = if v.len() == 1 {
                v[0].clone()
            } else {
                serde_json::Value::Array(v)
            };
            println!("{out}");
        } else {
            for r in results {
                match wasm_wave::to_string(r) {
                    Ok(s) => println!("{s}"),
                    Err(e) => println!("<unprintable: {e}>"),
                }
            }
        }
    }

    async fn call_remote(&self) -> Result<(), CliError> {
        let request = InvokeRequest::Wave {
            wave: self.args.clone(),
        };
        let body = serde_json::to_vec(&request)
            .map_err(|e| CliError::new(EXIT_INTERNAL, format!("encoding the arguments: {e}")))?;
        let (status, bytes) = self
            .server
            .request_json(
                Method::POST,
                &format!("/v1/apps/{}/invoke/{}", self.target, self.export),
                body,
            )
            .await
            .map_err(|e| {
                CliError::new(
                    1,
                    format!(
                        "`{}` is not a file, so it names an app on the server: {e:#}",
                        self.target
                    ),
                )
            })?;
        if !status.is_success() {
            return Err(CliError::new(
                1,
                format!("{} ({status})", error_message(&bytes)),
            ));
        }
        let reply: InvokeReply = parse_reply(&bytes)?;
        if self.json {
            println!("{}", reply.result);
        } else {
            for s in &reply.wave {
                println!("{s}");
            }
        }
        Ok(())
    }
}
