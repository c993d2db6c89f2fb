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
//! WebAssembly text (`.wat`) is turned into binary the same way, by [`parse_text`]: the
//! text parser is as much a target as the compiler (a large or pathological text costs
//! memory and time to parse), so with [`Compiler::Subprocess`] it runs in the bounded
//! child too, and the parent only ever holds the text and the resulting binary.
//!
//! Protocol: the parent writes the input bytes to the child's stdin and passes the
//! engine options (JSON), the job (`--kind module|component` to compile, `--kind wat` to
//! parse text), the input's name for error messages and an output path; the child
//! writes the raw artifact (fsynced) or the Wasm binary to the output path and one JSON
//! line to stdout: [`WorkerReply`].

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
        } => run_worker(
            program,
            *timeout,
            *max_memory,
            engine.options(),
            Job::Compile(kind),
            wasm,
            out,
            display,
        )
        .and_then(|compat| check_compat(engine, program, &compat, out)),
    }
}

/// Turns WebAssembly text into a Wasm binary. `display` names the input in errors (a
/// syntax error reads `display:line:col` and is [`WharfError::InvalidWasm`]). With
/// [`Compiler::Subprocess`] the text is parsed in the bounded worker, under the same
/// time and memory bound as a compile (a parse that exceeds it is
/// [`WharfError::CompileBound`]); with [`Compiler::InProcess`], here.
pub fn parse_text(compiler: &Compiler, text: &[u8], display: &Path) -> Result<Vec<u8>, WharfError> {
    match compiler {
        Compiler::InProcess => {
            parse_wat(text, Some(display)).map_err(|reason| WharfError::InvalidWasm {
                path: display.to_path_buf(),
                reason,
            })
        }
        Compiler::Subprocess {
            program,
            timeout,
            max_memory,
        } => {
            let dir = tempfile::tempdir().context("creating a temporary directory")?;
            let out = dir.path().join("parsed.wasm");
            // The worker builds no engine for this job; the options are only its
            // command line's.
            run_worker(
                program,
                *timeout,
                *max_memory,
                &EngineOptions::default(),
                Job::ParseText,
                text,
                &out,
                display,
            )?;
            Ok(std::fs::read(&out).context("reading the parsed Wasm")?)
        }
    }
}

/// Parses WebAssembly text; the error reads `path:line:col` with the parser's message.
fn parse_wat(text: &[u8], path: Option<&Path>) -> Result<Vec<u8>, String> {
    wat::parse_bytes(text)
        .map(|w| w.into_owned())
        .map_err(|mut e| {
            // Point the error at the file, so that it reads `path:line:col`.
            if let Some(path) = path {
                e.set_path(path);
            }
            format!("the text format does not parse: {e}")
        })
}

fn precompile(engine: &wasmtime::Engine, kind: ArtifactKind, wasm: &[u8]) -> Result<Vec<u8>> {
    let r = match kind {
        ArtifactKind::Module => engine.precompile_module(wasm),
        ArtifactKind::Component => engine.precompile_component(wasm),
    };
    r.map_err(anyhow::Error::from)
}

/// What a worker is asked to do with its input.
#[derive(Clone, Copy, Debug)]
enum Job {
    /// Compile a Wasm binary into a raw artifact.
    Compile(ArtifactKind),
    /// Turn WebAssembly text into a Wasm binary.
    ParseText,
}

impl Job {
    /// The worker's `--kind`.
    fn name(self) -> &'static str {
        match self {
            Job::Compile(kind) => kind.name(),
            Job::ParseText => "wat",
        }
    }

    fn from_name(name: &str) -> Option<Job> {
        match name {
            "module" => Some(Job::Compile(ArtifactKind::Module)),
            "component" => Some(Job::Compile(ArtifactKind::Component)),
            "wat" => Some(Job::ParseText),
            _ => None,
        }
    }
}

/// What the worker prints on stdout once it has started and is about to compile (or
/// parse).
const READY_LINE: &str = "wharf-compile-worker: ready";

/// How long the worker may take to start (process, input, engine) before compiling.
const WORKER_STARTUP: Duration = Duration::from_secs(60);

/// Runs `job` on `input` in a worker bounded by `timeout` (from when it is ready) and
/// `max_memory`; the worker writes its result to `out`. Returns the worker engine's
/// compatibility key (empty for a job that builds no engine).
#[allow(clippy::too_many_arguments)]
fn run_worker(
    program: &Path,
    timeout: Duration,
    max_memory: u64,
    options: &EngineOptions,
    job: Job,
    input: &[u8],
    out: &Path,
    display: &Path,
) -> Result<String, WharfError> {
    let options = serde_json::to_string(options).context("encoding engine options")?;
    let mut child = Command::new(program)
        .arg(WORKER_SUBCOMMAND)
        .arg("--engine-options")
        .arg(&options)
        .arg("--kind")
        .arg(job.name())
        .arg("--max-memory")
        .arg(max_memory.to_string())
        // `--source=NAME`, so that a name starting with `-` is not taken for a flag.
        .arg({
            let mut a = std::ffi::OsString::from("--source=");
            a.push(display);
            a
        })
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
    let input = input.to_vec();
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
    // bound; the compile bound starts when the worker says it is ready (for a text
    // input, before it parses: the parse is under the bound too). A worker that
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
            let reason = match job {
                Job::Compile(_) => format!(
                    "took longer than {} and was stopped; the module may be pathological, or \
                     very large: raise --compile-timeout if you trust it",
                    humanize(timeout)
                ),
                Job::ParseText => format!(
                    "took longer than {} to parse its text format and was stopped; the text \
                     may be pathological, or very large: raise --compile-timeout if you trust \
                     it",
                    humanize(timeout)
                ),
            };
            return Err(WharfError::CompileBound {
                path: display.to_path_buf(),
                reason,
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
        reason: match job {
            Job::Compile(_) => format!(
                "needed more than {} of memory and was stopped; raise --compile-max-memory \
                 if you trust this module",
                format_size(max_memory)
            ),
            Job::ParseText => format!(
                "needed more than {} of memory to parse its text format and was stopped; \
                 raise --compile-max-memory if you trust this module",
                format_size(max_memory)
            ),
        },
    };
    match reply {
        Some(r) if r.ok => Ok(r.compat),
        Some(r) => {
            let msg = r.error.unwrap_or_default();
            // A text parser's message quotes the input's line, which may say anything,
            // and the parser never reports a failed allocation as an error (it aborts).
            let text_error = matches!(job, Job::ParseText) && r.invalid;
            if !text_error && is_oom(&msg) {
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

/// Checks that the worker compiled for an engine with this engine's compatibility key.
fn check_compat(
    engine: &WharfEngine,
    program: &Path,
    compat: &str,
    out: &Path,
) -> Result<(), WharfError> {
    let ours = hex::encode(compatibility_key(engine.engine()));
    if compat != ours {
        let _ = std::fs::remove_file(out);
        return Err(anyhow::anyhow!(
            "the compile worker built an engine with a different configuration ({compat} vs \
             {ours}); is `{}` the same wharf build?",
            program.display()
        )
        .into());
    }
    Ok(())
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
    /// `module` or `component` to compile Wasm, `wat` to turn WebAssembly text into
    /// Wasm.
    pub kind: String,
    /// Address-space bound in bytes.
    pub max_memory: u64,
    /// The input's name in error messages (a text syntax error reads `source:line:col`).
    pub source: Option<PathBuf>,
    /// Where to write the artifact.
    pub output: PathBuf,
}

/// The compile worker: reads Wasm from stdin, compiles it with the engine described by
/// `args.engine_options` under an address-space limit, writes the artifact to
/// `args.output` and prints a [`WorkerReply`]. With `--kind wat` it reads WebAssembly
/// text instead and writes the Wasm binary, under the same limit (it builds no engine).
/// Returns the process exit code.
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
        let job =
            Job::from_name(&args.kind).with_context(|| format!("unknown kind `{}`", args.kind))?;
        let mut input = Vec::new();
        std::io::stdin()
            .read_to_end(&mut input)
            .context("reading the input")?;
        let (bytes, compat) = match job {
            Job::Compile(kind) => {
                let options: EngineOptions = serde_json::from_str(&args.engine_options)
                    .context("decoding engine options")?;
                let engine = WharfEngine::for_compiling(&options)?;
                let compat = hex::encode(compatibility_key(&engine));
                ready()?;
                (
                    precompile(&engine, kind, &input).map_err(CompileFailed)?,
                    compat,
                )
            }
            Job::ParseText => {
                ready()?;
                let wasm = parse_wat(&input, args.source.as_deref())
                    .map_err(|e| CompileFailed(anyhow::anyhow!(e)))?;
                (wasm, String::new())
            }
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&args.output)
            .with_context(|| format!("opening `{}`", args.output.display()))?;
        f.write_all(&bytes).context("writing the output")?;
        // An artifact may go into the cache; parsed text is read back at once.
        if let Job::Compile(_) = job {
            f.sync_all().context("syncing the artifact")?;
        }
        Ok(compat)
    })();
    match result {
        Ok(compat) => {
            reply(true, compat, None, false);
            0
        }
        Err(e) => {
            let invalid = e.is::<CompileFailed>();
            reply(
                false,
                String::new(),
                Some(clip_lines(&format!("{e:#}"))),
                invalid,
            );
            if invalid { 1 } else { 2 }
        }
    }
}

/// Tells the parent that start-up is over: its --compile-timeout counts from here, so a
/// slow process start never passes for a slow compile (or parse).
fn ready() -> Result<()> {
    println!("{READY_LINE}");
    std::io::stdout().flush().context("signalling readiness")
}

/// The longest line of an error message the worker sends back.
const MAX_ERROR_LINE: usize = 1000;
/// The longest error message the worker sends back.
const MAX_ERROR: usize = 16 << 10;

/// Cuts each over-long line of an error message, and the message as a whole. A text
/// parser's message quotes the offending line of the input, which may be hundreds of
/// megabytes long, and the parent reads the reply into memory.
fn clip_lines(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len().min(MAX_ERROR));
    for (i, line) in msg.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(clip(line, MAX_ERROR_LINE));
        if line.len() > MAX_ERROR_LINE {
            out.push_str(" [...]");
        }
        if out.len() > MAX_ERROR {
            out.truncate(clip(&out, MAX_ERROR).len());
            out.push_str(" [...]");
            break;
        }
    }
    out
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines_are_clipped() {
        assert_eq!(clip_lines("short\nlines"), "short\nlines");
        let long = format!("expected a i32\n 1 | {}\n   | ^", "é".repeat(5000));
        let clipped = clip_lines(&long);
        let lines: Vec<&str> = clipped.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], "expected a i32");
        assert!(lines[1].ends_with(" [...]") && lines[1].len() <= MAX_ERROR_LINE + 6);
        assert_eq!(lines[2], "   | ^");
        let many = "x\n".repeat(100_000);
        assert!(clip_lines(&many).len() <= MAX_ERROR + 8);
    }

    #[test]
    fn in_process_text_errors_name_the_line() {
        let e = parse_text(
            &Compiler::InProcess,
            b"(module\n  (func\n    bogus))",
            Path::new("dir/m.wat"),
        )
        .expect_err("bad text");
        assert!(
            matches!(&e, WharfError::InvalidWasm { reason, .. }
                if reason.starts_with("the text format does not parse:")
                    && reason.contains("dir/m.wat:3:5")),
            "{e}"
        );
        let wasm =
            parse_text(&Compiler::InProcess, b"(module)", Path::new("m.wat")).expect("valid text");
        assert_eq!(wasm, b"\0asm\x01\0\0\0");
    }
}
