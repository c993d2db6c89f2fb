//! The kinds of failure a newcomer can meet, each with a short message that names the
//! thing and the fix, and a distinct process exit code (listed by [`EXIT_CODE_TABLE`]).
//!
//! Guest exit statuses are 0..=125 (WASI refuses larger ones), so Wharf's own codes sit
//! above that range, except the timeout code, which follows coreutils' `timeout(1)`.

use std::path::{Path, PathBuf};

use crate::failure::GuestFailure;
use crate::size::format_size;

/// Exit code: a command-line value was malformed (clap's own usage errors use it too).
pub const EXIT_USAGE: i32 = 2;
/// Exit code: the wall-clock deadline (`--timeout`) passed.
pub const EXIT_TIMEOUT: i32 = 124;
/// Exit code: the input is not WebAssembly, or is malformed.
pub const EXIT_NOT_WASM: i32 = 126;
/// Exit code: the input file is missing or unreadable.
pub const EXIT_NO_INPUT: i32 = 127;
/// Exit code: a precompiled artifact was refused (foreign or incompatible).
pub const EXIT_ARTIFACT: i32 = 128;
/// Exit code: the program imports something Wharf does not provide.
pub const EXIT_MISSING_IMPORT: i32 = 129;
/// Exit code: compiling hit its time or memory bound.
pub const EXIT_COMPILE_BOUND: i32 = 131;
/// Exit code: fuel (`--fuel`) ran out.
pub const EXIT_FUEL: i32 = 132;
/// Exit code: the memory cap (`--max-memory`) was reached.
pub const EXIT_MEMORY: i32 = 133;
/// Exit code: the guest trapped (same code as `wasmtime run`).
pub const EXIT_TRAP: i32 = 134;
/// Exit code: anything else (an I/O failure of Wharf's own, a bug).
pub const EXIT_INTERNAL: i32 = 135;

/// The exit-code table printed in `wharf run --help`.
pub const EXIT_CODE_TABLE: &str = "\
Exit codes:
  0-125  the guest's own exit status (0 when it returns normally)
  2      bad command-line usage (a flag value, the --invoke expression)
  124    wall-clock timeout reached (--timeout)
  126    input is not WebAssembly, or is malformed (bad .wat text included)
  127    input file missing or unreadable
  128    precompiled artifact refused (not written by this wharf, or incompatible)
  129    the program imports something wharf does not provide
  131    compilation exceeded its bound (--compile-timeout, --compile-max-memory)
  132    fuel exhausted (--fuel)
  133    memory cap reached (--max-memory)
  134    the guest trapped (unreachable, out-of-bounds access, stack overflow, ...)
  135    internal error";

/// A failure with a distinct exit code and a message meant for people.
#[derive(Debug, thiserror::Error)]
pub enum WharfError {
    /// A command-line value was malformed.
    #[error("{0}")]
    Usage(String),
    /// The input file does not exist or cannot be read.
    #[error("cannot read `{path}`: {reason}")]
    NoInput {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// The bytes are neither Wasm binary, Wasm text, nor a Wharf artifact.
    #[error(
        "`{path}` is not WebAssembly: it starts with {prefix}, not the `\\0asm` magic of a \
         module or component, and it is not `.wat` text either"
    )]
    NotWasm {
        /// The file.
        path: PathBuf,
        /// Its first bytes, printed.
        prefix: String,
    },
    /// The bytes claim to be Wasm but are malformed or fail validation.
    #[error("`{path}` is not valid WebAssembly: {reason}")]
    InvalidWasm {
        /// The file.
        path: PathBuf,
        /// The validator's or text parser's reason.
        reason: String,
    },
    /// A precompiled artifact that Wharf refuses to load.
    #[error("refusing to load `{path}`: {reason}")]
    ArtifactRefused {
        /// The file.
        path: PathBuf,
        /// Why, and what to do instead.
        reason: String,
    },
    /// The program imports something the host does not provide.
    #[error(
        "`{path}` imports {import}, which wharf does not provide to this program; \
         wharf run provides WASI (wasi_snapshot_preview1 for core modules, wasi:cli, \
         wasi:io, wasi:clocks, wasi:filesystem, wasi:random and wasi:sockets 0.2 for \
         components); rebuild the program without that import"
    )]
    MissingImport {
        /// The file.
        path: PathBuf,
        /// The import, e.g. ``instance `acme:db/query@1.0.0` ``.
        import: String,
    },
    /// Compilation exceeded its time or memory bound.
    #[error("compiling `{path}` {reason}")]
    CompileBound {
        /// The file.
        path: PathBuf,
        /// What bound, and how to raise it.
        reason: String,
    },
    /// The guest trapped.
    #[error("the guest trapped: {message}{}", backtrace.as_deref().map(|b| format!("\n{b}")).unwrap_or_default())]
    Trap {
        /// The trap's kind, e.g. `wasm trap: wasm `unreachable` instruction executed`.
        message: String,
        /// The guest backtrace, with function names when the module has a name section.
        backtrace: Option<String>,
    },
    /// The memory cap was reached.
    #[error(
        "the guest reached its memory cap of {cap} (all linear memories together){}; \
         raise --max-memory if it needs more",
        context.as_deref().map(|c| format!(" {c}")).unwrap_or_default()
    )]
    MemoryCap {
        /// The cap, printed.
        cap: String,
        /// Where it happened, e.g. "while instantiating".
        context: Option<String>,
    },
    /// The wall-clock deadline passed.
    #[error("the guest ran past its {limit} deadline (--timeout) and was stopped")]
    Timeout {
        /// The deadline, printed.
        limit: String,
    },
    /// Fuel ran out.
    #[error("the guest ran out of fuel after consuming all {fuel} units (--fuel)")]
    FuelExhausted {
        /// The fuel granted.
        fuel: u64,
    },
    /// Anything else.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<wasmtime::Error> for WharfError {
    fn from(e: wasmtime::Error) -> Self {
        WharfError::Internal(e.into())
    }
}

impl WharfError {
    /// The error for a classified guest failure of the program at `path`, with the
    /// messages and exit codes `wharf run` reports.
    pub fn from_failure(f: GuestFailure, path: &Path) -> WharfError {
        match f {
            GuestFailure::Timeout { limit } => WharfError::Timeout {
                limit: limit
                    .map(|t| humantime::format_duration(t).to_string())
                    .unwrap_or_else(|| "wall-clock".into()),
            },
            GuestFailure::MemoryCap {
                cap,
                while_instantiating,
                detail,
            } => WharfError::MemoryCap {
                cap: cap
                    .map(format_size)
                    .unwrap_or_else(|| "the allocator's limit".into()),
                context: match detail {
                    Some(trap) => Some(format!(
                        "(a memory.grow was refused, then the guest trapped: {trap})"
                    )),
                    None if while_instantiating => Some(
                        "while instantiating (its initial memory is larger than the cap)".into(),
                    ),
                    None => None,
                },
            },
            GuestFailure::FuelExhausted { fuel } => WharfError::FuelExhausted {
                fuel: fuel.unwrap_or(0),
            },
            GuestFailure::Trap { kind, backtrace } => WharfError::Trap {
                message: kind,
                backtrace,
            },
            GuestFailure::MissingImport { import } => WharfError::MissingImport {
                path: path.to_path_buf(),
                import,
            },
            GuestFailure::Exit(code) => WharfError::Internal(anyhow::anyhow!(
                "`{}` exited with status {code} before its main entry ran (while \
                 instantiating or initializing); check its start or `_initialize` function",
                path.display()
            )),
            GuestFailure::PoolExhausted { detail } => WharfError::Internal(anyhow::anyhow!(
                "no free instance slot in the pooling allocator ({detail}); run with \
                 --allocator on-demand"
            )),
            GuestFailure::Host { detail } => WharfError::Internal(anyhow::anyhow!(detail)),
        }
    }

    /// The process exit code for this kind of failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            WharfError::Usage(_) => EXIT_USAGE,
            WharfError::NoInput { .. } => EXIT_NO_INPUT,
            WharfError::NotWasm { .. } | WharfError::InvalidWasm { .. } => EXIT_NOT_WASM,
            WharfError::ArtifactRefused { .. } => EXIT_ARTIFACT,
            WharfError::MissingImport { .. } => EXIT_MISSING_IMPORT,
            WharfError::CompileBound { .. } => EXIT_COMPILE_BOUND,
            WharfError::Trap { .. } => EXIT_TRAP,
            WharfError::MemoryCap { .. } => EXIT_MEMORY,
            WharfError::Timeout { .. } => EXIT_TIMEOUT,
            WharfError::FuelExhausted { .. } => EXIT_FUEL,
            WharfError::Internal(_) => EXIT_INTERNAL,
        }
    }

    /// A short machine-readable name for the kind, used in `--stats-json`.
    pub fn kind(&self) -> &'static str {
        match self {
            WharfError::Usage(_) => "usage",
            WharfError::NoInput { .. } => "no-input",
            WharfError::NotWasm { .. } => "not-wasm",
            WharfError::InvalidWasm { .. } => "invalid-wasm",
            WharfError::ArtifactRefused { .. } => "artifact-refused",
            WharfError::MissingImport { .. } => "missing-import",
            WharfError::CompileBound { .. } => "compile-bound",
            WharfError::Trap { .. } => "trap",
            WharfError::MemoryCap { .. } => "memory-cap",
            WharfError::Timeout { .. } => "timeout",
            WharfError::FuelExhausted { .. } => "fuel-exhausted",
            WharfError::Internal(_) => "internal",
        }
    }
}
