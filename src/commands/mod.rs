//! One module per subcommand.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use wharf_engine::artifact::{ArtifactCache, ArtifactKey};
use wharf_engine::compile::Compiler;
use wharf_engine::error::WharfError;
use wharf_engine::load::LoadOptions;

use crate::error::CliError;

pub mod apps;
pub mod call;
pub mod compile;
pub mod deploy;
pub mod inspect;
pub mod run;
pub mod serve;
pub mod worker;

/// The subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// Run a WebAssembly program (a wasip1 module or a wasip2 component), or call one
    /// of its exports with --invoke.
    Run(run::RunCommand),
    /// Precompile a .wasm or .wat file ahead of time into a .cwasm that `wharf run`
    /// loads without compiling.
    Compile(compile::CompileCommand),
    /// Call an export of a component (a plugin) with typed WAVE arguments.
    Call(call::CallCommand),
    /// Describe a module or component: kind, world, imports, exports, custom sections.
    Inspect(inspect::InspectCommand),
    /// Serve HTTP apps: many wasi:http/proxy components in one process, deployed live.
    Serve(serve::ServeCommand),
    /// Deploy an app (wharf.toml and its .wasm files) to a server, or replace it.
    Deploy(deploy::DeployCommand),
    /// List, show, remove apps on a server, or read their logs.
    Apps(apps::AppsCommand),
    #[command(name = "__compile-worker", hide = true)]
    CompileWorker(worker::WorkerCommand),
}

impl Command {
    /// Runs the subcommand on the process's runtime (see `main`).
    pub async fn execute(self) -> Result<(), CliError> {
        match self {
            Command::Run(c) => c.execute().await,
            Command::Compile(c) => c.execute().await,
            Command::Call(c) => c.execute().await,
            Command::Inspect(c) => c.execute().await,
            Command::Serve(c) => c.execute().await,
            Command::Deploy(c) => c.execute().await,
            Command::Apps(c) => c.execute().await,
            // Runs without a runtime; `main` calls it directly.
            Command::CompileWorker(c) => c.execute(),
        }
    }
}

/// Flags shared by every command that compiles.
#[derive(Args, Clone, Debug)]
pub struct CompileArgs {
    /// Where compiled artifacts are cached [default: $XDG_CACHE_HOME/wharf or
    /// ~/.cache/wharf].
    #[arg(long, value_name = "DIR", env = "WHARF_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Compile every time; neither read nor write the artifact cache.
    #[arg(long)]
    pub no_cache: bool,
    #[command(flatten)]
    pub bounds: CompileBounds,
    /// The key that signs and verifies .cwasm files written here [default:
    /// $XDG_CONFIG_HOME/wharf/artifact.key or ~/.config/wharf/artifact.key].
    #[arg(
        long,
        value_name = "FILE",
        env = "WHARF_ARTIFACT_KEY",
        hide_short_help = true
    )]
    pub artifact_key: Option<PathBuf>,
}

impl CompileArgs {
    /// The load options these flags describe.
    pub fn load_options(&self) -> Result<LoadOptions, WharfError> {
        let cache = if self.no_cache {
            None
        } else {
            self.cache_dir
                .clone()
                .or_else(ArtifactCache::default_dir)
                .map(ArtifactCache::new)
        };
        Ok(LoadOptions {
            cache,
            compiler: self.bounds.compiler()?,
            key_path: self.key_path(),
            progress: true,
        })
    }

    /// The artifact key file.
    pub fn key_path(&self) -> Option<PathBuf> {
        self.artifact_key.clone().or_else(ArtifactKey::default_path)
    }
}

/// The bounds of the compiling process: shared by every command that compiles, `wharf
/// serve` included.
#[derive(Args, Clone, Debug)]
pub struct CompileBounds {
    /// Stop compiling after this long (compilation runs in a separate, bounded process).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub compile_timeout: Duration,
    /// Memory bound of the compiling process.
    #[arg(long, value_name = "SIZE", default_value = "4GiB", value_parser = parse_size)]
    pub compile_max_memory: u64,
}

impl CompileBounds {
    /// The compiler these bounds describe.
    pub fn compiler(&self) -> anyhow::Result<Compiler> {
        Compiler::bounded(self.compile_timeout, self.compile_max_memory)
    }
}

/// The longest duration any flag accepts (365 days): longer ones are refused at
/// parse, so that no `Instant::now() + duration` can overflow (`--timeout 1e20`
/// used to panic).
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses `30s`, `500ms`, `2m`, or a bare number of seconds, at most [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let too_long = || format!("`{s}` is too long: the most a duration may be is 365d");
    if let Ok(secs) = s.trim().parse::<f64>() {
        if !secs.is_finite() || secs < 0.0 {
            return Err(format!(
                "`{s}` is not a duration: it must be a finite number of seconds, at least 0"
            ));
        }
        if secs > MAX_DURATION.as_secs_f64() {
            return Err(too_long());
        }
        return Duration::try_from_secs_f64(secs).map_err(|_| too_long());
    }
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration ({e}); write e.g. `500ms`, `10s` or `2m`"))?;
    if d > MAX_DURATION {
        return Err(too_long());
    }
    Ok(d)
}

/// Parses a byte size such as `64MiB`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    wharf_engine::size::parse_size(s)
}

#[cfg(test)]
mod duration_tests {
    use super::*;

    #[test]
    fn huge_durations_are_refused_not_a_panic() {
        for s in ["1e20", "1e300", "400d", "100000000years"] {
            let e = parse_duration(s).expect_err(s);
            assert!(
                e.contains("365d") || e.contains("not a duration"),
                "{s}: {e}"
            );
        }
        assert!(parse_duration("inf").is_err());
        assert!(parse_duration("-1").is_err());
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("365d"), Ok(MAX_DURATION));
    }
}
