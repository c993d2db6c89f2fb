//! A `wasi:http/proxy` component for Wharf's server tests. It dispatches on the last
//! segment of the request path:
//! - `hello`: 200 "hello from GREETING" (env var, default "wharf"), header `x-version`
//!   from env `VERSION`, the path in `x-path`, and every `wharf-*` request header
//!   echoed back as `x-wharf-*`;
//! - `echo`: echoes the request body, `x-body-len` says how long it was;
//! - `spin`: loops forever (a hostile guest);
//! - `membomb`: allocates until it fails;
//! - `trap`: aborts;
//! - `log`: writes one line to stdout and one to stderr, then answers 200;
//! - `sleep`: computes `?work=N` million loop iterations (default 0; about a
//!   millisecond of CPU each), then sleeps `?ms=N` milliseconds (default 1000), then
//!   answers 200 "slept";
//! - `config?key=K`: the `wasi:config` value of K (404 when unset);
//! - `logging`: one `wasi:logging` message at each of info and error;
//! - `file?path=P`: the contents of file P (mounted read-only), 404 with the error;
//! - `kv?op=get|set|del|incr|keys&store=S&key=K&value=V`: `wasi:keyvalue`, 403 when the
//!   store cannot be opened, 500 with the error for other failures;
//! - `fetch?url=U`: an outbound GET through `wasi:http/outgoing-handler`; answers with
//!   the upstream status and body, or 502 with the error code;
//! - anything else: 200 "ok".
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingRequest, OutgoingResponse, ResponseOutparam,
    Scheme,
};
use wasip2::io::streams::StreamError;

mod caps {
    wit_bindgen::generate!({
        path: [
            "../../../wit/deps/config",
            "../../../wit/deps/logging",
            "../../../wit/deps/keyvalue",
            "wit",
        ],
        world: "wharf-test:http-caps/caps",
        generate_all,
    });
}
use caps::wasi::{config::store as config, keyvalue, logging::logging};

fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

struct Handler;

impl wasip2::exports::http::incoming_handler::Guest for Handler {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let full = request.path_with_query().unwrap_or_default();
        let (path, query) = full.split_once('?').unwrap_or((full.as_str(), ""));
        let last = path.rsplit('/').next().unwrap_or("");
        match last {
            "hello" => {
                let greeting = std::env::var("GREETING").unwrap_or_else(|_| "wharf".into());
                let version = std::env::var("VERSION").unwrap_or_default();
                // Echo the routing headers the host adds (wharf-*), prefixed with x-.
                let mut headers: Vec<(String, Vec<u8>)> = vec![
                    ("x-version".into(), version.into_bytes()),
                    ("x-path".into(), path.as_bytes().to_vec()),
                ];
                for (k, v) in request.headers().entries() {
                    if k.starts_with("wharf-") {
                        headers.push((format!("x-{k}"), v));
                    }
                }
                let refs: Vec<(&str, &[u8])> =
                    headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
                respond(out, 200, &refs, format!("hello from {greeting}\n").as_bytes());
            }
            "echo" => {
                let body = read_body(&request);
                let len = body.len().to_string();
                respond(out, 200, &[("x-body-len", len.as_bytes())], &body);
            }
            "spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            // Sends its head and one body chunk, then keeps running (a streaming guest
            // that never finishes).
            "head-then-spin" => {
                let response = OutgoingResponse::new(Fields::new());
                let outgoing = response.body().expect("response body");
                ResponseOutparam::set(out, Ok(response));
                let stream = outgoing.write().expect("body stream");
                stream
                    .blocking_write_and_flush(b"first chunk\n")
                    .expect("writing the response body");
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "membomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(std::hint::black_box(vec![0x5Au8; 1 << 20]));
                }
            }
            "trap" => std::process::abort(),
            "log" => {
                println!("log line to stdout");
                eprintln!("log line to stderr");
                respond(out, 200, &[], b"logged\n");
            }
            "sleep" => {
                let ms: u64 = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("ms="))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1000);
                let work: u64 = param(query, "work")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let mut n: u64 = 0;
                for _ in 0..work.saturating_mul(1_000_000) {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
                std::thread::sleep(std::time::Duration::from_millis(ms));
                respond(out, 200, &[], b"slept\n");
            }
            "config" => match config::get(param(query, "key").unwrap_or("")) {
                Ok(Some(v)) => respond(out, 200, &[], v.as_bytes()),
                Ok(None) => respond(out, 404, &[], b"unset"),
                Err(e) => respond(out, 500, &[], format!("{e:?}").as_bytes()),
            },
            "logging" => {
                logging::log(logging::Level::Info, "test", "an info message");
                logging::log(logging::Level::Error, "", "an error message");
                respond(out, 200, &[], b"logged\n");
            }
            "file" => match std::fs::read(param(query, "path").unwrap_or("")) {
                Ok(bytes) => respond(out, 200, &[], &bytes),
                Err(e) => respond(out, 404, &[], e.to_string().as_bytes()),
            },
            "kv" => {
                let (status, body) = kv(query);
                respond(out, status, &[], body.as_bytes());
            }
            "fetch" => {
                let (status, body) = fetch(param(query, "url").unwrap_or(""));
                respond(out, status, &[], &body);
            }
            _ => respond(out, 200, &[], b"ok\n"),
        }
    }
}

fn kv(query: &str) -> (u16, String) {
    let store = param(query, "store").unwrap_or("default");
    let key = param(query, "key").unwrap_or("k");
    let bucket = match keyvalue::store::open(store) {
        Ok(b) => b,
        Err(e) => return (403, format!("{e:?}")),
    };
    let result = match param(query, "op").unwrap_or("get") {
        "get" => bucket.get(key).map(|v| match v {
            Some(v) => String::from_utf8_lossy(&v).into_owned(),
            None => "<none>".to_string(),
        }),
        "set" => bucket
            .set(key, param(query, "value").unwrap_or("").as_bytes())
            .map(|()| "stored".to_string()),
        "del" => bucket.delete(key).map(|()| "deleted".to_string()),
        "incr" => keyvalue::atomics::increment(&bucket, key, 1).map(|n| n.to_string()),
        "keys" => bucket.list_keys(None).map(|r| r.keys.join(",")),
        other => return (400, format!("unknown op {other}")),
    };
    match result {
        Ok(body) => (200, body),
        Err(e) => (500, format!("{e:?}")),
    }
}

fn fetch(url: &str) -> (u16, Vec<u8>) {
    let (scheme, rest) = match url.split_once("://") {
        Some(("https", r)) => (Scheme::Https, r),
        Some(("http", r)) => (Scheme::Http, r),
        _ => return (400, b"bad url".to_vec()),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let req = OutgoingRequest::new(Fields::new());
    let _ = req.set_scheme(Some(&scheme));
    let _ = req.set_authority(Some(authority));
    let _ = req.set_path_with_query(Some(path));
    let future = match wasip2::http::outgoing_handler::handle(req, None) {
        Ok(f) => f,
        Err(e) => return (502, format!("{e:?}").into_bytes()),
    };
    future.subscribe().block();
    let resp = match future.get() {
        Some(Ok(Ok(r))) => r,
        Some(Ok(Err(e))) => return (502, format!("{e:?}").into_bytes()),
        _ => return (502, b"no response".to_vec()),
    };
    let status = resp.status();
    let mut data = Vec::new();
    if let Ok(body) = resp.consume()
        && let Ok(stream) = body.stream()
    {
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => data.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return (502, format!("body: {}", e.to_debug_string()).into_bytes());
                }
            }
        }
    }
    (status, data)
}

fn read_body(request: &IncomingRequest) -> Vec<u8> {
    let mut data = Vec::new();
    let Ok(body) = request.consume() else {
        return data;
    };
    let Ok(stream) = body.stream() else {
        return data;
    };
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => data.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                panic!("reading the request body failed: {}", e.to_debug_string())
            }
        }
    }
    data
}

fn respond(out: ResponseOutparam, status: u16, headers: &[(&str, &[u8])], body: &[u8]) {
    let list: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_vec()))
        .collect();
    let fields = Fields::from_list(&list).expect("valid headers");
    let response = OutgoingResponse::new(fields);
    response.set_status_code(status).expect("valid status");
    let outgoing = response.body().expect("response body");
    ResponseOutparam::set(out, Ok(response));
    {
        let stream = outgoing.write().expect("body stream");
        for chunk in body.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .expect("writing the response body");
        }
    }
    OutgoingBody::finish(outgoing, None).expect("finishing the body");
}

wasip2::http::proxy::export!(Handler);
