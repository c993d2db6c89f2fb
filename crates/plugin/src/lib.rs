//! Wharf's embeddable plugin API: load a component, see its exports with their WIT
//! types, and call them with typed values — on a fresh instance per call (isolation),
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

use wharf_engine::TotalMemoryLimiter;
use wharf_engine::load::{LoadOptions, Program, load_file};
use wharf_engine::wasmtime::component::{
    Component, Func, Instance, InstancePre, Linker, ResourceTable, Type, Val,
};
use wharf_engine::wasmtime::{Store, Trap, UpdateDeadline};
use wharf_engine::wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wharf_engine::{WharfEngine, WharfError};

/// Limits and WASI settings for a plugin's instances.
#[derive(Clone, Debug)]
pub struct PluginConfig {
    /// Cap on the total of the instance's linear memories.
    pub max_memory: Option<u64>,
    /// Wall-clock deadline for each call (and for instantiation).
    pub timeout: Option<Duration>,
    /// Environment variables the plugin sees.
    pub env: Vec<(String, String)>,
    /// Let the plugin write to the host's stdout and stderr (otherwise discarded).
    pub inherit_stdio: bool,
}

impl Default for PluginConfig {
    fn default() -> Self {
        PluginConfig {
            max_memory: Some(256 << 20),
            timeout: Some(Duration::from_secs(30)),
            env: Vec::new(),
            inherit_stdio: false,
        }
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

/// One exported function.
#[derive(Clone, Debug)]
pub struct ExportInfo {
    /// `name` for a top-level function, `interface#name` inside an exported interface.
    pub name: String,
    /// Parameter names and types.
    pub params: Vec<(String, Type)>,
    /// Result types (zero or one in the component model today).
    pub results: Vec<Type>,
    /// WIT-like signature, e.g. `add(a: s32, b: s32) -> s32`.
    pub signature: String,
}

struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: TotalMemoryLimiter,
    deadline: Option<Instant>,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A loaded, pre-linked component.
pub struct Plugin {
    engine: WharfEngine,
    pre: InstancePre<State>,
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
        let mut linker = Linker::<State>::new(engine.engine());
        wharf_engine::wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| PluginError::Other(e.to_string()))?;
        let pre = linker.instantiate_pre(&component).map_err(|e| {
            let chain = e.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ");
            match wharf_engine::error::missing_import_from(&chain) {
                Some(import) => PluginError::Other(format!(
                    "the plugin imports {import}, which Wharf does not provide to plugins (WASI 0.2 only)"
                )),
                None => PluginError::Other(format!("the plugin cannot be linked: {chain}")),
            }
        })?;
        let exports = list_exports(engine, &component);
        Ok(Plugin {
            engine: engine.clone(),
            pre,
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
            Program::Module(_) => Err(PluginError::Other(format!(
                "`{}` is a core module; plugins are components (use `wharf run --invoke` for core module exports)",
                path.display()
            ))),
        }
    }

    /// The exported functions.
    pub fn exports(&self) -> &[ExportInfo] {
        &self.exports
    }

    /// Finds an export by `name`, `interface#name`, or a bare name that exactly one
    /// exported interface has.
    pub fn export(&self, name: &str) -> Result<&ExportInfo, PluginError> {
        if let Some(e) = self.exports.iter().find(|e| e.name == name) {
            return Ok(e);
        }
        let suffix = format!("#{name}");
        let found: Vec<&ExportInfo> = self
            .exports
            .iter()
            .filter(|e| e.name.ends_with(&suffix))
            .collect();
        match found.as_slice() {
            [one] => Ok(one),
            [] => Err(PluginError::NoSuchExport {
                name: name.to_string(),
                available: self
                    .exports
                    .iter()
                    .map(|e| e.signature.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
            many => Err(PluginError::Args(format!(
                "`{name}` is exported by several interfaces ({}); name one as INTERFACE#{name}",
                many.iter()
                    .map(|e| e.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    fn new_store(&self) -> Result<Store<State>, PluginError> {
        let mut b = WasiCtxBuilder::new();
        b.envs(&self.config.env);
        if self.config.inherit_stdio {
            b.inherit_stdout().inherit_stderr();
        }
        let mut store = Store::new(
            self.engine.engine(),
            State {
                wasi: b.build(),
                table: ResourceTable::new(),
                limiter: TotalMemoryLimiter::new(self.config.max_memory),
                deadline: None,
            },
        );
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(10);
        // Yield to the runtime every 10 ms of running wasm and trap once the call's
        // deadline has passed.
        store.epoch_deadline_callback(|ctx| match ctx.data().deadline {
            Some(d) if Instant::now() >= d => Err(Trap::Interrupt.into()),
            _ => Ok(UpdateDeadline::Yield(10)),
        });
        if self.engine.fuel_enabled() {
            store
                .set_fuel(u64::MAX)
                .map_err(|e| PluginError::Other(e.to_string()))?;
        }
        Ok(store)
    }

    /// A warm instance for many calls. State (globals, memory) persists between them.
    pub async fn instantiate(&self) -> Result<PluginInstance, PluginError> {
        let mut store = self.new_store()?;
        let r = with_deadline(&self.config, &mut store, |store| {
            Box::pin(self.pre.instantiate_async(store))
        })
        .await;
        let hit_cap = store.data().limiter.hit_cap();
        let instance = r.map_err(|e| self.classify(e, hit_cap))?;
        Ok(PluginInstance {
            plugin_exports: self.exports.clone(),
            config: self.config.clone(),
            store,
            instance,
            funcs: HashMap::new(),
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

fn classify(config: &PluginConfig, e: wharf_engine::wasmtime::Error, hit_cap: bool) -> PluginError {
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => PluginError::Timeout(config.timeout.unwrap_or_default()),
        _ if hit_cap => PluginError::MemoryCap(config.max_memory.unwrap_or(0)),
        Some(t) => PluginError::Trap(t.to_string()),
        None => PluginError::Trap(e.to_string()),
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
    store.data_mut().deadline = config.timeout.map(|t| Instant::now() + t);
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
    store: Store<State>,
    instance: Instance,
    funcs: HashMap<String, (Func, usize)>,
}

impl PluginInstance {
    /// Calls an export. After a trap the instance may be in any state: drop it.
    pub async fn call(&mut self, name: &str, args: &[Val]) -> Result<Vec<Val>, PluginError> {
        let (func, nresults) = match self.funcs.get(name) {
            Some(f) => *f,
            None => {
                let info = find_export(&self.plugin_exports, name)?;
                if info.params.len() != args.len() {
                    return Err(PluginError::Args(format!(
                        "`{}` takes {} argument(s), {} given",
                        info.signature,
                        info.params.len(),
                        args.len()
                    )));
                }
                let func =
                    lookup_func(&mut self.store, &self.instance, &info.name).ok_or_else(|| {
                        PluginError::Other(format!("export `{}` vanished", info.name))
                    })?;
                let entry = (func, info.results.len());
                self.funcs.insert(name.to_string(), entry);
                entry
            }
        };
        let mut results = vec![Val::Bool(false); nresults];
        let config = self.config.clone();
        let r = with_deadline(&config, &mut self.store, |store| {
            Box::pin(func.call_async(store, args, &mut results))
        })
        .await;
        let hit_cap = self.store.data().limiter.hit_cap();
        match r {
            Ok(()) => Ok(results),
            Err(e)
                if e.to_string().contains("type mismatch")
                    || e.to_string().contains("expected") =>
            {
                Err(PluginError::Args(format!(
                    "arguments do not match `{name}`: {e}"
                )))
            }
            Err(e) => Err(classify(&self.config, e, hit_cap)),
        }
    }

    /// Peak linear memory of this instance so far, in bytes.
    pub fn peak_memory(&self) -> u64 {
        self.store.data().limiter.peak()
    }
}

fn find_export<'a>(exports: &'a [ExportInfo], name: &str) -> Result<&'a ExportInfo, PluginError> {
    if let Some(e) = exports.iter().find(|e| e.name == name) {
        return Ok(e);
    }
    let suffix = format!("#{name}");
    let found: Vec<&ExportInfo> = exports
        .iter()
        .filter(|e| e.name.ends_with(&suffix))
        .collect();
    match found.as_slice() {
        [one] => Ok(one),
        _ => Err(PluginError::NoSuchExport {
            name: name.to_string(),
            available: exports
                .iter()
                .map(|e| e.signature.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
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
    use wharf_engine::wasmtime::component::types::{ComponentFunc, ComponentItem};
    let e = engine.engine();
    let info = |name: String, f: &ComponentFunc| {
        let params: Vec<(String, Type)> = f.params().map(|(n, t)| (n.to_string(), t)).collect();
        let results: Vec<Type> = f.results().collect();
        let p: Vec<String> = params
            .iter()
            .map(|(n, t)| format!("{n}: {}", json::wit_type_name(t)))
            .collect();
        let r: Vec<String> = results.iter().map(json::wit_type_name).collect();
        let signature = if r.is_empty() {
            format!("{name}({})", p.join(", "))
        } else {
            format!("{name}({}) -> {}", p.join(", "), r.join(", "))
        };
        ExportInfo {
            name,
            params,
            results,
            signature,
        }
    };
    let mut out = Vec::new();
    for (name, item) in component.component_type().exports(e) {
        match item.ty {
            ComponentItem::ComponentFunc(f) => out.push(info(name.to_string(), &f)),
            ComponentItem::ComponentInstance(inst) => {
                for (fname, fitem) in inst.exports(e) {
                    if let ComponentItem::ComponentFunc(f) = fitem.ty {
                        out.push(info(format!("{name}#{fname}"), &f));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// A pool of warm instances for concurrent callers: at most `size` calls run at once;
/// an idle instance is reused, a new one is made when none is idle, and an instance
/// whose call failed is dropped rather than reused.
pub struct PluginPool {
    plugin: Arc<Plugin>,
    idle: Mutex<Vec<PluginInstance>>,
    permits: tokio::sync::Semaphore,
}

impl PluginPool {
    /// A pool of up to `size` instances.
    pub fn new(plugin: Arc<Plugin>, size: usize) -> PluginPool {
        PluginPool {
            plugin,
            idle: Mutex::new(Vec::new()),
            permits: tokio::sync::Semaphore::new(size.max(1)),
        }
    }

    /// The plugin.
    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    /// Calls `name` on a pooled instance.
    pub async fn call(&self, name: &str, args: &[Val]) -> Result<Vec<Val>, PluginError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PluginError::Other("the pool is closed".into()))?;
        let reused = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut inst = match reused {
            Some(i) => i,
            None => self.plugin.instantiate().await?,
        };
        let r = inst.call(name, args).await;
        if r.is_ok() {
            self.idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(inst);
        }
        r
    }
}
