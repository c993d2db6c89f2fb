//! The WAGI executor: a wasip1 core module as an HTTP handler, CGI style (RFC 3875, as
//! in Spin's `executor = { type = "wagi" }`), so that any language targeting
//! wasm32-wasip1 can serve HTTP. The request's metadata arrives in environment
//! variables (`REQUEST_METHOD`, `PATH_INFO`, `QUERY_STRING`, `HTTP_*`, ...), its body
//! on stdin; the module writes header lines, a blank line and the body on stdout. A
//! `Status: 404 Not Found` header sets the status; a `Location` header without one
//! means 302. The same limits apply as for components: fresh store, memory cap,
//! deadline, body cap; stdout is capped too.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use wharf_engine::failure::{FailureContext, GuestFailure, classify};
use wharf_engine::wasmtime::InstancePre;
use wharf_engine::wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wharf_host::{ModuleState, Output, StoreSpec};
use wharf_runtime::metrics::AppLabel;
use wharf_runtime::{LoadedApp, Runtime};

use crate::server::{CappedBody, Failure, ResponseBody};

/// Largest response a WAGI module may write to stdout.
pub const MAX_WAGI_OUTPUT: usize = 16 << 20;

/// A parsed CGI response: status, headers, body.
pub type CgiResponse = (u16, Vec<(String, String)>, Bytes);

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

/// Serves one request with WAGI module `idx` of `app`: the whole body on stdin, CGI
/// variables in the environment, the response parsed from stdout.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve(
    runtime: &Arc<Runtime>,
    app: &Arc<LoadedApp>,
    idx: usize,
    pre: &InstancePre<ModuleState>,
    req: Request<CappedBody>,
    over_limit: &Arc<AtomicBool>,
    matched: &wharf_manifest::RouteMatch,
    label: AppLabel,
) -> Result<Response<ResponseBody>, Failure> {
    let comp = &app.components[idx];
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) if over_limit.load(Ordering::Relaxed) => return Err(Failure::BodyTooLarge),
        Err(e) => {
            return Ok(crate::server::error_response(
                StatusCode::BAD_REQUEST,
                "bad-request",
                &format!("wharf: reading the request body failed: {e}"),
            ));
        }
    };
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    let env = cgi_env(
        &parts,
        body.len(),
        comp.route.as_ref().map(|r| r.as_str()).unwrap_or(""),
        &matched.rest,
        &matched.matched,
        &host,
    );
    let stdout = MemoryOutputPipe::new(MAX_WAGI_OUTPUT);
    let spec = StoreSpec {
        max_memory: Some(comp.memory),
        args: vec![comp.source.clone()],
        extra_env: env,
        stdin: Some(body),
        stdout: Output::Pipe(stdout.clone()),
    };
    let setup = |detail: String| Failure::Guest(GuestFailure::Host { detail });
    let mut state = runtime
        .services()
        .module_state(&comp.grants, &comp.identity, &spec)
        .map_err(|e| setup(e.to_string()))?;
    let timeout = comp.timeout;
    state.deadline = Some(Instant::now() + timeout);
    let mut store =
        wharf_host::new_store(runtime.engine(), state).map_err(|e| setup(format!("{e:#}")))?;
    let active = runtime.metrics.active.get_or_create(&label).clone();
    active.inc();
    let mut instantiating = true;
    let result = tokio::time::timeout(timeout, async {
        let instance = pre.instantiate_async(&mut store).await?;
        instantiating = false;
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
        start.call_async(&mut store, ()).await
    })
    .await;
    active.dec();
    let cx = FailureContext {
        timeout: Some(timeout),
        max_memory: Some(comp.memory),
        fuel: None,
        hit_cap: store.data().limiter.hit_cap(),
        instantiating,
    };
    drop(store);
    match result {
        Err(_) => {
            return Err(Failure::Guest(GuestFailure::Timeout {
                limit: Some(timeout),
            }));
        }
        Ok(Err(e)) => match classify(&e, &cx) {
            GuestFailure::Exit(0) => {}
            other => return Err(Failure::Guest(other)),
        },
        Ok(Ok(())) => {}
    }
    let (status, headers, body) = parse_cgi_output(&stdout.contents())
        .map_err(|why| Failure::GuestError(format!("its output is not a CGI response: {why}")))?;
    let mut resp = Response::new(
        Full::new(body)
            .map_err(|never: Infallible| match never {})
            .boxed_unsync(),
    );
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::try_from(k),
            http::HeaderValue::try_from(v),
        ) {
            resp.headers_mut().append(k, v);
        }
    }
    Ok(resp)
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
