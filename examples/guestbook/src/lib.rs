//! A guestbook: every Wharf capability in one small `wasi:http/proxy` component.
//!
//! - `GET /guestbook/` serves `/static/index.html` from a read-only file mount;
//! - `POST /guestbook/sign?name=NAME` records a visitor in the `default` key-value store
//!   and counts signatures atomically;
//! - `GET /guestbook/entries` lists them, under the `title` variable (`wasi:config`);
//! - `GET /guestbook/quote` fetches a quote from the `quote_url` variable over outbound
//!   HTTP, which only `allowed_outbound_hosts` permits.
//!
//! Build and deploy (from the repository root, with `wharf serve` running):
//!   cargo build --release --target wasm32-wasip2 --manifest-path examples/guestbook/Cargo.toml
//!   cp examples/guestbook/target/wasm32-wasip2/release/guestbook.wasm examples/guestbook/
//!   wharf deploy examples/guestbook
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};
use wasip2::io::streams::StreamError;

mod bindings {
    wit_bindgen::generate!({
        path: ["../../wit/deps/config", "../../wit/deps/keyvalue", "wit"],
        world: "wharf-example:guestbook/guestbook",
        generate_all,
    });
}
use bindings::wasi::config::store as config;
use bindings::wasi::keyvalue::{atomics, store};

struct Guestbook;

impl wasip2::exports::http::incoming_handler::Guest for Guestbook {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let full = request.path_with_query().unwrap_or_default();
        let (path, query) = full.split_once('?').unwrap_or((full.as_str(), ""));
        let (status, content_type, body) = match (request.method(), path.trim_end_matches('/')) {
            (Method::Get, "/guestbook") => match std::fs::read("/static/index.html") {
                Ok(page) => (200, "text/html; charset=utf-8", page),
                Err(e) => (500, "text/plain", format!("no page: {e}").into_bytes()),
            },
            (Method::Post, "/guestbook/sign") => sign(query),
            (Method::Get, "/guestbook/entries") => entries(),
            (Method::Get, "/guestbook/quote") => quote(),
            _ => (404, "text/plain", b"not found\n".to_vec()),
        };
        respond(out, status, content_type, &body);
    }
}

fn sign(query: &str) -> (u16, &'static str, Vec<u8>) {
    let Some(name) = query.split('&').find_map(|kv| kv.strip_prefix("name=")).filter(|n| !n.is_empty()) else {
        return (400, "text/plain", b"add ?name=YOU\n".to_vec());
    };
    let result = store::open("default").and_then(|bucket| {
        let n = atomics::increment(&bucket, "count", 1)?;
        bucket.set(&format!("entry:{n:06}"), name.as_bytes())?;
        Ok(n)
    });
    match result {
        Ok(n) => (201, "text/plain", format!("thanks, {name}: you are visitor {n}\n").into_bytes()),
        Err(e) => (500, "text/plain", format!("key-value error: {e:?}\n").into_bytes()),
    }
}

fn entries() -> (u16, &'static str, Vec<u8>) {
    let title = config::get("title").ok().flatten().unwrap_or_else(|| "Guestbook".into());
    let result = store::open("default").and_then(|bucket| {
        let mut lines = Vec::new();
        let mut cursor = None;
        loop {
            let page = bucket.list_keys(cursor)?;
            for key in page.keys.iter().filter(|k| k.starts_with("entry:")) {
                if let Some(v) = bucket.get(key)? {
                    lines.push(String::from_utf8_lossy(&v).into_owned());
                }
            }
            match page.cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        Ok(lines)
    });
    match result {
        Ok(lines) => (200, "text/plain", format!("{title}\n{}\n", lines.join("\n")).into_bytes()),
        Err(e) => (500, "text/plain", format!("key-value error: {e:?}\n").into_bytes()),
    }
}

fn quote() -> (u16, &'static str, Vec<u8>) {
    let Some(url) = config::get("quote_url").ok().flatten() else {
        return (500, "text/plain", b"quote_url is not set\n".to_vec());
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return (500, "text/plain", b"quote_url is not a URL\n".to_vec());
    };
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    let req = OutgoingRequest::new(Fields::new());
    let _ = req.set_scheme(Some(&if scheme == "https" { Scheme::Https } else { Scheme::Http }));
    let _ = req.set_authority(Some(authority));
    let _ = req.set_path_with_query(Some(path));
    let response = wasip2::http::outgoing_handler::handle(req, None).and_then(|f| {
        f.subscribe().block();
        match f.get() {
            Some(Ok(r)) => r,
            _ => Err(wasip2::http::types::ErrorCode::InternalError(Some("no response".into()))),
        }
    });
    let resp = match response {
        Ok(r) => r,
        Err(e) => return (502, "text/plain", format!("cannot fetch a quote: {e:?}\n").into_bytes()),
    };
    let mut body = Vec::new();
    if let Ok(incoming) = resp.consume()
        && let Ok(stream) = incoming.stream()
    {
        loop {
            match stream.blocking_read(16 * 1024) {
                Ok(chunk) => body.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(_) => return (502, "text/plain", b"the quote broke off\n".to_vec()),
            }
        }
    }
    (200, "text/plain", body)
}

fn respond(out: ResponseOutparam, status: u16, content_type: &str, body: &[u8]) {
    let headers = Fields::from_list(&[("content-type".to_string(), content_type.as_bytes().to_vec())])
        .expect("valid header");
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let outgoing = response.body().expect("body");
    ResponseOutparam::set(out, Ok(response));
    let stream = outgoing.write().expect("stream");
    for chunk in body.chunks(4096) {
        stream.blocking_write_and_flush(chunk).expect("write");
    }
    drop(stream);
    OutgoingBody::finish(outgoing, None).expect("finish");
}

wasip2::http::proxy::export!(Guestbook);
