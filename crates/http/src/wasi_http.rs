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
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wharf_engine::failure::{FailureContext, GuestFailure, classify};
use wharf_host::{HostState, StoreSpec};
use wharf_runtime::metrics::AppLabel;
use wharf_runtime::{LoadedApp, Metrics, Runtime};

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

/// Runs one request through component `idx` of `app`; `permits` are released with the
/// instance.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
    runtime: &Arc<Runtime>,
    app: &Arc<LoadedApp>,
    idx: usize,
    pre: &ProxyPre<HostState>,
    req: Request<CappedBody>,
    over_limit: &Arc<AtomicBool>,
    label: AppLabel,
    permits: InstancePermits,
) -> Result<Response<ResponseBody>, Failure> {
    let comp = &app.components[idx];
    let deadline = Instant::now() + comp.timeout;
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
    let mut store =
        wharf_host::new_store(runtime.engine(), state).map_err(|e| setup(format!("{e:#}")))?;
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
    let metrics = runtime.metrics.clone();
    let pre = pre.clone();
    let timeout = comp.timeout;
    let max_memory = comp.memory;
    let head_sent = Arc::new(AtomicBool::new(false));
    let task_head_sent = head_sent.clone();
    let active = ActiveInstance::new(&runtime.metrics, &label);
    let (app_name, comp_id) = (app.name.to_string(), comp.id.to_string());
    let task = tokio::spawn(async move {
        let _permits = permits;
        let _active = active;
        let mut instantiating = true;
        let result = tokio::time::timeout(timeout, async {
            let t = Instant::now();
            let proxy = pre.instantiate_async(&mut store).await?;
            instantiating = false;
            metrics
                .instantiate
                .get_or_create(&label)
                .observe(t.elapsed().as_secs_f64());
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, wreq, out)
                .await
        })
        .await;
        let cx = FailureContext {
            timeout: Some(timeout),
            max_memory: Some(max_memory),
            fuel: None,
            hit_cap: store.data().limiter.hit_cap(),
            instantiating,
        };
        let outcome = match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(classify(&e, &cx)),
            Err(_) => Err(GuestFailure::Timeout {
                limit: Some(timeout),
            }),
        };
        // The store (and with it the instance and its memory) is dropped here, after the
        // response body has been streamed; then the gauge and the permits.
        drop(store);
        if let Err(f) = &outcome
            && task_head_sent.load(Ordering::SeqCst)
        {
            // Too late for an error status: the body is cut short instead.
            tracing::warn!(app = %app_name, component = %comp_id, "failed while streaming its response: {f}");
            metrics
                .failures
                .get_or_create(&wharf_runtime::metrics::AppKind {
                    app: app_name.clone(),
                    kind: crate::server::guest_failure_kind(f).to_string(),
                })
                .inc();
        }
        outcome
    });

    let waited = tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), rx).await;
    Err(match waited {
        Ok(Ok(Ok(resp))) => {
            head_sent.store(true, Ordering::SeqCst);
            return Ok(resp.map(|b| b.boxed_unsync()));
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
