//! The app host: what is deployed and how requests find it.
//!
//! A deploy is: read the bundle → validate the manifest → check its routes against
//! every other app's → store the component blobs (content-addressed) → compile each
//! (bounded, cached) and pre-link it into a `ProxyPre` → commit the registry record
//! (the single commit point; see `wharf-registry`) → swap the route table. Until the
//! swap, the previous version keeps serving; requests already running keep the
//! `Arc<LoadedApp>` they started with, so in-flight requests finish on the version
//! they began on. Any failure before the commit leaves the registry and the route
//! table as they were. Deploys run one at a time.
//!
//! On start, [`AppHost::restore`] rebuilds every app from the registry, mapping the
//! cached artifacts instead of compiling.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Semaphore;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wharf_engine::compile::Compiler;
use wharf_engine::load::{LoadOptions, Program, load_file};
use wharf_engine::wasmtime::component::Linker;
use wharf_engine::{WharfEngine, WharfError};
use wharf_manifest::{Executor, Manifest, Route, RouteMatch, parse_manifest};
use wharf_registry::{ComponentBlob, NewApp, Registry, RegistryError};

use crate::bundle::{Bundle, BundleError};
use crate::host::{Grants, HostState, linker};
use crate::logs::AppLogs;
use crate::metrics::Metrics;
use crate::wagi::{self, WagiState};

/// The registry entry that keeps a whole bundle (for apps with file mounts).
pub const BUNDLE_BLOB_ID: &str = "@bundle";

/// How old an unreferenced blob must be before garbage collection deletes it.
pub const BLOB_GC_GRACE: Duration = Duration::from_secs(600);

/// Server-wide settings and per-component defaults.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// Where the registry, blobs and artifact cache live.
    pub state_dir: PathBuf,
    /// Default memory cap per instance (all memories together).
    pub default_memory: u64,
    /// Default wall-clock deadline per request.
    pub default_timeout: Duration,
    /// Default request-body cap.
    pub default_max_body: u64,
    /// Default cap on concurrent instances per component.
    pub default_max_concurrency: u32,
    /// Largest bundle accepted.
    pub max_bundle: u64,
    /// How to compile (bounded child process in the server).
    pub compiler: Compiler,
    /// A TOML file of variable values (`name = "value"` for every app, or under an
    /// `[app-name]` table for one app), read at each deploy and restore.
    pub secrets_file: Option<PathBuf>,
}

impl HostConfig {
    /// Defaults for a state directory.
    pub fn new(state_dir: PathBuf) -> HostConfig {
        HostConfig {
            state_dir,
            default_memory: 128 << 20,
            default_timeout: Duration::from_secs(30),
            default_max_body: 10 << 20,
            default_max_concurrency: 1000,
            max_bundle: crate::bundle::DEFAULT_MAX_BUNDLE,
            compiler: Compiler::InProcess,
            secrets_file: None,
        }
    }
}

/// How a component is run, pre-linked once per version.
pub enum Exec {
    /// A `wasi:http/proxy` component.
    Proxy(ProxyPre<HostState>),
    /// A wasip1 module run CGI-style.
    Wagi(wharf_engine::wasmtime::InstancePre<WagiState>),
    /// A plugin: exports called through the admin API, on pooled warm instances.
    Plugin(Arc<wharf_plugin::PluginPool>),
}

/// A component ready to serve.
pub struct LoadedComponent {
    /// Component id from the manifest.
    pub id: Arc<str>,
    /// Its route (`None` for plugins).
    pub route: Option<Route>,
    /// Pre-linked, instantiated per request.
    pub exec: Exec,
    /// What it is granted (environment, variables, mounts, ...).
    pub grants: Grants,
    /// Memory cap.
    pub memory: u64,
    /// Deadline.
    pub timeout: Duration,
    /// Request-body cap.
    pub max_body: u64,
    /// Concurrency cap (permits = max concurrent instances).
    pub concurrency: Arc<Semaphore>,
    /// The cap, for display.
    pub max_concurrency: u32,
    /// Source file name in the bundle.
    pub source: String,
    /// sha256 of its Wasm.
    pub sha256: String,
}

/// One version of an app, ready to serve.
pub struct LoadedApp {
    /// App name.
    pub name: Arc<str>,
    /// App version from the manifest.
    pub version: String,
    /// Registry revision.
    pub revision: u64,
    /// When it was deployed.
    pub deployed_at_ms: u64,
    /// Its components.
    pub components: Vec<LoadedComponent>,
    /// Its guest log (shared by all versions of the app).
    pub logs: Arc<AppLogs>,
}

/// The routing table: every component's route, most specific first.
#[derive(Default)]
pub struct RouteTable {
    entries: Vec<(Arc<LoadedApp>, usize, Route)>,
    apps: Vec<Arc<LoadedApp>>,
}

impl RouteTable {
    fn build(mut apps: Vec<Arc<LoadedApp>>) -> RouteTable {
        let mut entries: Vec<(Arc<LoadedApp>, usize, Route)> = apps
            .iter()
            .flat_map(|a| {
                a.components
                    .iter()
                    .enumerate()
                    .filter_map(move |(i, c)| c.route.clone().map(|r| (a.clone(), i, r)))
            })
            .collect();
        entries.sort_by(|a, b| {
            b.2.specificity()
                .cmp(&a.2.specificity())
                .then_with(|| a.2.as_str().cmp(b.2.as_str()))
        });
        apps.sort_by(|a, b| a.name.cmp(&b.name));
        RouteTable { entries, apps }
    }

    /// The most specific route matching `path`.
    pub fn lookup(&self, path: &str) -> Option<(Arc<LoadedApp>, usize, RouteMatch)> {
        self.entries
            .iter()
            .find_map(|(app, i, route)| route.matches(path).map(|m| (app.clone(), *i, m)))
    }

    /// The apps in the table, by name.
    pub fn apps(&self) -> Vec<Arc<LoadedApp>> {
        self.apps.clone()
    }
}

/// What went wrong with a deploy; the admin API maps each kind to a status code.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The upload is not a usable bundle (400).
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The manifest or a component is invalid (400).
    #[error("{0}")]
    Invalid(String),
    /// A route overlaps another app's, or the app exists/does not exist (409).
    #[error("{0}")]
    Conflict(String),
    /// No such app (404).
    #[error("app `{0}` is not deployed")]
    NotFound(String),
    /// Something on the server's side (500).
    #[error("{0:#}")]
    Internal(anyhow::Error),
}

impl From<RegistryError> for DeployError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::NotFound(n) => DeployError::NotFound(n),
            RegistryError::Conflict { .. } => DeployError::Conflict(e.to_string()),
            other => DeployError::Internal(anyhow::anyhow!(other.to_string())),
        }
    }
}

impl DeployError {
    /// The metric label for this result.
    pub fn kind(&self) -> &'static str {
        match self {
            DeployError::Bundle(_) | DeployError::Invalid(_) => "invalid",
            DeployError::Conflict(_) => "conflict",
            DeployError::NotFound(_) => "not-found",
            DeployError::Internal(_) => "error",
        }
    }
}

/// Create a new app only, or create-or-replace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeployMode {
    /// Fail with a conflict if the app exists.
    Create,
    /// Create, or replace the running version.
    Upsert,
}

/// A description of an app for the admin API and the CLI.
#[derive(Clone, Debug, Serialize)]
pub struct AppInfo {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Registry revision (1 for the first deploy, +1 per replacement).
    pub revision: u64,
    /// Deploy time, unix ms.
    pub deployed_at_ms: u64,
    /// Components.
    pub components: Vec<ComponentInfo>,
}

/// A component in [`AppInfo`].
#[derive(Clone, Debug, Serialize)]
pub struct ComponentInfo {
    /// Id.
    pub id: String,
    /// Route pattern (`None` for plugins).
    pub route: Option<String>,
    /// `wasi-http`, `wagi` or `plugin`.
    pub executor: &'static str,
    /// Source file.
    pub source: String,
    /// sha256 of the Wasm.
    pub sha256: String,
    /// Memory cap in bytes.
    pub memory: u64,
    /// Deadline in milliseconds.
    pub timeout_ms: u64,
    /// Body cap in bytes.
    pub max_body: u64,
    /// Concurrency cap.
    pub max_concurrency: u32,
}

impl LoadedApp {
    /// Its description.
    pub fn info(&self) -> AppInfo {
        AppInfo {
            name: self.name.to_string(),
            version: self.version.clone(),
            revision: self.revision,
            deployed_at_ms: self.deployed_at_ms,
            components: self
                .components
                .iter()
                .map(|c| ComponentInfo {
                    id: c.id.to_string(),
                    route: c.route.as_ref().map(|r| r.as_str().to_string()),
                    executor: match c.exec {
                        Exec::Proxy(_) => "wasi-http",
                        Exec::Wagi(_) => "wagi",
                        Exec::Plugin(_) => "plugin",
                    },
                    source: c.source.clone(),
                    sha256: c.sha256.clone(),
                    memory: c.memory,
                    timeout_ms: c.timeout.as_millis() as u64,
                    max_body: c.max_body,
                    max_concurrency: c.max_concurrency,
                })
                .collect(),
        }
    }
}

/// The app host.
pub struct AppHost {
    engine: WharfEngine,
    kv: Arc<dyn wharf_host_keyvalue::KvBackend>,
    linker: Linker<HostState>,
    wagi_linker: wharf_engine::wasmtime::Linker<WagiState>,
    registry: Arc<dyn Registry>,
    load_opts: LoadOptions,
    table: RwLock<Arc<RouteTable>>,
    deploy_lock: tokio::sync::Mutex<()>,
    logs: Mutex<HashMap<String, Arc<AppLogs>>>,
    config: HostConfig,
    /// Server metrics.
    pub metrics: Arc<Metrics>,
}

impl AppHost {
    /// A host with no apps yet (call [`AppHost::restore`] to load the registry's).
    pub fn new(
        engine: WharfEngine,
        registry: Arc<dyn Registry>,
        kv: Arc<dyn wharf_host_keyvalue::KvBackend>,
        config: HostConfig,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<AppHost> {
        let linker = linker(engine.engine()).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let wagi_linker = wagi::linker(engine.engine()).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let load_opts = LoadOptions {
            cache: Some(wharf_engine::artifact::ArtifactCache::new(
                config.state_dir.join("cache"),
            )),
            compiler: config.compiler.clone(),
            key_path: Some(config.state_dir.join("artifact.key")),
            progress: false,
        };
        Ok(AppHost {
            engine,
            kv,
            linker,
            wagi_linker,
            registry,
            load_opts,
            table: RwLock::new(Arc::new(RouteTable::default())),
            deploy_lock: tokio::sync::Mutex::new(()),
            logs: Mutex::new(HashMap::new()),
            config,
            metrics,
        })
    }

    /// The engine.
    pub fn engine(&self) -> &WharfEngine {
        &self.engine
    }

    /// The key-value backend.
    pub fn kv(&self) -> &Arc<dyn wharf_host_keyvalue::KvBackend> {
        &self.kv
    }

    /// The settings.
    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// The current route table (a snapshot: later swaps do not change it).
    pub fn table(&self) -> Arc<RouteTable> {
        self.table.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn swap(&self, f: impl FnOnce(Vec<Arc<LoadedApp>>) -> Vec<Arc<LoadedApp>>) {
        let mut guard = self.table.write().unwrap_or_else(|p| p.into_inner());
        let apps = f(guard.apps());
        self.metrics.apps.set(apps.len() as i64);
        *guard = Arc::new(RouteTable::build(apps));
    }

    /// An app's log buffer, shared across its versions.
    pub fn logs_for(&self, app: &str) -> Arc<AppLogs> {
        self.logs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(app.to_string())
            .or_default()
            .clone()
    }

    /// The running app named `name`.
    pub fn app(&self, name: &str) -> Option<Arc<LoadedApp>> {
        self.table().apps().into_iter().find(|a| &*a.name == name)
    }

    /// Loads every app in the registry. An app that fails to load is logged and
    /// skipped (the server still starts); its name is returned with the reason.
    pub async fn restore(self: &Arc<Self>) -> Vec<(String, String)> {
        let this = self.clone();
        let res = tokio::task::spawn_blocking(move || {
            let mut loaded = Vec::new();
            let mut failed = Vec::new();
            let records = match this.registry.list() {
                Ok(r) => r,
                Err(e) => return (loaded, vec![("*".to_string(), e.to_string())]),
            };
            for rec in records {
                let t = Instant::now();
                match this.load_record(&rec) {
                    Ok(app) => {
                        tracing::info!(app = %rec.name, version = %rec.version, revision = rec.revision,
                            "restored in {:.1} ms", t.elapsed().as_secs_f64() * 1000.0);
                        loaded.push(Arc::new(app));
                    }
                    Err(e) => {
                        tracing::error!(app = %rec.name, "could not restore: {e}");
                        failed.push((rec.name.clone(), e.to_string()));
                    }
                }
            }
            (loaded, failed)
        })
        .await;
        match res {
            Ok((loaded, failed)) => {
                self.swap(|_| loaded);
                failed
            }
            Err(e) => vec![("*".to_string(), e.to_string())],
        }
    }

    fn load_record(&self, rec: &wharf_registry::AppRecord) -> Result<LoadedApp, DeployError> {
        let manifest = parse_manifest(&rec.manifest)
            .map_err(|e| DeployError::Invalid(format!("stored manifest: {e}")))?;
        let vars = self.resolve_variables(&manifest)?;
        let bundle = match rec.components.iter().find(|b| b.id == BUNDLE_BLOB_ID) {
            Some(b) => Some((
                b.sha256.clone(),
                Bundle::read(&self.registry.get_blob(&b.sha256)?, u64::MAX)?,
            )),
            None => None,
        };
        let mut comps = Vec::new();
        for spec in &manifest.components {
            let blob = rec
                .components
                .iter()
                .find(|b| b.id == spec.id)
                .ok_or_else(|| {
                    DeployError::Invalid(format!("component `{}` has no stored blob", spec.id))
                })?;
            let path = self.registry.blob_path(&blob.sha256)?;
            let mounts = match &bundle {
                Some((sha, b)) => self.extract_mounts(&manifest, &spec.id, sha, b)?,
                None => Vec::new(),
            };
            comps.push(self.prepare_component(
                &manifest,
                &spec.id,
                &path,
                &blob.sha256,
                &vars,
                mounts,
            )?);
        }
        Ok(LoadedApp {
            name: rec.name.as_str().into(),
            version: rec.version.clone(),
            revision: rec.revision,
            deployed_at_ms: rec.deployed_at_ms,
            components: comps,
            logs: self.logs_for(&rec.name),
        })
    }

    /// Resolves the app's `[variables]`: the secrets file (`[app]` table, then top
    /// level), then `WHARF_VAR_<APP>_<NAME>` and `WHARF_VAR_<NAME>` in the server's
    /// environment, then the manifest default. A required variable without a value fails.
    pub fn resolve_variables(
        &self,
        manifest: &Manifest,
    ) -> Result<Vec<(String, String)>, DeployError> {
        let app = &manifest.app.name;
        let secrets: toml::Table = match &self.config.secrets_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    DeployError::Internal(anyhow::anyhow!(
                        "cannot read the secrets file `{}`: {e}",
                        path.display()
                    ))
                })?;
                text.parse().map_err(|e| {
                    DeployError::Internal(anyhow::anyhow!(
                        "the secrets file `{}` is not valid TOML: {e}",
                        path.display()
                    ))
                })?
            }
            None => toml::Table::new(),
        };
        let env_key = |parts: &[&str]| {
            format!("WHARF_VAR_{}", parts.join("_"))
                .to_ascii_uppercase()
                .replace('-', "_")
        };
        let mut out = Vec::new();
        for (name, spec) in &manifest.variables {
            let from_secrets = secrets
                .get(app.as_str())
                .and_then(|t| t.get(name.as_str()))
                .or_else(|| secrets.get(name.as_str()))
                .and_then(|v| v.as_str().map(str::to_string));
            let value = from_secrets
                .or_else(|| std::env::var(env_key(&[app, name])).ok())
                .or_else(|| std::env::var(env_key(&[name])).ok())
                .or_else(|| spec.default.clone());
            match value {
                Some(v) => out.push((name.clone(), v)),
                None if spec.required => {
                    return Err(DeployError::Invalid(format!(
                        "variable `{name}` of app `{app}` is required but has no value; set {} (or {}) in the server's environment, or add `{name} = \"...\"` under `[{app}]` in the secrets file (--secrets-file)",
                        env_key(&[app, name]),
                        env_key(&[name])
                    )));
                }
                None => {}
            }
        }
        Ok(out)
    }

    /// Writes the bundle files of each of a component's mounts into
    /// `STATE/mounts/<bundle sha>/<component>/<index>/`, once (content-addressed by the
    /// bundle; written to a temporary directory and renamed, so a crash leaves none or
    /// all of it). Returns (host dir, guest path) pairs.
    fn extract_mounts(
        &self,
        manifest: &Manifest,
        id: &str,
        bundle_sha: &str,
        bundle: &Bundle,
    ) -> Result<Vec<(PathBuf, String)>, DeployError> {
        let spec = manifest
            .component(id)
            .ok_or_else(|| DeployError::Invalid(format!("no component `{id}`")))?;
        let mut out = Vec::new();
        for (i, m) in spec.files.iter().enumerate() {
            let prefix = format!("{}/", m.source);
            let files: Vec<(&String, &Vec<u8>)> = bundle
                .files
                .iter()
                .filter(|(p, _)| p.starts_with(&prefix))
                .collect();
            if files.is_empty() {
                return Err(DeployError::Invalid(format!(
                    "component `{id}`: files[{i}].source `{}` is not a directory in the bundle",
                    m.source
                )));
            }
            let dir = self
                .config
                .state_dir
                .join("mounts")
                .join(bundle_sha)
                .join(id)
                .join(i.to_string());
            if !dir.exists() {
                let io = |e: std::io::Error| {
                    DeployError::Internal(anyhow::anyhow!("extracting files for `{id}`: {e}"))
                };
                let parent = dir.parent().ok_or_else(|| {
                    DeployError::Internal(anyhow::anyhow!("mount dir has no parent"))
                })?;
                std::fs::create_dir_all(parent).map_err(io)?;
                let tmp = parent.join(format!(".{i}.tmp-{}", std::process::id()));
                let _ = std::fs::remove_dir_all(&tmp);
                for (path, data) in &files {
                    // Bundle paths are normalized (no `..`, not absolute) by Bundle::read.
                    let rel = &path[prefix.len()..];
                    let target = tmp.join(rel);
                    if let Some(p) = target.parent() {
                        std::fs::create_dir_all(p).map_err(io)?;
                    }
                    std::fs::write(&target, data).map_err(io)?;
                }
                if let Err(e) = std::fs::rename(&tmp, &dir) {
                    let _ = std::fs::remove_dir_all(&tmp);
                    // Another deploy of the same bundle may have won the race.
                    if !dir.exists() {
                        return Err(io(e));
                    }
                }
            }
            out.push((dir, m.dest.clone()));
        }
        Ok(out)
    }

    fn prepare_component(
        &self,
        manifest: &Manifest,
        id: &str,
        wasm_path: &std::path::Path,
        sha256: &str,
        variables: &[(String, String)],
        mounts: Vec<(PathBuf, String)>,
    ) -> Result<LoadedComponent, DeployError> {
        let spec = manifest
            .component(id)
            .ok_or_else(|| DeployError::Invalid(format!("no component `{id}`")))?;
        let what = format!("component `{}` (`{}`)", spec.id, spec.source);
        let loaded = load_file(&self.engine, wasm_path, &self.load_opts).map_err(|e| match e {
            WharfError::NotWasm { prefix, .. } => DeployError::Invalid(format!(
                "{what} is not WebAssembly: it starts with {prefix}"
            )),
            WharfError::InvalidWasm { reason, .. } => {
                DeployError::Invalid(format!("{what} is not valid WebAssembly: {reason}"))
            }
            WharfError::CompileBound { reason, .. } => {
                DeployError::Invalid(format!("compiling {what} {reason}"))
            }
            other => DeployError::Internal(anyhow::anyhow!("loading {what}: {other}")),
        })?;
        let exec = match (spec.executor, loaded.program) {
            (Executor::WasiHttp, Program::Component(c)) => {
                Exec::Proxy(self.prepare_proxy(&what, &c)?)
            }
            (Executor::WasiHttp, Program::Module(_)) => {
                return Err(DeployError::Invalid(format!(
                    "{what} is a core module; wharf serve runs `wasi:http/proxy` components \
                     (WASI 0.2), e.g. built with `cargo build --target wasm32-wasip2`, or \
                     wasip1 modules with `executor = {{ type = \"wagi\" }}`"
                )));
            }
            (Executor::Wagi, Program::Module(m)) => Exec::Wagi(
                wagi::prepare(&self.wagi_linker, &m)
                    .map_err(|why| DeployError::Invalid(format!("{what} {why}")))?,
            ),
            (Executor::Plugin, Program::Component(c)) => {
                let config = wharf_plugin::PluginConfig {
                    max_memory: Some(spec.limits.memory.unwrap_or(self.config.default_memory)),
                    timeout: Some(spec.limits.timeout.unwrap_or(self.config.default_timeout)),
                    env: spec
                        .environment
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    inherit_stdio: false,
                };
                let plugin = wharf_plugin::Plugin::new(&self.engine, c, config)
                    .map_err(|e| DeployError::Invalid(format!("{what}: {e}")))?;
                let size = spec
                    .limits
                    .max_concurrency
                    .unwrap_or(self.config.default_max_concurrency)
                    as usize;
                Exec::Plugin(Arc::new(wharf_plugin::PluginPool::new(
                    Arc::new(plugin),
                    size,
                )))
            }
            (Executor::Plugin, Program::Module(_)) => {
                return Err(DeployError::Invalid(format!(
                    "{what} is a core module; plugins are components (e.g. built with wit-bindgen or componentize-py)"
                )));
            }
            (Executor::Wagi, Program::Component(_)) => {
                return Err(DeployError::Invalid(format!(
                    "{what} is a component, but `executor = {{ type = \"wagi\" }}` runs wasip1 core \
                     modules; drop the executor line to serve it as a `wasi:http/proxy` component"
                )));
            }
        };
        let limits = &spec.limits;
        let max_concurrency = limits
            .max_concurrency
            .unwrap_or(self.config.default_max_concurrency);
        let config = variables
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<wasmtime_wasi_config::WasiConfigVariables>();
        Ok(LoadedComponent {
            id: spec.id.as_str().into(),
            route: spec.route.clone(),
            exec,
            grants: Grants {
                env: spec
                    .environment
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                config: Arc::new(config),
                mounts,
                kv_stores: spec.key_value_stores.clone(),
                outbound: Arc::new(wharf_host_outbound::OutboundPolicy::new(
                    wharf_host_outbound::AllowedHosts::parse(&spec.allowed_outbound_hosts)
                        .map_err(|e| {
                            DeployError::Invalid(format!(
                                "component `{}`: allowed_outbound_hosts: {e}",
                                spec.id
                            ))
                        })?,
                )),
            },
            memory: limits.memory.unwrap_or(self.config.default_memory),
            timeout: limits.timeout.unwrap_or(self.config.default_timeout),
            max_body: limits.max_body.unwrap_or(self.config.default_max_body),
            concurrency: Arc::new(Semaphore::new(max_concurrency as usize)),
            max_concurrency,
            source: spec.source.clone(),
            sha256: sha256.to_string(),
        })
    }

    fn prepare_proxy(
        &self,
        what: &str,
        component: &wharf_engine::wasmtime::component::Component,
    ) -> Result<ProxyPre<HostState>, DeployError> {
        let component = component.clone();
        let pre = self.linker.instantiate_pre(&component).map_err(|e| {
            let chain = e
                .chain()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(": ");
            match wharf_engine::error::missing_import_from(&chain) {
                Some(import) => DeployError::Invalid(format!(
                    "{what} imports {import}, which wharf serve does not provide; it provides \
                     WASI 0.2 (wasi:cli, wasi:io, wasi:clocks, wasi:random, wasi:filesystem, \
                     wasi:sockets) and wasi:http"
                )),
                None => DeployError::Invalid(format!("{what} cannot be linked: {chain}")),
            }
        })?;
        let pre = ProxyPre::new(pre).map_err(|_| {
            DeployError::Invalid(format!(
                "{what} does not export `wasi:http/incoming-handler`, so it is not an HTTP \
                 component (a `wasi:http/proxy` world); `wharf run` runs command components"
            ))
        })?;
        Ok(pre)
    }

    /// Deploys (or replaces) an app from bundle bytes. `expected_name`, when given (the
    /// `{name}` of `PUT /v1/apps/{name}`), must equal the manifest's app name.
    pub async fn deploy(
        self: &Arc<Self>,
        bundle: Vec<u8>,
        expected_name: Option<String>,
        mode: DeployMode,
    ) -> Result<AppInfo, DeployError> {
        let res = self.deploy_inner(bundle, expected_name, mode).await;
        self.metrics.deploy(match &res {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        });
        res
    }

    async fn deploy_inner(
        self: &Arc<Self>,
        bundle: Vec<u8>,
        expected_name: Option<String>,
        mode: DeployMode,
    ) -> Result<AppInfo, DeployError> {
        let max = self.config.max_bundle;
        let raw_bundle = bundle;
        let bundle = Bundle::read(&raw_bundle, max)?;
        let text = bundle.manifest().map_err(DeployError::Invalid)?;
        let manifest =
            parse_manifest(&text).map_err(|e| DeployError::Invalid(format!("wharf.toml: {e}")))?;
        let name = manifest.app.name.clone();
        if let Some(expected) = &expected_name
            && expected != &name
        {
            return Err(DeployError::Invalid(format!(
                "the URL names app `{expected}` but wharf.toml names app `{name}`; deploy to \
                 /v1/apps/{name} or change app.name"
            )));
        }
        for spec in &manifest.components {
            if !bundle.files.contains_key(&spec.source) {
                return Err(DeployError::Invalid(format!(
                    "component `{}`: source `{}` is not in the bundle (it has: {})",
                    spec.id,
                    spec.source,
                    bundle.files.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
        }

        let _guard = self.deploy_lock.lock().await;
        let existing = self.app(&name);
        if mode == DeployMode::Create && existing.is_some() {
            return Err(DeployError::Conflict(format!(
                "app `{name}` already exists; replace it with PUT /v1/apps/{name} (`wharf deploy` does)"
            )));
        }
        self.check_routes(&manifest)?;

        let this = self.clone();
        let started = Instant::now();
        let app = tokio::task::spawn_blocking(move || -> Result<LoadedApp, DeployError> {
            let vars = this.resolve_variables(&manifest)?;
            let mut blobs = Vec::new();
            let mut comps = Vec::new();
            // Mounted files travel in the bundle, kept whole as one more blob.
            let bundle_sha = if manifest.components.iter().any(|c| !c.files.is_empty()) {
                let sha = this.registry.put_blob(&raw_bundle)?;
                blobs.push(ComponentBlob {
                    id: BUNDLE_BLOB_ID.to_string(),
                    sha256: sha.clone(),
                    size: raw_bundle.len() as u64,
                });
                Some(sha)
            } else {
                None
            };
            for spec in &manifest.components {
                let bytes = &bundle.files[&spec.source];
                let sha = this.registry.put_blob(bytes)?;
                let path = this.registry.blob_path(&sha)?;
                let mounts = match &bundle_sha {
                    Some(b) => this.extract_mounts(&manifest, &spec.id, b, &bundle)?,
                    None => Vec::new(),
                };
                comps
                    .push(this.prepare_component(&manifest, &spec.id, &path, &sha, &vars, mounts)?);
                blobs.push(ComponentBlob {
                    id: spec.id.clone(),
                    sha256: sha,
                    size: bytes.len() as u64,
                });
            }
            // The commit point: before it nothing changed; after it the new version is
            // durable and the swap below makes it live.
            let rec = this.registry.deploy(
                NewApp {
                    name: manifest.app.name.clone(),
                    version: manifest.app.version.clone(),
                    manifest: text,
                    components: blobs,
                },
                None,
            )?;
            Ok(LoadedApp {
                name: rec.name.as_str().into(),
                version: rec.version,
                revision: rec.revision,
                deployed_at_ms: rec.deployed_at_ms,
                components: comps,
                logs: this.logs_for(&rec.name),
            })
        })
        .await
        .map_err(|e| DeployError::Internal(anyhow::anyhow!("deploy task failed: {e}")))??;
        let app = Arc::new(app);
        let info = app.info();
        let swapped = app.clone();
        self.swap(move |apps| {
            let mut apps: Vec<_> = apps
                .into_iter()
                .filter(|a| a.name != swapped.name)
                .collect();
            apps.push(swapped);
            apps
        });
        tracing::info!(app = %info.name, version = %info.version, revision = info.revision,
            "deployed in {:.0} ms", started.elapsed().as_secs_f64() * 1000.0);
        self.collect_garbage();
        Ok(info)
    }

    /// Deletes blobs that no app references any more (old versions, removed apps,
    /// interrupted deploys), in the background. The grace period keeps blobs a deploy
    /// in progress has just written.
    pub fn collect_garbage(self: &Arc<Self>) {
        let this = self.clone();
        tokio::task::spawn_blocking(move || match this.registry.gc(BLOB_GC_GRACE) {
            Ok(0) => {}
            Ok(n) => tracing::info!("registry: removed {n} unreferenced blob file(s)"),
            Err(e) => tracing::warn!("registry garbage collection failed: {e}"),
        });
    }

    /// Refuses routes that overlap another app's, naming both.
    fn check_routes(&self, manifest: &Manifest) -> Result<(), DeployError> {
        let table = self.table();
        for other in table.apps() {
            if *other.name == *manifest.app.name {
                continue;
            }
            for spec in &manifest.components {
                for oc in &other.components {
                    let (Some(route), Some(other_route)) = (&spec.route, &oc.route) else {
                        continue;
                    };
                    if route.overlaps(other_route) {
                        return Err(DeployError::Conflict(format!(
                            "route `{}` of component `{}` overlaps route `{}` of component `{}` \
                             in app `{}`; choose a route no other app serves",
                            route, spec.id, other_route, oc.id, other.name
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes an app: it stops receiving new requests at once; running ones finish.
    pub async fn remove(self: &Arc<Self>, name: &str) -> Result<AppInfo, DeployError> {
        let _guard = self.deploy_lock.lock().await;
        let current = self
            .app(name)
            .ok_or_else(|| DeployError::NotFound(name.to_string()))?;
        let this = self.clone();
        let n = name.to_string();
        tokio::task::spawn_blocking(move || this.registry.remove(&n))
            .await
            .map_err(|e| DeployError::Internal(anyhow::anyhow!("remove task failed: {e}")))??;
        self.swap(|apps| apps.into_iter().filter(|a| &*a.name != name).collect());
        tracing::info!(app = %name, "removed");
        self.collect_garbage();
        Ok(current.info())
    }
}
