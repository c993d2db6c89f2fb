//! Wharf's engine core: the one place that configures wasmtime for every Wharf command.
//!
//! What this crate owns:
//! - [`config`]: the process-wide [`WharfEngine`] (pooling or on-demand allocation,
//!   copy-on-write memory images, epoch interruption with one ticker thread, optional
//!   fuel, stack limit) built from [`EngineOptions`];
//! - [`limits`]: per-store limits ([`Limits`]) and the [`TotalMemoryLimiter`] that caps
//!   the *total* of all linear memories in a store and records the peak;
//! - [`cpu`]: CPU lanes, the per-app fair share of the cores for guests that run past
//!   their first slice;
//! - [`artifact`]: ahead-of-time artifacts: the transparent on-disk cache keyed by
//!   (input sha256, engine compatibility hash) and the signed `.cwasm` file format that
//!   `wharf compile` writes, so that only artifacts Wharf wrote are ever deserialized;
//! - [`compile`]: compiling untrusted bytes under a time and memory bound, in a child
//!   process;
//! - [`load`]: turning a file (`.wasm`, `.wat`, `.cwasm`) into a loaded [`Program`];
//! - [`run`]: running WASI programs (wasip1 core modules, wasip2 `wasi:cli/command`
//!   components) and invoking exports with WAVE values, with [`RunStats`];
//! - [`failure`]: why a guest failed ([`GuestFailure`]), classified once from a wasmtime
//!   error for every executor;
//! - [`exports`]: a component's exported functions ([`ExportFunc`]), looked up by name,
//!   with their WIT type spellings;
//! - [`error`]: the error taxonomy ([`WharfError`]) with one exit code per kind.

#![deny(missing_docs)]

pub mod artifact;
pub mod compile;
pub mod config;
pub mod cpu;
pub mod error;
pub mod exports;
pub mod failure;
pub mod limits;
pub mod load;
pub mod run;
pub mod size;

pub use config::{AllocatorChoice, EngineOptions, WharfEngine};
pub use error::WharfError;
pub use exports::{ExportFunc, ExportLookupError};
pub use failure::{FailureContext, GuestFailure};
pub use limits::{Limits, TotalMemoryLimiter};
pub use load::{LoadMethod, LoadOptions, LoadedProgram, Program};
pub use run::{DirGrant, Invocation, RunOptions, RunReport, RunStats};

/// The wasmtime crates this engine is built on, re-exported so that every Wharf crate
/// (and the benches) use the same versions.
pub use wasmtime;
pub use wasmtime_wasi;
