//! The per-request host state of a component and the linker that gives it exactly what
//! Wharf provides: `wasi:cli` (environment, stdio, exit — so that ordinary Rust, Python
//! and JS components need no flags), the rest of WASI 0.2, `wasi:http`, `wasi:config`
//! (the app's variables) and `wasi:logging` (into the app's log). Capabilities a
//! manifest grants (read-only file mounts, `wasi:keyvalue` stores, outbound hosts for
//! `wasi:http/outgoing-handler`) are carried by [`Grants`]; what is not granted does not
//! exist for the guest: opening another store is `access-denied`, a request to another
//! host is `HTTP-request-denied`.

use std::path::PathBuf;
use std::sync::Arc;

use wasmtime_wasi_config::{WasiConfig, WasiConfigVariables};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};
use wharf_engine::TotalMemoryLimiter;
use wharf_engine::wasmtime::component::{HasData, Linker, ResourceTable};
use wharf_engine::wasmtime::{Engine, Result};
use wharf_engine::wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use wharf_host_keyvalue::{KvBackend, KvCtx, KvLimits, KvView};
use wharf_host_outbound::{OutboundHooks, OutboundPolicy};

use crate::logs::{AppLogs, LogLine, LogStream};

mod logging_bindings {
    wharf_engine::wasmtime::component::bindgen!({
        path: "../../wit/deps/logging",
        world: "wasi:logging/imports",
        // The engine crate re-exports the one wasmtime every Wharf crate uses.
        wasmtime_crate: wharf_engine::wasmtime,
    });
}
use logging_bindings::wasi::logging::logging as wasi_logging;

/// What one component is granted, resolved at deploy and shared by its requests.
pub struct Grants {
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// The app's variables, for `wasi:config`.
    pub config: Arc<WasiConfigVariables>,
    /// Read-only mounts: host directory (extracted from the bundle) → guest path.
    pub mounts: Vec<(PathBuf, String)>,
    /// Key-value stores it may open.
    pub kv_stores: Vec<String>,
    /// Where it may send HTTP requests, and the caps on them.
    pub outbound: Arc<OutboundPolicy>,
}

/// What one request's store holds.
pub struct HostState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: OutboundHooks,
    kv: KvCtx,
    config: Arc<WasiConfigVariables>,
    logs: Arc<AppLogs>,
    component: Arc<str>,
    /// The total-memory limiter (also the peak-memory statistic).
    pub limiter: TotalMemoryLimiter,
}

impl HostState {
    /// State for one request to `component` of `app`: its grants, its stdout and stderr
    /// captured into the app's log, and the memory cap.
    pub fn new(
        grants: &Grants,
        kv: &Arc<dyn KvBackend>,
        logs: &Arc<AppLogs>,
        app: &Arc<str>,
        component: &Arc<str>,
        max_memory: Option<u64>,
    ) -> Result<HostState> {
        let mut b = WasiCtxBuilder::new();
        b.envs(&grants.env)
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
        for (host, guest) in &grants.mounts {
            b.preopened_dir(host, guest, FsPerms::ReadOnly)?;
        }
        Ok(HostState {
            wasi: b.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: OutboundHooks::new(grants.outbound.clone(), app.clone(), component.clone()),
            kv: KvCtx::new(kv.clone(), app, &grants.kv_stores, KvLimits::default()),
            config: grants.config.clone(),
            logs: logs.clone(),
            component: component.clone(),
            limiter: TotalMemoryLimiter::new(max_memory),
        })
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

/// `wasi:logging` into the app's log.
pub struct Logging<'a> {
    logs: &'a AppLogs,
    component: &'a str,
}

impl wasi_logging::Host for Logging<'_> {
    fn log(&mut self, level: wasi_logging::Level, context: String, message: String) {
        use wasi_logging::Level;
        let stream = match level {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Critical => "critical",
        };
        let mut line = if context.is_empty() {
            message
        } else {
            format!("[{context}] {message}")
        };
        line.truncate(crate::logs::MAX_LINE);
        tracing::debug!(component = self.component, level = stream, "{line}");
        self.logs.push(LogLine {
            ts_ms: crate::logs::now_ms(),
            stream,
            component: self.component.to_string(),
            line,
        });
    }
}

struct HasLogging;
impl HasData for HasLogging {
    type Data<'a> = Logging<'a>;
}

/// The linker every HTTP component is instantiated with.
pub fn linker(engine: &Engine) -> Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wharf_engine::wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    wasmtime_wasi_config::add_to_linker(&mut linker, |h: &mut HostState| {
        WasiConfig::from(&*h.config)
    })?;
    wharf_host_keyvalue::add_to_linker(&mut linker, |h: &mut HostState| KvView {
        ctx: &mut h.kv,
        table: &mut h.table,
    })?;
    wasi_logging::add_to_linker::<HostState, HasLogging>(&mut linker, |h: &mut HostState| {
        Logging {
            logs: &h.logs,
            component: &h.component,
        }
    })?;
    Ok(linker)
}
