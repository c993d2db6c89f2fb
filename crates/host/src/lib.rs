//! The one instance builder: every executor (wasi:http, WAGI, plugins, and the stream
//! transforms to come) builds its stores here, so a capability added once reaches all
//! of them.
//!
//! It has three parts, as Spin's runtime factors and the `Host` struct of
//! `wasmtime serve` do:
//! - [`Services`]: the process-wide backends (the key-value backend today), built once
//!   by the server;
//! - [`Grants`]: what one component may use (environment, read-only mounts, key-value
//!   stores, outbound hosts, variables), built once per app version from its manifest;
//! - [`HostState`] (components) and [`ModuleState`] (core modules, WASI preview 1): the
//!   per-store state, with one linker each ([`component_linker`], [`module_linker`]).
//!
//! Adding a capability is one `host-*` crate (grant, per-store context,
//! `add_to_linker`) plus one field in each of the three parts and one line in
//! [`component_linker`].
//!
//! Why a crate of its own rather than a module of `wharf-runtime` (as the architecture
//! brief sketches): the embeddable plugin API (`wharf-plugin`) builds its stores here
//! too, and the runtime depends on the plugin crate, so the builder sits below both.
#![deny(missing_docs)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};
use wharf_engine::cpu::CpuShare;
use wharf_engine::wasmtime::component::{Linker, ResourceTable};
use wharf_engine::wasmtime::{self, Store};
use wharf_engine::wasmtime_wasi::p1::WasiP1Ctx;
use wharf_engine::wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wharf_engine::wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wharf_engine::{TotalMemoryLimiter, WharfEngine};
use wharf_host_config::ConfigGrant;
use wharf_host_keyvalue::{KvBackend, KvCtx, KvLimits, KvView};
use wharf_host_logging::{AppLogs, LoggingCtx};
use wharf_host_outbound::{AllowedHosts, OutboundHooks, OutboundPolicy};

/// The largest in-memory size of one `wasi:http` `fields` resource a guest builds
/// (headers, trailers), in bytes; wasmtime-wasi-http's own default is 128 KiB. Past it
/// the guest gets `header-error`/`header-size` errors, not a trap.
pub const HTTP_FIELD_SIZE_LIMIT: usize = 64 * 1024;

/// The most live host resources (`wasi:http` fields, bodies and streams, pollables, open
/// files, key-value buckets, ...) one store may hold; wasmtime's default is 1,000,000.
/// Past it the call that would add one traps. With [`HTTP_FIELD_SIZE_LIMIT`] this bounds
/// the host memory a guest can pin in `fields` to 256 MiB per store.
pub const MAX_HOST_RESOURCES: usize = 4096;

/// The most live component-model handles (guest-defined resources included) in one
/// store; wasmtime's default is 100,000. Past it the allocation traps.
pub const MAX_COMPONENT_HANDLES: usize = 10_000;

/// The process-wide backends capabilities store through.
#[derive(Clone, Default)]
pub struct Services {
    /// Where `wasi:keyvalue` data lives; `None` in hosts that grant no stores (a
    /// component granted a store then fails to build, naming the store).
    pub kv: Option<Arc<dyn KvBackend>>,
}

/// A grant that a host or executor cannot honour.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// The manifest's value is malformed.
    #[error("component `{component}`: {field}: {reason}")]
    Invalid {
        /// The component.
        component: String,
        /// The manifest field.
        field: &'static str,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The executor has no way to give the guest this capability.
    #[error(
        "component `{component}` is granted `{field}`, which {executor} cannot honour ({why}); remove `{field}` from it"
    )]
    Unsupported {
        /// The component.
        component: String,
        /// The manifest field.
        field: &'static str,
        /// The executor, e.g. "the WAGI executor".
        executor: &'static str,
        /// Why.
        why: &'static str,
    },
    /// Setting up a store failed (a mount directory vanished, say).
    #[error("setting up the sandbox of component `{component}` failed: {reason}")]
    Setup {
        /// The component.
        component: String,
        /// The cause.
        reason: String,
    },
}

/// What one component may use, resolved once per app version and shared by every store
/// built for it.
#[derive(Clone, Debug)]
pub struct Grants {
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// Read-only mounts: host directory → guest path.
    pub mounts: Vec<(PathBuf, String)>,
    /// Key-value stores it may open.
    pub kv_stores: Vec<String>,
    /// Where it may send HTTP requests, and the caps on them.
    pub outbound: Arc<OutboundPolicy>,
    /// The app's variables, for `wasi:config`.
    pub config: ConfigGrant,
}

impl Default for Grants {
    fn default() -> Self {
        Grants::none()
    }
}

impl Grants {
    /// Nothing granted: plain WASI with no environment, files, stores or hosts.
    pub fn none() -> Grants {
        Grants {
            env: Vec::new(),
            mounts: Vec::new(),
            kv_stores: Vec::new(),
            outbound: Arc::new(OutboundPolicy::new(AllowedHosts::default())),
            config: ConfigGrant::default(),
        }
    }

    /// The grants of a manifest component, with its app's resolved `variables` and its
    /// mounts already extracted to host directories.
    pub fn from_component(
        spec: &wharf_manifest::ComponentSpec,
        variables: &[(String, String)],
        mounts: Vec<(PathBuf, String)>,
    ) -> Result<Grants, GrantError> {
        let allowed = AllowedHosts::parse(&spec.allowed_outbound_hosts).map_err(|reason| {
            GrantError::Invalid {
                component: spec.id.clone(),
                field: "allowed_outbound_hosts",
                reason,
            }
        })?;
        Ok(Grants {
            env: spec
                .environment
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            mounts,
            kv_stores: spec.key_value_stores.clone(),
            outbound: Arc::new(OutboundPolicy::new(allowed)),
            config: ConfigGrant::new(variables),
        })
    }

    /// These grants on a server whose policy does (or does not) allow outbound requests
    /// to private, loopback and link-local addresses; only IP literals listed exactly in
    /// `allowed_outbound_hosts` can then reach one (see
    /// [`OutboundPolicy::allow_private`]). Grants are built with `false`.
    pub fn with_private_outbound(mut self, allow: bool) -> Grants {
        Arc::make_mut(&mut self.outbound).allow_private = allow;
        self
    }

    /// Checks that a core module (WASI preview 1, which has no component interfaces)
    /// can use every grant; `executor` names the executor in the error.
    pub fn check_core_module(
        &self,
        component: &str,
        executor: &'static str,
    ) -> Result<(), GrantError> {
        let unsupported = |field| GrantError::Unsupported {
            component: component.to_string(),
            field,
            executor,
            why: "core modules speak WASI preview 1, which has no wasi:keyvalue or wasi:http; build a component instead",
        };
        if !self.kv_stores.is_empty() {
            return Err(unsupported("key_value_stores"));
        }
        if !self.outbound.allowed.is_empty() {
            return Err(unsupported("allowed_outbound_hosts"));
        }
        Ok(())
    }
}

/// Who a store belongs to, and where its output goes.
#[derive(Clone)]
pub struct Identity {
    /// The app.
    pub app: Arc<str>,
    /// The component.
    pub component: Arc<str>,
    /// The app's log, which receives stdout, stderr and `wasi:logging`.
    pub logs: Arc<AppLogs>,
    /// The app's share of the server's CPU lanes (`None`: not gated).
    pub cpu: Option<CpuShare>,
}

impl Identity {
    /// An identity with a log of its own (for embedders that read it, or not at all).
    pub fn detached(app: &str, component: &str) -> Identity {
        Identity {
            app: app.into(),
            component: component.into(),
            logs: Arc::new(AppLogs::default()),
            cpu: None,
        }
    }
}

/// Where a store's stdout goes.
#[derive(Clone, Default)]
pub enum Output {
    /// Lines into the app's log (the default for every executor).
    #[default]
    Log,
    /// The host process's own stdout/stderr (`wharf call`).
    Inherit,
    /// A bounded in-memory pipe the executor reads (WAGI's response).
    Pipe(MemoryOutputPipe),
}

/// Per-store settings beyond the grants.
#[derive(Clone, Default)]
pub struct StoreSpec {
    /// Cap on the total of the store's linear memories.
    pub max_memory: Option<u64>,
    /// Program arguments (`argv`).
    pub args: Vec<String>,
    /// More environment variables (WAGI's CGI variables), after the grant's.
    pub extra_env: Vec<(String, String)>,
    /// Bytes on stdin (WAGI's request body); empty stdin otherwise.
    pub stdin: Option<Bytes>,
    /// Where stdout goes; stderr goes to the log unless this is [`Output::Inherit`].
    pub stdout: Output,
}

pub use wharf_engine::limits::Limited;

/// Per-store state of a component.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    hooks: OutboundHooks,
    kv: KvCtx,
    config: ConfigGrant,
    logging: LoggingCtx,
    /// The total-memory limiter.
    pub limiter: TotalMemoryLimiter,
    /// When the current call must stop (`None`: no deadline).
    pub deadline: Option<Instant>,
    cpu: Option<CpuShare>,
}

/// Per-store state of a core module (WASI preview 1).
pub struct ModuleState {
    wasi: WasiP1Ctx,
    /// The total-memory limiter.
    pub limiter: TotalMemoryLimiter,
    /// When the current call must stop (`None`: no deadline).
    pub deadline: Option<Instant>,
    cpu: Option<CpuShare>,
}

impl Limited for HostState {
    fn limiter(&mut self) -> &mut TotalMemoryLimiter {
        &mut self.limiter
    }
    fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
    fn memory_cap(&self) -> Option<u64> {
        self.limiter.cap()
    }
    fn cpu_share(&self) -> Option<CpuShare> {
        self.cpu.clone()
    }
}

impl Limited for ModuleState {
    fn limiter(&mut self) -> &mut TotalMemoryLimiter {
        &mut self.limiter
    }
    fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
    fn memory_cap(&self) -> Option<u64> {
        self.limiter.cap()
    }
    fn cpu_share(&self) -> Option<CpuShare> {
        self.cpu.clone()
    }
}

fn wasi_builder(
    grants: &Grants,
    id: &Identity,
    spec: &StoreSpec,
) -> Result<WasiCtxBuilder, GrantError> {
    let mut b = WasiCtxBuilder::new();
    if !spec.args.is_empty() {
        b.args(&spec.args);
    }
    b.envs(&grants.env).envs(&spec.extra_env);
    if let Some(stdin) = &spec.stdin {
        b.stdin(MemoryInputPipe::new(stdin.clone()));
    }
    let log = LoggingCtx::new(id.logs.clone(), id.app.clone(), id.component.clone());
    match &spec.stdout {
        Output::Log => {
            b.stdout(log.stream("stdout")).stderr(log.stream("stderr"));
        }
        Output::Inherit => {
            b.inherit_stdout().inherit_stderr();
        }
        Output::Pipe(pipe) => {
            b.stdout(pipe.clone()).stderr(log.stream("stderr"));
        }
    }
    for (host, guest) in &grants.mounts {
        b.preopened_dir(host, guest, FsPerms::ReadOnly)
            .map_err(|e| GrantError::Setup {
                component: id.component.to_string(),
                reason: format!("mounting {guest}: {e}"),
            })?;
    }
    Ok(b)
}

impl Services {
    /// The state of one store of a component.
    pub fn component_state(
        &self,
        grants: &Grants,
        id: &Identity,
        spec: &StoreSpec,
    ) -> Result<HostState, GrantError> {
        let mut b = wasi_builder(grants, id, spec)?;
        let kv = if grants.kv_stores.is_empty() {
            KvCtx::none(&id.app)
        } else {
            let backend = self.kv.clone().ok_or_else(|| GrantError::Unsupported {
                component: id.component.to_string(),
                field: "key_value_stores",
                executor: "this host",
                why: "it has no key-value backend configured",
            })?;
            KvCtx::new(backend, &id.app, &grants.kv_stores, KvLimits::default())
        };
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_HOST_RESOURCES);
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(HTTP_FIELD_SIZE_LIMIT);
        Ok(HostState {
            wasi: b.build(),
            table,
            http,
            hooks: OutboundHooks::new(
                grants.outbound.clone(),
                id.app.clone(),
                id.component.clone(),
            ),
            kv,
            config: grants.config.clone(),
            logging: LoggingCtx::new(id.logs.clone(), id.app.clone(), id.component.clone()),
            limiter: TotalMemoryLimiter::new(spec.max_memory),
            deadline: None,
            cpu: id.cpu.clone(),
        })
    }

    /// The state of one store of a core module. Grants a core module cannot use must
    /// have been refused at deploy ([`Grants::check_core_module`]).
    pub fn module_state(
        &self,
        grants: &Grants,
        id: &Identity,
        spec: &StoreSpec,
    ) -> Result<ModuleState, GrantError> {
        let mut b = wasi_builder(grants, id, spec)?;
        Ok(ModuleState {
            wasi: b.build_p1(),
            limiter: TotalMemoryLimiter::new(spec.max_memory),
            deadline: None,
            cpu: id.cpu.clone(),
        })
    }
}

/// A store for `data` with its limits wired (see [`wharf_engine::limits::new_store`])
/// and at most [`MAX_COMPONENT_HANDLES`] live component handles; fuel, when the engine
/// meters it, is unlimited.
pub fn new_store<T: Limited>(engine: &WharfEngine, data: T) -> wasmtime::Result<Store<T>> {
    let mut store = wharf_engine::limits::new_store(engine, data, None)?;
    store.set_max_component_handles(MAX_COMPONENT_HANDLES);
    Ok(store)
}

impl wharf_host_config::ConfigView for HostState {
    fn config_grant(&self) -> &ConfigGrant {
        &self.config
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

impl HostState {
    /// The `wasi:http` view (requests and response outparams are made through it).
    pub fn http_view(&mut self) -> WasiHttpCtxView<'_> {
        self.http()
    }

    /// How many outbound requests this store made.
    pub fn outbound_requests(&self) -> u32 {
        self.hooks.requests_made()
    }
}

/// The one linker for components: WASI 0.2 (`wasi:cli` included, so ordinary Rust,
/// Python and JS components need no flags), `wasi:http` (types and the outgoing
/// handler, policed by the grant), `wasi:config`, `wasi:keyvalue` and `wasi:logging`.
pub fn component_linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wharf_engine::wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    // WASI 0.3 next to 0.2: the same WASI context (environment, files, stdout and
    // stderr) and the same outbound hooks (allowlist, address vetting) serve both.
    wharf_engine::wasmtime_wasi::p3::add_to_linker(&mut linker)?;
    wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
    wharf_host_config::add_to_linker(&mut linker)?;
    wharf_host_keyvalue::add_to_linker(&mut linker, |h: &mut HostState| KvView {
        ctx: &mut h.kv,
        table: &mut h.table,
    })?;
    wharf_host_logging::add_to_linker(&mut linker, |h: &mut HostState| &mut h.logging)?;
    Ok(linker)
}

/// The one linker for core modules: WASI preview 1.
pub fn module_linker(engine: &wasmtime::Engine) -> wasmtime::Result<wasmtime::Linker<ModuleState>> {
    let mut linker = wasmtime::Linker::new(engine);
    wharf_engine::wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut ModuleState| {
        &mut s.wasi
    })?;
    Ok(linker)
}

/// What WASI and capabilities the component linker provides, for error messages.
pub const COMPONENT_IMPORTS: &str = "WASI 0.2 and 0.3 (wasi:cli, wasi:clocks, wasi:random, wasi:filesystem, wasi:sockets, wasi:http; wasi:io in 0.2), wasi:config, wasi:keyvalue (0.2.0-draft) and wasi:logging";

/// What the module linker provides, for error messages.
pub const MODULE_IMPORTS: &str = "wasi_snapshot_preview1";
