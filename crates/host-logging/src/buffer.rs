//! Guest output, captured per app: each app's stdout and stderr lines go into a bounded
//! ring buffer (readable through the admin API) and to the server's log at debug level.
//! Bounded by lines and by bytes so that a chatty or hostile guest cannot grow the
//! server's memory.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use serde::Serialize;
use wharf_engine::wasmtime_wasi;
use wharf_engine::wasmtime_wasi::p2::StreamResult;

/// Lines kept per app.
pub const MAX_LINES: usize = 1000;
/// Bytes kept per app.
pub const MAX_BYTES: usize = 256 << 10;
/// Longest line kept; longer ones are cut.
pub const MAX_LINE: usize = 4096;

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One captured line.
#[derive(Clone, Debug, Serialize)]
pub struct LogLine {
    /// Unix time in milliseconds.
    pub ts_ms: u64,
    /// `stdout` or `stderr`, or a `wasi:logging` level (`trace` ... `critical`).
    pub stream: &'static str,
    /// The component that wrote it.
    pub component: String,
    /// The text (lossy UTF-8), without the newline.
    pub line: String,
}

/// An app's log buffer.
#[derive(Default)]
pub struct AppLogs {
    inner: Mutex<LogBuf>,
}

#[derive(Default)]
struct LogBuf {
    lines: VecDeque<LogLine>,
    bytes: usize,
    dropped: u64,
}

impl AppLogs {
    /// Appends a line, evicting the oldest beyond the bounds.
    pub fn push(&self, line: LogLine) {
        let mut b = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        b.bytes += line.line.len();
        b.lines.push_back(line);
        while b.lines.len() > MAX_LINES || b.bytes > MAX_BYTES {
            match b.lines.pop_front() {
                Some(old) => {
                    b.bytes -= old.line.len();
                    b.dropped += 1;
                }
                None => break,
            }
        }
    }

    /// The last `n` lines (all when `n` is larger), oldest first, and how many lines
    /// were evicted since the app started.
    pub fn tail(&self, n: usize) -> (Vec<LogLine>, u64) {
        let b = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let skip = b.lines.len().saturating_sub(n);
        (b.lines.iter().skip(skip).cloned().collect(), b.dropped)
    }
}

/// A guest's stdout or stderr: splits bytes into lines and appends them to the app's
/// [`AppLogs`].
#[derive(Clone)]
pub struct LogStream {
    logs: Arc<AppLogs>,
    app: Arc<str>,
    component: Arc<str>,
    stream: &'static str,
    partial: Arc<Mutex<Vec<u8>>>,
}

impl LogStream {
    /// A stream named `stream` (`stdout`/`stderr`) for `component` of `app`.
    pub fn new(
        logs: Arc<AppLogs>,
        app: Arc<str>,
        component: Arc<str>,
        stream: &'static str,
    ) -> Self {
        LogStream {
            logs,
            app,
            component,
            stream,
            partial: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn write_bytes(&self, mut bytes: &[u8]) {
        let mut partial = self.partial.lock().unwrap_or_else(|p| p.into_inner());
        while !bytes.is_empty() {
            match bytes.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    let room = MAX_LINE.saturating_sub(partial.len());
                    partial.extend_from_slice(&bytes[..i.min(room)]);
                    bytes = &bytes[i + 1..];
                    let line = String::from_utf8_lossy(&partial).into_owned();
                    partial.clear();
                    self.emit(line);
                }
                None => {
                    let room = MAX_LINE.saturating_sub(partial.len());
                    partial.extend_from_slice(&bytes[..bytes.len().min(room)]);
                    break;
                }
            }
        }
    }

    fn emit(&self, line: String) {
        // Escaped: guest text must not forge lines in the server's own log.
        tracing::debug!(app = %self.app, component = %self.component, stream = self.stream, "{}", line.escape_debug());
        self.logs.push(LogLine {
            ts_ms: now_ms(),
            stream: self.stream,
            component: self.component.to_string(),
            line,
        });
    }
}

impl Drop for LogStream {
    fn drop(&mut self) {
        // The last clone flushes a final line without a newline.
        if Arc::strong_count(&self.partial) == 1 {
            let mut partial = self.partial.lock().unwrap_or_else(|p| p.into_inner());
            if !partial.is_empty() {
                let line = String::from_utf8_lossy(&partial).into_owned();
                partial.clear();
                drop(partial);
                self.emit(line);
            }
        }
    }
}

impl wasmtime_wasi::cli::StdoutStream for LogStream {
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl wasmtime_wasi::cli::IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::p2::OutputStream for LogStream {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl wasmtime_wasi::p2::Pollable for LogStream {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for LogStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_and_bounds_the_buffer() {
        let logs = Arc::new(AppLogs::default());
        let s = LogStream::new(logs.clone(), "a".into(), "c".into(), "stdout");
        s.write_bytes(b"one\ntw");
        s.write_bytes(b"o\nthree");
        drop(s);
        let (lines, dropped) = logs.tail(10);
        let texts: Vec<_> = lines.iter().map(|l| l.line.as_str()).collect();
        assert_eq!(texts, ["one", "two", "three"]);
        assert_eq!(dropped, 0);
        for i in 0..(MAX_LINES + 5) {
            logs.push(LogLine {
                ts_ms: 0,
                stream: "stderr",
                component: "c".into(),
                line: i.to_string(),
            });
        }
        let (lines, dropped) = logs.tail(usize::MAX);
        assert_eq!(lines.len(), MAX_LINES);
        assert_eq!(dropped, 8);
        assert_eq!(logs.tail(2).0.len(), 2);
    }
}
