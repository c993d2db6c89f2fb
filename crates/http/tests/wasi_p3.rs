//! WASI 0.3 `wasi:http` components on the real server, next to 0.2 ones: a component
//! made with `spin-sdk` 7's `#[http_service]` (guests/spin3) and one written against
//! the `wasip3` bindings (guests/http3), both built here from source. Told apart from
//! the component itself; the same grants, limits, deadlines, metrics and outbound
//! policy as 0.2 components; streamed request and response bodies.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wharf_engine::EngineOptions;
use wharf_http::ServerLimits;
use wharf_test_programs as guests;

mod common;
use common::{Server, request, wait_for};

/// Deploys app `name` with one component `web` from `wasm`, and these extra
/// `[[component]]` lines (a route among them).
async fn deploy(s: &Server, name: &str, wasm: &str, component: &str) {
    s.deploy(
        &format!(
            "[app]\nname = \"{name}\"\nversion = \"1\"\n\n[[component]]\nid = \"web\"\nsource = \"app.wasm\"\n{component}\n"
        ),
        &[("app.wasm", wasm)],
    )
    .await
    .unwrap_or_else(|e| panic!("deploying {name}: {e}"));
}

/// The value of `metric{labels}` (0 when absent).
fn metric(s: &Server, metric: &str, labels: &str) -> f64 {
    let text = s.runtime.metrics.encode();
    let prefix = format!("{metric}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_03_components_serve_next_to_02_ones() {
    let s = Server::start().await;
    deploy(
        &s,
        "spin",
        guests::SPIN3_COMPONENT,
        "route = \"/spin/...\"\nenvironment = { GREETING = \"from the manifest\" }",
    )
    .await;
    deploy(
        &s,
        "direct",
        guests::HTTP3_COMPONENT,
        "route = \"/direct/...\"",
    )
    .await;
    s.deploy_http("classic", "route = \"/classic/...\"")
        .await
        .expect("deploy the 0.2 component");
    let versions: Vec<(String, &str)> = s
        .runtime
        .apps()
        .iter()
        .map(|app| {
            let v = match &app.components[0].exec {
                wharf_runtime::Exec::Proxy(p) => p.wasi_version(),
                _ => "not http",
            };
            (app.name.to_string(), v)
        })
        .collect();
    assert!(
        versions.contains(&("spin".to_string(), "0.3")),
        "{versions:?}"
    );
    assert!(
        versions.contains(&("direct".to_string(), "0.3")),
        "{versions:?}"
    );
    assert!(
        versions.contains(&("classic".to_string(), "0.2")),
        "{versions:?}"
    );

    let r = request(&s, "GET", "/spin/hello", b"").await;
    assert_eq!((r.status, r.body.as_str()), (200, "Hello, Spin"));
    let r = request(&s, "GET", "/direct/hello", b"").await;
    assert_eq!((r.status, r.body.as_str()), (200, "hello from WASI 0.3"));
    let r = request(&s, "GET", "/classic/hello", b"").await;
    assert_eq!(r.status, 200);
    // The environment grant reaches a 0.3 component (read through WASI 0.2's
    // `wasi:cli/environment`, which Rust's standard library uses).
    let r = request(&s, "GET", "/spin/env?name=GREETING", b"").await;
    assert_eq!((r.status, r.body.as_str()), (200, "from the manifest"));
    let r = request(&s, "GET", "/spin/env?name=HOME", b"").await;
    assert_eq!(r.status, 404, "the host's environment is not the guest's");
    // Request bodies stream in and out, through the SDK and through raw streams.
    let body: Vec<u8> = (0..(1 << 20)).map(|i| b'a' + (i % 26) as u8).collect();
    for path in ["/spin/echo", "/direct/echo"] {
        let r = request(&s, "POST", path, &body).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(r.body.as_bytes() == body.as_slice(), "{path}: echo differs");
    }
    assert_eq!(
        metric(
            &s,
            "wharf_http_requests_total",
            "app=\"direct\",status=\"200\""
        ),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_deadlines_apply_to_wasi_03_components() {
    let s = Server::start().await;
    deploy(
        &s,
        "spin",
        guests::SPIN3_COMPONENT,
        "route = \"/spin/...\"\nlimits = { timeout = \"1s\" }",
    )
    .await;
    deploy(
        &s,
        "direct",
        guests::HTTP3_COMPONENT,
        "route = \"/direct/...\"\nlimits = { timeout = \"1s\", memory = \"32MiB\", max_body = \"4KiB\" }",
    )
    .await;
    for app in ["spin", "direct"] {
        let r = request(&s, "GET", &format!("/{app}/spin"), b"").await;
        assert_eq!(r.status, 503, "{app}: {}", r.body);
        assert_eq!(r.header("x-wharf-error"), Some("timeout"), "{app}");
    }
    let r = request(&s, "GET", "/direct/membomb", b"").await;
    assert_eq!(r.status, 500, "{}", r.body);
    assert_eq!(r.header("x-wharf-error"), Some("memory"));
    assert!(r.body.contains("32 MiB"), "{}", r.body);
    let r = request(&s, "POST", "/direct/echo", &[b'x'; 64 << 10]).await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.header("x-wharf-error"), Some("body-too-large"));
    // A guest that sends its head and then spins: the head and first chunk arrive, the
    // body is cut at the deadline, and the failure is counted.
    let r = request(&s, "GET", "/direct/stream-then-spin", b"").await;
    assert_eq!(r.status, 200);
    assert!(r.body.starts_with("first chunk"), "{}", r.body);
    assert!(
        wait_for(Duration::from_secs(5), || metric(
            &s,
            "wharf_guest_failures_total",
            "app=\"direct\",kind=\"timeout\""
        ) >= 2.0)
        .await,
        "the deadline while streaming was not counted"
    );
    // Every instance is gone: no gauge leaks, no permit held.
    assert!(
        wait_for(Duration::from_secs(5), || metric(
            &s,
            "wharf_active_instances",
            "app=\"direct\""
        ) == 0.0)
        .await
    );
    // The server and the other app are untouched.
    let r = request(&s, "GET", "/spin/hello", b"").await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasi_03_guest_streams_its_response_while_still_computing() {
    let s = Server::start().await;
    deploy(
        &s,
        "direct",
        guests::HTTP3_COMPONENT,
        "route = \"/direct/...\"\nlimits = { timeout = \"20s\" }",
    )
    .await;
    let mut c = tokio::net::TcpStream::connect(s.addr)
        .await
        .expect("connect");
    // Four chunks, about 100 ms of computing before each.
    c.write_all(
        b"GET /direct/stream?chunks=4&work=200 HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n",
    )
    .await
    .expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("chunk 0") {
        let n = tokio::time::timeout(Duration::from_secs(20), c.read(&mut buf))
            .await
            .expect("the first chunk within the deadline")
            .expect("read");
        assert!(n > 0, "closed before the first chunk");
        got.extend_from_slice(&buf[..n]);
    }
    // The first chunk is here while the guest still computes the next ones: its
    // instance is alive.
    assert_eq!(
        metric(&s, "wharf_active_instances", "app=\"direct\""),
        1.0,
        "the first chunk arrived only after the guest finished"
    );
    assert!(!String::from_utf8_lossy(&got).contains("chunk 3"));
    c.read_to_end(&mut got).await.expect("read the rest");
    let text = String::from_utf8_lossy(&got);
    for i in 0..4 {
        assert!(text.contains(&format!("chunk {i}\n")), "{text}");
    }
}

/// A tiny upstream answering every request with 200 and `body`.
async fn upstream(body: &'static str) -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = c.write_all(reply.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_03_outbound_requests_go_through_the_allowlist_and_address_vetting() {
    let up = upstream("upstream says hi").await;
    let grant = format!("allowed_outbound_hosts = [\"http://{up}\"]");
    // The operator allows private literals: listed, they are reached.
    let s = Server::start_configured(EngineOptions::default(), ServerLimits::default(), |c| {
        c.allow_private_outbound = true;
    })
    .await;
    deploy(
        &s,
        "spin",
        guests::SPIN3_COMPONENT,
        &format!("route = \"/spin/...\"\n{grant}"),
    )
    .await;
    deploy(
        &s,
        "direct",
        guests::HTTP3_COMPONENT,
        &format!("route = \"/direct/...\"\n{grant}"),
    )
    .await;
    deploy(
        &s,
        "ungranted",
        guests::HTTP3_COMPONENT,
        "route = \"/none/...\"",
    )
    .await;
    for app in ["spin", "direct"] {
        let r = request(&s, "GET", &format!("/{app}/fetch?url=http://{up}/x"), b"").await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, "upstream says hi"),
            "{app}"
        );
    }
    // Not listed: refused by the allowlist.
    let r = request(&s, "GET", &format!("/none/fetch?url=http://{up}/x"), b"").await;
    assert_eq!(r.status, 502, "{}", r.body);
    assert!(r.body.contains("HttpRequestDenied"), "{}", r.body);
    // Listed, but the operator does not allow private addresses: refused by vetting.
    let strict = Server::start().await;
    deploy(
        &strict,
        "direct",
        guests::HTTP3_COMPONENT,
        &format!("route = \"/direct/...\"\n{grant}"),
    )
    .await;
    let r = request(
        &strict,
        "GET",
        &format!("/direct/fetch?url=http://{up}/x"),
        b"",
    )
    .await;
    assert_eq!(r.status, 502, "{}", r.body);
    assert!(r.body.contains("DestinationIpProhibited"), "{}", r.body);
}
