//! The `wasi:http/proxy` executor: one fresh store per request, built by the runtime's
//! instance builder (grants, limits, deadline), then the guest's
//! `incoming-handler.handle`; the response streams back while the instance lives.
//!
//! The request's permits (in flight, component concurrency) and the active-instances
//! gauge belong to the task that owns the store, so they are released when the
//! instance is gone, not when the response head is sent; the task's deadline covers
//! instantiation, the handler and the streaming of the response body.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use http::{Request, Response};
use http_body_util::BodyExt;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p3::Request as P3Request;
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wharf_engine::failure::{FailureContext, GuestFailure, classify};
use wharf_engine::wasmtime::{self, Store};
use wharf_host::{HostState, StoreSpec};
use wharf_runtime::metrics::AppLabel;
use wharf_runtime::{HttpPre, LoadedApp, Metrics, Runtime};

use crate::server::{CappedBody, Failure, InstancePermits, ResponseBody};

/// One live instance in `wharf_active_instances`: counted up when made, down when
/// dropped, so an aborted or panicking task cannot leak the gauge.
pub(crate) struct ActiveInstance(
    prometheus_client::metrics::gauge::Gauge<i64, std::sync::atomic::AtomicI64>,
);

impl ActiveInstance {
    pub(crate) fn new(metrics: &Metrics, label: &AppLabel) -> ActiveInstance {
        let gauge = metrics.active.get_or_create(label).clone();
        gauge.inc();
        ActiveInstance(gauge)
    }
}

impl Drop for ActiveInstance {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Runs one request through component `idx` of `app`, a WASI 0.2 or 0.3 `wasi:http`
/// component; `permits` are released with the instance.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
    runtime: &Arc<Runtime>,
    app: &Arc<LoadedApp>,
    idx: usize,
    pre: &HttpPre,
    req: Request<CappedBody>,
    over_limit: &Arc<AtomicBool>,
    label: AppLabel,
    permits: InstancePermits,
) -> Result<Response<ResponseBody>, Failure> {
    let comp = &app.components[idx];
    let deadline = Instant::now() + comp.timeout;
    let store = new_store(runtime, comp, deadline)?;
    let job = Job {
        metrics: runtime.metrics.clone(),
        timeout: comp.timeout,
        max_memory: comp.memory,
        head_sent: Arc::new(AtomicBool::new(false)),
        _active: ActiveInstance::new(&runtime.metrics, &label),
        label,
        app: app.name.to_string(),
        component: comp.id.to_string(),
        _permits: permits,
    };
    match pre {
        HttpPre::P2(pre) => run_p2(pre, store, req, job, deadline, over_limit).await,
        HttpPre::P3(pre) => run_p3(pre, store, req, job, deadline, over_limit).await,
    }
}

/// A fresh store for one request of `comp`: its grants, memory cap and deadline.
fn new_store(
    runtime: &Arc<Runtime>,
    comp: &wharf_runtime::LoadedComponent,
    deadline: Instant,
) -> Result<Store<HostState>, Failure> {
    let spec = StoreSpec {
        max_memory: Some(comp.memory),
        ..StoreSpec::default()
    };
    let setup = |detail: String| Failure::Guest(GuestFailure::Host { detail });
    let mut state = runtime
        .services()
        .component_state(&comp.grants, &comp.identity, &spec)
        .map_err(|e| setup(e.to_string()))?;
    state.deadline = Some(deadline);
    wharf_host::new_store(runtime.engine(), state).map_err(|e| setup(format!("{e:#}")))
}

/// Reports how the guest consumed a WASI 0.3 request's body (to the response).
type RequestIo =
    std::pin::Pin<Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send + 'static>>;

/// What the task that owns a request's instance carries, whichever WASI version.
struct Job {
    metrics: Arc<Metrics>,
    timeout: std::time::Duration,
    max_memory: u64,
    /// Set once the response head went to the client: a later failure can only cut
    /// the body short.
    head_sent: Arc<AtomicBool>,
    label: AppLabel,
    app: String,
    component: String,
    /// Held for their `Drop`: the gauge and then the permits go when the job (the task
    /// that owns the store) ends, after the store.
    _active: ActiveInstance,
    _permits: InstancePermits,
}

impl Job {
    /// Classifies how the instance's run ended (`result` is `Err` when the deadline
    /// passed), drops the store (instance, memory), and counts a failure that came
    /// after the head was sent, since no error status can report it any more.
    fn finish(
        &self,
        result: Result<wasmtime::Result<()>, tokio::time::error::Elapsed>,
        store: Store<HostState>,
        instantiating: bool,
    ) -> Result<(), GuestFailure> {
        let cx = FailureContext {
            timeout: Some(self.timeout),
            max_memory: Some(self.max_memory),
            fuel: None,
            hit_cap: store.data().limiter.hit_cap(),
            instantiating,
        };
        let outcome = match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(classify(&e, &cx)),
            Err(_) => Err(GuestFailure::Timeout {
                limit: Some(self.timeout),
            }),
        };
        // The store (and with it the instance and its memory) is dropped here, after the
        // response body has been streamed; then the gauge and the permits.
        drop(store);
        if let Err(f) = &outcome
            && self.head_sent.load(Ordering::SeqCst)
        {
            // Too late for an error status: the body is cut short instead.
            tracing::warn!(app = %self.app, component = %self.component, "failed while streaming its response: {f}");
            self.metrics
                .failures
                .get_or_create(&wharf_runtime::metrics::AppKind {
                    app: self.app.clone(),
                    kind: crate::server::guest_failure_kind(f).to_string(),
                })
                .inc();
        }
        outcome
    }

    fn instantiated(&self, since: Instant) {
        self.metrics
            .instantiate
            .get_or_create(&self.label)
            .observe(since.elapsed().as_secs_f64());
    }
}

/// WASI 0.2: `wasi:http/incoming-handler.handle(request, response-outparam)`.
async fn run_p2(
    pre: &ProxyPre<HostState>,
    mut store: Store<HostState>,
    req: Request<CappedBody>,
    job: Job,
    deadline: Instant,
    over_limit: &Arc<AtomicBool>,
) -> Result<Response<ResponseBody>, Failure> {
    let setup = |detail: String| Failure::Guest(GuestFailure::Host { detail });
    let (tx, rx) = tokio::sync::oneshot::channel();
    let wreq = store
        .data_mut()
        .http_view()
        .new_incoming_request(Scheme::Http, req)
        .map_err(|e| setup(format!("passing the request to the guest: {e:#}")))?;
    let out = store
        .data_mut()
        .http_view()
        .new_response_outparam(tx)
        .map_err(|e| setup(format!("creating the response outparam: {e:#}")))?;
    let pre = pre.clone();
    let (timeout, head_sent) = (job.timeout, job.head_sent.clone());
    let task = tokio::spawn(async move {
        let mut instantiating = true;
        let result = tokio::time::timeout(job.timeout, async {
            let t = Instant::now();
            let proxy = pre.instantiate_async(&mut store).await?;
            instantiating = false;
            job.instantiated(t);
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, wreq, out)
                .await
        })
        .await;
        job.finish(result, store, instantiating)
    });
    let head = async {
        rx.await
            .map(|r| r.map(|resp| resp.map(|b| b.boxed_unsync())))
    };
    await_head(head, task, deadline, timeout, head_sent, over_limit).await
}

/// WASI 0.3: `wasi:http/handler.handle(request) -> result<response, error-code>`, an
/// async export, run in the store's event loop; the loop keeps running (so a guest
/// can stream its body while it still computes) until the response body is sent or
/// the client goes away.
async fn run_p3(
    pre: &ServicePre<HostState>,
    mut store: Store<HostState>,
    req: Request<CappedBody>,
    job: Job,
    deadline: Instant,
    over_limit: &Arc<AtomicBool>,
) -> Result<Response<ResponseBody>, Failure> {
    let (tx, rx) = tokio::sync::oneshot::channel::<Result<Response<ResponseBody>, String>>();
    let pre = pre.clone();
    let (timeout, head_sent) = (job.timeout, job.head_sent.clone());
    let task = tokio::spawn(async move {
        let mut instantiating = true;
        let result = tokio::time::timeout(job.timeout, async {
            let t = Instant::now();
            let service = pre.instantiate_async(&mut store).await?;
            instantiating = false;
            job.instantiated(t);
            store
                .run_concurrent(async move |accessor| -> wasmtime::Result<()> {
                    let (request, request_io) = accessor.with(|mut access| {
                        let (request, io) = P3Request::from_http(access.get().http().hooks, req);
                        let io: RequestIo = Box::pin(io);
                        (request, io)
                    });
                    match service.handle(accessor, request).await? {
                        Ok(response) => {
                            let response = accessor
                                .with(|mut access| response.into_http(&mut access, request_io))?;
                            // The body holds the sender: when hyper has sent the body
                            // (or dropped it, the client gone), the loop may end.
                            let (sent_tx, sent_rx) = tokio::sync::oneshot::channel::<()>();
                            let response = response.map(|body| {
                                body.map_frame(move |frame| {
                                    let _held = &sent_tx;
                                    frame
                                })
                                .boxed_unsync()
                            });
                            if tx.send(Ok(response)).is_ok() {
                                let _ = sent_rx.await;
                            }
                        }
                        Err(code) => {
                            let _ = tx.send(Err(format!("{code:?}")));
                        }
                    }
                    Ok(())
                })
                .await?
        })
        .await;
        job.finish(result, store, instantiating)
    });
    await_head(rx, task, deadline, timeout, head_sent, over_limit).await
}

/// Waits (until `deadline`) for the guest's response head, or for its task to say why
/// there is none.
async fn await_head<E: std::fmt::Debug>(
    head: impl Future<
        Output = Result<Result<Response<ResponseBody>, E>, tokio::sync::oneshot::error::RecvError>,
    >,
    task: tokio::task::JoinHandle<Result<(), GuestFailure>>,
    deadline: Instant,
    timeout: std::time::Duration,
    head_sent: Arc<AtomicBool>,
    over_limit: &Arc<AtomicBool>,
) -> Result<Response<ResponseBody>, Failure> {
    let waited = tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), head).await;
    Err(match waited {
        Ok(Ok(Ok(resp))) => {
            head_sent.store(true, Ordering::SeqCst);
            return Ok(resp);
        }
        Ok(Ok(Err(code))) => {
            if over_limit.load(Ordering::Relaxed) {
                Failure::BodyTooLarge
            } else {
                Failure::GuestError(format!("{code:?}"))
            }
        }
        // The guest finished or failed without setting a response: its result says why.
        Ok(Err(_)) => match task.await {
            Ok(Ok(())) => Failure::NoResponse,
            Ok(Err(f)) => Failure::Guest(f),
            Err(e) => Failure::Guest(GuestFailure::Host {
                detail: format!("the request task failed: {e}"),
            }),
        },
        Err(_) => {
            task.abort();
            Failure::Guest(GuestFailure::Timeout {
                limit: Some(timeout),
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_active_gauge_is_restored_when_a_task_is_aborted_or_panics() {
        let metrics = Arc::new(Metrics::new());
        let label = AppLabel {
            app: "a".to_string(),
        };
        let gauge = metrics.active.get_or_create(&label).clone();
        let (m, l) = (metrics.clone(), label.clone());
        let task = tokio::spawn(async move {
            let _active = ActiveInstance::new(&m, &l);
            std::future::pending::<()>().await
        });
        while gauge.get() == 0 {
            tokio::task::yield_now().await;
        }
        task.abort();
        assert!(task.await.is_err_and(|e| e.is_cancelled()));
        assert_eq!(gauge.get(), 0, "aborted");
        let (m, l) = (metrics.clone(), label.clone());
        let task = tokio::spawn(async move {
            let _active = ActiveInstance::new(&m, &l);
            panic!("a host function panicked");
        });
        assert!(task.await.is_err_and(|e| e.is_panic()));
        assert_eq!(gauge.get(), 0, "panicked");
    }
}
