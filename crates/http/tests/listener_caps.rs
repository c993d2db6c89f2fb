//! Caps that hold for as long as an instance lives (issue 9, class 2): a guest that
//! sends its head and keeps running still holds its in-flight and concurrency permits
//! and its place in `wharf_active_instances`; the response body phase has a deadline;
//! pool exhaustion is a 503 of its own; the gauge returns to 0 after a timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wharf_engine::EngineOptions;
use wharf_engine::config::AllocatorChoice;
use wharf_http::ServerLimits;
use wharf_runtime::metrics::AppLabel;

mod common;
use common::Server;

async fn server(options: EngineOptions) -> Server {
    Server::start_with(options, ServerLimits::default()).await
}

/// Deploys the test HTTP component as `name` on `/name/...` with these limits.
async fn deploy(s: &Server, name: &str, limits: &str) {
    s.deploy_http(
        name,
        &format!("route = \"/{name}/...\"\nlimits = {{ {limits} }}"),
    )
    .await
    .expect("deploy");
}

#[derive(Debug)]
struct Reply {
    status: u16,
    kind: Option<String>,
    body: String,
    /// From the request to the server closing the connection.
    took: Duration,
}

async fn request(addr: SocketAddr, path: &str) -> Reply {
    let t = Instant::now();
    let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
    c.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write");
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = Duration::from_secs(30).saturating_sub(t.elapsed());
        match tokio::time::timeout(left, c.read(&mut chunk)).await {
            Err(_) => panic!("{path}: the connection was still open after 30 s"),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&chunk[..n]),
        }
    }
    let took = t.elapsed();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{path}: no status line in {text:?}"));
    let kind = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("x-wharf-error")
            .then(|| v.trim().to_string())
    });
    Reply {
        status,
        kind,
        body: body.to_string(),
        took,
    }
}

/// Sends a request and waits for the head of the answer only; returns its status,
/// `x-wharf-error` and a task that reads the rest until the server closes.
async fn request_streaming(
    addr: SocketAddr,
    path: &str,
) -> (u16, Option<String>, tokio::task::JoinHandle<Reply>) {
    let t = Instant::now();
    let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
    c.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write");
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = tokio::time::timeout(Duration::from_secs(30), c.read(&mut chunk))
            .await
            .expect("a head within 30 s")
            .expect("read");
        assert!(n > 0, "closed before a head");
        out.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&out[..end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let kind = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("x-wharf-error")
            .then(|| v.trim().to_string())
    });
    let mut body = out[end + 4..].to_vec();
    let rest_kind = kind.clone();
    let rest = tokio::spawn(async move {
        loop {
            let left = Duration::from_secs(30).saturating_sub(t.elapsed());
            match tokio::time::timeout(left, c.read(&mut chunk)).await {
                Err(_) => panic!("the connection was still open after 30 s"),
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => body.extend_from_slice(&chunk[..n]),
            }
        }
        Reply {
            status,
            kind: rest_kind,
            body: String::from_utf8_lossy(&body).into_owned(),
            took: t.elapsed(),
        }
    });
    (status, kind, rest)
}

fn active(s: &Server, app: &str) -> i64 {
    s.runtime
        .metrics
        .active
        .get_or_create(&AppLabel {
            app: app.to_string(),
        })
        .get()
}

/// Polls `ready` for up to 15 s.
async fn wait_for(ready: impl FnMut() -> bool) -> bool {
    common::wait_for(Duration::from_secs(15), ready).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_streaming_guest_holds_its_permits_until_its_deadline() {
    let s = Arc::new(server(EngineOptions::default()).await);
    let timeout = Duration::from_secs(2);
    deploy(&s, "stream", "max_concurrency = 2, timeout = \"2s\"").await;
    let sem = s.runtime.app("stream").expect("live").components[0]
        .concurrency
        .clone();
    let sampler = {
        let s = s.clone();
        tokio::spawn(async move {
            let mut max = (0i64, 0usize);
            loop {
                max.0 = max.0.max(active(&s, "stream"));
                max.1 = max.1.max(s.plane.requests_in_flight());
                tokio::time::sleep(Duration::from_millis(1)).await;
                if s.plane.requests_in_flight() == 0 && active(&s, "stream") == 0 && max.0 > 0 {
                    return max;
                }
            }
        })
    };
    // One after another: each request is sent once the previous one has its answer's
    // head, so a permit released with the head would let every one of them in.
    let mut replies = Vec::new();
    for _ in 0..10 {
        replies.push(request_streaming(s.addr, "/stream/head-then-spin").await);
    }
    let mut streamed = Vec::new();
    let mut refused = 0;
    for (status, kind, rest) in replies {
        let r = rest.await.expect("reader");
        match (status, kind.as_deref()) {
            (200, _) => streamed.push(r),
            (503, Some("concurrency")) => refused += 1,
            other => panic!("unexpected answer {other:?}: {r:?}"),
        }
    }
    assert_eq!((streamed.len(), refused), (2, 8));
    for r in &streamed {
        assert!(r.body.contains("first chunk"), "{r:?}");
        // The body phase ends at the deadline: the connection does not stay open.
        assert!(r.took < timeout + Duration::from_secs(5), "{r:?}");
    }
    let (max_active, max_in_flight) = tokio::time::timeout(Duration::from_secs(15), sampler)
        .await
        .expect("the instances ended")
        .expect("sampler");
    assert!(max_active <= 2, "{max_active} instances ran at once");
    assert!(max_in_flight <= 10, "{max_in_flight}");
    assert!(
        wait_for(|| sem.available_permits() == 2
            && active(&s, "stream") == 0
            && s.plane.requests_in_flight() == 0)
        .await,
        "permits {} active {} in flight {}",
        sem.available_permits(),
        active(&s, "stream"),
        s.plane.requests_in_flight()
    );
    // And the component serves again.
    assert_eq!(request(s.addr, "/stream/hello").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_in_flight_permit_lives_as_long_as_a_streaming_instance() {
    let s = Arc::new(server(EngineOptions::default()).await);
    deploy(&s, "stream", "timeout = \"2s\"").await;
    let (status, _, rest) = request_streaming(s.addr, "/stream/head-then-spin").await;
    assert_eq!(status, 200);
    // The client has the head while the guest runs on: still one request in flight.
    assert_eq!(s.plane.requests_in_flight(), 1);
    assert_eq!(active(&s, "stream"), 1);
    let r = rest.await.expect("reader");
    assert!(r.body.contains("first chunk"), "{r:?}");
    assert!(wait_for(|| s.plane.requests_in_flight() == 0 && active(&s, "stream") == 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_active_gauge_returns_to_zero_after_a_timeout() {
    let s = server(EngineOptions::default()).await;
    deploy(&s, "spin", "timeout = \"300ms\"").await;
    for _ in 0..3 {
        let r = request(s.addr, "/spin/spin").await;
        assert_eq!(
            (r.status, r.kind.as_deref()),
            (503, Some("timeout")),
            "{r:?}"
        );
    }
    assert!(
        wait_for(|| active(&s, "spin") == 0 && s.plane.requests_in_flight() == 0).await,
        "active {}",
        active(&s, "spin")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pool_exhaustion_answers_503_pool_exhausted() {
    let s = Arc::new(
        server(EngineOptions {
            allocator: AllocatorChoice::Pooling,
            pool_instances: 2,
            pool_max_memory_size: 64 << 20,
            ..EngineOptions::default()
        })
        .await,
    );
    deploy(&s, "hog", "max_concurrency = 2, timeout = \"3s\"").await;
    deploy(&s, "neighbour", "timeout = \"3s\"").await;
    let hogs: Vec<_> = (0..2)
        .map(|_| {
            let addr = s.addr;
            tokio::spawn(async move { request(addr, "/hog/head-then-spin").await })
        })
        .collect();
    assert!(
        wait_for(|| active(&s, "hog") == 2).await,
        "active {}",
        active(&s, "hog")
    );
    let r = request(s.addr, "/neighbour/hello").await;
    assert_eq!(
        (r.status, r.kind.as_deref()),
        (503, Some("pool-exhausted")),
        "{r:?}"
    );
    assert_eq!(active(&s, "neighbour"), 0);
    for h in hogs {
        assert_eq!(h.await.expect("hog").status, 200);
    }
    // Once the hogs' instances are gone, the neighbour is served again.
    assert!(wait_for(|| active(&s, "hog") == 0).await);
    let r = request(s.addr, "/neighbour/hello").await;
    assert_eq!(r.status, 200, "{r:?}");
}
