//! Live apps: what a deploy or a registry record turns into, and how the admin API
//! describes them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wharf_host::{Grants, HostState, Identity, ModuleState};
use wharf_host_logging::AppLogs;
use wharf_manifest::Route;

/// A `wasi:http` component, by the WASI version it targets, told from its exports
/// (no manifest flag): both run one fresh store per request with the same grants,
/// limits and deadlines.
pub enum HttpPre {
    /// WASI 0.2: exports `wasi:http/incoming-handler@0.2.x` (the `wasi:http/proxy`
    /// world).
    P2(ProxyPre<HostState>),
    /// WASI 0.3: exports `wasi:http/handler@0.3.0` (the `wasi:http/service` world),
    /// called with the component model's async ABI.
    P3(ServicePre<HostState>),
}

impl HttpPre {
    /// The WASI version the component targets: `0.2` or `0.3`.
    pub fn wasi_version(&self) -> &'static str {
        match self {
            HttpPre::P2(_) => "0.2",
            HttpPre::P3(_) => "0.3",
        }
    }
}

/// How a component is invoked, pre-linked once per version.
pub enum Exec {
    /// A `wasi:http` component (WASI 0.2 or 0.3).
    Proxy(HttpPre),
    /// A wasip1 command module, run CGI-style (WAGI).
    Wagi(wharf_engine::wasmtime::InstancePre<ModuleState>),
    /// A plugin: exports called with typed values, on pooled warm instances.
    Plugin(Arc<wharf_plugin::PluginPool>),
}

impl Exec {
    /// `wasi-http`, `wagi` or `plugin`.
    pub fn name(&self) -> &'static str {
        match self {
            Exec::Proxy(_) => "wasi-http",
            Exec::Wagi(_) => "wagi",
            Exec::Plugin(_) => "plugin",
        }
    }
}

/// A component ready to run.
pub struct LoadedComponent {
    /// Component id from the manifest.
    pub id: Arc<str>,
    /// Its HTTP route (`None` for components no HTTP trigger serves).
    pub route: Option<Route>,
    /// Pre-linked, instantiated per request or call.
    pub exec: Exec,
    /// What it is granted.
    pub grants: Grants,
    /// Who its stores belong to and where their output goes.
    pub identity: Identity,
    /// Memory cap (all memories of an instance together).
    pub memory: u64,
    /// Deadline per request or call.
    pub timeout: Duration,
    /// Request-body cap.
    pub max_body: u64,
    /// Concurrency cap (permits = live instances).
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

impl LoadedApp {
    /// The app's plugin components: (component id, pool).
    pub fn plugins(&self) -> impl Iterator<Item = (&str, &Arc<wharf_plugin::PluginPool>)> {
        self.components.iter().filter_map(|c| match &c.exec {
            Exec::Plugin(p) => Some((&*c.id, p)),
            _ => None,
        })
    }

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
                    executor: c.exec.name().to_string(),
                    source: c.source.clone(),
                    sha256: c.sha256.clone(),
                    memory: c.memory,
                    timeout_ms: u64::try_from(c.timeout.as_millis()).unwrap_or(u64::MAX),
                    max_body: c.max_body,
                    max_concurrency: c.max_concurrency,
                })
                .collect(),
        }
    }
}

/// The live apps, by name: an immutable snapshot, swapped whole on every change.
#[derive(Default)]
pub struct Apps {
    by_name: BTreeMap<String, Arc<LoadedApp>>,
}

impl Apps {
    /// The app named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<LoadedApp>> {
        self.by_name.get(name)
    }

    /// Every app, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<LoadedApp>> {
        self.by_name.values()
    }

    /// How many apps are live.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// No app is live.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub(crate) fn with(&self, app: Arc<LoadedApp>) -> Apps {
        let mut by_name = self.by_name.clone();
        by_name.insert(app.name.to_string(), app);
        Apps { by_name }
    }

    pub(crate) fn without(&self, name: &str) -> Apps {
        let mut by_name = self.by_name.clone();
        by_name.remove(name);
        Apps { by_name }
    }
}

/// An app as the admin API and the CLI describe it (the one definition both sides use).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentInfo {
    /// Id.
    pub id: String,
    /// Route pattern (`None` for plugins).
    pub route: Option<String>,
    /// `wasi-http`, `wagi` or `plugin`.
    pub executor: String,
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
