//! A WASI 0.3 `wasi:http` component written directly against the `wasip3` bindings
//! (it exports `wasi:http/handler@0.3.0`). It dispatches on the last path segment:
//! - `hello`: 200 "hello from WASI 0.3";
//! - `echo`: streams the request body back as it arrives;
//! - `stream?chunks=N&work=W`: answers at once, then writes N chunks `chunk i\n`,
//!   computing W million loop iterations before each (a guest that streams its
//!   response while it is still computing);
//! - `stream-then-spin`: sends its head and one chunk, then loops forever;
//! - `fetch?url=U`: an outbound GET through `wasi:http/client@0.3.0`; the upstream's
//!   status and body, or 502 with the error code;
//! - `spin`: loops forever;
//! - `membomb`: allocates until it fails;
//! - anything else: 200 "ok".
use wasip3::http::types::{ErrorCode, Fields, Method, Request, Response, Scheme};
use wasip3::{wit_bindgen, wit_future, wit_stream};

wasip3::http::service::export!(Handler);

struct Handler;

fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// A response with `status` whose body is written by `write` in a task of its own,
/// after the response has been returned.
fn streaming<F>(status: u16, write: impl FnOnce(wit_bindgen::StreamWriter<u8>) -> F) -> Response
where
    F: std::future::Future<Output = ()> + 'static,
{
    let (body_tx, body_rx) = wit_stream::new();
    let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    let (response, _sent) = Response::new(Fields::new(), Some(body_rx), trailers_rx);
    drop(trailers_tx);
    let _ = response.set_status_code(status);
    let task = write(body_tx);
    wit_bindgen::spawn(task);
    response
}

fn full(status: u16, body: Vec<u8>) -> Response {
    streaming(status, move |mut tx| async move {
        let _ = tx.write_all(body).await;
    })
}

fn work(millions: u64) {
    let mut n: u64 = 0;
    for _ in 0..millions.saturating_mul(1_000_000) {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

async fn fetch(url: &str) -> Response {
    let (scheme, rest) = match url.split_once("://") {
        Some(("http", r)) => (Scheme::Http, r),
        Some(("https", r)) => (Scheme::Https, r),
        _ => return full(400, b"bad url".to_vec()),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (_trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    let (request, _sent) = Request::new(Fields::new(), None, trailers_rx, None);
    let _ = request.set_method(&Method::Get);
    let _ = request.set_scheme(Some(&scheme));
    let _ = request.set_authority(Some(authority));
    let _ = request.set_path_with_query(Some(path));
    match wasip3::http::client::send(request).await {
        Ok(resp) => {
            let status = resp.get_status_code();
            let (_res_tx, res_rx) = wit_future::new(|| Ok(()));
            let (body, _trailers) = Response::consume_body(resp, res_rx);
            let data = body.collect().await;
            full(status, data)
        }
        Err(e) => full(502, format!("{e:?}").into_bytes()),
    }
}

impl wasip3::exports::http::handler::Guest for Handler {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let full_path = request.get_path_with_query().unwrap_or_default();
        let (path, query) = full_path.split_once('?').unwrap_or((&full_path, ""));
        let last = path.rsplit('/').next().unwrap_or("").to_string();
        let query = query.to_string();
        Ok(match last.as_str() {
            "hello" => full(200, b"hello from WASI 0.3".to_vec()),
            "echo" => {
                let (_res_tx, res_rx) = wit_future::new(|| Ok(()));
                let (mut body, _trailers) = Request::consume_body(request, res_rx);
                streaming(200, move |mut tx| async move {
                    while let (_, chunk) = body.read(Vec::with_capacity(16 * 1024)).await
                        && !chunk.is_empty()
                    {
                        if !tx.write_all(chunk).await.is_empty() {
                            return;
                        }
                    }
                })
            }
            "stream" => {
                let chunks: u64 = param(&query, "chunks")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(3);
                let millions: u64 = param(&query, "work")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                streaming(200, move |mut tx| async move {
                    for i in 0..chunks {
                        work(millions);
                        if !tx.write_all(format!("chunk {i}\n").into_bytes()).await.is_empty() {
                            return;
                        }
                    }
                })
            }
            "stream-then-spin" => streaming(200, |mut tx| async move {
                let _ = tx.write_all(b"first chunk\n".to_vec()).await;
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }),
            "fetch" => fetch(param(&query, "url").unwrap_or("")).await,
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
            _ => full(200, b"ok".to_vec()),
        })
    }
}
