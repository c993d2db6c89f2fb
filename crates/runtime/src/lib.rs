//! Wharf's runtime: it owns the deployed apps.
//!
//! - The **deploy pipeline**, as named steps, each with its own error variant:
//!   [`read`](Runtime::deploy) the bundle → validate the manifest → verify (the seam
//!   signatures fill: [`Verifier`]) → check it against the live apps (each [`Trigger`]
//!   checks what it owns, e.g. HTTP route overlaps) → store the blobs → prepare
//!   (compile, bounded and cached; pre-link with the one linker of `wharf-host`) →
//!   commit to the registry (compare-and-set on the live revision) → install.
//! - **[`Runtime::apply`]**: the one way a registry record becomes a live app. Restore at
//!   start applies every record; a cluster's registry watch (later) applies each change;
//!   a local deploy installs what it prepared through the same `install`.
//! - One **lock** orders all of it: deploys, removals, applies and the whole restore run
//!   one at a time, so a deploy that arrives during restore waits for it and is checked
//!   against the restored apps, never lost.
//! - The **trigger seam** ([`Trigger`]): triggers (HTTP today, streams next) are told
//!   whenever the set of live apps changes and rebuild what they serve from it.
//!
//! Requests already running keep the `Arc<LoadedApp>` they started with, so they finish
//! on the version they began on. Any failure before the commit leaves the registry and
//! the live apps as they were.
#![deny(missing_docs)]

pub mod app;
pub mod bundle;
mod gc;
pub mod metrics;
mod mounts;
mod prepare;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use wharf_engine::WharfEngine;
use wharf_engine::compile::Compiler;
use wharf_engine::cpu::{CpuLanes, CpuShare};
use wharf_engine::load::LoadOptions;
use wharf_host::Services;
use wharf_host_logging::AppLogs;
use wharf_manifest::{Manifest, parse_manifest};
use wharf_registry::{AppRecord, ComponentBlob, NewApp, Registry, RegistryError};

pub use app::{AppInfo, Apps, ComponentInfo, Exec, HttpPre, LoadedApp, LoadedComponent};
pub use bundle::{Bundle, BundleError};
pub use metrics::Metrics;

/// The registry entry that keeps a whole bundle (for apps with file mounts).
pub const BUNDLE_BLOB_ID: &str = "@bundle";

/// How old an unreferenced blob must be before garbage collection deletes it.
pub const BLOB_GC_GRACE: Duration = Duration::from_secs(600);

/// Instance slots of the server's pool by default (`wharf serve --pool-instances`).
pub const DEFAULT_POOL_INSTANCES: u32 = wharf_engine::config::DEFAULT_SERVER_POOL_INSTANCES;
/// Default ceiling on a component's memory cap (`--ceiling-memory`).
pub const DEFAULT_CEILING_MEMORY: u64 = 1 << 30;
/// Default ceiling on a component's timeout (`--ceiling-timeout`).
pub const DEFAULT_CEILING_TIMEOUT: Duration = Duration::from_secs(300);
/// Default ceiling on a component's request-body cap (`--ceiling-max-body`).
pub const DEFAULT_CEILING_MAX_BODY: u64 = 100 << 20;

/// A component's fair share of a pool of `pool_instances` slots, the default
/// `max_concurrency`: a quarter of the pool, at least 1.
pub fn fair_share(pool_instances: u32) -> u32 {
    (pool_instances / 4).max(1)
}

/// Server-wide settings and per-component defaults.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Where the registry, blobs, mounts and artifact cache live.
    pub state_dir: PathBuf,
    /// Default memory cap per instance (all memories together).
    pub default_memory: u64,
    /// Default wall-clock deadline per request or call.
    pub default_timeout: Duration,
    /// Default request-body cap.
    pub default_max_body: u64,
    /// Default cap on concurrent instances per component: a fair share of the
    /// instance pool ([`fair_share`]), so one component cannot take every slot.
    pub default_max_concurrency: u32,
    /// Ceiling on a manifest's `memory`: a deploy asking for more is refused.
    pub ceiling_memory: u64,
    /// Ceiling on a manifest's `timeout`.
    pub ceiling_timeout: Duration,
    /// Ceiling on a manifest's `max_body`.
    pub ceiling_max_body: u64,
    /// Ceiling on a manifest's `max_concurrency`.
    pub ceiling_concurrency: u32,
    /// Largest bundle accepted.
    pub max_bundle: u64,
    /// How to compile (a bounded child process in the server).
    pub compiler: Compiler,
    /// A TOML file of variable values (`name = "value"` for every app, or under an
    /// `[app-name]` table for one app), read at each deploy and restore.
    pub secrets_file: Option<PathBuf>,
    /// Whether a manifest may grant outbound requests to private, loopback or
    /// link-local addresses (only ever as IP literals); off by default.
    pub allow_private_outbound: bool,
    /// CPU lanes shared by guests that run past their first slice (`None`: one fewer
    /// than the async runtime's worker threads, at least one). See
    /// [`wharf_engine::cpu`].
    pub cpu_lanes: Option<usize>,
}

impl RuntimeConfig {
    /// Defaults for a state directory.
    pub fn new(state_dir: PathBuf) -> RuntimeConfig {
        RuntimeConfig {
            state_dir,
            default_memory: 128 << 20,
            default_timeout: Duration::from_secs(30),
            default_max_body: 10 << 20,
            default_max_concurrency: fair_share(DEFAULT_POOL_INSTANCES),
            ceiling_memory: DEFAULT_CEILING_MEMORY,
            ceiling_timeout: DEFAULT_CEILING_TIMEOUT,
            ceiling_max_body: DEFAULT_CEILING_MAX_BODY,
            ceiling_concurrency: DEFAULT_POOL_INSTANCES / 2,
            max_bundle: bundle::DEFAULT_MAX_BUNDLE,
            compiler: Compiler::InProcess,
            secrets_file: None,
            allow_private_outbound: false,
            cpu_lanes: None,
        }
    }
}

/// What went wrong with a deploy, by pipeline step; the admin API maps each kind to a
/// status code in one place.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// read: the upload is not a usable bundle (400).
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// validate / prepare: the manifest or a component is invalid (400).
    #[error("{0}")]
    Invalid(String),
    /// verify: the bundle was refused by the verification policy (403).
    #[error("{0}")]
    Refused(String),
    /// check / commit: a trigger conflict, the app exists (create) or changed
    /// concurrently (409).
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
            DeployError::Refused(_) => "refused",
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

/// The verify step of the pipeline: every load path (deploy, restore, apply) passes the
/// bundle's Wasm through it before anything is compiled. Signatures plug in here.
pub trait Verifier: Send + Sync + 'static {
    /// Accepts or refuses component `id`'s Wasm bytes of app `app`; the error says which
    /// rule refused it and how to fix that.
    fn verify(&self, app: &str, id: &str, wasm: &[u8]) -> Result<(), String>;
}

/// The default policy: accept everything.
pub struct AcceptAll;

impl Verifier for AcceptAll {
    fn verify(&self, _app: &str, _id: &str, _wasm: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

/// A way of invoking components (HTTP, streams): the runtime tells it when the live apps
/// change, and lets it veto a deploy that conflicts with what it serves.
pub trait Trigger: Send + Sync + 'static {
    /// A short name for logs, e.g. `http`.
    fn kind(&self) -> &'static str;
    /// Checks `manifest` (about to replace or add app `manifest.app.name`) against the
    /// live apps; runs under the runtime's lock, so nothing changes meanwhile. The error
    /// names both sides of a conflict.
    fn check(&self, manifest: &Manifest, live: &Apps) -> Result<(), String>;
    /// The live apps changed (deploy, replace, remove, restore, apply).
    fn apps_changed(&self, live: &Arc<Apps>);
}

/// What [`Runtime::apply`] did with a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The record's revision is now live.
    Installed,
    /// That revision was already live; nothing changed.
    AlreadyLive,
}

/// The runtime: deployed apps and their lifecycle.
pub struct Runtime {
    engine: WharfEngine,
    services: Services,
    linkers: prepare::Linkers,
    registry: Arc<dyn Registry>,
    verifier: Arc<dyn Verifier>,
    load_opts: LoadOptions,
    live: RwLock<Arc<Apps>>,
    lock: Arc<tokio::sync::Mutex<()>>,
    logs: Mutex<HashMap<String, Arc<AppLogs>>>,
    cpu: CpuLanes,
    cpu_shares: Mutex<HashMap<String, CpuShare>>,
    triggers: RwLock<Vec<Arc<dyn Trigger>>>,
    config: RuntimeConfig,
    /// Process metrics.
    pub metrics: Arc<Metrics>,
}

fn internal(what: &str) -> impl Fn(tokio::task::JoinError) -> DeployError + '_ {
    move |e| DeployError::Internal(anyhow::anyhow!("{what} task failed: {e}"))
}

impl Runtime {
    /// A runtime with no apps live yet (call [`Runtime::restore`] to load the registry's).
    pub fn new(
        engine: WharfEngine,
        registry: Arc<dyn Registry>,
        services: Services,
        config: RuntimeConfig,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Runtime> {
        let linkers = prepare::Linkers::new(&engine)?;
        let load_opts = LoadOptions {
            cache: Some(wharf_engine::artifact::ArtifactCache::new(
                config.state_dir.join("cache"),
            )),
            compiler: config.compiler.clone(),
            key_path: Some(config.state_dir.join("artifact.key")),
            progress: false,
        };
        Ok(Runtime {
            engine,
            services,
            linkers,
            registry,
            verifier: Arc::new(AcceptAll),
            load_opts,
            live: RwLock::new(Arc::new(Apps::default())),
            lock: Arc::new(tokio::sync::Mutex::new(())),
            logs: Mutex::new(HashMap::new()),
            cpu: CpuLanes::new(config.cpu_lanes.unwrap_or_else(|| {
                let workers = tokio::runtime::Handle::try_current()
                    .map(|h| h.metrics().num_workers())
                    .unwrap_or_else(|_| {
                        std::thread::available_parallelism().map_or(1, |n| n.get())
                    });
                wharf_engine::cpu::default_lanes(workers)
            })),
            cpu_shares: Mutex::new(HashMap::new()),
            triggers: RwLock::new(Vec::new()),
            config,
            metrics,
        })
    }

    /// Replaces the verification policy (before serving).
    pub fn with_verifier(mut self, verifier: Arc<dyn Verifier>) -> Runtime {
        self.verifier = verifier;
        self
    }

    /// Plugs a trigger in; it is told the current apps at once.
    pub fn add_trigger(&self, trigger: Arc<dyn Trigger>) {
        // Under the write lock, so an install running now either finished swapping
        // before `apps()` is read here, or notifies this trigger after it.
        let mut triggers = self.triggers.write().unwrap_or_else(|p| p.into_inner());
        trigger.apps_changed(&self.apps());
        triggers.push(trigger);
    }

    /// The engine.
    pub fn engine(&self) -> &WharfEngine {
        &self.engine
    }

    /// The process-wide backends.
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// The settings.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// The live apps (a snapshot: later changes do not alter it).
    pub fn apps(&self) -> Arc<Apps> {
        self.live.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The live app named `name`.
    pub fn app(&self, name: &str) -> Option<Arc<LoadedApp>> {
        self.apps().get(name).cloned()
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

    /// An app's share of the CPU lanes, shared across its versions (so an update does
    /// not double the app's share while the old version drains).
    pub fn cpu_for(&self, app: &str) -> CpuShare {
        let mut shares = self.cpu_shares.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = shares.get(app) {
            return s.clone();
        }
        let counter = self
            .metrics
            .cpu_wait
            .get_or_create(&metrics::AppLabel {
                app: app.to_string(),
            })
            .clone();
        let share = self.cpu.share(Arc::new(move |d: Duration| {
            counter.inc_by(d.as_secs_f64());
        }));
        shares.insert(app.to_string(), share.clone());
        share
    }

    /// The server's CPU lanes.
    pub fn cpu_lanes(&self) -> &CpuLanes {
        &self.cpu
    }

    /// Swaps the live set and tells every trigger. Callers hold the lock.
    fn install(&self, change: impl FnOnce(&Apps) -> Apps) {
        let apps = {
            let mut guard = self.live.write().unwrap_or_else(|p| p.into_inner());
            let next = Arc::new(change(&guard));
            *guard = next.clone();
            next
        };
        self.metrics
            .apps
            .set(i64::try_from(apps.len()).unwrap_or(i64::MAX));
        for t in self
            .triggers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            t.apps_changed(&apps);
        }
    }

    /// Loads every app in the registry, holding the lock throughout (so deploys that
    /// arrive meanwhile wait and then apply on top). An app that fails to load is logged
    /// and skipped (the server still starts); its name is returned with the reason.
    pub async fn restore(self: &Arc<Self>) -> Vec<(String, String)> {
        let _guard = self.lock.clone().lock_owned().await;
        let snapshot = match self.registry.snapshot().await {
            Ok(s) => s,
            Err(e) => return vec![("*".to_string(), e.to_string())],
        };
        let mut failed = Vec::new();
        for rec in snapshot.apps {
            let t = Instant::now();
            match self.apply_locked(&rec).await {
                Ok(_) => {
                    tracing::info!(app = %rec.name, version = %rec.version, revision = rec.revision,
                    "restored in {:.1} ms", t.elapsed().as_secs_f64() * 1000.0)
                }
                Err(e) => {
                    tracing::error!(app = %rec.name, "could not restore: {e}");
                    failed.push((rec.name.clone(), e.to_string()));
                }
            }
        }
        failed
    }

    /// Makes a registry record live: verify, prepare and install it, unless that
    /// revision is already live. The one path from a record to a live app (restore at
    /// start, and registry watch events in a cluster).
    pub async fn apply(self: &Arc<Self>, rec: &AppRecord) -> Result<Applied, DeployError> {
        let _guard = self.lock.lock().await;
        self.apply_locked(rec).await
    }

    async fn apply_locked(self: &Arc<Self>, rec: &AppRecord) -> Result<Applied, DeployError> {
        if self
            .app(&rec.name)
            .is_some_and(|a| a.revision == rec.revision && a.deployed_at_ms == rec.deployed_at_ms)
        {
            return Ok(Applied::AlreadyLive);
        }
        let manifest = parse_manifest(&rec.manifest)
            .map_err(|e| DeployError::Invalid(format!("stored manifest: {e}")))?;
        let variables = self.resolve_variables(&manifest)?;
        // The stored bundle's bytes are fetched here and parsed on the blocking thread
        // below, with the other CPU-bound steps.
        let bundle_bytes = match rec.components.iter().find(|b| b.id == BUNDLE_BLOB_ID) {
            Some(b) => Some((b.sha256.clone(), self.registry.get_blob(&b.sha256).await?)),
            None => None,
        };
        let mut sources = Vec::new();
        for spec in &manifest.components {
            let blob = rec
                .components
                .iter()
                .find(|b| b.id == spec.id)
                .ok_or_else(|| {
                    DeployError::Invalid(format!("component `{}` has no stored blob", spec.id))
                })?;
            let path = self.registry.fetch_blob(&blob.sha256).await?;
            sources.push(prepare::Source {
                id: spec.id.clone(),
                path,
                sha256: blob.sha256.clone(),
            });
        }
        let this = self.clone();
        let rec2 = rec.clone();
        let app = tokio::task::spawn_blocking(move || {
            // A stored bundle passed the size bound when it was deployed; a later, lower
            // --max-bundle-size must not make it unrestorable.
            let bundle = match bundle_bytes {
                Some((sha, bytes)) => Some((sha, Bundle::read(&bytes, u64::MAX)?)),
                None => None,
            };
            for s in &sources {
                let bytes = std::fs::read(&s.path).map_err(|e| {
                    DeployError::Internal(anyhow::anyhow!("reading blob {}: {e}", s.sha256))
                })?;
                this.verify_one(&manifest.app.name, &s.id, &bytes)?;
            }
            let comps = this.prepare_all(
                &manifest,
                &sources,
                &variables,
                bundle.as_ref().map(|(sha, b)| (sha.as_str(), b)),
            )?;
            Ok::<_, DeployError>(this.loaded(&rec2, comps))
        })
        .await
        .map_err(internal("apply"))??;
        let app = Arc::new(app);
        self.install(|apps| apps.with(app));
        Ok(Applied::Installed)
    }

    fn loaded(&self, rec: &AppRecord, components: Vec<LoadedComponent>) -> LoadedApp {
        LoadedApp {
            name: rec.name.as_str().into(),
            version: rec.version.clone(),
            revision: rec.revision,
            deployed_at_ms: rec.deployed_at_ms,
            components,
            logs: self.logs_for(&rec.name),
        }
    }

    fn verify_one(&self, app: &str, id: &str, wasm: &[u8]) -> Result<(), DeployError> {
        self.verifier.verify(app, id, wasm).map_err(|why| {
            DeployError::Refused(format!(
                "component `{id}` of app `{app}` was refused: {why}"
            ))
        })
    }

    /// Resolves the app's variables (see `wharf-host-config`).
    pub fn resolve_variables(
        &self,
        manifest: &Manifest,
    ) -> Result<Vec<(String, String)>, DeployError> {
        let declared = manifest
            .variables
            .iter()
            .map(|(name, spec)| wharf_host_config::Declared {
                name,
                default: spec.default.as_deref(),
                required: spec.required,
            });
        wharf_host_config::resolve(
            &manifest.app.name,
            declared,
            self.config.secrets_file.as_deref(),
        )
        .map_err(|e| match e {
            e if e.is_deploy_error() => DeployError::Invalid(e.to_string()),
            other => DeployError::Internal(anyhow::anyhow!(other.to_string())),
        })
    }

    /// Deploys (or replaces) an app from bundle bytes. `expected_name`, when given (the
    /// `{name}` of `PUT /v1/apps/{name}`), must equal the manifest's app name.
    pub async fn deploy(
        self: &Arc<Self>,
        bundle: Vec<u8>,
        expected_name: Option<String>,
        mode: DeployMode,
    ) -> Result<AppInfo, DeployError> {
        let res = self.deploy_steps(bundle, expected_name, mode).await;
        self.metrics.deploy(match &res {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        });
        res
    }

    async fn deploy_steps(
        self: &Arc<Self>,
        raw: Vec<u8>,
        expected_name: Option<String>,
        mode: DeployMode,
    ) -> Result<AppInfo, DeployError> {
        let started = Instant::now();
        let raw: Arc<[u8]> = raw.into();
        // read + validate + verify: pure work on the upload, off the async threads.
        let max = self.config.max_bundle;
        let this = self.clone();
        let raw2 = raw.clone();
        let (bundle, text, manifest) = tokio::task::spawn_blocking(move || {
            let bundle = Bundle::read(&raw2, max)?;
            let (text, manifest) = validate(&bundle, expected_name.as_deref())?;
            for spec in &manifest.components {
                this.verify_one(&manifest.app.name, &spec.id, &bundle.files[&spec.source])?;
            }
            Ok::<_, DeployError>((bundle, text, manifest))
        })
        .await
        .map_err(internal("deploy"))??;

        let _guard = self.lock.lock().await;
        // check: against what is live now, under the lock.
        let name = manifest.app.name.clone();
        let live = self.apps();
        if mode == DeployMode::Create && live.get(&name).is_some() {
            return Err(DeployError::Conflict(format!(
                "app `{name}` already exists; replace it with PUT /v1/apps/{name} (`wharf deploy` does)"
            )));
        }
        // The revision this deploy replaces: the live one, or a stored one that failed
        // to restore (so a fixed version can replace it).
        let existing = match live.get(&name) {
            Some(a) => a.revision,
            None => self.registry.get(&name).await?.map_or(0, |r| r.revision),
        };
        for t in self
            .triggers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            t.check(&manifest, &live).map_err(DeployError::Conflict)?;
        }

        // store: blobs first (content-addressed, atomic), so the commit refers only to
        // durable blobs.
        let needs_bundle = manifest.components.iter().any(|c| !c.files.is_empty());
        let mut blobs = Vec::new();
        let bundle_sha = if needs_bundle {
            let sha = self.registry.put_blob(raw.clone()).await?;
            blobs.push(ComponentBlob {
                id: BUNDLE_BLOB_ID.to_string(),
                sha256: sha.clone(),
                size: raw.len() as u64,
            });
            Some(sha)
        } else {
            None
        };
        let mut sources = Vec::new();
        for spec in &manifest.components {
            let bytes: Arc<[u8]> = bundle.files[&spec.source].as_slice().into();
            let size = bytes.len() as u64;
            let sha = self.registry.put_blob(bytes).await?;
            let path = self.registry.fetch_blob(&sha).await?;
            sources.push(prepare::Source {
                id: spec.id.clone(),
                path,
                sha256: sha.clone(),
            });
            blobs.push(ComponentBlob {
                id: spec.id.clone(),
                sha256: sha,
                size,
            });
        }

        // prepare: compile (bounded, cached) and pre-link.
        let this = self.clone();
        let manifest = Arc::new(manifest);
        let m2 = manifest.clone();
        let comps = tokio::task::spawn_blocking(move || {
            let variables = this.resolve_variables(&m2)?;
            this.prepare_all(
                &m2,
                &sources,
                &variables,
                bundle_sha.as_deref().map(|sha| (sha, &bundle)),
            )
        })
        .await
        .map_err(internal("prepare"))??;

        // commit: the single commit point, compare-and-set on the revision this deploy
        // was checked against (0 = must not exist).
        let rec = self
            .registry
            .deploy(
                NewApp {
                    name: manifest.app.name.clone(),
                    version: manifest.app.version.clone(),
                    manifest: text,
                    components: blobs,
                },
                Some(existing),
            )
            .await?;

        // install.
        let app = Arc::new(self.loaded(&rec, comps));
        let info = app.info();
        self.install(|apps| apps.with(app));
        tracing::info!(app = %info.name, version = %info.version, revision = info.revision,
            "deployed in {:.0} ms", started.elapsed().as_secs_f64() * 1000.0);
        self.collect_garbage();
        Ok(info)
    }

    /// Removes an app: it stops receiving new requests at once; running ones finish.
    /// Its log buffer and key-value data are kept.
    pub async fn remove(self: &Arc<Self>, name: &str) -> Result<AppInfo, DeployError> {
        let _guard = self.lock.lock().await;
        let current = self
            .app(name)
            .ok_or_else(|| DeployError::NotFound(name.to_string()))?;
        self.registry.remove(name, Some(current.revision)).await?;
        self.install(|apps| apps.without(name));
        tracing::info!(app = %name, "removed");
        self.collect_garbage();
        Ok(current.info())
    }

    /// Removes app `name` if it is deployed, then deletes what it leaves behind: its
    /// key-value data in every store and its log buffer. Both happen under the deploy
    /// lock, so a deploy of the same name runs wholly before or wholly after, never
    /// seeing half the data. A name that is not deployed is purged all the same (the
    /// data of an app removed earlier). Requests of the app still in flight when it is
    /// removed may write after the purge.
    pub async fn remove_and_purge(
        self: &Arc<Self>,
        name: &str,
    ) -> Result<(Option<AppInfo>, u64), DeployError> {
        let removed = {
            let _guard = self.lock.lock().await;
            let removed = match self.app(name) {
                Some(current) => {
                    self.registry.remove(name, Some(current.revision)).await?;
                    self.install(|apps| apps.without(name));
                    tracing::info!(app = %name, "removed");
                    Some(current.info())
                }
                None => None,
            };
            let keys = match &self.services.kv {
                Some(kv) => kv.purge(name).await.map_err(|e| {
                    DeployError::Internal(anyhow::anyhow!(
                        "purging the key-value data of app `{name}`{}: {e}",
                        if removed.is_some() {
                            " (the app itself was removed)"
                        } else {
                            ""
                        }
                    ))
                })?,
                None => 0,
            };
            self.logs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(name);
            tracing::info!(app = %name, keys, "purged");
            (removed, keys)
        };
        self.collect_garbage();
        Ok(removed)
    }

    /// Deletes blobs that no app references any more, in the background. The grace
    /// period keeps blobs a deploy in progress has just written.
    pub fn collect_garbage(self: &Arc<Self>) {
        let this = self.clone();
        tokio::spawn(async move {
            match this.registry.gc(BLOB_GC_GRACE).await {
                Ok(0) => {}
                Ok(n) => tracing::info!("registry: removed {n} unreferenced blob file(s)"),
                Err(e) => tracing::warn!("registry garbage collection failed: {e}"),
            }
            // Extracted mounts and compiled artifacts no app references (see gc.rs).
            match gc::collect(&this).await {
                Ok(r) if r.mounts + r.artifacts > 0 => tracing::info!(
                    "state: removed {} mount dir(s) and {} cache file(s) no app references",
                    r.mounts,
                    r.artifacts
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!("state garbage collection failed: {e:#}"),
            }
        });
    }
}

/// The validate step: the manifest parses, names the expected app, and every
/// component's source is in the bundle.
fn validate(bundle: &Bundle, expected: Option<&str>) -> Result<(String, Manifest), DeployError> {
    let text = bundle.manifest().map_err(DeployError::Invalid)?;
    let manifest =
        parse_manifest(&text).map_err(|e| DeployError::Invalid(format!("wharf.toml: {e}")))?;
    let name = &manifest.app.name;
    if let Some(expected) = expected
        && expected != name
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
    Ok((text, manifest))
}
