//! Compiling untrusted bytes under a bound.
//!
//! Cranelift on a pathological module can take minutes and gigabytes by design, so
//! [`Compiler::Subprocess`] compiles in a child process (the `wharf` binary re-executed
//! with a hidden worker subcommand that calls [`worker_main`]) under an address-space
//! limit (`RLIMIT_AS`), killed when the time bound passes. A child is the only robust
//! bound: a thread cannot be stopped, and a memory blow-up in-process takes the host
//! down with it. [`Compiler::InProcess`] exists for library users and benchmarks that
//! compile trusted inputs.
//!
//! Protocol: the parent writes the Wasm bytes to the child's stdin and passes the
//! engine options (JSON), the kind and an output path; the child writes the raw artifact
//! to the output path (fsynced) and one JSON line to stdout: [`WorkerReply`].

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use wait_timeout::ChildExt;

use crate::artifact::ArtifactKind;
use crate::config::{EngineOptions, WharfEngine, compatibility_key};
use crate::error::WharfError;
use crate::size::format_size;

/// Default compile time bound.
pub const DEFAULT_COMPILE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default compile memory bound (address space of the compile child).
pub const DEFAULT_COMPILE_MAX_MEMORY: u64 = 4 << 30;
/// The hidden subcommand that runs [`worker_main`].
pub const WORKER_SUBCOMMAND: &str = "__compile-worker";

/// How to compile.
#[derive(Clone, Debug)]
pub enum Compiler {
    /// In this process, unbounded: only for trusted input.
    InProcess,
    /// In a child process: `program WORKER_SUBCOMMAND ...`, bounded.
    Subprocess {
        /// The executable that implements the worker subcommand (normally `wharf`).
        program: PathBuf,
        /// Wall-clock bound.
        timeout: Duration,
        /// Address-space bound of the child.
        max_memory: u64,
    },
}

impl Compiler {
    /// A bounded compiler using the current executable as the worker.
    pub fn bounded(timeout: Duration, max_memory: u64) -> Result<Compiler> {
        let program = std::env::current_exe().context("finding the wharf executable")?;
        Ok(Compiler::Subprocess {
            program,
            timeout,
            max_memory,
        })
    }
}

/// What the worker prints on stdout.
#[derive(Debug, Serialize, Deserialize)]
pub struct WorkerReply {
    /// Whether the artifact was written.
    pub ok: bool,
    /// The worker engine's compatibility key (hex), checked by the parent.
    pub compat: String,
    /// The compile error, when not ok.
    pub error: Option<String>,
    /// Whether the error came from the compiler (the input is at fault) rather than
    /// from the worker's own plumbing.
    #[serde(default)]
    pub invalid: bool,
}

/// Compiles `wasm` into a raw wasmtime artifact at `out`. `display` names the input in
/// errors.
pub fn compile_to_file(
    compiler: &Compiler,
    engine: &WharfEngine,
    kind: ArtifactKind,
    wasm: &[u8],
    out: &Path,
    display: &Path,
) -> Result<(), WharfError> {
    match compiler {
        Compiler::InProcess => {
            let bytes =
                precompile(engine.engine(), kind, wasm).map_err(|e| WharfError::InvalidWasm {
                    path: display.to_path_buf(),
                    reason: format!("{e:#}"),
                })?;
            crate::artifact::write_atomic(out, &bytes)?;
            Ok(())
        }
        Compiler::Subprocess {
            program,
            timeout,
            max_memory,
        } => compile_in_child(
            program,
            *timeout,
            *max_memory,
            engine,
            kind,
            wasm,
            out,
            display,
        ),
    }
}

fn precompile(engine: &wasmtime::Engine, kind: ArtifactKind, wasm: &[u8]) -> Result<Vec<u8>> {
    let r = match kind {
        ArtifactKind::Module => engine.precompile_module(wasm),
        ArtifactKind::Component => engine.precompile_component(wasm),
    };
    r.map_err(anyhow::Error::from)
}

/// What the worker prints on stdout once it has started and is about to compile.
const READY_LINE: &str = "wharf-compile-worker: ready";

/// How long the worker may take to start (process, input, engine) before compiling.
const WORKER_STARTUP: Duration = Duration::from_secs(60);

#[allow(clippy::too_many_arguments)]
fn compile_in_child(
    program: &Path,
    timeout: Duration,
    max_memory: u64,
    engine: &WharfEngine,
    kind: ArtifactKind,
    wasm: &[u8],
    out: &Path,
    display: &Path,
) -> Result<(), WharfError> {
    let options = serde_json::to_string(engine.options()).context("encoding engine options")?;
    let mut child = Command::new(program)
        .arg(WORKER_SUBCOMMAND)
        .arg("--engine-options")
        .arg(&options)
        .arg("--kind")
        .arg(kind.name())
        .arg("--max-memory")
        .arg(max_memory.to_string())
        .arg("--output")
        .arg(out)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting the compile worker `{}`", program.display()))?;

    // Feed stdin and drain stdout/stderr on threads so that no pipe can fill up and
    // block either side while we wait with a deadline.
    let mut stdin = child.stdin.take().context("compile worker stdin")?;
    let input = wasm.to_vec();
    let writer = std::thread::spawn(move || {
        // A child that dies early closes its stdin; its exit status tells why.
        let _ = stdin.write_all(&input);
    });
    let stdout = child.stdout.take().context("compile worker stdout")?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
            if line == READY_LINE {
                let _ = ready_tx.send(());
            } else {
                s.push_str(&line);
                s.push('\n');
            }
        }
        s
    });
    let stderr = child.stderr.take().context("compile worker stderr")?;
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.take(64 << 10).read_to_string(&mut s);
        s
    });

    // Start-up (process start, reading the input, building the engine) has its own
    // bound; the compile bound starts when the worker says it is ready. A worker that
    // exits before that (a bad input, a failed rlimit) is handled by its status below.
    if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = ready_rx.recv_timeout(WORKER_STARTUP) {
        let _ = child.kill();
        let _ = child.wait();
        let _ = writer.join();
        return Err(WharfError::Internal(anyhow::anyhow!(
            "the compile worker did not start within {}; the machine may be overloaded",
            humanize(WORKER_STARTUP)
        )));
    }
    let status = child
        .wait_timeout(timeout)
        .context("waiting for the compile worker")?;
    let status = match status {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            let _ = writer.join();
            let _ = std::fs::remove_file(out);
            return Err(WharfError::CompileBound {
                path: display.to_path_buf(),
                reason: format!(
                    "took longer than {} and was stopped; the module may be pathological, or \
                     very large: raise --compile-timeout if you trust it",
                    humanize(timeout)
                ),
            });
        }
    };
    let _ = writer.join();
    let stdout = reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();

    let reply: Option<WorkerReply> = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok());
    let memory_bound = || WharfError::CompileBound {
        path: display.to_path_buf(),
        reason: format!(
            "needed more than {} of memory and was stopped; raise --compile-max-memory if \
             you trust this module",
            format_size(max_memory)
        ),
    };
    match reply {
        Some(r) if r.ok => {
            let ours = hex::encode(compatibility_key(engine.engine()));
            if r.compat != ours {
                let _ = std::fs::remove_file(out);
                return Err(anyhow::anyhow!(
                    "the compile worker built an engine with a different configuration \
                     ({} vs {ours}); is `{}` the same wharf build?",
                    r.compat,
                    program.display()
                )
                .into());
            }
            Ok(())
        }
        Some(r) => {
            let msg = r.error.unwrap_or_default();
            if is_oom(&msg) {
                Err(memory_bound())
            } else if r.invalid {
                Err(WharfError::InvalidWasm {
                    path: display.to_path_buf(),
                    reason: msg,
                })
            } else {
                Err(anyhow::anyhow!("the compile worker failed: {msg}").into())
            }
        }
        None => {
            let _ = std::fs::remove_file(out);
            if is_oom(&stderr) || !status.success() && status.code().is_none() {
                Err(memory_bound())
            } else {
                Err(
                    anyhow::anyhow!("the compile worker failed ({status}): {}", stderr.trim())
                        .into(),
                )
            }
        }
    }
}

/// Whether the worker's output shows it hit the address-space limit: a failed
/// allocation, or (`EAGAIN`) a thread stack that could not be mapped.
fn is_oom(text: &str) -> bool {
    text.contains("memory allocation of")
        || text.contains("Cannot allocate memory")
        || text.contains("out of memory")
        || text.contains("Resource temporarily unavailable")
}

fn humanize(d: Duration) -> String {
    if d.as_secs() >= 1 && d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Arguments of the hidden worker subcommand.
#[derive(Debug)]
pub struct WorkerArgs {
    /// Engine options as JSON.
    pub engine_options: String,
    /// `module` or `component`.
    pub kind: String,
    /// Address-space bound in bytes.
    pub max_memory: u64,
    /// Where to write the artifact.
    pub output: PathBuf,
}

/// The compile worker: reads Wasm from stdin, compiles it with the engine described by
/// `args.engine_options` under an address-space limit, writes the artifact to
/// `args.output` and prints a [`WorkerReply`]. Returns the process exit code.
pub fn worker_main(args: WorkerArgs) -> i32 {
    let reply = |ok: bool, compat: String, error: Option<String>, invalid: bool| {
        let line = serde_json::to_string(&WorkerReply {
            ok,
            compat,
            error,
            invalid,
        })
        .unwrap_or_else(|_| "{}".into());
        println!("{line}");
    };
    let result = (|| -> Result<String> {
        let limit = rustix::process::Rlimit {
            current: Some(args.max_memory),
            maximum: Some(args.max_memory),
        };
        rustix::process::setrlimit(rustix::process::Resource::As, limit)
            .context("setting the compile memory limit")?;
        let options: EngineOptions =
            serde_json::from_str(&args.engine_options).context("decoding engine options")?;
        let kind = match args.kind.as_str() {
            "module" => ArtifactKind::Module,
            "component" => ArtifactKind::Component,
            other => anyhow::bail!("unknown kind `{other}`"),
        };
        let mut wasm = Vec::new();
        std::io::stdin()
            .read_to_end(&mut wasm)
            .context("reading the input")?;
        let engine = WharfEngine::for_compiling(&options)?;
        let compat = hex::encode(compatibility_key(&engine));
        // Tell the parent that start-up is over: its --compile-timeout counts from
        // here, so a slow process start never passes for a slow compile.
        println!("{READY_LINE}");
        std::io::stdout().flush().context("signalling readiness")?;
        let bytes = precompile(&engine, kind, &wasm).map_err(CompileFailed)?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&args.output)
            .with_context(|| format!("opening `{}`", args.output.display()))?;
        f.write_all(&bytes).context("writing the artifact")?;
        f.sync_all().context("syncing the artifact")?;
        Ok(compat)
    })();
    match result {
        Ok(compat) => {
            reply(true, compat, None, false);
            0
        }
        Err(e) => {
            let invalid = e.is::<CompileFailed>();
            reply(false, String::new(), Some(format!("{e:#}")), invalid);
            if invalid { 1 } else { 2 }
        }
    }
}

/// Marks an error from the compiler itself (as opposed to the worker's plumbing).
#[derive(Debug)]
struct CompileFailed(anyhow::Error);

impl std::fmt::Display for CompileFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for CompileFailed {}
