//! The hidden `__compile-worker` subcommand: the child process in which untrusted Wasm
//! is compiled, and untrusted WebAssembly text parsed, under a memory and time bound
//! (see `wharf_engine::compile`).

use std::path::PathBuf;

use clap::Args;
use wharf_engine::compile::{WorkerArgs, worker_main};

use crate::error::CliError;

/// Internal: compile Wasm from stdin into an artifact file (or, with `--kind wat`, turn
/// WebAssembly text into Wasm).
#[derive(Args)]
pub struct WorkerCommand {
    #[arg(long)]
    engine_options: String,
    #[arg(long)]
    kind: String,
    #[arg(long)]
    max_memory: u64,
    /// The input's name in error messages.
    #[arg(long)]
    source: Option<PathBuf>,
    #[arg(long)]
    output: PathBuf,
}

impl WorkerCommand {
    /// Runs the worker, synchronously and without an async runtime (it limits its own
    /// address space). It reports to its parent on stdout, so a failure prints nothing
    /// more.
    pub fn execute(self) -> Result<(), CliError> {
        match worker_main(WorkerArgs {
            engine_options: self.engine_options,
            kind: self.kind,
            max_memory: self.max_memory,
            source: self.source,
            output: self.output,
        }) {
            0 => Ok(()),
            code => Err(CliError::exit(code)),
        }
    }
}
