//! `wharf compile`: precompile ahead of time into a signed `.cwasm`.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use wharf_engine::WharfEngine;
use wharf_engine::config::EngineOptions;
use wharf_engine::error::WharfError;
use wharf_engine::size::format_size;

use super::CompileArgs;
use crate::error::CliError;

/// Precompile a .wasm or .wat file into a .cwasm.
///
/// The .cwasm holds native code for this machine and this wharf's engine settings, and is
/// signed with a key kept in your config directory: `wharf run` loads it without
/// compiling, and refuses any .cwasm it did not write (a .cwasm is native code, so a
/// foreign one could do anything).
///
/// Example:
///   wharf compile app.wasm -o app.cwasm && wharf run app.cwasm
#[derive(Args)]
pub struct CompileCommand {
    /// Where to write the artifact [default: FILE with the extension .cwasm].
    #[arg(short, long, value_name = "OUT")]
    output: Option<PathBuf>,
    /// Compile for fuel metering, for use with `wharf run --fuel`.
    #[arg(long)]
    fuel: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    compile: CompileArgs,
    /// The .wasm or .wat file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

impl CompileCommand {
    /// Runs the command.
    pub async fn execute(self) -> Result<(), CliError> {
        Ok(self.compile()?)
    }

    fn compile(&self) -> Result<(), WharfError> {
        let out = self
            .output
            .clone()
            .unwrap_or_else(|| self.file.with_extension("cwasm"));
        let engine = WharfEngine::new(&EngineOptions {
            fuel: self.fuel,
            ..EngineOptions::default()
        })?;
        let load = self.compile.load_options()?;
        let key = self.compile.key_path().ok_or_else(|| {
            WharfError::Usage(
                "no place for the artifact key: set HOME, XDG_CONFIG_HOME or --artifact-key".into(),
            )
        })?;
        if !self.json {
            eprintln!("Compiling `{}`...", self.file.display());
        }
        let t = Instant::now();
        let (kind, size) =
            wharf_engine::load::compile_cwasm(&engine, &self.file, &out, &load.compiler, &key)?;
        let secs = t.elapsed().as_secs_f64();
        if self.json {
            let v = serde_json::json!({
                "input": self.file,
                "output": out,
                "kind": kind.name(),
                "bytes": size,
                "seconds": secs,
                "fuel": self.fuel,
            });
            println!("{v}");
        } else {
            eprintln!(
                "Compiled `{}` -> `{}` ({}, {}, {:.2}s)",
                self.file.display(),
                out.display(),
                kind.name(),
                format_size(size),
                secs
            );
        }
        Ok(())
    }
}
