//! Wharf's HTTP example: a `wasi:http/proxy` component that greets whoever calls it.
//!
//! Build, deploy and call it (from the repository root, with `wharf serve` running):
//!   cargo build --release --target wasm32-wasip2 --manifest-path examples/http-hello/Cargo.toml
//!   cp examples/http-hello/target/wasm32-wasip2/release/http_hello.wasm examples/http-hello/
//!   wharf deploy examples/http-hello
//!   curl 'http://127.0.0.1:8080/hello?name=Ada'
//! (`scripts/setup` does the build and copy.)
use wasip2::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct Hello;

impl wasip2::exports::http::incoming_handler::Guest for Hello {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let name = path
            .split_once('?')
            .and_then(|(_, q)| q.split('&').find_map(|kv| kv.strip_prefix("name=")))
            .filter(|n| !n.is_empty())
            .unwrap_or("world");
        let greeting = std::env::var("GREETING").unwrap_or_else(|_| "Hello".into());
        let body = format!("{greeting}, {name}! (served by Wharf from {path})\n");

        let headers = Fields::from_list(&[("content-type".to_string(), b"text/plain; charset=utf-8".to_vec())])
            .expect("valid header");
        let response = OutgoingResponse::new(headers);
        let outgoing = response.body().expect("body");
        ResponseOutparam::set(out, Ok(response));
        let stream = outgoing.write().expect("stream");
        stream.blocking_write_and_flush(body.as_bytes()).expect("write");
        drop(stream);
        OutgoingBody::finish(outgoing, None).expect("finish");
    }
}

wasip2::http::proxy::export!(Hello);
