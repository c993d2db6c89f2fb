//! Guest logging for Wharf: where everything a guest says ends up.
//!
//! What this crate owns:
//! - [`AppLogs`]: an app's bounded log buffer (lines and bytes), shared by every version
//!   of the app and readable through the admin API;
//! - [`LogStream`]: a guest's stdout or stderr, split into lines into that buffer (every
//!   executor wires both streams through it, so no guest output is lost or unbounded);
//! - `wasi:logging/logging` ([`add_to_linker`], per-store [`LoggingCtx`]): log records
//!   at a level, into the same buffer.
//!
//! Guest-chosen text never panics the host: lines are cut at a character boundary at
//! [`MAX_LINE`] bytes.
#![deny(missing_docs)]

mod buffer;

use std::sync::Arc;

pub use buffer::{AppLogs, LogLine, LogStream, MAX_BYTES, MAX_LINE, MAX_LINES, now_ms};
use wharf_engine::wasmtime::component::{HasData, Linker};

mod bindings {
    wharf_engine::wasmtime::component::bindgen!({
        path: "../../wit/deps/logging",
        world: "wasi:logging/imports",
        // The engine crate re-exports the one wasmtime every Wharf crate uses.
        wasmtime_crate: wharf_engine::wasmtime,
    });
}
use bindings::wasi::logging::logging as wasi_logging;

/// The most bytes of a `wasi:logging` context kept in a line.
pub const MAX_CONTEXT: usize = 256;

/// Cuts `s` to at most `max` bytes, at a character boundary (never panics).
pub fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut cut = max;
    while cut > 0 && !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
}

/// Per-store logging state: which component writes, into which app's buffer.
#[derive(Clone)]
pub struct LoggingCtx {
    logs: Arc<AppLogs>,
    app: Arc<str>,
    component: Arc<str>,
}

impl LoggingCtx {
    /// Logging for `component` of `app` into `logs`.
    pub fn new(logs: Arc<AppLogs>, app: Arc<str>, component: Arc<str>) -> LoggingCtx {
        LoggingCtx {
            logs,
            app,
            component,
        }
    }

    /// The guest's stdout (`"stdout"`) or stderr (`"stderr"`) as a line stream into the
    /// app's log.
    pub fn stream(&self, name: &'static str) -> LogStream {
        LogStream::new(
            self.logs.clone(),
            self.app.clone(),
            self.component.clone(),
            name,
        )
    }

    /// The app's log buffer.
    pub fn logs(&self) -> &Arc<AppLogs> {
        &self.logs
    }
}

impl wasi_logging::Host for LoggingCtx {
    fn log(&mut self, level: wasi_logging::Level, context: String, message: String) {
        use wasi_logging::Level;
        let stream = match level {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Critical => "critical",
        };
        // Both parts are cut before they are joined: no copy of an oversized message,
        // and a long context cannot push the message out of the line.
        let (mut context, mut message) = (context, message);
        truncate_utf8(&mut context, MAX_CONTEXT);
        truncate_utf8(&mut message, MAX_LINE);
        let mut line = if context.is_empty() {
            message
        } else {
            format!("[{context}] {message}")
        };
        truncate_utf8(&mut line, MAX_LINE);
        tracing::debug!(app = %self.app, component = %self.component, level = stream, "{}", line.escape_debug());
        self.logs.push(LogLine {
            ts_ms: now_ms(),
            stream,
            component: self.component.to_string(),
            line,
        });
    }
}

struct HasLogging;
impl HasData for HasLogging {
    type Data<'a> = &'a mut LoggingCtx;
}

/// Adds `wasi:logging/logging` to `linker`; `get` finds the [`LoggingCtx`] in the store.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut LoggingCtx,
) -> wharf_engine::wasmtime::Result<()> {
    wasi_logging::add_to_linker::<T, HasLogging>(linker, get)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the panic a 4,097-byte message with a multi-byte character at the cut caused
    /// in `String::truncate` (hardening issue, class 7).
    #[test]
    fn long_log_message_with_multibyte_char_at_the_cut_does_not_panic() {
        let logs = Arc::new(AppLogs::default());
        let mut ctx = LoggingCtx::new(logs.clone(), "a".into(), "c".into());
        let message = format!("{}é{}", "x".repeat(MAX_LINE - 1), "y".repeat(10));
        wasi_logging::Host::log(&mut ctx, wasi_logging::Level::Info, String::new(), message);
        let (lines, _) = logs.tail(1);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].line.len(), MAX_LINE - 1);
        assert!(lines[0].line.chars().all(|c| c == 'x'));
        assert_eq!(lines[0].stream, "info");
    }

    #[test]
    fn long_multibyte_context_does_not_hide_the_message() {
        let logs = Arc::new(AppLogs::default());
        let mut ctx = LoggingCtx::new(logs.clone(), "a".into(), "c".into());
        // 3-byte characters: no cut at MAX_CONTEXT or MAX_LINE falls on a boundary.
        let context = "€".repeat(MAX_LINE);
        let message = format!("hello {}", "€".repeat(MAX_LINE));
        wasi_logging::Host::log(&mut ctx, wasi_logging::Level::Warn, context, message);
        let (lines, _) = logs.tail(1);
        let line = &lines[0].line;
        assert!(line.len() <= MAX_LINE, "{}", line.len());
        assert!(line.contains("] hello €"), "the message was cut off");
        assert!(line.starts_with('[') && line.len() > MAX_CONTEXT);
    }

    #[test]
    fn truncate_utf8_keeps_whole_characters() {
        let mut s = "aé".to_string();
        truncate_utf8(&mut s, 2);
        assert_eq!(s, "a");
        let mut s = "abc".to_string();
        truncate_utf8(&mut s, 10);
        assert_eq!(s, "abc");
    }
}

/// A bound on the host log lines a guest can cause (refused requests, denied stores):
/// at most `per_second` lines per key (an app) per second; the next line allowed after
/// a burst says how many were suppressed. Keys are forgotten once there are more than
/// [`LogRate::MAX_KEYS`], so the table cannot grow without bound either.
pub struct LogRate {
    per_second: u32,
    state: std::sync::Mutex<std::collections::HashMap<String, RateState>>,
}

#[derive(Clone, Copy, Default)]
struct RateState {
    second: u64,
    lines: u32,
    suppressed: u64,
}

impl LogRate {
    /// Most keys remembered at once.
    pub const MAX_KEYS: usize = 10_000;

    /// A limiter of `per_second` lines per key per second.
    pub fn new(per_second: u32) -> LogRate {
        LogRate {
            per_second,
            state: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Whether a line for `key` may be logged now: `Some(n)` with the number of lines
    /// suppressed since the last one allowed, or `None` to drop this one.
    pub fn allow(&self, key: &str) -> Option<u64> {
        self.allow_at(key, now_ms() / 1000)
    }

    /// [`LogRate::allow`] at a given second (for tests).
    pub fn allow_at(&self, key: &str, second: u64) -> Option<u64> {
        let mut map = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= Self::MAX_KEYS && !map.contains_key(key) {
            map.clear();
        }
        let st = map.entry(key.to_string()).or_default();
        if st.second != second {
            st.second = second;
            st.lines = 0;
        }
        if st.lines < self.per_second {
            st.lines += 1;
            Some(std::mem::take(&mut st.suppressed))
        } else {
            st.suppressed = st.suppressed.saturating_add(1);
            None
        }
    }
}

#[cfg(test)]
mod rate_tests {
    use super::LogRate;

    /// Hardening class 12: refused requests logged one line each, without a bound.
    #[test]
    fn a_burst_is_cut_to_the_rate_and_the_next_line_counts_what_was_dropped() {
        let rate = LogRate::new(3);
        let allowed: Vec<Option<u64>> = (0..10).map(|_| rate.allow_at("evil", 100)).collect();
        assert_eq!(allowed[..3], [Some(0), Some(0), Some(0)]);
        assert!(allowed[3..].iter().all(Option::is_none));
        // Another app is not affected by the noisy one.
        assert_eq!(rate.allow_at("good", 100), Some(0));
        // The next second: allowed again, reporting the 7 dropped lines once.
        assert_eq!(rate.allow_at("evil", 101), Some(7));
        assert_eq!(rate.allow_at("evil", 101), Some(0));
    }
}
