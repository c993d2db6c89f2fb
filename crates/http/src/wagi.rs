//! The WAGI executor: a wasip1 core module as an HTTP handler, CGI style (RFC 3875, as
//! in Spin's `executor = { type = "wagi" }`), so that any language targeting
//! wasm32-wasip1 can serve HTTP. The request's metadata arrives in environment
//! variables (`REQUEST_METHOD`, `PATH_INFO`, `QUERY_STRING`, `HTTP_*`, ...), its body
//! on stdin; the module writes header lines, a blank line and the body on stdout. A
//! `Status: 404 Not Found` header sets the status; a `Location` header without one
//! means 302. The same limits apply as for components: fresh store, memory cap,
//! deadline, body cap; stdout is capped too.
//!
//! What a module or a client cannot do through this executor:
//! - **Frame the connection.** The module's `Content-Length`, `Transfer-Encoding`,
//!   `Connection`, `Keep-Alive`, `Upgrade`, `TE`, `Trailer` and `Proxy-*` headers are
//!   dropped (hyper frames the response by the body's real length), and only final
//!   statuses (200-599) are accepted, so a module can never desync a keep-alive
//!   connection and answer the next request, which may be another app's.
//! - **Forge host variables.** Client headers become `HTTP_*` variables only when
//!   their name has no `_` (so `wharf_param_id` cannot pose as `wharf-param-id`);
//!   `Proxy` (httpoxy), `Authorization` and every `wharf-*` header are never passed;
//!   the variables the host sets (`SCRIPT_NAME`, `PATH_INFO`, the route's
//!   `HTTP_WHARF_PARAM_*`, ...) always win over any client-derived one.
//! - **Hold the host.** Both sides are buffered whole, so both are bounded: the request
//!   body by the component's `max_body` (413 past it) and read within its timeout (408
//!   past it); stdout by the smaller of [`MAX_WAGI_OUTPUT`] and the component's memory
//!   cap (a `guest-error` answer past it, as soon as the module writes past it).

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

/// Response headers a module may not set: they frame the message or the connection,
/// which is the server's business (RFC 9110 §7.6.1 hop-by-hop headers, plus framing).
fn is_framing_header(name: &str) -> bool {
    const DROPPED: [&str; 7] = [
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
    ];
    let lower = name.to_ascii_lowercase();
    DROPPED.contains(&lower.as_str()) || lower.starts_with("proxy-")
}

/// The CGI variable a client header may become, if any: `x-custom` → `HTTP_X_CUSTOM`.
/// Names with `_` are skipped (they would collide with a `-` name, e.g. a host-set
/// `wharf-param-id`), as are `Proxy` (httpoxy: a module's HTTP client would read
/// `HTTP_PROXY` as its proxy), `Authorization` (CGI servers keep it from modules) and
/// the host's own `wharf-*` headers (set from the route match instead).
fn client_header_var(name: &http::HeaderName) -> Option<String> {
    let n = name.as_str();
    if n.contains('_')
        || n == "proxy"
        || *name == http::header::AUTHORIZATION
        || n.starts_with("wharf-")
    {
        return None;
    }
    Some(format!("HTTP_{}", n.to_ascii_uppercase().replace('-', "_")))
}

/// Builds the CGI meta-variables of a request. The host's variables come first and
/// win: a client-derived variable with the same name is left out.
pub fn cgi_env(
    parts: &http::request::Parts,
    body_len: usize,
    matched_route: &str,
    route: &wharf_manifest::RouteMatch,
    server_addr: &str,
) -> Vec<(String, String)> {
    let path_info = route.rest.as_str();
    let script_name = route.matched.as_str();
    let mut env: Vec<(String, String)> = vec![
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
        ("HTTP_WHARF_MATCHED_ROUTE".into(), matched_route.to_string()),
        ("HTTP_WHARF_PATH_INFO".into(), path_info.to_string()),
    ];
    for (k, v) in &route.params {
        let key = format!(
            "HTTP_WHARF_PARAM_{}",
            k.to_ascii_uppercase().replace('-', "_")
        );
        // Names that differ only in case (`/:Id/:id`) map to one variable: the first
        // parameter keeps it, so the module never sees a variable twice.
        if !env.iter().any(|(n, _)| *n == key) {
            env.push((key, v.clone()));
        }
    }
    let (server_name, server_port) = split_host_port(server_addr);
    env.push(("SERVER_NAME".into(), server_name.to_string()));
    env.push(("SERVER_PORT".into(), server_port.to_string()));
    if let Some(ct) = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        env.push(("CONTENT_TYPE".into(), ct.to_string()));
    }
    let host_set: std::collections::HashSet<String> = env.iter().map(|(k, _)| k.clone()).collect();
    let mut seen = std::collections::HashSet::new();
    for (name, value) in &parts.headers {
        let Some(key) = client_header_var(name) else {
            continue;
        };
        if host_set.contains(&key) {
            continue;
        }
        let Ok(v) = value.to_str() else { continue };
        if seen.insert(key.clone()) {
            env.push((key, v.to_string()));
        } else if let Some((_, prev)) = env.iter_mut().rev().find(|(k, _)| *k == key) {
            // Repeated headers are joined, as CGI servers do.
            prev.push_str(", ");
            prev.push_str(v);
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
    // The body is buffered whole (it is the module's stdin): bounded by `max_body`
    // (CappedBody) and read within the component's timeout, so a slow client cannot
    // hold the task (and the component's concurrency slot) forever.
    let body = match tokio::time::timeout(comp.timeout, body.collect()).await {
        Err(_) => {
            return Ok(crate::server::error_response(
                StatusCode::REQUEST_TIMEOUT,
                "body-timeout",
                &format!(
                    "wharf: the request body did not arrive within {:?}",
                    comp.timeout
                ),
            ));
        }
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(_)) if over_limit.load(Ordering::Relaxed) => return Err(Failure::BodyTooLarge),
        Ok(Err(e)) => {
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
        matched,
        &host,
    );
    // The body is host memory held for the module while it runs: it counts against
    // the memory cap, and the module's memories get what is left.
    let body_len = u64::try_from(body.len()).unwrap_or(u64::MAX);
    let Some(module_memory) = comp.memory.checked_sub(body_len).filter(|m| *m > 0) else {
        runtime
            .metrics
            .failures
            .get_or_create(&wharf_runtime::metrics::AppKind {
                app: label.app.clone(),
                kind: "body-too-large".into(),
            })
            .inc();
        return Ok(crate::server::error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            &format!(
                "wharf: the request body ({body_len} bytes) does not fit in this module's \
                 memory cap of {} bytes, which a WAGI body counts against",
                comp.memory
            ),
        ));
    };
    // Stdout is buffered whole, in host memory: bounded by the smaller of
    // MAX_WAGI_OUTPUT and the memory left. One byte more is accepted, so that "wrote
    // more than the limit" can be told from "wrote exactly the limit".
    let limit = output_limit(module_memory);
    let stdout = MemoryOutputPipe::new(limit + 1);
    let spec = StoreSpec {
        max_memory: Some(module_memory),
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
    drop(spec); // its handle on the stdout pipe; the store holds the other
    let timeout = comp.timeout;
    state.deadline = Some(Instant::now() + timeout);
    let mut store =
        wharf_host::new_store(runtime.engine(), state).map_err(|e| setup(format!("{e:#}")))?;
    let active = crate::wasi_http::ActiveInstance::new(&runtime.metrics, &label);
    let mut instantiating = true;
    let result = tokio::time::timeout(timeout, async {
        let instance = pre.instantiate_async(&mut store).await?;
        instantiating = false;
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
        start.call_async(&mut store, ()).await
    })
    .await;
    drop(active);
    let cx = FailureContext {
        timeout: Some(timeout),
        max_memory: Some(comp.memory),
        fuel: None,
        hit_cap: store.data().limiter.hit_cap(),
        instantiating,
    };
    drop(store);
    // The store (and its WASI context) is gone, so the pipe has one owner: take its
    // buffer without copying it.
    let out = stdout
        .try_into_inner()
        .map(|b| b.freeze())
        .ok_or_else(|| setup("the WAGI stdout pipe is still shared after the run".into()))?;
    if out.len() > limit {
        return Err(Failure::GuestError(format!(
            "its output is larger than the limit of {limit} bytes"
        )));
    }
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
    let (status, headers, body) = parse_cgi_output(out)
        .map_err(|why| Failure::GuestError(format!("its output is not a CGI response: {why}")))?;
    let mut resp = Response::new(
        Full::new(body)
            .map_err(|never: Infallible| match never {})
            .boxed_unsync(),
    );
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    for (k, v) in headers {
        if is_framing_header(&k) {
            tracing::debug!(app = %app.name, component = %comp.id, header = %k,
                "WAGI: dropped a framing header the module set");
            continue;
        }
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::try_from(k),
            http::HeaderValue::try_from(v),
        ) {
            resp.headers_mut().append(k, v);
        }
    }
    Ok(resp)
}

/// How much stdout a WAGI module of a component with memory cap `memory` may write.
pub fn output_limit(memory: u64) -> usize {
    MAX_WAGI_OUTPUT.min(usize::try_from(memory).unwrap_or(usize::MAX))
}

/// Splits CGI output into status, headers and body (the body is a slice of `out`, not
/// a copy). Only final statuses (200-599) are accepted: a `1xx` would make the server
/// switch protocols or send an interim answer on the module's say-so.
pub fn parse_cgi_output(out: Bytes) -> Result<CgiResponse, String> {
    let (head_end, sep) = match (find(&out, b"\r\n\r\n"), find(&out, b"\n\n")) {
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
            status =
                Some(code.filter(|c| (200..=599).contains(c)).ok_or_else(|| {
                    format!("`Status: {v}` is not a final status code (200-599)")
                })?);
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
    Ok((status, headers, out.slice(head_end + sep..)))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Splits a `Host` value into name and port (`80` when it has none), IPv6 literals
/// (`[::1]:8080`, `[::1]`) included.
fn split_host_port(addr: &str) -> (&str, &str) {
    if addr.starts_with('[') {
        return match addr.find(']') {
            Some(end) => {
                let (host, rest) = addr.split_at(end + 1);
                let port = rest.strip_prefix(':').filter(|p| !p.is_empty());
                (host, port.unwrap_or("80"))
            }
            None => (addr, "80"),
        };
    }
    addr.rsplit_once(':').unwrap_or((addr, "80"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_values_split_into_name_and_port() {
        assert_eq!(split_host_port("h:8080"), ("h", "8080"));
        assert_eq!(split_host_port("h"), ("h", "80"));
        assert_eq!(split_host_port("[::1]:8080"), ("[::1]", "8080"));
        assert_eq!(split_host_port("[::1]"), ("[::1]", "80"));
        assert_eq!(split_host_port("[::1"), ("[::1", "80"));
    }

    #[test]
    fn route_params_differing_in_case_set_one_variable() {
        let (parts, ()) = http::Request::builder()
            .uri("/c/1/2")
            .body(())
            .expect("request")
            .into_parts();
        let route = wharf_manifest::RouteMatch {
            params: vec![("Id".into(), "1".into()), ("id".into(), "2".into())],
            matched: "/c/1/2".into(),
            rest: String::new(),
        };
        let env = cgi_env(&parts, 0, "/c/:Id/:id", &route, "[::1]");
        let ids: Vec<&str> = env
            .iter()
            .filter(|(n, _)| n == "HTTP_WHARF_PARAM_ID")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(ids, ["1"]);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("SERVER_NAME"), Some("[::1]"));
        assert_eq!(get("SERVER_PORT"), Some("80"));
    }

    #[test]
    fn parses_cgi_output() {
        let (s, h, b) = parse_cgi_output(Bytes::from_static(
            b"Content-Type: text/plain\nStatus: 404 Not Found\n\nnope",
        ))
        .expect("ok");
        assert_eq!((s, b.as_ref()), (404, &b"nope"[..]));
        assert_eq!(
            h,
            vec![("Content-Type".to_string(), "text/plain".to_string())]
        );
        let (s, _, b) = parse_cgi_output(Bytes::from_static(b"Location: /x\r\n\r\n")).expect("ok");
        assert_eq!((s, b.len()), (302, 0));
        let (s, _, b) =
            parse_cgi_output(Bytes::from_static(b"Content-Type: a/b\r\n\r\nbody\n\nmore"))
                .expect("ok");
        assert_eq!((s, b.as_ref()), (200, &b"body\n\nmore"[..]));
        assert!(parse_cgi_output(Bytes::from_static(b"just text")).is_err());
        assert!(parse_cgi_output(Bytes::from_static(b"Status: abc\n\n")).is_err());
        assert!(parse_cgi_output(Bytes::from_static(b"no colon here\n\n")).is_err());
        // Interim statuses would let the module switch the connection's protocol.
        assert!(parse_cgi_output(Bytes::from_static(b"Status: 101\n\n")).is_err());
        assert!(parse_cgi_output(Bytes::from_static(b"Status: 100\n\n")).is_err());
        assert!(parse_cgi_output(Bytes::from_static(b"Status: 600\n\n")).is_err());
    }

    #[test]
    fn framing_headers_are_the_servers() {
        for h in [
            "Content-Length",
            "transfer-encoding",
            "Connection",
            "Keep-Alive",
            "Upgrade",
            "TE",
            "Trailer",
            "Proxy-Connection",
            "proxy-authenticate",
        ] {
            assert!(is_framing_header(h), "{h}");
        }
        for h in ["Content-Type", "Location", "X-Te", "Set-Cookie"] {
            assert!(!is_framing_header(h), "{h}");
        }
    }

    #[test]
    fn client_headers_never_shadow_host_variables() {
        let mut req = http::Request::builder()
            .uri("/users/42?q=1")
            .header("proxy", "http://evil:8080")
            .header("wharf_param_id", "forged")
            .header("x_script_name", "forged")
            .header("wharf-param-id", "forged")
            .header("authorization", "secret")
            .header("x-custom", "a")
            .header("x-custom", "b")
            .body(())
            .expect("request");
        req.headers_mut().insert(
            http::HeaderName::from_static("script-name"),
            http::HeaderValue::from_static("forged"),
        );
        let (parts, ()) = req.into_parts();
        let route = wharf_manifest::RouteMatch {
            params: vec![("id".into(), "42".into())],
            matched: "/users/42".into(),
            rest: String::new(),
        };
        let env = cgi_env(&parts, 0, "/users/:id", &route, "h:80");
        let get = |k: &str| {
            let all: Vec<&str> = env
                .iter()
                .filter(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
                .collect();
            assert!(all.len() <= 1, "{k} set {} times: {all:?}", all.len());
            all.first().map(|v| v.to_string())
        };
        assert_eq!(get("HTTP_PROXY"), None);
        assert_eq!(get("HTTP_AUTHORIZATION"), None);
        assert_eq!(get("HTTP_WHARF_PARAM_ID").as_deref(), Some("42"));
        assert_eq!(get("HTTP_X_SCRIPT_NAME"), None);
        assert_eq!(get("SCRIPT_NAME").as_deref(), Some("/users/42"));
        assert_eq!(get("HTTP_SCRIPT_NAME").as_deref(), Some("forged"));
        assert_eq!(get("HTTP_X_CUSTOM").as_deref(), Some("a, b"));
        assert_eq!(get("QUERY_STRING").as_deref(), Some("q=1"));
    }
}
