//! `wharf run`: run a WASI program, or call one of its exports.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use wharf_engine::config::{AllocatorChoice, EngineOptions};
use wharf_engine::error::{EXIT_CODE_TABLE, WharfError};
use wharf_engine::run::{RunOutput, RunReport, RunStats};
use wharf_engine::size::format_size;
use wharf_engine::{DirGrant, Invocation, Limits, RunOptions, WharfEngine};

use super::{CompileArgs, parse_duration, parse_size};
use crate::error::CliError;

/// Run a WebAssembly program.
///
/// FILE is a wasip1 core module, a wasip2 component (`wasi:cli/command`), a `.wat` text
/// file, or a `.cwasm` written by `wharf compile`; wharf tells them apart from the bytes.
/// The program's stdin, stdout and stderr are yours, and its exit status becomes
/// wharf's. The first run of a file compiles it and caches the result; later runs load
/// the cached code.
///
/// Examples:
///   wharf run hello.wasm
///   wharf run --dir ./data::/data --env NAME=Ada app.wasm --verbose
///   wharf run --max-memory 64MiB --timeout 2s --stats untrusted.wasm
///   wharf run --invoke 'add(3, 4)' calc.wasm
#[derive(Args)]
#[command(after_long_help = EXIT_CODE_TABLE, after_help = EXIT_CODE_TABLE)]
pub struct RunCommand {
    /// Give the guest a host directory, read-write: HOST, or HOST::GUEST to mount it at
    /// another guest path. Repeatable.
    #[arg(long = "dir", value_name = "HOST[::GUEST]")]
    dirs: Vec<String>,
    /// Like --dir, but read-only.
    #[arg(long = "dir-ro", value_name = "HOST[::GUEST]")]
    ro_dirs: Vec<String>,
    /// Set an environment variable for the guest: K=V, or K to pass the host's value.
    /// Repeatable; applied after --inherit-env.
    #[arg(long = "env", short = 'e', value_name = "K=V")]
    envs: Vec<String>,
    /// Pass the whole host environment to the guest.
    #[arg(long)]
    inherit_env: bool,
    /// Cap the total of all the guest's linear memories, e.g. 64MiB. Growing past it
    /// fails inside the guest; wharf then reports the cap (exit 133).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_memory: Option<u64>,
    /// Stop the guest after this much wall-clock time, e.g. 500ms or 10s (exit 124).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Meter execution deterministically: trap after N units of fuel (exit 132).
    /// Costs speed, so it is off unless asked for.
    #[arg(long, value_name = "N")]
    fuel: Option<u64>,
    /// Call an export instead of running the program: NAME(ARGS...) with WAVE values,
    /// e.g. 'add(3, 4)', 'greet({name: "Ada", age: 36})'. Use INTERFACE#NAME for a
    /// function inside an exported interface. The result is printed as WAVE.
    #[arg(long, value_name = "CALL")]
    invoke: Option<String>,
    /// Print statistics (load, instantiate and run times, fuel, peak memory, exit) on
    /// stderr when the program ends.
    #[arg(long)]
    stats: bool,
    /// Write the same statistics as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    stats_json: Option<PathBuf>,
    /// Instance allocator: on-demand (the default for one program: a pool's set-up costs
    /// more than it saves for a single instance), pooling, or auto (pooling when the host
    /// allows it).
    #[arg(long, value_name = "KIND", default_value = "on-demand", value_parser = parse_allocator, hide_short_help = true)]
    allocator: AllocatorChoice,
    #[command(flatten)]
    compile: CompileArgs,
    /// The program: .wasm, .wat or .cwasm.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Arguments passed to the program (its argv[1..]).
    #[arg(
        value_name = "ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    args: Vec<String>,
}

fn parse_allocator(s: &str) -> Result<AllocatorChoice, String> {
    match s {
        "auto" => Ok(AllocatorChoice::Auto),
        "pooling" => Ok(AllocatorChoice::Pooling),
        "on-demand" | "ondemand" => Ok(AllocatorChoice::OnDemand),
        _ => Err(format!("`{s}`: expected auto, pooling or on-demand")),
    }
}

impl RunCommand {
    /// Runs the program; its own exit status becomes the error's exit code.
    pub async fn execute(self) -> Result<(), CliError> {
        let (engine, opts) = self.prepare()?;
        self.run(&engine, &opts).await
    }

    fn prepare(&self) -> Result<(WharfEngine, RunOptions), WharfError> {
        let mut dirs = Vec::new();
        for d in &self.dirs {
            dirs.push(DirGrant::parse(d, false)?);
        }
        for d in &self.ro_dirs {
            dirs.push(DirGrant::parse(d, true)?);
        }
        let mut env = Vec::new();
        for e in &self.envs {
            match e.split_once('=') {
                Some((k, v)) if !k.is_empty() => env.push((k.to_string(), v.to_string())),
                Some(_) => {
                    return Err(WharfError::Usage(format!(
                        "--env `{e}`: the variable name is empty; write K=V"
                    )));
                }
                None => match std::env::var(e) {
                    Ok(v) => env.push((e.clone(), v)),
                    Err(_) => {
                        return Err(WharfError::Usage(format!(
                            "--env `{e}`: no such variable in wharf's environment; write K=V \
                             to set a value"
                        )));
                    }
                },
            }
        }
        let invoke = self.invoke.as_deref().map(Invocation::parse).transpose()?;
        let argv0 = self
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.file.display().to_string());
        let mut args = vec![argv0];
        args.extend(self.args.iter().cloned());
        let opts = RunOptions {
            args,
            env,
            inherit_env: self.inherit_env,
            dirs,
            limits: Limits {
                max_memory: self.max_memory,
                timeout: self.timeout,
                fuel: self.fuel,
            },
            invoke,
        };
        let engine = WharfEngine::new(&EngineOptions {
            allocator: self.allocator,
            // One program runs at a time; a small pool keeps start-up cheap when asked for.
            pool_instances: 4,
            fuel: self.fuel.is_some(),
            ..EngineOptions::default()
        })?;
        Ok((engine, opts))
    }

    async fn run(&self, engine: &WharfEngine, opts: &RunOptions) -> Result<(), CliError> {
        let load = self.compile.load_options()?;
        let loaded = wharf_engine::load::load_file(engine, &self.file, &load)?;
        let RunReport { stats, outcome } =
            wharf_engine::run::run_async(engine, &loaded, opts).await;
        let result = match outcome {
            Ok(RunOutput::Exit(0)) => Ok(()),
            Ok(RunOutput::Exit(c)) => Err(CliError::exit(c)),
            Ok(RunOutput::Values(values)) => {
                let mut out = std::io::stdout().lock();
                for v in values {
                    let _ = writeln!(out, "{v}");
                }
                let _ = out.flush();
                Ok(())
            }
            Err(e) => Err(CliError::from(e)),
        };
        if self.stats {
            print_stats(&stats, engine);
        }
        if let Some(path) = &self.stats_json {
            let json = serde_json::to_string_pretty(&stats).unwrap_or_default();
            if let Err(e) = std::fs::write(path, json + "\n") {
                let message = format!("writing statistics to `{}`: {e}", path.display());
                if result.is_ok() {
                    return Err(CliError::new(wharf_engine::error::EXIT_INTERNAL, message));
                }
                // The run's own failure is the error reported; this one is secondary.
                eprintln!("warning: {message}");
            }
        }
        result
    }
}

fn print_stats(s: &RunStats, engine: &WharfEngine) {
    let ms = |us: u64| format!("{:.3} ms", us as f64 / 1000.0);
    let load = match s.load_method {
        wharf_engine::LoadMethod::Compiled => "compile",
        wharf_engine::LoadMethod::CacheHit => "cache load",
        wharf_engine::LoadMethod::Precompiled => "precompiled load",
    };
    let mut rows: Vec<(String, String)> = vec![
        (load.to_string(), ms(s.load_us)),
        ("instantiate".into(), ms(s.instantiate_us)),
        ("run".into(), ms(s.run_us)),
    ];
    if let Some(f) = s.fuel_consumed {
        rows.push(("fuel consumed".into(), f.to_string()));
    }
    rows.push(("peak memory".into(), format_size(s.peak_memory_bytes)));
    rows.push((
        "allocator".into(),
        match engine.allocator() {
            wharf_engine::config::AllocatorUsed::Pooling => "pooling".into(),
            wharf_engine::config::AllocatorUsed::OnDemand => "on-demand".into(),
        },
    ));
    rows.push((
        "exit".into(),
        format!("{} ({})", s.exit_code, s.exit_status),
    ));
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "── wharf stats ──");
    for (k, v) in rows {
        let _ = writeln!(err, "{k:<width$}  {v}");
    }
}
