//! WAGI against hostile modules and clients (issue 9, class 3 and the WAGI part of
//! class 4), in-process: a real runtime, a real listener, the real `wagi` test guest.
//!
//! - a module cannot frame the connection: its `Content-Length: 0` and a fake response
//!   in its body do not answer the next pipelined request (another app's);
//! - a client `Proxy:` header never becomes `HTTP_PROXY`; a `wharf_param_id` header
//!   never shadows the route's `:id`;
//! - a slow request body gets 408 within the component's timeout;
//! - a module flooding stdout gets a `guest-error` answer at once, bounded by the
//!   smaller of MAX_WAGI_OUTPUT and its memory cap;
//! - the request body counts against the module's memory cap (413 when it does not fit).

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wharf_test_programs as guests;

mod common;
use common::Server;

/// A server with app `cgi` (the WAGI guest at `/cgi/:id/...`, memory 8 MiB, and again at
/// `/slowcgi/...` with a 500 ms timeout) and app `hello` (the `wasi:http` test
/// component at `/hello/...`).
async fn server() -> Server {
    let s = Server::start().await;
    s.deploy(
        "[app]\nname = \"cgi\"\nversion = \"1\"\n\n\
         [[component]]\nid = \"cgi\"\nsource = \"cgi.wasm\"\nroute = \"/cgi/:id/...\"\n\
         executor = { type = \"wagi\" }\nlimits = { memory = \"8MiB\", timeout = \"20s\" }\n\n\
         [[component]]\nid = \"slow\"\nsource = \"cgi.wasm\"\nroute = \"/slowcgi/...\"\n\
         executor = { type = \"wagi\" }\nlimits = { timeout = \"500ms\" }\n",
        &[("cgi.wasm", guests::P1_WAGI)],
    )
    .await
    .expect("deploy cgi");
    s.deploy_http(
        "hello",
        "route = \"/hello/...\"\nenvironment = { GREETING = \"the real app\" }",
    )
    .await
    .expect("deploy hello");
    s
}

#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Splits a byte stream into HTTP/1.1 responses, framing each exactly as a client
/// would (Content-Length, or chunked): what a keep-alive client would read.
fn parse_replies(mut buf: &[u8]) -> Vec<Reply> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let end = find(buf, b"\r\n\r\n").expect("a complete response head");
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf = &buf[end + 4..];
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status line");
        let mut r = Reply {
            status,
            head,
            body: Vec::new(),
        };
        if r.header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let line_end = find(buf, b"\r\n").expect("chunk size line");
                let size = std::str::from_utf8(&buf[..line_end]).expect("chunk size");
                let n = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
                buf = &buf[line_end + 2..];
                if n == 0 {
                    buf = &buf[2..];
                    break;
                }
                r.body.extend_from_slice(&buf[..n]);
                buf = &buf[n + 2..];
            }
        } else {
            let n: usize = r
                .header("content-length")
                .map(|v| v.parse().expect("content-length"))
                .unwrap_or(buf.len());
            r.body = buf[..n].to_vec();
            buf = &buf[n..];
        }
        out.push(r);
    }
    out
}

/// Writes `raw` on one connection and reads until the server closes it.
async fn exchange(s: &Server, raw: &[u8]) -> Vec<Reply> {
    let mut c = tokio::net::TcpStream::connect(s.addr)
        .await
        .expect("connect");
    c.write_all(raw).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), c.read_to_end(&mut out))
        .await
        .expect("replies within 30 s")
        .expect("read");
    parse_replies(&out)
}

async fn get(s: &Server, path: &str, extra_headers: &str) -> Reply {
    let raw =
        format!("GET {path} HTTP/1.1\r\nhost: test\r\n{extra_headers}connection: close\r\n\r\n");
    let mut replies = exchange(s, raw.as_bytes()).await;
    assert_eq!(replies.len(), 1, "{replies:?}");
    replies.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_cannot_answer_the_next_pipelined_request() {
    let s = server().await;
    // Two requests on one keep-alive connection, sent together: the first to the
    // smuggling module, the second to another app.
    let replies = exchange(
        &s,
        b"GET /cgi/1/x?smuggle HTTP/1.1\r\nhost: test\r\n\r\n\
          GET /hello/hello HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(replies.len(), 2, "{replies:?}");
    // The first answer's body is exactly what the module wrote after its blank line.
    assert_eq!(replies[0].status, 200, "{:?}", replies[0]);
    assert_eq!(
        replies[0].text(),
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!",
        "{:?}",
        replies[0]
    );
    // The second is the real app's.
    assert_eq!(
        (replies[1].status, replies[1].text().as_str()),
        (200, "hello from the real app\n"),
        "{:?}",
        replies[1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_headers_cannot_set_proxy_or_shadow_route_params() {
    let s = server().await;
    // httpoxy: `Proxy:` must not become HTTP_PROXY.
    let r = get(
        &s,
        "/cgi/1/x?getenv=HTTP_PROXY",
        "proxy: http://attacker.example:8080\r\n",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("HTTP_PROXY=<unset>\n"), "{}", r.text());
    assert!(r.text().contains("#HTTP_PROXY=0\n"), "{}", r.text());

    // `wharf_param_id` maps to the same CGI name as the host's `wharf-param-id`; the
    // route's value must be the one (and only one) the module sees.
    let r = get(
        &s,
        "/cgi/42/x?getenv=HTTP_WHARF_PARAM_ID,HTTP_X_OK",
        "wharf_param_id: forged\r\nx-ok: yes\r\n",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert!(text.contains("HTTP_WHARF_PARAM_ID=42\n"), "{text}");
    assert!(text.contains("#HTTP_WHARF_PARAM_ID=1\n"), "{text}");
    // Ordinary headers still arrive.
    assert!(text.contains("HTTP_X_OK=yes\n"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_body_gets_408_within_the_timeout() {
    let s = server().await;
    let mut c = tokio::net::TcpStream::connect(s.addr)
        .await
        .expect("connect");
    // Announces 10 bytes, sends 3, then nothing (the connection stays open).
    c.write_all(b"POST /slowcgi/x HTTP/1.1\r\nhost: test\r\ncontent-length: 10\r\n\r\nabc")
        .await
        .expect("write");
    let started = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until one whole response head and body are in.
    let reply = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let n = c.read(&mut buf).await.expect("read");
            out.extend_from_slice(&buf[..n]);
            if n == 0 || find(&out, b"\r\n\r\n").is_some_and(|i| out.len() > i + 4) {
                break;
            }
        }
    })
    .await;
    assert!(
        reply.is_ok(),
        "no answer within 10 s to a stalled body (timeout is 500 ms)"
    );
    let r = parse_replies(&out).remove(0);
    assert_eq!(
        (r.status, r.header("x-wharf-error")),
        (408, Some("body-timeout")),
        "{r:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_flooding_stdout_gets_a_guest_error_quickly() {
    let s = server().await;
    let started = Instant::now();
    let r = get(&s, "/cgi/1/x?flood", "").await;
    let took = started.elapsed();
    assert_eq!(
        (r.status, r.header("x-wharf-error")),
        (500, Some("guest-error")),
        "{}",
        r.text()
    );
    // Bounded by the component's 8 MiB memory cap (smaller than MAX_WAGI_OUTPUT).
    let limit = wharf_http::wagi::output_limit(8 << 20);
    assert_eq!(limit, 8 << 20);
    assert!(
        r.text()
            .contains(&format!("larger than the limit of {limit} bytes")),
        "{}",
        r.text()
    );
    // Well inside the component's 20 s timeout: refused when the limit is passed, not
    // after writing the whole gigabyte.
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // And the module still answers afterwards.
    let r = get(&s, "/cgi/1/x?status=201", "").await;
    assert_eq!(r.status, 201, "{}", r.text());
}

async fn post(s: &Server, path: &str, body: &[u8]) -> Reply {
    let mut raw = format!(
        "POST {path} HTTP/1.1\r\nhost: test\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    let mut replies = exchange(s, &raw).await;
    assert_eq!(replies.len(), 1, "{replies:?}");
    replies.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_body_counts_against_the_modules_memory_cap() {
    let s = server().await;
    // 1 MiB of an 8 MiB cap: the module runs and echoes it.
    let small = vec![b'a'; 1 << 20];
    let r = post(&s, "/cgi/1/x", &small).await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(find(&r.body, &small).is_some(), "the body was not echoed");
    // 9 MiB: under `max_body` (10 MiB) but over the memory cap it counts against, so
    // the module never runs.
    let big = vec![b'b'; 9 << 20];
    let r = post(&s, "/cgi/1/x", &big).await;
    assert_eq!(r.status, 413, "{}", r.head);
    assert_eq!(r.header("x-wharf-error"), Some("body-too-large"));
    assert!(
        r.text().contains("memory cap of 8388608 bytes"),
        "{}",
        r.text()
    );
    let metrics = s.runtime.metrics.encode();
    assert!(
        metrics.contains("wharf_guest_failures_total{app=\"cgi\",kind=\"body-too-large\"} 1"),
        "{metrics}"
    );
}
