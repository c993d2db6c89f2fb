//! Why a guest failed: the one classification every executor (`wharf run`, the HTTP
//! server, WAGI, plugins) maps its own error type from.
//!
//! [`classify`] reads a wasmtime error by type — [`Trap`], [`I32Exit`],
//! [`PoolConcurrencyLimitError`], [`UnknownImportError`] — plus what only the caller
//! knows ([`FailureContext`]: the limits it set and whether the
//! [`TotalMemoryLimiter`](crate::TotalMemoryLimiter) refused a grow). [`link_failure`]
//! is the one reader of linker errors.

use std::fmt;
use std::time::Duration;

use wasmtime::{PoolConcurrencyLimitError, Trap, UnknownImportError, WasmBacktrace};
use wasmtime_wasi::I32Exit;

use crate::size::format_size;

/// Why a guest failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestFailure {
    /// Wall-clock deadline passed (epoch interrupt, or the caller's tokio timeout).
    Timeout {
        /// The deadline the caller set, if it knows it.
        limit: Option<Duration>,
    },
    /// The total-memory cap was reached ([`TotalMemoryLimiter::hit_cap`]), possibly while
    /// instantiating.
    ///
    /// [`TotalMemoryLimiter::hit_cap`]: crate::TotalMemoryLimiter::hit_cap
    MemoryCap {
        /// The cap, in bytes, if the caller knows it.
        cap: Option<u64>,
        /// The cap was reached while instantiating (the initial memories do not fit).
        while_instantiating: bool,
        /// The trap the guest raised after a grow was refused, e.g. `wasm trap: wasm
        /// `unreachable` instruction executed`.
        detail: Option<String>,
    },
    /// Fuel ran out.
    FuelExhausted {
        /// The fuel granted, if the caller knows it.
        fuel: Option<u64>,
    },
    /// A wasm trap: its kind ([`Trap`]'s `Display`) and the guest backtrace if any.
    Trap {
        /// The trap's kind, e.g. `wasm trap: wasm `unreachable` instruction executed`.
        kind: String,
        /// The guest backtrace, with function names when the module has a name section.
        backtrace: Option<String>,
    },
    /// The guest called `exit` ([`I32Exit`]) with this status, zero included.
    Exit(i32),
    /// The pooling allocator had no free slot ([`PoolConcurrencyLimitError`]).
    PoolExhausted {
        /// wasmtime's description: which kind of slot, and the limit.
        detail: String,
    },
    /// Linking failed because the guest imports something not provided.
    MissingImport {
        /// The import, e.g. ``instance `acme:db/query@1.0.0` `` (a component) or
        /// `` `env::f` `` (a core module).
        import: String,
    },
    /// Any other host-side error (not the guest's fault).
    Host {
        /// The whole error chain, outermost first, joined with `: `.
        detail: String,
    },
}

impl GuestFailure {
    /// A short machine-readable name: `timeout`, `memory`, `fuel`, `trap`, `exit`,
    /// `pool-exhausted`, `missing-import` or `host`.
    pub fn kind(&self) -> &'static str {
        match self {
            GuestFailure::Timeout { .. } => "timeout",
            GuestFailure::MemoryCap { .. } => "memory",
            GuestFailure::FuelExhausted { .. } => "fuel",
            GuestFailure::Trap { .. } => "trap",
            GuestFailure::Exit(_) => "exit",
            GuestFailure::PoolExhausted { .. } => "pool-exhausted",
            GuestFailure::MissingImport { .. } => "missing-import",
            GuestFailure::Host { .. } => "host",
        }
    }

    /// Whether the guest caused it (as opposed to the host or its configuration).
    pub fn is_guest_fault(&self) -> bool {
        !matches!(
            self,
            GuestFailure::PoolExhausted { .. } | GuestFailure::Host { .. }
        )
    }
}

impl fmt::Display for GuestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestFailure::Timeout { limit: Some(t) } => write!(
                f,
                "the guest ran past its {} deadline and was stopped; raise the timeout if it \
                 needs longer",
                humantime::format_duration(*t)
            ),
            GuestFailure::Timeout { limit: None } => f.write_str(
                "the guest ran past its wall-clock deadline and was stopped; raise the timeout \
                 if it needs longer",
            ),
            GuestFailure::MemoryCap {
                cap,
                while_instantiating,
                detail,
            } => {
                let cap = cap
                    .map(format_size)
                    .unwrap_or_else(|| "the allocator's limit".into());
                write!(
                    f,
                    "the guest reached its memory cap of {cap} (all linear memories together)"
                )?;
                if *while_instantiating {
                    f.write_str(" while instantiating")?;
                }
                if let Some(d) = detail {
                    write!(
                        f,
                        " (a memory.grow was refused, then the guest trapped: {d})"
                    )?;
                }
                f.write_str("; raise the memory limit if it needs more")
            }
            GuestFailure::FuelExhausted { fuel: Some(n) } => write!(
                f,
                "the guest ran out of fuel after consuming all {n} units; grant more fuel if it \
                 needs it"
            ),
            GuestFailure::FuelExhausted { fuel: None } => {
                f.write_str("the guest ran out of fuel; grant more fuel if it needs it")
            }
            GuestFailure::Trap { kind, backtrace } => {
                write!(f, "the guest trapped: {kind}")?;
                if let Some(b) = backtrace {
                    write!(f, "\n{b}")?;
                }
                Ok(())
            }
            GuestFailure::Exit(code) => write!(f, "the guest exited with status {code}"),
            GuestFailure::PoolExhausted { detail } => write!(
                f,
                "no free instance slot in the pooling allocator ({detail}); retry when running \
                 instances finish, or raise the pool size"
            ),
            GuestFailure::MissingImport { import } => write!(
                f,
                "the guest imports {import}, which the host does not provide to it; rebuild it \
                 without that import"
            ),
            GuestFailure::Host { detail } => write!(f, "host error: {detail}"),
        }
    }
}

impl std::error::Error for GuestFailure {}

/// What the classifier needs besides the error.
#[derive(Debug, Clone, Default)]
pub struct FailureContext {
    /// The wall-clock deadline the caller set.
    pub timeout: Option<Duration>,
    /// The total-memory cap the caller set, in bytes.
    pub max_memory: Option<u64>,
    /// The fuel the caller granted.
    pub fuel: Option<u64>,
    /// [`TotalMemoryLimiter::hit_cap`](crate::TotalMemoryLimiter::hit_cap) of the store.
    pub hit_cap: bool,
    /// The error came from linking or instantiating, not from a call.
    pub instantiating: bool,
}

/// Classifies a failure of a guest call, instantiation or link.
///
/// In order: an epoch interrupt ([`Trap::Interrupt`], also what a caller's own timeout
/// should produce) is a timeout; [`Trap::OutOfFuel`] is fuel; any other trap after the
/// memory cap refused a grow is the memory cap; other traps are traps (with the guest
/// backtrace when wasmtime recorded one); [`I32Exit`] is an exit; a non-trap error after
/// the cap was hit is the memory cap; [`PoolConcurrencyLimitError`] is pool exhaustion;
/// while instantiating, a missing import (see [`link_failure`]); anything else is a host
/// error.
pub fn classify(e: &wasmtime::Error, cx: &FailureContext) -> GuestFailure {
    if let Some(trap) = e.downcast_ref::<Trap>() {
        match trap {
            Trap::Interrupt => return GuestFailure::Timeout { limit: cx.timeout },
            Trap::OutOfFuel => return GuestFailure::FuelExhausted { fuel: cx.fuel },
            _ => {}
        }
        if cx.hit_cap {
            return GuestFailure::MemoryCap {
                cap: cx.max_memory,
                while_instantiating: cx.instantiating,
                detail: Some(trap.to_string()),
            };
        }
        let backtrace = e
            .downcast_ref::<WasmBacktrace>()
            .map(|b| b.to_string())
            .filter(|b| !b.trim().is_empty());
        return GuestFailure::Trap {
            kind: trap.to_string(),
            backtrace,
        };
    }
    if let Some(exit) = e.downcast_ref::<I32Exit>() {
        return GuestFailure::Exit(exit.0);
    }
    if cx.hit_cap {
        return GuestFailure::MemoryCap {
            cap: cx.max_memory,
            while_instantiating: cx.instantiating,
            detail: None,
        };
    }
    if let Some(p) = e.downcast_ref::<PoolConcurrencyLimitError>() {
        return GuestFailure::PoolExhausted {
            detail: p.to_string(),
        };
    }
    if cx.instantiating {
        return link_failure(e);
    }
    GuestFailure::Host {
        detail: error_chain(e),
    }
}

/// The one place that reads a link error (from a component or module linker's
/// `instantiate_pre` or `instantiate`): [`GuestFailure::MissingImport`] naming the
/// import, or [`GuestFailure::Host`] with the full error chain.
pub fn link_failure(e: &wasmtime::Error) -> GuestFailure {
    if let Some(u) = e.downcast_ref::<UnknownImportError>() {
        return GuestFailure::MissingImport {
            import: format!("`{}::{}`", u.module(), u.name()),
        };
    }
    let detail = error_chain(e);
    match missing_import_from(&detail) {
        Some(import) => GuestFailure::MissingImport { import },
        None => GuestFailure::Host { detail },
    }
}

/// The error and its causes, outermost first, joined with `: `.
pub(crate) fn error_chain(e: &wasmtime::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

/// Finds the import named in a component linker's error.
///
/// This is the only place Wharf reads an error's text, and only because wasmtime 48 has
/// no typed error for it: `component::Linker::instantiate_pre` reports a missing (or
/// mistyped) import as a plain message, "component imports instance `x`, but a matching
/// implementation was not found in the linker" (`component/linker.rs`, `typecheck`).
/// Core modules get a typed [`UnknownImportError`] and never reach this; its wording,
/// "unknown import: `m::f` has not been defined", is still recognised in case an error
/// was flattened to text on the way.
fn missing_import_from(text: &str) -> Option<String> {
    let quoted = |s: &str| -> Option<String> {
        let start = s.find('`')?;
        let rest = &s[start + 1..];
        let end = rest.find('`')?;
        Some(rest[..end].to_string())
    };
    if let Some(pos) = text.find("component imports ") {
        let rest = &text[pos + "component imports ".len()..];
        if rest.contains("matching implementation was not found") {
            let kind = rest.split_whitespace().next().unwrap_or("item");
            return quoted(rest).map(|name| format!("{kind} `{name}`"));
        }
    }
    if let Some(pos) = text.find("unknown import: ") {
        return quoted(&text[pos..]).map(|name| format!("`{name}`"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_linker_wordings() {
        assert_eq!(
            missing_import_from(
                "component imports instance `acme:db/query@1.0.0`, but a matching \
                 implementation was not found in the linker: instance export `get` has the \
                 wrong type"
            )
            .as_deref(),
            Some("instance `acme:db/query@1.0.0`")
        );
        assert_eq!(
            missing_import_from("unknown import: `env::f` has not been defined").as_deref(),
            Some("`env::f`")
        );
        assert_eq!(missing_import_from("something else"), None);
        assert_eq!(missing_import_from("component imports nothing `"), None);
    }

    #[test]
    fn kinds_are_distinct() {
        let all = [
            GuestFailure::Timeout { limit: None },
            GuestFailure::MemoryCap {
                cap: None,
                while_instantiating: false,
                detail: None,
            },
            GuestFailure::FuelExhausted { fuel: None },
            GuestFailure::Trap {
                kind: String::new(),
                backtrace: None,
            },
            GuestFailure::Exit(1),
            GuestFailure::PoolExhausted {
                detail: String::new(),
            },
            GuestFailure::MissingImport {
                import: String::new(),
            },
            GuestFailure::Host {
                detail: String::new(),
            },
        ];
        let mut kinds: Vec<&str> = all.iter().map(GuestFailure::kind).collect();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), all.len());
    }
}
