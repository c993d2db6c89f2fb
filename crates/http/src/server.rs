//! The data plane: a hyper HTTP/1.1 listener that routes each request to a component
//! and runs it in a fresh `Store` (isolation between requests) with the component's
//! memory cap, deadline and body cap.
//!
//! Failure mapping (one place): no route → 404; connection, in-flight or component
//! concurrency caps → 503 with `retry-after`; body over the cap → 413; deadline → 503;
//! trap or memory cap → 500. Each answer carries a short reason in the body and an
//! `x-wharf-error` header, is counted in the metrics and logged; nothing a guest does
//! stops the server or another app.
//!
//! Connections ([`Connections`], shared with the admin listener): a cap, hyper's
//! header-read timeout, an idle timeout, SO_KEEPALIVE, and idle connections closed to make
//! room at the cap. A request's in-flight and concurrency permits live as long as its
//! instance (see [`crate::wasi_http`]).
//!
//! Deadlines: the epoch callback yields to the runtime every few milliseconds (so a
//! spinning guest never starves other requests on the same worker thread) and traps once
//! the deadline has passed; a Tokio timeout covers a guest waiting in a host call.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use wharf_engine::failure::GuestFailure;
use wharf_manifest::Manifest;
use wharf_runtime::metrics::{AppKind, AppLabel, AppStatus};
use wharf_runtime::{Apps, Exec, LoadedApp, Runtime, Trigger};

use crate::router::RouteTable;

/// The response body type of the data plane.
pub type ResponseBody =
    http_body_util::combinators::UnsyncBoxBody<Bytes, wasmtime_wasi_http::Error>;

/// Listener-level caps.
#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// Open connections at once; more get 503 and are closed (after idle connections
    /// have been asked to make room).
    pub max_connections: usize,
    /// Requests in flight at once across all apps; more get 503. A request is in
    /// flight for as long as its instance lives, response streaming included.
    pub max_in_flight: usize,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// How long a client has to send a complete request head, counted from when the
    /// server starts waiting for it (a new connection, or the end of the previous
    /// response on a keep-alive connection).
    pub header_timeout: Duration,
    /// How long a connection may sit with no request in progress and no byte received
    /// before it is closed.
    pub idle_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 4096,
            max_in_flight: 1024,
            shutdown_grace: Duration::from_secs(30),
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// Default for [`ServerLimits::header_timeout`].
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`ServerLimits::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// The data-plane server.
pub struct DataPlane {
    host: Arc<Runtime>,
    table: RwLock<Arc<RouteTable>>,
    connections: Connections,
    in_flight: Arc<Semaphore>,
    limits: ServerLimits,
}

impl DataPlane {
    /// A data plane serving the apps of `runtime`, plugged into it as a trigger.
    pub fn new(runtime: Arc<Runtime>, limits: ServerLimits) -> Arc<DataPlane> {
        let plane = Arc::new(DataPlane {
            host: runtime.clone(),
            table: RwLock::new(Arc::new(RouteTable::default())),
            connections: Connections::new(ConnLimits {
                max_connections: limits.max_connections,
                header_timeout: limits.header_timeout,
                idle_timeout: limits.idle_timeout,
                evict_idle_after: DEFAULT_EVICT_IDLE_AFTER,
            }),
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
            limits,
        });
        runtime.add_trigger(plane.clone());
        plane
    }

    /// The runtime this plane serves.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.host
    }

    /// Client connections open now.
    pub fn open_connections(&self) -> usize {
        self.connections.open()
    }

    /// Requests in flight now (each until its instance is gone).
    pub fn requests_in_flight(&self) -> usize {
        self.limits.max_in_flight - self.in_flight.available_permits()
    }

    /// The current route table (a snapshot).
    pub fn table(&self) -> Arc<RouteTable> {
        self.table.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Serves `listener` until `shutdown` resolves, then stops accepting and waits up to
    /// the grace period for open connections to finish their requests.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let this = self.clone();
            let metrics = self.host.metrics.clone();
            self.connections.serve(
                stream,
                move |req| {
                    let this = this.clone();
                    async move { this.handle(req, peer).await }
                },
                move || metrics.refuse("too-many-connections"),
            );
        }
        drop(listener);
        tracing::info!("data plane: stopped accepting; draining connections");
        if !self.connections.shutdown(self.limits.shutdown_grace).await {
            tracing::warn!(
                "data plane: connections still open after {:?}; closing them",
                self.limits.shutdown_grace
            );
        }
    }

    /// Answers one request.
    pub async fn handle(
        self: &Arc<Self>,
        mut req: Request<Incoming>,
        _peer: SocketAddr,
    ) -> Response<ResponseBody> {
        let started = Instant::now();
        let metrics = &self.host.metrics;
        let Ok(in_flight) = self.in_flight.clone().try_acquire_owned() else {
            metrics.refuse("busy");
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "wharf: the server is at its in-flight request limit; retry shortly",
            );
        };
        let path = req.uri().path().to_string();
        let Some((app, idx, matched)) = self.table().lookup(&path) else {
            metrics.refuse("no-route");
            return error_response(
                StatusCode::NOT_FOUND,
                "no-route",
                &format!("wharf: no app serves `{path}`"),
            );
        };
        let comp = &app.components[idx];
        let Ok(slot) = comp.concurrency.clone().try_acquire_owned() else {
            return self.finish(&app, idx, started, error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "concurrency",
                &format!(
                    "wharf: component `{}` of app `{}` is at its limit of {} concurrent requests; retry shortly",
                    comp.id, app.name, comp.max_concurrency
                ),
            ));
        };
        let declared = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > comp.max_body) {
            self.count_failure(&app, "body-too-large");
            return self.finish(&app, idx, started, too_large(comp.max_body));
        }
        let pattern = comp.route.as_ref().map(|r| r.as_str()).unwrap_or("");
        route_headers(req.headers_mut(), pattern, &matched);
        if !req.headers().contains_key(http::header::HOST) {
            // wasi:http needs an authority; HTTP/1.0 clients may send none.
            req.headers_mut().insert(
                http::header::HOST,
                http::HeaderValue::from_static("localhost"),
            );
        }
        let over_limit = Arc::new(AtomicBool::new(false));
        let req = req.map(|body| CappedBody {
            inner: body,
            seen: 0,
            cap: comp.max_body,
            over: over_limit.clone(),
        });
        // The permits live as long as the instance: the `wasi:http` executor moves them
        // into the task that owns the store, which may outlive this response head.
        let permits = InstancePermits {
            _in_flight: in_flight,
            _slot: slot,
        };
        let resp = self
            .run_guest(&app, idx, req, &over_limit, &matched, permits)
            .await;
        self.finish(&app, idx, started, resp)
    }

    fn count_failure(&self, app: &LoadedApp, kind: &str) {
        self.host
            .metrics
            .failures
            .get_or_create(&AppKind {
                app: app.name.to_string(),
                kind: kind.to_string(),
            })
            .inc();
    }

    fn finish(
        &self,
        app: &LoadedApp,
        idx: usize,
        started: Instant,
        resp: Response<ResponseBody>,
    ) -> Response<ResponseBody> {
        let status = resp.status().as_u16();
        let m = &self.host.metrics;
        m.requests
            .get_or_create(&AppStatus {
                app: app.name.to_string(),
                status,
            })
            .inc();
        let secs = started.elapsed().as_secs_f64();
        m.latency
            .get_or_create(&AppLabel {
                app: app.name.to_string(),
            })
            .observe(secs);
        tracing::info!(
            app = %app.name,
            component = %app.components[idx].id,
            route = %app.components[idx].route.as_ref().map(|r| r.as_str()).unwrap_or(""),
            status,
            duration_ms = secs * 1000.0,
            "request"
        );
        resp
    }

    async fn run_guest(
        &self,
        app: &Arc<LoadedApp>,
        idx: usize,
        req: Request<CappedBody>,
        over_limit: &Arc<AtomicBool>,
        matched: &wharf_manifest::RouteMatch,
        permits: InstancePermits,
    ) -> Response<ResponseBody> {
        let comp = &app.components[idx];
        let label = AppLabel {
            app: app.name.to_string(),
        };
        let result = match &comp.exec {
            Exec::Proxy(pre) => {
                crate::wasi_http::run(&self.host, app, idx, pre, req, over_limit, label, permits)
                    .await
            }
            Exec::Wagi(pre) => {
                // WAGI buffers the whole response: the instance is gone when this returns.
                let r =
                    crate::wagi::serve(&self.host, app, idx, pre, req, over_limit, matched, label)
                        .await;
                drop(permits);
                r
            }
            // Plugins have no route, so the router never picks them.
            Exec::Plugin(_) => {
                return error_response(
                    StatusCode::NOT_FOUND,
                    "no-route",
                    "wharf: plugins are not routed",
                );
            }
        };
        match result {
            Ok(resp) => resp,
            Err(f) if over_limit.load(Ordering::Relaxed) => {
                tracing::debug!(app = %app.name, "body over the cap; guest result: {f:?}");
                self.failure_response(app, idx, Failure::BodyTooLarge)
            }
            Err(f) => self.failure_response(app, idx, f),
        }
    }

    fn failure_response(
        &self,
        app: &Arc<LoadedApp>,
        idx: usize,
        failure: Failure,
    ) -> Response<ResponseBody> {
        let comp = &app.components[idx];
        self.count_failure(app, failure.kind());
        let what = format!("component `{}` of app `{}`", comp.id, app.name);
        // The detail of host-side failures goes to the log, not to the client.
        if let Failure::Guest(
            g @ (GuestFailure::Host { .. } | GuestFailure::MissingImport { .. }),
        ) = &failure
        {
            tracing::error!(app = %app.name, component = %comp.id, "host-side failure: {g}");
        }
        let (status, kind, message) = match &failure {
            Failure::Guest(GuestFailure::Timeout { .. }) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                format!(
                    "{what} did not answer within its {:?} deadline",
                    comp.timeout
                ),
            ),
            Failure::Guest(GuestFailure::MemoryCap { .. }) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "memory",
                format!("{what} reached its memory cap of {} MiB", comp.memory >> 20),
            ),
            Failure::Guest(GuestFailure::FuelExhausted { .. }) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "fuel",
                format!("{what} ran out of fuel"),
            ),
            Failure::Guest(GuestFailure::Trap { kind, .. }) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "trap",
                format!("{what} trapped: {kind}"),
            ),
            Failure::Guest(GuestFailure::Exit(code)) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "guest-error",
                format!("{what} exited with status {code}"),
            ),
            Failure::Guest(GuestFailure::PoolExhausted { .. }) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "pool-exhausted",
                "the server has no free instance slot; retry shortly".to_string(),
            ),
            Failure::Guest(GuestFailure::MissingImport { .. } | GuestFailure::Host { .. }) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!(
                    "{what} could not be run because of a server-side error (see the server log)"
                ),
            ),
            Failure::BodyTooLarge => return too_large(comp.max_body),
            Failure::GuestError(code) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "guest-error",
                format!("{what} failed the request: {code}"),
            ),
            Failure::NoResponse => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "no-response",
                format!("{what} returned without setting a response"),
            ),
        };
        error_response(status, kind, &format!("wharf: {message}"))
    }
}

impl Trigger for DataPlane {
    fn kind(&self) -> &'static str {
        "http"
    }

    fn check(&self, manifest: &Manifest, live: &Apps) -> Result<(), String> {
        crate::router::check_routes(manifest, live)
    }

    fn apps_changed(&self, live: &Arc<Apps>) {
        let table = Arc::new(RouteTable::build(live));
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = table;
    }
}

/// The in-flight and component-concurrency permits of one request, held for as long as
/// its instance lives.
pub(crate) struct InstancePermits {
    _in_flight: OwnedSemaphorePermit,
    _slot: OwnedSemaphorePermit,
}

/// Why a request failed, mapped to a status in [`DataPlane::failure_response`] (the
/// one place).
#[derive(Debug)]
pub(crate) enum Failure {
    /// What the engine's classifier said about the guest.
    Guest(GuestFailure),
    /// The request body passed the component's cap.
    BodyTooLarge,
    /// The guest answered with an error (a `wasi:http` error code, a bad CGI response).
    GuestError(String),
    /// The guest returned without a response.
    NoResponse,
}

impl Failure {
    fn kind(&self) -> &'static str {
        match self {
            Failure::Guest(g) => guest_failure_kind(g),
            Failure::BodyTooLarge => "body-too-large",
            Failure::GuestError(_) => "guest-error",
            Failure::NoResponse => "no-response",
        }
    }
}

/// The `x-wharf-error` kind (and metrics label) of what the engine's classifier said.
pub(crate) fn guest_failure_kind(g: &GuestFailure) -> &'static str {
    match g {
        GuestFailure::Host { .. } | GuestFailure::MissingImport { .. } => "internal",
        GuestFailure::MemoryCap { .. } => "memory",
        GuestFailure::Exit(_) => "guest-error",
        g => g.kind(),
    }
}

/// Tells the guest how it was routed, as Spin does with its `spin-*` headers:
/// `wharf-matched-route` (the pattern), `wharf-path-info` (the part below a `...`
/// route), and `wharf-param-NAME` for each `:NAME` segment. Client-sent `wharf-*`
/// headers are removed first, so a guest can trust these.
fn route_headers(headers: &mut http::HeaderMap, pattern: &str, m: &wharf_manifest::RouteMatch) {
    let spoofed: Vec<http::HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("wharf-"))
        .cloned()
        .collect();
    for k in spoofed {
        headers.remove(&k);
    }
    let mut set = |name: &str, value: &str| {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::try_from(name),
            http::HeaderValue::from_str(value),
        ) {
            headers.insert(n, v);
        }
    };
    set("wharf-matched-route", pattern);
    set("wharf-path-info", &m.rest);
    for (k, v) in &m.params {
        set(&format!("wharf-param-{}", k.to_ascii_lowercase()), v);
    }
}

fn too_large(cap: u64) -> Response<ResponseBody> {
    error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body-too-large",
        &format!("wharf: the request body exceeds this route's limit of {cap} bytes"),
    )
}

/// A plain-text error answer with an `x-wharf-error` kind header.
pub fn error_response(
    status: StatusCode,
    kind: &'static str,
    message: &str,
) -> Response<ResponseBody> {
    let mut resp = Response::new(
        Full::new(Bytes::from(format!("{message}\n")))
            .map_err(|never: Infallible| match never {})
            .boxed_unsync(),
    );
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert("x-wharf-error", http::HeaderValue::from_static(kind));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        h.insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("1"),
        );
    }
    resp
}

async fn refuse_connection(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let msg = "wharf: too many open connections; retry shortly\n";
    let resp = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\nretry-after: 1\r\nx-wharf-error: connections\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{msg}",
        msg.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(resp.as_bytes())).await;
}

/// A request body that fails once more than `cap` bytes have arrived, and says so.
pub struct CappedBody {
    inner: Incoming,
    seen: u64,
    cap: u64,
    over: Arc<AtomicBool>,
}

impl Body for CappedBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len() as u64;
                    if this.seen > this.cap {
                        this.over.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(
                            wasmtime_wasi_http::Error::HttpRequestBodySize(Some(this.seen)),
                        )));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The cap and timeouts of one listener's connections (the data plane's or the admin
/// API's).
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    /// Open connections at once; over it, idle connections are asked to make room, and
    /// if none does the new connection gets a 503 and is closed.
    pub max_connections: usize,
    /// See [`ServerLimits::header_timeout`] (hyper's header-read timeout).
    pub header_timeout: Duration,
    /// See [`ServerLimits::idle_timeout`].
    pub idle_timeout: Duration,
    /// When the listener is at its cap, a connection with no request in progress that
    /// was accepted at least this long ago is closed to make room for a new one.
    pub evict_idle_after: Duration,
}

/// Default for [`ConnLimits::evict_idle_after`].
pub const DEFAULT_EVICT_IDLE_AFTER: Duration = Duration::from_secs(1);

/// Default cap on the admin listener's connections.
pub const DEFAULT_ADMIN_CONNECTIONS: usize = 64;

impl ConnLimits {
    /// The admin listener's defaults: 64 connections, the data plane's timeouts.
    pub fn admin() -> ConnLimits {
        ConnLimits {
            max_connections: DEFAULT_ADMIN_CONNECTIONS,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            evict_idle_after: DEFAULT_EVICT_IDLE_AFTER,
        }
    }
}

/// How long a connection over the cap waits for an idle one to make room.
const ROOM_WAIT: Duration = Duration::from_millis(100);
/// At most this many connections wait for room at once; more are refused at once.
const MAX_WAITING: usize = 64;
/// Idle connections are asked to make room at most this often (each ask wakes them all).
const PRESSURE_EVERY: Duration = Duration::from_millis(10);

/// The connections of one listener: the cap, the header-read and idle timeouts,
/// SO_KEEPALIVE, making room by closing idle connections when at the cap, and graceful
/// shutdown.
pub struct Connections {
    permits: Arc<Semaphore>,
    limits: ConnLimits,
    pressure: Arc<Pressure>,
    waiting: Arc<AtomicUsize>,
    stop: watch::Sender<bool>,
}

/// Room wanted at the cap: how many idle connections should close, and the signal that
/// wakes them to look.
struct Pressure {
    notify: Notify,
    wanted: AtomicUsize,
    start: tokio::time::Instant,
    last_ms: AtomicU64,
}

impl Pressure {
    /// One more connection wants room.
    fn want_one(&self) {
        self.wanted.fetch_add(1, Ordering::SeqCst);
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= PRESSURE_EVERY.as_millis() as u64
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
        {
            self.notify.notify_waiters();
        }
    }

    /// Takes one unit of wanted room, if any is left.
    fn take_one(&self) -> bool {
        self.wanted
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

impl Connections {
    /// Connections under `limits`.
    pub fn new(mut limits: ConnLimits) -> Connections {
        limits.max_connections = limits
            .max_connections
            .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        Connections {
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
            pressure: Arc::new(Pressure {
                notify: Notify::new(),
                wanted: AtomicUsize::new(0),
                start: tokio::time::Instant::now(),
                last_ms: AtomicU64::new(0),
            }),
            waiting: Arc::new(AtomicUsize::new(0)),
            stop: watch::channel(false).0,
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.limits.max_connections - self.permits.available_permits()
    }

    /// Serves HTTP/1.1 on `stream` with `handler` in a task of its own; over the cap
    /// (once idle connections had a moment to make room) answers 503 `connections`,
    /// calls `refused` and closes it.
    pub fn serve<F, Fut, B>(
        &self,
        stream: TcpStream,
        handler: F,
        refused: impl FnOnce() + Send + 'static,
    ) where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Response<B>> + Send + 'static,
        B: Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let _ = stream.set_nodelay(true);
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(60))
            .with_interval(Duration::from_secs(10));
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
        let conn = ConnTask {
            limits: self.limits,
            pressure: self.pressure.clone(),
            stop: self.stop.subscribe(),
        };
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            tokio::spawn(conn.run(stream, handler, permit));
            return;
        }
        // At the cap: idle connections make room if they can.
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= MAX_WAITING {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            refused();
            tokio::spawn(refuse_connection(stream));
            return;
        }
        self.pressure.want_one();
        let (permits, waiting) = (self.permits.clone(), self.waiting.clone());
        let pressure = self.pressure.clone();
        tokio::spawn(async move {
            let got = tokio::time::timeout(ROOM_WAIT, permits.acquire_owned()).await;
            waiting.fetch_sub(1, Ordering::SeqCst);
            if got.is_err() {
                // Nobody made room: withdraw the wish.
                pressure.take_one();
            }
            match got {
                Ok(Ok(permit)) if !*conn.stop.borrow() => conn.run(stream, handler, permit).await,
                _ => {
                    refused();
                    refuse_connection(stream).await
                }
            }
        });
    }

    /// Asks every connection to finish its request and close, and waits up to `grace`
    /// for all of them; false if some were still open.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.stop.send_replace(true);
        let all = u32::try_from(self.limits.max_connections).unwrap_or(u32::MAX);
        tokio::time::timeout(grace, self.permits.acquire_many(all))
            .await
            .is_ok()
    }
}

struct ConnTask {
    limits: ConnLimits,
    pressure: Arc<Pressure>,
    stop: watch::Receiver<bool>,
}

impl ConnTask {
    async fn run<F, Fut, B>(mut self, stream: TcpStream, handler: F, permit: OwnedSemaphorePermit)
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Response<B>> + Send + 'static,
        B: Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let peer = stream.peer_addr().ok();
        let act = Arc::new(Activity::new());
        let io = TokioIo::new(ActiveIo {
            inner: stream,
            act: act.clone(),
        });
        let svc_act = act.clone();
        let service = hyper::service::service_fn(move |req| {
            let busy = Busy::start(&svc_act);
            let fut = handler(req);
            async move { Ok::<_, Infallible>(fut.await.map(|inner| BusyBody { inner, _busy: busy })) }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout)
            .keep_alive(true);
        let conn = builder.serve_connection(io, service);
        tokio::pin!(conn);
        let accepted = tokio::time::Instant::now();
        let idle = self.limits.idle_timeout;
        let mut stopping = false;
        loop {
            if !stopping && *self.stop.borrow_and_update() {
                conn.as_mut().graceful_shutdown();
                stopping = true;
            }
            let idle_at = if act.busy() {
                tokio::time::Instant::now() + idle
            } else {
                act.last() + idle
            };
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!("connection from {peer:?}: {e}");
                    }
                    break;
                }
                _ = tokio::time::sleep_until(idle_at) => {
                    if !act.busy() && act.last() + idle <= tokio::time::Instant::now() {
                        tracing::debug!("closing idle connection from {peer:?}");
                        break;
                    }
                }
                _ = self.pressure.notify.notified() => {
                    if !act.busy()
                        && accepted.elapsed() >= self.limits.evict_idle_after
                        && self.pressure.take_one()
                    {
                        tracing::debug!("closing idle connection from {peer:?} to make room");
                        break;
                    }
                }
                r = self.stop.changed(), if !stopping => {
                    if r.is_err() {
                        conn.as_mut().graceful_shutdown();
                        stopping = true;
                    }
                }
            }
        }
        drop(permit);
    }
}

/// When a connection last moved a byte, and whether a request is in progress on it.
struct Activity {
    start: tokio::time::Instant,
    last_ms: AtomicU64,
    busy: AtomicUsize,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: tokio::time::Instant::now(),
            last_ms: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> tokio::time::Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    fn busy(&self) -> bool {
        self.busy.load(Ordering::SeqCst) > 0
    }
}

/// A request in progress: from its head to the end (or drop) of its response body.
struct Busy(Arc<Activity>);

impl Busy {
    fn start(act: &Arc<Activity>) -> Busy {
        act.busy.fetch_add(1, Ordering::SeqCst);
        Busy(act.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that keeps its connection marked busy until it is dropped.
struct BusyBody<B> {
    inner: B,
    _busy: Busy,
}

impl<B: Body + Unpin> Body for BusyBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// A socket that records when it last moved a byte.
struct ActiveIo<T> {
    inner: T,
    act: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for ActiveIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.act.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ActiveIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.act.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.act.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// File descriptors kept for everything but client connections: the registry and
/// key-value SQLite files, blobs, compile pipes, mounts, the admin listener's share.
pub const RESERVED_FDS: u64 = 256;

/// The connection cap that fits in a `nofile` descriptor limit: `requested`, or less so
/// that [`RESERVED_FDS`] and `other_connections` (the admin listener's cap) stay free.
/// Never below 1.
pub fn clamp_connections(requested: usize, nofile: u64, other_connections: usize) -> usize {
    let room = nofile.saturating_sub(RESERVED_FDS.saturating_add(other_connections as u64));
    requested.min(usize::try_from(room).unwrap_or(usize::MAX).max(1))
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (to 2^20 when the hard limit is
/// unlimited), and returns the soft limit in force afterwards.
pub fn raise_nofile_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let now = getrlimit(Resource::Nofile);
    let current = now.current.unwrap_or(u64::MAX);
    let target = now.maximum.unwrap_or(1 << 20);
    if target <= current {
        return current;
    }
    match setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(target),
            maximum: now.maximum,
        },
    ) {
        Ok(()) => target,
        Err(e) => {
            tracing::warn!("cannot raise the open-file limit from {current} to {target}: {e}");
            current
        }
    }
}
