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
//! Deadlines: the epoch callback yields to the runtime every few milliseconds (so a
//! spinning guest never starves other requests on the same worker thread) and traps once
//! the deadline has passed; a Tokio timeout covers a guest waiting in a host call.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
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
    /// Open connections at once; more get 503 and are closed.
    pub max_connections: usize,
    /// Requests in flight at once across all apps; more get 503.
    pub max_in_flight: usize,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 4096,
            max_in_flight: 1024,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// The data-plane server.
pub struct DataPlane {
    host: Arc<Runtime>,
    table: RwLock<Arc<RouteTable>>,
    connections: Arc<Semaphore>,
    in_flight: Arc<Semaphore>,
    limits: ServerLimits,
}

impl DataPlane {
    /// A data plane serving the apps of `runtime`, plugged into it as a trigger.
    pub fn new(runtime: Arc<Runtime>, limits: ServerLimits) -> Arc<DataPlane> {
        let plane = Arc::new(DataPlane {
            host: runtime.clone(),
            table: RwLock::new(Arc::new(RouteTable::default())),
            connections: Arc::new(Semaphore::new(limits.max_connections)),
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
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
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
            let _ = stream.set_nodelay(true);
            let Ok(permit) = self.connections.clone().try_acquire_owned() else {
                self.host.metrics.refuse("too-many-connections");
                tokio::spawn(refuse_connection(stream));
                continue;
            };
            let this = self.clone();
            let service = hyper::service::service_fn(move |req| {
                let this = this.clone();
                async move { Ok::<_, Infallible>(this.handle(req, peer).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!("connection from {peer}: {e}");
                }
                drop(permit);
            });
        }
        drop(listener);
        tracing::info!("data plane: stopped accepting; draining connections");
        if tokio::time::timeout(self.limits.shutdown_grace, graceful.shutdown())
            .await
            .is_err()
        {
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
        let Ok(_in_flight) = self.in_flight.clone().try_acquire_owned() else {
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
        let Ok(_slot) = comp.concurrency.clone().try_acquire_owned() else {
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
        let resp = self.run_guest(&app, idx, req, &over_limit, &matched).await;
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
    ) -> Response<ResponseBody> {
        let comp = &app.components[idx];
        let label = AppLabel {
            app: app.name.to_string(),
        };
        let result = match &comp.exec {
            Exec::Proxy(pre) => {
                crate::wasi_http::run(&self.host, app, idx, pre, req, over_limit, label).await
            }
            Exec::Wagi(pre) => {
                crate::wagi::serve(&self.host, app, idx, pre, req, over_limit, matched, label).await
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
            Failure::Guest(GuestFailure::Host { .. } | GuestFailure::MissingImport { .. }) => {
                "internal"
            }
            Failure::Guest(GuestFailure::MemoryCap { .. }) => "memory",
            Failure::Guest(GuestFailure::Exit(_)) => "guest-error",
            Failure::Guest(g) => g.kind(),
            Failure::BodyTooLarge => "body-too-large",
            Failure::GuestError(_) => "guest-error",
            Failure::NoResponse => "no-response",
        }
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
