//! The WAGI executor: a wasip1 core module as an HTTP handler, CGI style (RFC 3875, as
//! in Spin's `executor = { type = "wagi" }`), so that any language targeting
//! wasm32-wasip1 can serve HTTP. The request's metadata arrives in environment
//! variables (`REQUEST_METHOD`, `PATH_INFO`, `QUERY_STRING`, `HTTP_*`, ...), its body
//! on stdin; the module writes header lines, a blank line and the body on stdout. A
//! `Status: 404 Not Found` header sets the status; a `Location` header without one
//! means 302. The same limits apply as for components: fresh store, memory cap,
//! deadline, body cap; stdout is capped too.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use wharf_engine::TotalMemoryLimiter;
use wharf_engine::wasmtime::{self, InstancePre, Linker, Module, Store, Trap};
use wharf_engine::wasmtime_wasi::p1::WasiP1Ctx;
use wharf_engine::wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wharf_engine::wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use crate::host::Grants;
use crate::logs::{AppLogs, LogStream};

/// Largest response a WAGI module may write to stdout.
pub const MAX_WAGI_OUTPUT: usize = 16 << 20;

/// Store data of a WAGI request.
pub struct WagiState {
    wasi: WasiP1Ctx,
    /// Total-memory limiter.
    pub limiter: TotalMemoryLimiter,
}

/// The linker for WAGI modules: WASI preview 1 only.
pub fn linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<WagiState>> {
    let mut linker = Linker::new(engine);
    wharf_engine::wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut WagiState| {
        &mut s.wasi
    })?;
    Ok(linker)
}

/// Pre-links a module; fails when it is not a WASI command.
pub fn prepare(
    linker: &Linker<WagiState>,
    module: &Module,
) -> Result<InstancePre<WagiState>, String> {
    if module.get_export("_start").is_none() {
        return Err("has no `_start` export, so it is not a WASI command; WAGI runs wasip1 commands (e.g. `cargo build --target wasm32-wasip1` of a binary)".into());
    }
    linker.instantiate_pre(module).map_err(|e| {
        let chain = e
            .chain()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(": ");
        match wharf_engine::error::missing_import_from(&chain) {
            Some(import) => format!(
                "imports {import}, which WAGI does not provide (only wasi_snapshot_preview1)"
            ),
            None => format!("cannot be linked: {chain}"),
        }
    })
}

/// A parsed CGI response: status, headers, body.
pub type CgiResponse = (u16, Vec<(String, String)>, Bytes);

/// The request as WAGI sees it.
pub struct WagiRequest {
    /// CGI meta-variables.
    pub env: Vec<(String, String)>,
    /// The whole body.
    pub body: Bytes,
}

/// Builds the CGI meta-variables of a request.
pub fn cgi_env(
    parts: &http::request::Parts,
    body_len: usize,
    matched_route: &str,
    path_info: &str,
    script_name: &str,
    server_addr: &str,
) -> Vec<(String, String)> {
    let mut env = vec![
        ("GATEWAY_INTERFACE".into(), "CGI/1.1".into()),
        (
            "SERVER_SOFTWARE".into(),
            format!("wharf/{}", env!("CARGO_PKG_VERSION")),
        ),
        ("SERVER_PROTOCOL".into(), format!("{:?}", parts.version)),
        ("REQUEST_METHOD".into(), parts.method.to_string()),
        ("SCRIPT_NAME".into(), script_name.to_string()),
        ("PATH_INFO".into(), path_info.to_string()),
        ("PATH_TRANSLATED".into(), path_info.to_string()),
        (
            "QUERY_STRING".into(),
            parts.uri.query().unwrap_or("").to_string(),
        ),
        (
            "REQUEST_URI".into(),
            parts
                .uri
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
        ),
        ("CONTENT_LENGTH".into(), body_len.to_string()),
        ("X_MATCHED_ROUTE".into(), matched_route.to_string()),
        ("X_FULL_URL".into(), parts.uri.to_string()),
    ];
    let (server_name, server_port) = server_addr.rsplit_once(':').unwrap_or((server_addr, "80"));
    env.push(("SERVER_NAME".into(), server_name.to_string()));
    env.push(("SERVER_PORT".into(), server_port.to_string()));
    if let Some(ct) = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        env.push(("CONTENT_TYPE".into(), ct.to_string()));
    }
    for (name, value) in &parts.headers {
        // Authorization stays out, as CGI servers do, so a module cannot leak it.
        if name == http::header::AUTHORIZATION {
            continue;
        }
        if let Ok(v) = value.to_str() {
            let key = format!(
                "HTTP_{}",
                name.as_str().to_ascii_uppercase().replace('-', "_")
            );
            env.push((key, v.to_string()));
        }
    }
    env
}

/// Why a WAGI request failed.
pub enum WagiFailure {
    /// The deadline passed.
    Timeout,
    /// The memory cap was reached.
    Memory,
    /// A trap.
    Trap(String),
    /// A non-zero exit status.
    Exit(i32),
    /// Output that is not a CGI response.
    BadOutput(String),
}

/// Runs one request; returns status, headers and body.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    engine: &wasmtime::Engine,
    pre: &InstancePre<WagiState>,
    grants: &Grants,
    request: WagiRequest,
    logs: &Arc<AppLogs>,
    app: &Arc<str>,
    component: &Arc<str>,
    argv0: &str,
    memory: u64,
    timeout: std::time::Duration,
) -> Result<CgiResponse, WagiFailure> {
    let stdout = MemoryOutputPipe::new(MAX_WAGI_OUTPUT);
    let mut b = WasiCtxBuilder::new();
    b.args(&[argv0])
        .envs(&grants.env)
        .envs(&request.env)
        .stdin(MemoryInputPipe::new(request.body))
        .stdout(stdout.clone())
        .stderr(LogStream::new(
            logs.clone(),
            app.clone(),
            component.clone(),
            "stderr",
        ));
    for (host, guest) in &grants.mounts {
        b.preopened_dir(host, guest, FsPerms::ReadOnly)
            .map_err(|e| WagiFailure::Trap(format!("mounting {guest}: {e}")))?;
    }
    let mut store = Store::new(
        engine,
        WagiState {
            wasi: b.build_p1(),
            limiter: TotalMemoryLimiter::new(Some(memory)),
        },
    );
    store.limiter(|s| &mut s.limiter);
    let deadline = Instant::now() + timeout;
    wharf_engine::limits::yield_until(&mut store, move |_| Some(deadline));
    let result = tokio::time::timeout(timeout, async {
        let instance = pre.instantiate_async(&mut store).await?;
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
        start.call_async(&mut store, ()).await
    })
    .await;
    let hit_cap = store.data().limiter.hit_cap();
    drop(store);
    match result {
        Err(_) => return Err(WagiFailure::Timeout),
        Ok(Err(e)) => {
            if let Some(exit) = e.downcast_ref::<I32Exit>() {
                if exit.0 != 0 {
                    return Err(WagiFailure::Exit(exit.0));
                }
            } else {
                return Err(match e.downcast_ref::<Trap>() {
                    Some(Trap::Interrupt) => WagiFailure::Timeout,
                    _ if hit_cap => WagiFailure::Memory,
                    Some(t) => WagiFailure::Trap(t.to_string()),
                    None => WagiFailure::Trap(format!("{e}")),
                });
            }
        }
        Ok(Ok(())) => {}
    }
    parse_cgi_output(&stdout.contents()).map_err(WagiFailure::BadOutput)
}

/// Splits CGI output into status, headers and body.
pub fn parse_cgi_output(out: &[u8]) -> Result<CgiResponse, String> {
    let (head_end, sep) = match (find(out, b"\r\n\r\n"), find(out, b"\n\n")) {
        (Some(a), Some(b)) if b < a => (b, 2),
        (Some(a), _) => (a, 4),
        (None, Some(b)) => (b, 2),
        (None, None) => {
            return Err("the module wrote no header block (header lines, then an empty line, then the body)".into());
        }
    };
    let head = std::str::from_utf8(&out[..head_end])
        .map_err(|_| "the header block is not UTF-8".to_string())?;
    let mut status = None;
    let mut headers = Vec::new();
    for line in head
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty())
    {
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| format!("header line `{line}` has no `:`"))?;
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("status") {
            let code = v
                .split_whitespace()
                .next()
                .and_then(|c| c.parse::<u16>().ok());
            status = Some(
                code.filter(|c| (100..=999).contains(c))
                    .ok_or_else(|| format!("`Status: {v}` is not a status code"))?,
            );
        } else {
            headers.push((k.to_string(), v.to_string()));
        }
    }
    let status = status.unwrap_or_else(|| {
        if headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("location"))
        {
            302
        } else {
            200
        }
    });
    Ok((
        status,
        headers,
        Bytes::copy_from_slice(&out[head_end + sep..]),
    ))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cgi_output() {
        let (s, h, b) =
            parse_cgi_output(b"Content-Type: text/plain\nStatus: 404 Not Found\n\nnope")
                .expect("ok");
        assert_eq!((s, b.as_ref()), (404, &b"nope"[..]));
        assert_eq!(
            h,
            vec![("Content-Type".to_string(), "text/plain".to_string())]
        );
        let (s, _, b) = parse_cgi_output(b"Location: /x\r\n\r\n").expect("ok");
        assert_eq!((s, b.len()), (302, 0));
        let (s, _, b) = parse_cgi_output(b"Content-Type: a/b\r\n\r\nbody\n\nmore").expect("ok");
        assert_eq!((s, b.as_ref()), (200, &b"body\n\nmore"[..]));
        assert!(parse_cgi_output(b"just text").is_err());
        assert!(parse_cgi_output(b"Status: abc\n\n").is_err());
        assert!(parse_cgi_output(b"no colon here\n\n").is_err());
    }
}
