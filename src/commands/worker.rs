//! The hidden `__compile-worker` subcommand: the child process in which untrusted Wasm
//! is compiled under a memory and time bound (see `wharf_engine::compile`).

use std::path::PathBuf;

use clap::Args;
use wharf_engine::compile::{WorkerArgs, worker_main};

/// Internal: compile Wasm from stdin into an artifact file.
#[derive(Args)]
pub struct WorkerCommand {
    #[arg(long)]
    engine_options: String,
    #[arg(long)]
    kind: String,
    #[arg(long)]
    max_memory: u64,
    #[arg(long)]
    output: PathBuf,
}

impl WorkerCommand {
    /// Runs the worker.
    pub fn execute(self) -> i32 {
        worker_main(WorkerArgs {
            engine_options: self.engine_options,
            kind: self.kind,
            max_memory: self.max_memory,
            output: self.output,
        })
    }
}
