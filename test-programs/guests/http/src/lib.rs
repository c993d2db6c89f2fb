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
//! - `sleep`: sleeps `?ms=N` milliseconds (default 1000), then answers 200 "slept";
//! - anything else: 200 "ok".
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasip2::io::streams::StreamError;

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
                std::thread::sleep(std::time::Duration::from_millis(ms));
                respond(out, 200, &[], b"slept\n");
            }
            _ => respond(out, 200, &[], b"ok\n"),
        }
    }
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
