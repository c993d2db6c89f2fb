//! The prepare step: compile a component's Wasm (bounded, cached) and pre-link it for
//! its executor with the one linker of `wharf-host`, with its grants built once.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Semaphore;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wharf_engine::failure::{GuestFailure, link_failure};
use wharf_engine::load::{Program, load_file};
use wharf_engine::wasmtime;
use wharf_engine::{WharfEngine, WharfError};
use wharf_host::{
    COMPONENT_IMPORTS, Grants, HostState, Identity, MODULE_IMPORTS, ModuleState, Output,
};
use wharf_manifest::{Executor, Manifest};

use crate::app::{Exec, LoadedComponent};
use crate::bundle::Bundle;
use crate::{DeployError, Runtime};

/// The two linkers, built once per runtime.
pub(crate) struct Linkers {
    component: wasmtime::component::Linker<HostState>,
    module: wasmtime::Linker<ModuleState>,
}

impl Linkers {
    pub(crate) fn new(engine: &WharfEngine) -> anyhow::Result<Linkers> {
        Ok(Linkers {
            component: wharf_host::component_linker(engine.engine())
                .map_err(|e| anyhow::anyhow!("building the component linker: {e:#}"))?,
            module: wharf_host::module_linker(engine.engine())
                .map_err(|e| anyhow::anyhow!("building the module linker: {e:#}"))?,
        })
    }
}

/// A component's stored Wasm.
pub(crate) struct Source {
    pub id: String,
    pub path: PathBuf,
    pub sha256: String,
}

fn link_error(what: &str, e: &wasmtime::Error, provides: &str) -> DeployError {
    match link_failure(e) {
        GuestFailure::MissingImport { import } => DeployError::Invalid(format!(
            "{what} imports {import}, which this executor does not provide; it provides {provides}"
        )),
        other => DeployError::Invalid(format!("{what} cannot be linked: {other}")),
    }
}

impl Runtime {
    /// Prepares every component of `manifest` from its stored source.
    pub(crate) fn prepare_all(
        &self,
        manifest: &Manifest,
        sources: &[Source],
        variables: &[(String, String)],
        bundle: Option<(&str, &Bundle)>,
    ) -> Result<Vec<LoadedComponent>, DeployError> {
        let mut out = Vec::new();
        for src in sources {
            let mounts = match bundle {
                Some((sha, b)) => {
                    crate::mounts::extract(&self.config.state_dir, manifest, &src.id, sha, b)?
                }
                None => Vec::new(),
            };
            out.push(self.prepare_component(manifest, src, variables, mounts)?);
        }
        Ok(out)
    }

    fn prepare_component(
        &self,
        manifest: &Manifest,
        src: &Source,
        variables: &[(String, String)],
        mounts: Vec<(PathBuf, String)>,
    ) -> Result<LoadedComponent, DeployError> {
        let spec = manifest
            .component(&src.id)
            .ok_or_else(|| DeployError::Invalid(format!("no component `{}`", src.id)))?;
        let what = format!("component `{}` (`{}`)", spec.id, spec.source);
        let grants = Grants::from_component(spec, variables, mounts)
            .map_err(|e| DeployError::Invalid(e.to_string()))?;
        let identity = Identity {
            app: manifest.app.name.as_str().into(),
            component: spec.id.as_str().into(),
            logs: self.logs_for(&manifest.app.name),
        };
        let limits = &spec.limits;
        let memory = limits.memory.unwrap_or(self.config.default_memory);
        let timeout = limits.timeout.unwrap_or(self.config.default_timeout);
        let max_concurrency = limits
            .max_concurrency
            .unwrap_or(self.config.default_max_concurrency);
        let loaded = load_file(&self.engine, &src.path, &self.load_opts).map_err(|e| match e {
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
                let pre = self
                    .linkers
                    .component
                    .instantiate_pre(&c)
                    .map_err(|e| link_error(&what, &e, COMPONENT_IMPORTS))?;
                Exec::Proxy(ProxyPre::new(pre).map_err(|_| {
                    DeployError::Invalid(format!(
                        "{what} does not export `wasi:http/incoming-handler`, so it is not an HTTP \
                         component (a `wasi:http/proxy` world); `wharf run` runs command components"
                    ))
                })?)
            }
            (Executor::WasiHttp, Program::Module(_)) => {
                return Err(DeployError::Invalid(format!(
                    "{what} is a core module; wharf serve runs `wasi:http/proxy` components \
                     (WASI 0.2), e.g. built with `cargo build --target wasm32-wasip2`, or \
                     wasip1 modules with `executor = {{ type = \"wagi\" }}`"
                )));
            }
            (Executor::Wagi, Program::Module(m)) => {
                grants
                    .check_core_module(&spec.id, "the WAGI executor")
                    .map_err(|e| DeployError::Invalid(e.to_string()))?;
                if m.get_export("_start").is_none() {
                    return Err(DeployError::Invalid(format!(
                        "{what} has no `_start` export, so it is not a WASI command; WAGI runs \
                         wasip1 commands (e.g. `cargo build --target wasm32-wasip1` of a binary)"
                    )));
                }
                Exec::Wagi(
                    self.linkers
                        .module
                        .instantiate_pre(&m)
                        .map_err(|e| link_error(&what, &e, MODULE_IMPORTS))?,
                )
            }
            (Executor::Wagi, Program::Component(_)) => {
                return Err(DeployError::Invalid(format!(
                    "{what} is a component, but `executor = {{ type = \"wagi\" }}` runs wasip1 core \
                     modules; drop the executor line to serve it as a `wasi:http/proxy` component"
                )));
            }
            (Executor::Plugin, Program::Component(c)) => {
                let config = wharf_plugin::PluginConfig {
                    max_memory: Some(memory),
                    timeout: Some(timeout),
                    grants: grants.clone(),
                    services: self.services.clone(),
                    identity: identity.clone(),
                    output: Output::Log,
                };
                let plugin = wharf_plugin::Plugin::new(&self.engine, c, config)
                    .map_err(|e| DeployError::Invalid(format!("{what}: {e}")))?;
                Exec::Plugin(Arc::new(wharf_plugin::PluginPool::new(
                    Arc::new(plugin),
                    max_concurrency as usize,
                )))
            }
            (Executor::Plugin, Program::Module(_)) => {
                return Err(DeployError::Invalid(format!(
                    "{what} is a core module; plugins are components (e.g. built with wit-bindgen or componentize-py)"
                )));
            }
        };
        Ok(LoadedComponent {
            id: spec.id.as_str().into(),
            route: spec.route.clone(),
            exec,
            grants,
            identity,
            memory,
            timeout,
            max_body: limits.max_body.unwrap_or(self.config.default_max_body),
            concurrency: Arc::new(Semaphore::new(max_concurrency as usize)),
            max_concurrency,
            source: spec.source.clone(),
            sha256: src.sha256.clone(),
        })
    }
}
