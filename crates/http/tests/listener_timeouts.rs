//! Idle and slow connections on both listeners (issue 9, class 1): a half-sent request
//! head is closed within the header-read timeout, an idle keep-alive connection within
//! the idle timeout, the admin listener is capped, idle sockets cannot lock clients out
//! of the data plane, and the connection cap fits the open-file limit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wharf_admin::{Admin, AdminToken};
use wharf_engine::EngineOptions;
use wharf_http::ServerLimits;
use wharf_http::server::{ConnLimits, clamp_connections, raise_nofile_limit};
use wharf_runtime::Runtime;

mod common;
use common::Server;

fn runtime(dir: &tempfile::TempDir) -> Arc<Runtime> {
    common::runtime(dir.path(), &EngineOptions::default())
}

async fn server(limits: ServerLimits) -> Server {
    Server::start_with(EngineOptions::default(), limits).await
}

/// An admin listener with these limits; returns its address (and keeps the state dir).
async fn admin(limits: ConnLimits) -> (SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = runtime(&dir);
    let admin = Admin::with_limits(runtime, AdminToken::new("x".repeat(32)), limits);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(admin.serve(listener, std::future::pending()));
    (addr, dir)
}

async fn deploy_hello(s: &Server, name: &str) {
    s.deploy_http(name, &format!("route = \"/{name}/...\""))
        .await
        .expect("deploy");
}

/// Reads one response (head plus a `content-length` body) from a keep-alive
/// connection; returns the status and the `x-wharf-error` header.
async fn read_response(c: &mut TcpStream) -> (u16, Option<String>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let header = |name: &str| {
                head.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                })
            };
            let len: usize = header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let status = head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .expect("status line");
                return (status, header("x-wharf-error"));
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, c.read(&mut chunk))
            .await
            .expect("a response within 30 s")
            .expect("read");
        assert!(n > 0, "connection closed before a whole response");
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn get(c: &mut TcpStream, path: &str) -> (u16, Option<String>) {
    c.write_all(format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n").as_bytes())
        .await
        .expect("write");
    read_response(c).await
}

/// Waits (at most `bound`) for the server to close `c`; returns how long that took.
/// Anything the server writes first (a 408, say) is read and ignored.
async fn closed_within(c: &mut TcpStream, bound: Duration) -> Duration {
    let t = Instant::now();
    let mut chunk = [0u8; 1024];
    loop {
        let left = bound.saturating_sub(t.elapsed());
        match tokio::time::timeout(left, c.read(&mut chunk)).await {
            Err(_) => panic!("the server kept the connection open for {bound:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return t.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

fn limits(header: Duration, idle: Duration) -> ServerLimits {
    ServerLimits {
        header_timeout: header,
        idle_timeout: idle,
        ..ServerLimits::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_head_is_closed_at_the_header_timeout_on_both_listeners() {
    let header = Duration::from_millis(800);
    // The idle timeout is long: it must be the header timeout that closes these, even
    // though the client keeps sending a byte now and then.
    let s = server(limits(header, Duration::from_secs(60))).await;
    let (admin_addr, _dir) = admin(ConnLimits {
        header_timeout: header,
        idle_timeout: Duration::from_secs(60),
        ..ConnLimits::admin()
    })
    .await;
    for addr in [s.addr, admin_addr] {
        let mut c = TcpStream::connect(addr).await.expect("connect");
        c.write_all(b"GET /healthz HTTP/1.1\r\nhost: test\r\n")
            .await
            .expect("write");
        let t = Instant::now();
        // Trickle a header byte every 200 ms, as a slow-loris client would.
        let mut chunk = [0u8; 1024];
        let closed = loop {
            assert!(
                t.elapsed() < header + Duration::from_secs(5),
                "{addr}: still open after {:?}",
                t.elapsed()
            );
            match tokio::time::timeout(Duration::from_millis(200), c.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break t.elapsed(),
                Ok(Ok(_)) => {}
                Err(_) => {
                    if c.write_all(b"x").await.is_err() {
                        break t.elapsed();
                    }
                }
            }
        };
        assert!(
            closed >= header - Duration::from_millis(100),
            "{addr}: {closed:?}"
        );
    }
    assert!(
        wait_for(|| s.plane.open_connections() == 0).await,
        "the closed connection still counts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_at_the_idle_timeout_on_both_listeners() {
    let idle = Duration::from_millis(400);
    let s = server(limits(Duration::from_secs(60), idle)).await;
    let (admin_addr, _dir) = admin(ConnLimits {
        header_timeout: Duration::from_secs(60),
        idle_timeout: idle,
        ..ConnLimits::admin()
    })
    .await;
    for (addr, path, want) in [
        (s.addr, "/nothing/here", 404),
        (admin_addr, "/healthz", 200),
    ] {
        let mut c = TcpStream::connect(addr).await.expect("connect");
        assert_eq!(get(&mut c, path).await.0, want, "{addr}");
        // Still usable right after (keep-alive works)...
        assert_eq!(get(&mut c, path).await.0, want, "{addr}");
        // ...and closed once idle, well before the 60 s header timeout.
        let took = closed_within(&mut c, idle + Duration::from_secs(5)).await;
        assert!(
            took >= idle - Duration::from_millis(100),
            "{addr}: {took:?}"
        );
    }
    // A connection that never sends a byte is idle too.
    let mut c = TcpStream::connect(s.addr).await.expect("connect");
    closed_within(&mut c, idle + Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_refuses_the_connection_over_its_cap() {
    let (addr, _dir) = admin(ConnLimits {
        max_connections: 4,
        header_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(60),
        // Not old enough to be closed to make room during this test.
        evict_idle_after: Duration::from_secs(3600),
    })
    .await;
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut c = TcpStream::connect(addr).await.expect("connect");
        assert_eq!(get(&mut c, "/healthz").await.0, 200);
        open.push(c);
    }
    let mut extra = TcpStream::connect(addr).await.expect("connect");
    let (status, kind) = read_response(&mut extra).await;
    assert_eq!((status, kind.as_deref()), (503, Some("connections")));
    for c in &mut open {
        assert_eq!(
            get(c, "/healthz").await.0,
            200,
            "a connection under the cap"
        );
    }
    // Closing one makes room.
    drop(open.pop());
    let t = Instant::now();
    loop {
        let mut c = TcpStream::connect(addr).await.expect("connect");
        if get(&mut c, "/healthz").await.0 == 200 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no room after a close"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_at_the_cap_give_way_to_a_real_request() {
    // Timeouts far away: only making room can let the request in.
    let s = server(ServerLimits {
        max_connections: 50,
        ..limits(Duration::from_secs(60), Duration::from_secs(60))
    })
    .await;
    deploy_hello(&s, "shop").await;
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(TcpStream::connect(s.addr).await.expect("connect"));
    }
    assert!(
        wait_for(|| s.plane.open_connections() == 50).await,
        "{} connections open",
        s.plane.open_connections()
    );
    let t = Instant::now();
    let (status, kind) = loop {
        let mut c = TcpStream::connect(s.addr).await.expect("connect");
        let r = get(&mut c, "/shop/hello").await;
        if r.0 != 503 || t.elapsed() > Duration::from_secs(10) {
            break r;
        }
        assert_eq!(r.1.as_deref(), Some("connections"));
    };
    assert_eq!((status, kind), (200, None), "after {:?}", t.elapsed());
}

#[test]
fn the_connection_cap_is_clamped_below_the_open_file_limit() {
    assert_eq!(clamp_connections(4096, 1024, 64), 1024 - 256 - 64);
    assert_eq!(clamp_connections(4096, 1 << 20, 64), 4096);
    assert_eq!(clamp_connections(100, 1024, 64), 100);
    assert_eq!(clamp_connections(4096, 200, 64), 1, "never zero");
    assert_eq!(clamp_connections(4096, u64::MAX, 64), 4096);
    let before = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let now = raise_nofile_limit();
    assert!(now >= before.current.unwrap_or(u64::MAX));
    assert_eq!(
        Some(now),
        before.maximum.or(Some(now)),
        "raised to the hard limit"
    );
}

/// Polls `ready` for up to 10 s.
async fn wait_for(ready: impl FnMut() -> bool) -> bool {
    common::wait_for(Duration::from_secs(10), ready).await
}
