//! The `wasi:http/proxy` executor: one fresh store per request, built by the runtime's
//! instance builder (grants, limits, deadline), then the guest's
//! `incoming-handler.handle`; the response streams back while the instance lives.

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
use wharf_runtime::{LoadedApp, Runtime};

use crate::server::{CappedBody, Failure, ResponseBody};

/// Runs one request through component `idx` of `app`.
pub(crate) async fn run(
    runtime: &Arc<Runtime>,
    app: &Arc<LoadedApp>,
    idx: usize,
    pre: &ProxyPre<HostState>,
    req: Request<CappedBody>,
    over_limit: &Arc<AtomicBool>,
    label: AppLabel,
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
    let task = tokio::spawn(async move {
        let active = metrics.active.get_or_create(&label).clone();
        active.inc();
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
        active.dec();
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
        // response body has been streamed.
        drop(store);
        outcome
    });

    let waited = tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), rx).await;
    Err(match waited {
        Ok(Ok(Ok(resp))) => return Ok(resp.map(|b| b.boxed_unsync())),
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
