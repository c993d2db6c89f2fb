//! Wharf's embeddable plugin API: load a component (or a core module with numeric
//! exports), see its exports with their WIT types, and call them with typed values — on a fresh instance per call (isolation),
//! on a warm instance kept across calls (speed), or through a pool of warm instances
//! for concurrent callers. Limits (memory, per-call deadline) and WASI come from the
//! same engine configuration as every other Wharf command.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! use wharf_engine::wasmtime::component::{Component, Val};
//! use wharf_engine::{EngineOptions, WharfEngine};
//! use wharf_plugin::{Plugin, PluginConfig};
//!
//! let engine = WharfEngine::new(&EngineOptions::default())?;
//! // A component exporting `add: func(a: s32, b: s32) -> s32`, written in WAT here.
//! let component = Component::new(engine.engine(), r#"
//!     (component
//!       (core module $m (func (export "add") (param i32 i32) (result i32)
//!         local.get 0 local.get 1 i32.add))
//!       (core instance $i (instantiate $m))
//!       (func (export "add") (param "a" s32) (param "b" s32) (result s32)
//!         (canon lift (core func $i "add"))))
//! "#)?;
//! let plugin = Plugin::new(&engine, component, PluginConfig::default())?;
//! assert_eq!(plugin.exports()[0].signature, "add(a: s32, b: s32) -> s32");
//!
//! // A fresh instance for one call...
//! assert_eq!(plugin.call("add", &[Val::S32(3), Val::S32(4)]).await?, vec![Val::S32(7)]);
//! // ...or a warm one for many.
//! let mut warm = plugin.instantiate().await?;
//! assert_eq!(warm.call("add", &[Val::S32(40), Val::S32(2)]).await?, vec![Val::S32(42)]);
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

pub mod json;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wharf_engine::failure::{self, FailureContext, GuestFailure};
use wharf_engine::load::{LoadOptions, Program, load_file};
use wharf_engine::wasmtime::component::{Component, Func, Instance, InstancePre, Type, Val};
use wharf_engine::wasmtime::{Store, Trap};
use wharf_engine::{WharfEngine, WharfError};
use wharf_host::{Grants, HostState, Identity, ModuleState, Output, Services, StoreSpec};

/// Limits, grants and output of a plugin's instances. Stores are built by the one
/// instance builder (`wharf-host`), so a plugin gets every capability its grants name:
/// WASI, `wasi:config`, `wasi:keyvalue`, `wasi:logging` and outbound `wasi:http`.
#[derive(Clone)]
pub struct PluginConfig {
    /// Cap on the total of the instance's linear memories.
    pub max_memory: Option<u64>,
    /// Wall-clock deadline for each call (and for instantiation).
    pub timeout: Option<Duration>,
    /// What the plugin may use (environment, mounts, stores, hosts, variables).
    pub grants: Grants,
    /// The backends its grants use.
    pub services: Services,
    /// Who its stores belong to; its log receives its output.
    pub identity: Identity,
    /// Where its stdout and stderr go.
    pub output: Output,
}

impl Default for PluginConfig {
    fn default() -> Self {
        PluginConfig {
            max_memory: Some(256 << 20),
            timeout: Some(Duration::from_secs(30)),
            grants: Grants::none(),
            services: Services::default(),
            identity: Identity::detached("plugin", "plugin"),
            output: Output::Log,
        }
    }
}

impl std::fmt::Debug for PluginConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginConfig")
            .field("max_memory", &self.max_memory)
            .field("timeout", &self.timeout)
            .field("grants", &self.grants)
            .field("app", &self.identity.app)
            .field("component", &self.identity.component)
            .finish_non_exhaustive()
    }
}

/// Why a plugin call failed.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// No export by that name.
    #[error("the plugin exports no function `{name}`; it exports: {available}")]
    NoSuchExport {
        /// The name asked for.
        name: String,
        /// What there is.
        available: String,
    },
    /// Arguments that do not fit the export's signature.
    #[error("{0}")]
    Args(String),
    /// The deadline passed.
    #[error("the call ran past its {0:?} deadline")]
    Timeout(Duration),
    /// The memory cap was reached.
    #[error("the plugin reached its memory cap of {0} bytes")]
    MemoryCap(u64),
    /// The plugin trapped.
    #[error("the plugin trapped: {0}")]
    Trap(String),
    /// Loading or linking failed.
    #[error(transparent)]
    Load(#[from] WharfError),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// One exported function: the engine's [`ExportFunc`](wharf_engine::ExportFunc) (name,
/// parameters, results, WIT-like signature).
pub use wharf_engine::exports::ExportFunc as ExportInfo;

type State = HostState;
type ModState = ModuleState;

enum Kind {
    Component(InstancePre<State>),
    Module(wharf_engine::wasmtime::InstancePre<ModState>),
}

/// A loaded, pre-linked component or core module.
pub struct Plugin {
    engine: WharfEngine,
    kind: Kind,
    exports: Vec<ExportInfo>,
    config: PluginConfig,
}

impl Plugin {
    /// Pre-links `component` (with WASI 0.2) and lists its exports.
    pub fn new(
        engine: &WharfEngine,
        component: Component,
        config: PluginConfig,
    ) -> Result<Plugin, PluginError> {
        let linker = wharf_host::component_linker(engine.engine())
            .map_err(|e| PluginError::Other(e.to_string()))?;
        let pre = linker.instantiate_pre(&component).map_err(|e| {
            match failure::link_failure(&e) {
                GuestFailure::MissingImport { import } => PluginError::Other(format!(
                    "the plugin imports {import}, which Wharf does not provide to plugins (it provides {})", wharf_host::COMPONENT_IMPORTS
                )),
                other => PluginError::Other(format!("the plugin cannot be linked: {other}")),
            }
        })?;
        let exports = list_exports(engine, &component);
        Ok(Plugin {
            engine: engine.clone(),
            kind: Kind::Component(pre),
            exports,
            config,
        })
    }

    /// Pre-links a core module (with WASI preview 1) and lists its function exports
    /// whose parameters and results are numbers; they are called with `Val::S32`,
    /// `S64`, `Float32` and `Float64` for i32, i64, f32 and f64. A module exporting
    /// `_initialize` has it called once per instance.
    pub fn new_module(
        engine: &WharfEngine,
        module: wharf_engine::wasmtime::Module,
        config: PluginConfig,
    ) -> Result<Plugin, PluginError> {
        config
            .grants
            .check_core_module(&config.identity.component, "a core-module plugin")
            .map_err(|e| PluginError::Other(e.to_string()))?;
        let linker = wharf_host::module_linker(engine.engine())
            .map_err(|e| PluginError::Other(e.to_string()))?;
        let pre = linker.instantiate_pre(&module).map_err(|e| {
            match failure::link_failure(&e) {
                GuestFailure::MissingImport { import } => PluginError::Other(format!(
                    "the plugin imports {import}, which Wharf does not provide to module plugins (wasi_snapshot_preview1 only)"
                )),
                other => PluginError::Other(format!("the plugin cannot be linked: {other}")),
            }
        })?;
        let mut exports = Vec::new();
        for e in module.exports() {
            let Some(f) = e.ty().func().cloned() else {
                continue;
            };
            let params: Option<Vec<(String, Type)>> = f
                .params()
                .enumerate()
                .map(|(i, t)| core_to_type(&t).map(|t| (format!("p{i}"), t)))
                .collect();
            let results: Option<Vec<Type>> = f.results().map(|t| core_to_type(&t)).collect();
            let (Some(params), Some(results)) = (params, results) else {
                continue;
            };
            if e.name() == "_initialize" || e.name() == "_start" {
                continue;
            }
            exports.push(ExportInfo::new(e.name().to_string(), params, results));
        }
        Ok(Plugin {
            engine: engine.clone(),
            kind: Kind::Module(pre),
            exports,
            config,
        })
    }

    /// Loads a component from a file (`.wasm`, `.wat`, or a `.cwasm` from `wharf compile`).
    pub fn load(
        engine: &WharfEngine,
        path: &Path,
        load: &LoadOptions,
        config: PluginConfig,
    ) -> Result<Plugin, PluginError> {
        match load_file(engine, path, load)?.program {
            Program::Component(c) => Plugin::new(engine, c, config),
            Program::Module(m) => Plugin::new_module(engine, m, config),
        }
    }

    /// The exported functions.
    pub fn exports(&self) -> &[ExportInfo] {
        &self.exports
    }

    /// Finds an export by `name`, `interface#name`, or a bare name that exactly one
    /// exported interface has.
    pub fn export(&self, name: &str) -> Result<&ExportInfo, PluginError> {
        find_export(&self.exports, name)
    }

    fn spec(&self) -> StoreSpec {
        StoreSpec {
            max_memory: self.config.max_memory,
            stdout: self.config.output.clone(),
            ..StoreSpec::default()
        }
    }

    fn new_store(&self) -> Result<Store<State>, PluginError> {
        let c = &self.config;
        let state = c
            .services
            .component_state(&c.grants, &c.identity, &self.spec())
            .map_err(|e| PluginError::Other(e.to_string()))?;
        wharf_host::new_store(&self.engine, state).map_err(|e| PluginError::Other(e.to_string()))
    }

    /// A warm instance for many calls. State (globals, memory) persists between them.
    pub async fn instantiate(&self) -> Result<PluginInstance, PluginError> {
        let pre = match &self.kind {
            Kind::Component(pre) => pre,
            Kind::Module(pre) => return self.instantiate_module(pre).await,
        };
        let mut store = self.new_store()?;
        let r = with_deadline(&self.config, &mut store, |store| {
            Box::pin(pre.instantiate_async(store))
        })
        .await;
        let hit_cap = store.data().limiter.hit_cap();
        let instance = r.map_err(|e| self.classify(e, hit_cap))?;
        Ok(PluginInstance {
            plugin_exports: self.exports.clone(),
            config: self.config.clone(),
            inner: Inner::Component {
                store,
                instance,
                funcs: HashMap::new(),
            },
        })
    }

    async fn instantiate_module(
        &self,
        pre: &wharf_engine::wasmtime::InstancePre<ModState>,
    ) -> Result<PluginInstance, PluginError> {
        let mut store = self.new_module_store()?;
        store.data_mut().deadline = self
            .config
            .timeout
            .and_then(wharf_engine::limits::deadline_after);
        let r = async {
            let instance = pre.instantiate_async(&mut store).await?;
            if let Ok(init) = instance.get_typed_func::<(), ()>(&mut store, "_initialize") {
                init.call_async(&mut store, ()).await?;
            }
            Ok::<_, wharf_engine::wasmtime::Error>(instance)
        }
        .await;
        let hit_cap = store.data().limiter.hit_cap();
        let instance = r.map_err(|e| self.classify(e, hit_cap))?;
        Ok(PluginInstance {
            plugin_exports: self.exports.clone(),
            config: self.config.clone(),
            inner: Inner::Module { store, instance },
        })
    }

    /// Calls `name` on a fresh instance, dropped afterwards.
    pub async fn call(&self, name: &str, args: &[Val]) -> Result<Vec<Val>, PluginError> {
        let mut inst = self.instantiate().await?;
        inst.call(name, args).await
    }

    fn classify(&self, e: wharf_engine::wasmtime::Error, hit_cap: bool) -> PluginError {
        classify(&self.config, e, hit_cap)
    }
}

impl Plugin {
    fn new_module_store(&self) -> Result<Store<ModState>, PluginError> {
        let c = &self.config;
        let state = c
            .services
            .module_state(&c.grants, &c.identity, &self.spec())
            .map_err(|e| PluginError::Other(e.to_string()))?;
        wharf_host::new_store(&self.engine, state).map_err(|e| PluginError::Other(e.to_string()))
    }
}

fn classify(config: &PluginConfig, e: wharf_engine::wasmtime::Error, hit_cap: bool) -> PluginError {
    let cx = FailureContext {
        timeout: config.timeout,
        max_memory: config.max_memory,
        fuel: None,
        hit_cap,
        instantiating: false,
    };
    match failure::classify(&e, &cx) {
        GuestFailure::Timeout { limit } => PluginError::Timeout(limit.unwrap_or_default()),
        GuestFailure::MemoryCap { cap, .. } => PluginError::MemoryCap(cap.unwrap_or(0)),
        GuestFailure::Trap { kind, .. } => PluginError::Trap(kind),
        f @ (GuestFailure::FuelExhausted { .. } | GuestFailure::Exit(_)) => {
            PluginError::Trap(f.to_string())
        }
        f @ (GuestFailure::PoolExhausted { .. }
        | GuestFailure::MissingImport { .. }
        | GuestFailure::Host { .. }) => PluginError::Other(f.to_string()),
    }
}

type BoxFut<'a, T> = std::pin::Pin<
    Box<dyn std::future::Future<Output = wharf_engine::wasmtime::Result<T>> + Send + 'a>,
>;

/// Runs `f` under the configured deadline: the epoch callback traps running wasm, the
/// Tokio timeout stops a plugin waiting in a host call.
async fn with_deadline<'s, T>(
    config: &PluginConfig,
    store: &'s mut Store<State>,
    f: impl FnOnce(&'s mut Store<State>) -> BoxFut<'s, T>,
) -> wharf_engine::wasmtime::Result<T> {
    store.data_mut().deadline = config
        .timeout
        .and_then(wharf_engine::limits::deadline_after);
    let fut = f(store);
    match config.timeout {
        Some(t) => match tokio::time::timeout(t, fut).await {
            Ok(r) => r,
            Err(_) => Err(Trap::Interrupt.into()),
        },
        None => fut.await,
    }
}

/// A warm instance.
pub struct PluginInstance {
    plugin_exports: Vec<ExportInfo>,
    config: PluginConfig,
    inner: Inner,
}

enum Inner {
    Component {
        store: Store<State>,
        instance: Instance,
        funcs: HashMap<String, (Func, usize)>,
    },
    Module {
        store: Store<ModState>,
        instance: wharf_engine::wasmtime::Instance,
    },
}

impl PluginInstance {
    /// Calls an export. After a trap the instance may be in any state: drop it.
    pub async fn call(&mut self, name: &str, args: &[Val]) -> Result<Vec<Val>, PluginError> {
        let config = self.config.clone();
        match &mut self.inner {
            Inner::Component {
                store,
                instance,
                funcs,
            } => {
                let (func, nresults) = match funcs.get(name) {
                    Some(f) => *f,
                    None => {
                        let info = find_export(&self.plugin_exports, name)?;
                        check_arity(info, args)?;
                        let func = lookup_func(store, instance, &info.name).ok_or_else(|| {
                            PluginError::Other(format!("export `{}` vanished", info.name))
                        })?;
                        let entry = (func, info.results.len());
                        funcs.insert(name.to_string(), entry);
                        entry
                    }
                };
                let mut results = vec![Val::Bool(false); nresults];
                let r = with_deadline(&config, store, |store| {
                    Box::pin(func.call_async(store, args, &mut results))
                })
                .await;
                let hit_cap = store.data().limiter.hit_cap();
                match r {
                    Ok(()) => Ok(results),
                    // Values are type-checked before the guest runs, so an error that the
                    // classifier cannot pin on the guest (not a trap, exit, memory cap or
                    // deadline) is a mismatch of the arguments.
                    Err(e)
                        if matches!(
                            failure::classify(
                                &e,
                                &FailureContext {
                                    hit_cap,
                                    ..FailureContext::default()
                                }
                            ),
                            GuestFailure::Host { .. }
                        ) =>
                    {
                        Err(PluginError::Args(format!(
                            "arguments do not match `{name}`: {e}"
                        )))
                    }
                    Err(e) => Err(classify(&config, e, hit_cap)),
                }
            }
            Inner::Module { store, instance } => {
                use wharf_engine::wasmtime::Val as Core;
                let info = find_export(&self.plugin_exports, name)?;
                check_arity(info, args)?;
                let func = instance.get_func(&mut *store, &info.name).ok_or_else(|| {
                    PluginError::Other(format!("export `{}` vanished", info.name))
                })?;
                let mut params = Vec::with_capacity(args.len());
                for (i, (a, (_, ty))) in args.iter().zip(&info.params).enumerate() {
                    params.push(match (a, ty) {
                        (Val::S32(v), Type::S32) => Core::I32(*v),
                        (Val::S64(v), Type::S64) => Core::I64(*v),
                        (Val::Float32(v), Type::Float32) => Core::F32(v.to_bits()),
                        (Val::Float64(v), Type::Float64) => Core::F64(v.to_bits()),
                        _ => {
                            return Err(PluginError::Args(format!(
                                "argument {} of `{}` must be {}",
                                i + 1,
                                info.signature,
                                json::wit_type_name(ty)
                            )));
                        }
                    });
                }
                let mut results = vec![Core::I32(0); info.results.len()];
                store.data_mut().deadline = config
                    .timeout
                    .and_then(wharf_engine::limits::deadline_after);
                let fut = func.call_async(&mut *store, &params, &mut results);
                let r = match config.timeout {
                    Some(t) => tokio::time::timeout(t, fut)
                        .await
                        .unwrap_or_else(|_| Err(Trap::Interrupt.into())),
                    None => fut.await,
                };
                let hit_cap = store.data().limiter.hit_cap();
                r.map_err(|e| classify(&config, e, hit_cap))?;
                Ok(results
                    .iter()
                    .map(|v| match v {
                        Core::I32(x) => Val::S32(*x),
                        Core::I64(x) => Val::S64(*x),
                        Core::F32(x) => Val::Float32(f32::from_bits(*x)),
                        Core::F64(x) => Val::Float64(f64::from_bits(*x)),
                        _ => Val::Bool(false),
                    })
                    .collect())
            }
        }
    }

    /// Peak linear memory of this instance so far, in bytes.
    pub fn peak_memory(&self) -> u64 {
        match &self.inner {
            Inner::Component { store, .. } => store.data().limiter.peak(),
            Inner::Module { store, .. } => store.data().limiter.peak(),
        }
    }
}

fn check_arity(info: &ExportInfo, args: &[Val]) -> Result<(), PluginError> {
    if info.params.len() != args.len() {
        return Err(PluginError::Args(format!(
            "`{}` takes {} argument(s), {} given",
            info.signature,
            info.params.len(),
            args.len()
        )));
    }
    Ok(())
}

fn core_to_type(t: &wharf_engine::wasmtime::ValType) -> Option<Type> {
    use wharf_engine::wasmtime::ValType;
    match t {
        ValType::I32 => Some(Type::S32),
        ValType::I64 => Some(Type::S64),
        ValType::F32 => Some(Type::Float32),
        ValType::F64 => Some(Type::Float64),
        _ => None,
    }
}

fn find_export<'a>(exports: &'a [ExportInfo], name: &str) -> Result<&'a ExportInfo, PluginError> {
    use wharf_engine::ExportLookupError as E;
    wharf_engine::exports::find_export(exports, name).map_err(|e| match e {
        E::NoSuch { name, available }
        | E::NoInterface {
            name, available, ..
        } => PluginError::NoSuchExport { name, available },
        ambiguous @ E::Ambiguous { .. } => PluginError::Args(ambiguous.to_string()),
    })
}

fn lookup_func(store: &mut Store<State>, instance: &Instance, full: &str) -> Option<Func> {
    match full.split_once('#') {
        Some((iface, name)) => {
            let i = instance.get_export_index(&mut *store, None, iface)?;
            let f = instance.get_export_index(&mut *store, Some(&i), name)?;
            instance.get_func(&mut *store, f)
        }
        None => instance.get_func(&mut *store, full),
    }
}

fn list_exports(engine: &WharfEngine, component: &Component) -> Vec<ExportInfo> {
    wharf_engine::exports::component_exports(engine.engine(), component)
}

/// Idle instances a [`PluginPool`] keeps by default (at most; never more than its size).
pub const DEFAULT_POOL_MAX_IDLE: usize = 8;
/// How long an idle pooled instance is kept by default before it is dropped.
pub const DEFAULT_POOL_IDLE_TTL: Duration = Duration::from_secs(60);

/// A pool of warm instances for concurrent callers: at most `size` calls run at once;
/// an idle instance is reused, a new one is made when none is idle, and an instance
/// whose call failed is dropped rather than reused.
///
/// Idle instances are bounded: at most `max_idle` are kept (default
/// [`DEFAULT_POOL_MAX_IDLE`]; one returned to a full idle list is dropped), each for at
/// most `idle_ttl` (default [`DEFAULT_POOL_IDLE_TTL`]); expired ones are dropped at the
/// next checkout or return, or by [`trim`](Self::trim). So a burst of calls does not
/// pin its instances (and their pool slots and memory) forever.
pub struct PluginPool {
    plugin: Arc<Plugin>,
    /// Idle instances, oldest first, with when each was returned.
    idle: Mutex<std::collections::VecDeque<(Instant, PluginInstance)>>,
    permits: tokio::sync::Semaphore,
    max_idle: usize,
    idle_ttl: Duration,
}

impl PluginPool {
    /// A pool of up to `size` instances.
    pub fn new(plugin: Arc<Plugin>, size: usize) -> PluginPool {
        let size = size.max(1);
        PluginPool {
            plugin,
            idle: Mutex::new(std::collections::VecDeque::new()),
            permits: tokio::sync::Semaphore::new(size),
            max_idle: DEFAULT_POOL_MAX_IDLE.min(size),
            idle_ttl: DEFAULT_POOL_IDLE_TTL,
        }
    }

    /// Keeps at most `n` idle instances (0: none, every call gets a fresh one).
    pub fn with_max_idle(mut self, n: usize) -> PluginPool {
        self.max_idle = n;
        self
    }

    /// Drops idle instances older than `ttl`.
    pub fn with_idle_ttl(mut self, ttl: Duration) -> PluginPool {
        self.idle_ttl = ttl;
        self
    }

    /// The plugin.
    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    /// How many idle instances are kept now.
    pub fn idle_count(&self) -> usize {
        self.lock_idle().len()
    }

    /// Drops idle instances past their time-to-live.
    pub fn trim(&self) {
        let expired = {
            let mut idle = self.lock_idle();
            Self::take_expired(&mut idle, self.idle_ttl)
        };
        drop(expired);
    }

    fn lock_idle(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::VecDeque<(Instant, PluginInstance)>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes the expired instances (the oldest, at the front) so the caller can drop
    /// them outside the lock.
    fn take_expired(
        idle: &mut std::collections::VecDeque<(Instant, PluginInstance)>,
        ttl: Duration,
    ) -> Vec<PluginInstance> {
        let now = Instant::now();
        let mut out = Vec::new();
        while let Some((since, _)) = idle.front() {
            if now.saturating_duration_since(*since) < ttl {
                break;
            }
            if let Some((_, inst)) = idle.pop_front() {
                out.push(inst);
            }
        }
        out
    }

    /// Calls `name` on a pooled instance.
    pub async fn call(&self, name: &str, args: &[Val]) -> Result<Vec<Val>, PluginError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PluginError::Other("the pool is closed".into()))?;
        let (reused, expired) = {
            let mut idle = self.lock_idle();
            let expired = Self::take_expired(&mut idle, self.idle_ttl);
            // The most recently returned instance: the warmest.
            (idle.pop_back().map(|(_, i)| i), expired)
        };
        drop(expired);
        let mut inst = match reused {
            Some(i) => i,
            None => self.plugin.instantiate().await?,
        };
        let r = inst.call(name, args).await;
        if r.is_ok() {
            let dropped = {
                let mut idle = self.lock_idle();
                let mut dropped = Self::take_expired(&mut idle, self.idle_ttl);
                if idle.len() < self.max_idle {
                    idle.push_back((Instant::now(), inst));
                } else {
                    dropped.push(inst);
                }
                dropped
            };
            drop(dropped);
        }
        r
    }
}
