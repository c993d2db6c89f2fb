//! The per-request host state of a `wasi:http/proxy` component and the linker that
//! gives it `wasi:cli` (environment, stdio, exit — so that ordinary Rust, Python and JS
//! components need no flags), the rest of WASI 0.2, and `wasi:http`.
//!
//! Outbound HTTP is denied here: a component gets only the capabilities its manifest
//! grants, and outbound hosts are not grantable yet, so `send_request` answers
//! `HTTP-request-denied`.

use std::sync::Arc;

use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};
use wharf_engine::TotalMemoryLimiter;
use wharf_engine::wasmtime::component::{Linker, ResourceTable};
use wharf_engine::wasmtime::{Engine, Result};
use wharf_engine::wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::logs::{AppLogs, LogStream};

/// What one request's store holds.
pub struct HostState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: DenyOutbound,
    /// The total-memory limiter (also the peak-memory statistic).
    pub limiter: TotalMemoryLimiter,
}

impl HostState {
    /// State for one request to `component` of `app`: its environment, its stdout and
    /// stderr captured into the app's log, and the memory cap.
    pub fn new(
        env: &[(String, String)],
        logs: &Arc<AppLogs>,
        app: &Arc<str>,
        component: &Arc<str>,
        max_memory: Option<u64>,
    ) -> HostState {
        let mut b = WasiCtxBuilder::new();
        b.envs(env)
            .stdout(LogStream::new(
                logs.clone(),
                app.clone(),
                component.clone(),
                "stdout",
            ))
            .stderr(LogStream::new(
                logs.clone(),
                app.clone(),
                component.clone(),
                "stderr",
            ));
        HostState {
            wasi: b.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: DenyOutbound,
            limiter: TotalMemoryLimiter::new(max_memory),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Hooks that refuse every outbound request.
pub struct DenyOutbound;

type SendResult = std::result::Result<
    (
        http::Response<wasmtime_wasi_http::WasiBody>,
        Box<
            dyn std::future::Future<Output = std::result::Result<(), wasmtime_wasi_http::Error>>
                + Send,
        >,
    ),
    wasmtime_wasi_http::Error,
>;

impl WasiHttpHooks for DenyOutbound {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<
            dyn std::future::Future<Output = std::result::Result<(), wasmtime_wasi_http::Error>>
                + Send,
        >,
    ) -> Box<dyn std::future::Future<Output = SendResult> + Send> {
        tracing::info!(uri = %request.uri(), "outbound HTTP denied: no outbound hosts are granted");
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

/// The linker every HTTP component is instantiated with: WASI 0.2 (cli, io, clocks,
/// random, filesystem without preopens, sockets without grants) and `wasi:http`.
pub fn linker(engine: &Engine) -> Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wharf_engine::wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    Ok(linker)
}
