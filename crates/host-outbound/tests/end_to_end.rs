//! End to end: `OutboundHooks::send_request` against real local servers.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};
use wharf_host_outbound::{AllowedHosts, NetFuture, Network, OutboundHooks, OutboundPolicy};

/// A hyper server on 127.0.0.1:0: `/` answers "hello", `/big` answers 64 KiB with a
/// `Content-Length`, `/echo-host` answers the `Host` header it received.
async fn hyper_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let body = match req.uri().path() {
                        "/big" => Bytes::from(vec![b'x'; 64 * 1024]),
                        "/echo-host" => Bytes::from(
                            req.headers()
                                .get_all(http::header::HOST)
                                .iter()
                                .map(|v| v.to_str().expect("ASCII Host header").to_string())
                                .collect::<Vec<_>>()
                                .join(","),
                        ),
                        _ => Bytes::from_static(b"hello"),
                    };
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(body)))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A raw server answering every connection with `response`, after reading the request
/// head, which it sends on the returned channel.
async fn raw_server(response: Vec<u8>) -> (SocketAddr, tokio::sync::mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let response = response.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tx.send(String::from_utf8_lossy(&head).into_owned()).await;
                let _ = stream.write_all(&response).await;
                // Keep the connection open until the client goes away.
                let _ = stream.read(&mut buf).await;
            });
        }
    });
    (addr, rx)
}

/// A server that accepts connections and never answers.
async fn silent_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    addr
}

/// The default policy: no private destinations.
fn policy(entries: &[String]) -> OutboundPolicy {
    OutboundPolicy::new(AllowedHosts::parse(entries).expect("valid allow list"))
}

/// A policy on a server that allows private destinations listed as IP literals, for
/// the tests that talk to servers on 127.0.0.1.
fn local(entries: &[String]) -> OutboundPolicy {
    let mut p = policy(entries);
    p.allow_private = true;
    p
}

/// A network whose DNS answers from a table and whose connections to the listed
/// (pretend) addresses go to local servers instead; every connection is recorded.
#[derive(Debug, Default)]
struct FakeNet {
    names: Vec<(String, Vec<SocketAddr>)>,
    redirect: Vec<(SocketAddr, SocketAddr)>,
    dialed: std::sync::Mutex<Vec<SocketAddr>>,
}

impl Network for FakeNet {
    fn resolve(&self, host: &str, _port: u16) -> NetFuture<Vec<SocketAddr>> {
        let found = self
            .names
            .iter()
            .find(|(n, _)| n == host)
            .map(|(_, a)| a.clone());
        Box::pin(async move {
            found.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such name"))
        })
    }

    fn connect(&self, addr: SocketAddr) -> NetFuture<tokio::net::TcpStream> {
        self.dialed.lock().expect("lock").push(addr);
        let real = self
            .redirect
            .iter()
            .find(|(from, _)| *from == addr)
            .map_or(addr, |(_, to)| *to);
        Box::pin(tokio::net::TcpStream::connect(real))
    }
}

fn make_hooks(policy: OutboundPolicy) -> OutboundHooks {
    OutboundHooks::new(Arc::new(policy), "app".into(), "comp".into())
}

fn get(url: &str) -> http::Request<WasiBody> {
    let body: WasiBody = Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync();
    http::Request::builder()
        .uri(url)
        .body(body)
        .expect("valid request")
}

type Sent = (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), Error>> + Send>,
);

async fn send_with(
    hooks: &mut OutboundHooks,
    url: &str,
    options: Option<RequestOptions>,
) -> Result<Sent, Error> {
    let fut = hooks.send_request(get(url), options, Box::new(async { Ok(()) }));
    Pin::from(fut).await
}

async fn send(hooks: &mut OutboundHooks, url: &str) -> Result<Sent, Error> {
    send_with(hooks, url, None).await
}

/// Sends and reads the whole body; returns (status, body).
async fn fetch(hooks: &mut OutboundHooks, url: &str) -> Result<(u16, Bytes), Error> {
    let (response, io) = send(hooks, url).await?;
    let io = tokio::spawn(Pin::from(io));
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    io.abort();
    Ok((status, body))
}

fn expect_err<T>(result: Result<T, Error>) -> Error {
    match result {
        Ok(_) => panic!("expected an error, got a response"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn literal_loopback_needs_the_server_policy() {
    let addr = hyper_server().await;
    let port = addr.port();
    let entry = [format!("http://127.0.0.1:{port}")];
    let url = format!("http://127.0.0.1:{port}/");
    // Listed exactly, but the server does not allow private destinations (the default).
    let mut hooks = make_hooks(policy(&entry));
    let err = expect_err(send(&mut hooks, &url).await);
    assert!(matches!(err, Error::DestinationIpProhibited), "{err:?}");
    // The server allows them: the listed literal is reached.
    let mut hooks = make_hooks(local(&entry));
    let (status, body) = fetch(&mut hooks, &url).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, "hello");
    assert_eq!(hooks.requests_made(), 1);
    // Even then, other private literals that are not listed stay unlisted.
    let mut hooks = make_hooks(local(&[format!("http://*:{port}")]));
    let err = expect_err(send(&mut hooks, &url).await);
    assert!(matches!(err, Error::DestinationIpProhibited), "{err:?}");
}

#[tokio::test]
async fn unlisted_destination_is_denied() {
    let addr = hyper_server().await;
    let port = addr.port();
    let other_port = if port == 65535 { 1 } else { port + 1 };
    for list in [
        vec![],
        vec![format!("http://127.0.0.1:{other_port}")],
        vec![format!("https://127.0.0.1:{port}")],
        vec![format!("http://127.0.0.2:{port}")],
        vec![format!("http://localhost:{port}")],
        vec![format!("http://*.localhost:{port}")],
    ] {
        let mut hooks = make_hooks(local(&list));
        let err = expect_err(send(&mut hooks, &format!("http://127.0.0.1:{port}/")).await);
        assert!(matches!(err, Error::HttpRequestDenied), "{list:?}: {err:?}");
        assert_eq!(hooks.requests_made(), 0, "{list:?}");
    }
    // Default ports by scheme: `http://127.0.0.1` means port 80 only.
    let mut hooks = make_hooks(local(&["http://127.0.0.1".into()]));
    let err = expect_err(send(&mut hooks, &format!("http://127.0.0.1:{port}/")).await);
    assert!(matches!(err, Error::HttpRequestDenied), "{err:?}");
    // Other schemes never pass.
    let mut hooks = make_hooks(local(&["*://*:*".into()]));
    let err = expect_err(send(&mut hooks, &format!("ftp://127.0.0.1:{port}/")).await);
    assert!(matches!(err, Error::HttpRequestDenied), "{err:?}");
}

#[tokio::test]
async fn wildcard_does_not_reach_loopback() {
    let addr = hyper_server().await;
    let port = addr.port();
    for allow_private in [false, true] {
        for entry in [format!("http://*:{port}"), "*://*:*".to_string()] {
            for url in [
                format!("http://localhost:{port}/"),
                format!("http://LOCALHOST:{port}/"),
                format!("http://127.0.0.1:{port}/"),
                format!("http://[::1]:{port}/"),
                format!("http://[::ffff:127.0.0.1]:{port}/"),
                format!("http://0.0.0.0:{port}/"),
            ] {
                let mut p = policy(std::slice::from_ref(&entry));
                p.allow_private = allow_private;
                let mut hooks = make_hooks(p);
                let err = expect_err(send(&mut hooks, &url).await);
                assert!(
                    matches!(err, Error::DestinationIpProhibited),
                    "{entry} {url} allow_private={allow_private}: {err:?}"
                );
            }
        }
    }
    // `http://*` with the default port: refused before any connection is attempted.
    let mut hooks = make_hooks(policy(&["http://*".into()]));
    for url in ["http://localhost/", "http://127.0.0.1/", "http://[::1]/"] {
        let err = expect_err(send(&mut hooks, url).await);
        assert!(
            matches!(err, Error::DestinationIpProhibited),
            "{url}: {err:?}"
        );
    }
    // A legacy numeric form of 127.0.0.1 is a name to the allow list; a resolver that
    // reads it as 127.0.0.1 (glibc does) gets it refused.
    let mut p = local(&["http://*".into()]);
    p.network = Arc::new(FakeNet {
        names: vec![("2130706433".into(), vec!["127.0.0.1:80".parse().unwrap()])],
        ..FakeNet::default()
    });
    let err = expect_err(send(&mut make_hooks(p), "http://2130706433/").await);
    assert!(matches!(err, Error::DestinationIpProhibited), "{err:?}");
}

#[tokio::test]
async fn localhost_listed_by_name_is_refused() {
    // The case: `localhost` listed exactly let a guest read the admin listener.
    let addr = hyper_server().await;
    let port = addr.port();
    for allow_private in [false, true] {
        for list in [
            vec![format!("http://localhost:{port}")],
            vec!["http://*:*".into(), format!("http://LocalHost:{port}")],
        ] {
            let mut p = policy(&list);
            p.allow_private = allow_private;
            let mut hooks = make_hooks(p);
            let err = expect_err(send(&mut hooks, &format!("http://localhost:{port}/")).await);
            assert!(
                matches!(err, Error::DestinationIpProhibited),
                "{list:?} allow_private={allow_private}: {err:?}"
            );
        }
    }
}

#[tokio::test]
async fn exact_name_pointing_at_metadata_or_private_is_refused() {
    let addr = hyper_server().await;
    for ip in [
        "169.254.169.254",
        "10.1.2.3",
        "127.0.0.1",
        "::1",
        "::ffff:127.0.0.1",
    ] {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        let mut p = local(&["http://api.example.com".into()]);
        let net = Arc::new(FakeNet {
            names: vec![("api.example.com".into(), vec![SocketAddr::new(ip, 80)])],
            // Were it dialed, it would reach a live server.
            redirect: vec![(SocketAddr::new(ip, 80), addr)],
            ..FakeNet::default()
        });
        p.network = net.clone();
        let err = expect_err(send(&mut make_hooks(p), "http://api.example.com/").await);
        assert!(
            matches!(err, Error::DestinationIpProhibited),
            "{ip}: {err:?}"
        );
        assert!(net.dialed.lock().unwrap().is_empty(), "{ip} was dialed");
    }
}

#[tokio::test]
async fn mixed_resolution_connects_only_to_the_public_address() {
    // The name resolves to a private address (first) and a public one; the private one
    // leads to a server answering "hello", the public one to a server answering "ok".
    let private_server = hyper_server().await;
    let (public_server, _heads) =
        raw_server(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()).await;
    let private: SocketAddr = "127.0.0.1:80".parse().unwrap();
    let public: SocketAddr = "93.184.216.34:80".parse().unwrap();
    let net = Arc::new(FakeNet {
        names: vec![("mixed.example.com".into(), vec![private, public])],
        redirect: vec![(private, private_server), (public, public_server)],
        ..FakeNet::default()
    });
    let mut p = local(&["http://mixed.example.com".into()]);
    p.network = net.clone();
    let (status, body) = fetch(&mut make_hooks(p), "http://mixed.example.com/")
        .await
        .unwrap();
    assert_eq!((status, &body[..]), (200, &b"ok"[..]));
    assert_eq!(*net.dialed.lock().unwrap(), vec![public]);
}

#[tokio::test]
async fn host_header_comes_from_the_checked_uri() {
    let addr = hyper_server().await;
    let port = addr.port();
    let mut hooks = make_hooks(local(&[format!("http://127.0.0.1:{port}")]));
    let body: WasiBody = Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync();
    let request = http::Request::builder()
        .uri(format!("http://127.0.0.1:{port}/echo-host"))
        .header(http::header::HOST, "internal-admin.example")
        .body(body)
        .unwrap();
    let fut = hooks.send_request(request, None, Box::new(async { Ok(()) }));
    let (response, io) = Pin::from(fut).await.unwrap();
    let io = tokio::spawn(Pin::from(io));
    let body = response.into_body().collect().await.unwrap().to_bytes();
    io.abort();
    assert_eq!(body, format!("127.0.0.1:{port}"));
}

#[tokio::test]
async fn request_line_is_origin_form() {
    let (addr, mut heads) =
        raw_server(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()).await;
    let port = addr.port();
    let mut hooks = make_hooks(local(&[format!("http://127.0.0.1:{port}")]));
    let (status, body) = fetch(&mut hooks, &format!("http://127.0.0.1:{port}/a/b?c=d"))
        .await
        .unwrap();
    assert_eq!((status, &body[..]), (200, &b"ok"[..]));
    let head = heads.recv().await.unwrap();
    assert!(head.starts_with("GET /a/b?c=d HTTP/1.1\r\n"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("host: 127.0.0.1:{port}\r\n")),
        "{head}"
    );
}

#[tokio::test]
async fn request_cap_per_store() {
    let addr = hyper_server().await;
    let port = addr.port();
    let mut p = local(&[format!("http://127.0.0.1:{port}")]);
    p.max_requests = 2;
    let p = Arc::new(p);
    let mut hooks = OutboundHooks::new(p.clone(), "app".into(), "comp".into());
    let url = format!("http://127.0.0.1:{port}/");
    assert_eq!(fetch(&mut hooks, &url).await.unwrap().0, 200);
    assert_eq!(fetch(&mut hooks, &url).await.unwrap().0, 200);
    let err = expect_err(fetch(&mut hooks, &url).await);
    assert!(matches!(err, Error::HttpRequestDenied), "{err:?}");
    assert_eq!(hooks.requests_made(), 2);
    // Denied requests do not use up the cap.
    let mut fresh = OutboundHooks::new(p.clone(), "app".into(), "comp".into());
    let err = expect_err(send(&mut fresh, "http://127.0.0.2:1/").await);
    assert!(matches!(err, Error::HttpRequestDenied), "{err:?}");
    assert_eq!(fresh.requests_made(), 0);
    assert_eq!(fetch(&mut fresh, &url).await.unwrap().0, 200);
    // The cap is per store: new hooks start again.
    let mut next = OutboundHooks::new(p, "app".into(), "comp".into());
    assert_eq!(fetch(&mut next, &url).await.unwrap().0, 200);
}

#[tokio::test]
async fn oversized_body_with_content_length_fails() {
    let addr = hyper_server().await;
    let port = addr.port();
    let mut p = local(&[format!("http://127.0.0.1:{port}")]);
    p.max_response_bytes = 1000;
    let mut hooks = make_hooks(p);
    // The head arrives fine; reading the body fails.
    let (response, io) = send(&mut hooks, &format!("http://127.0.0.1:{port}/big"))
        .await
        .unwrap();
    let io = tokio::spawn(Pin::from(io));
    assert_eq!(response.status(), 200);
    let err = expect_err(response.into_body().collect().await);
    assert!(
        matches!(err, Error::HttpResponseBodySize(Some(1000))),
        "{err:?}"
    );
    io.abort();
    // Exactly at the limit is fine.
    let mut p = local(&[format!("http://127.0.0.1:{port}")]);
    p.max_response_bytes = 64 * 1024;
    let (_, body) = fetch(&mut make_hooks(p), &format!("http://127.0.0.1:{port}/big"))
        .await
        .unwrap();
    assert_eq!(body.len(), 64 * 1024);
}

#[tokio::test]
async fn oversized_chunked_body_fails() {
    // No Content-Length: the limit is enforced while counting bytes.
    let mut response = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..10 {
        response.extend_from_slice(b"100\r\n");
        response.extend_from_slice(&[b'y'; 256]);
        response.extend_from_slice(b"\r\n");
    }
    response.extend_from_slice(b"0\r\n\r\n");
    let (addr, _heads) = raw_server(response).await;
    let port = addr.port();

    let mut p = local(&[format!("http://127.0.0.1:{port}")]);
    p.max_response_bytes = 1000;
    let err = expect_err(fetch(&mut make_hooks(p), &format!("http://127.0.0.1:{port}/")).await);
    assert!(
        matches!(err, Error::HttpResponseBodySize(Some(1000))),
        "{err:?}"
    );

    let mut p = local(&[format!("http://127.0.0.1:{port}")]);
    p.max_response_bytes = 2560;
    let (_, body) = fetch(&mut make_hooks(p), &format!("http://127.0.0.1:{port}/"))
        .await
        .unwrap();
    assert_eq!(body.len(), 2560);
}

#[tokio::test]
async fn closed_port_is_a_connection_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut p = local(&[format!("http://127.0.0.1:{port}")]);
    p.connect_timeout = Duration::from_secs(2);
    let mut hooks = make_hooks(p);
    let started = Instant::now();
    let err = expect_err(send(&mut hooks, &format!("http://127.0.0.1:{port}/")).await);
    assert!(matches!(err, Error::ConnectionRefused), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(hooks.requests_made(), 1);
}

#[tokio::test]
async fn connect_that_never_completes_hits_the_connect_timeout() {
    // A listener that never accepts, with a backlog of 0: once its queue is full, the
    // kernel drops further SYNs and a connect hangs, so only the connect timeout ends it.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    let _listener = socket.listen(0).unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        fillers.push(tokio::spawn(tokio::net::TcpStream::connect(addr)));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut p = local(&[format!("http://127.0.0.1:{}", addr.port())]);
    p.connect_timeout = Duration::from_millis(300);
    let mut hooks = make_hooks(p);
    let started = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        send(&mut hooks, &format!("http://127.0.0.1:{}/", addr.port())),
    )
    .await
    .expect("send_request must not hang");
    let err = expect_err(result);
    assert!(matches!(err, Error::ConnectionTimeout), "{err:?}");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    for filler in fillers {
        filler.abort();
    }
}

#[tokio::test]
async fn silent_server_hits_the_head_timeout() {
    let addr = silent_server().await;
    let port = addr.port();
    let mut p = local(&[format!("http://127.0.0.1:{port}")]);
    p.total_timeout = Duration::from_millis(300);
    let mut hooks = make_hooks(p);
    let started = Instant::now();
    let err = expect_err(send(&mut hooks, &format!("http://127.0.0.1:{port}/")).await);
    assert!(matches!(err, Error::ConnectionReadTimeout), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));

    // A guest's first-byte timeout can only shorten the bound.
    let mut p = local(&[format!("http://127.0.0.1:{port}")]);
    p.total_timeout = Duration::from_secs(30);
    let mut hooks = make_hooks(p);
    let options = RequestOptions {
        first_byte_timeout: Some(Duration::from_millis(200)),
        ..RequestOptions::default()
    };
    let started = Instant::now();
    let err = expect_err(
        send_with(
            &mut hooks,
            &format!("http://127.0.0.1:{port}/"),
            Some(options),
        )
        .await,
    );
    assert!(matches!(err, Error::ConnectionReadTimeout), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn stalled_body_hits_the_idle_timeout() {
    // A head and part of the body, then nothing.
    let (addr, _heads) =
        raw_server(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial".to_vec()).await;
    let port = addr.port();
    let mut p = local(&[format!("http://127.0.0.1:{port}")]);
    p.total_timeout = Duration::from_millis(300);
    let mut hooks = make_hooks(p);
    let started = Instant::now();
    let err = expect_err(fetch(&mut hooks, &format!("http://127.0.0.1:{port}/")).await);
    assert!(matches!(err, Error::ConnectionReadTimeout), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn https_uses_tls() {
    // A plain-HTTP server listed as https: the TLS handshake must fail, proving TLS is
    // attempted (and that nothing is sent in clear text).
    let addr = hyper_server().await;
    let port = addr.port();
    let mut hooks = make_hooks(local(&[format!("https://127.0.0.1:{port}")]));
    let err = expect_err(send(&mut hooks, &format!("https://127.0.0.1:{port}/")).await);
    // hyper answers the ClientHello with a plain-text 400, which is no TLS record.
    assert!(matches!(err, Error::TlsProtocolError), "{err:?}");
}

#[tokio::test]
async fn extreme_guest_timeouts_never_panic() {
    // Guest-chosen `request-options` are added to `Instant::now()`; `Duration::MAX` must
    // saturate (class 7: guest input that panics the host), and can only shorten bounds.
    let addr = hyper_server().await;
    let port = addr.port();
    let mut hooks = make_hooks(local(&[format!("http://127.0.0.1:{port}")]));
    let options = RequestOptions {
        connect_timeout: Some(Duration::MAX),
        first_byte_timeout: Some(Duration::MAX),
        between_bytes_timeout: Some(Duration::MAX),
    };
    let (response, io) = send_with(
        &mut hooks,
        &format!("http://127.0.0.1:{port}/"),
        Some(options),
    )
    .await
    .unwrap();
    let io = tokio::spawn(Pin::from(io));
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    io.abort();
    assert_eq!(body, "hello");
}
