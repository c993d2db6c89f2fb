//! The prepare step: compile a component's Wasm (bounded, cached) and pre-link it for
//! its executor with the one linker of `wharf-host`, with its grants built once.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Semaphore;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wharf_engine::failure::{GuestFailure, link_failure};
use wharf_engine::load::{Program, load_file};
use wharf_engine::wasmtime;
use wharf_engine::{WharfEngine, WharfError};
use wharf_host::{
    COMPONENT_IMPORTS, Grants, HostState, Identity, MODULE_IMPORTS, ModuleState, Output,
};
use wharf_manifest::{Executor, Manifest};

use crate::app::{Exec, HttpPre, LoadedComponent};
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

/// A component's limits: the manifest's, else the server's defaults.
pub(crate) struct ResolvedLimits {
    pub memory: u64,
    pub timeout: std::time::Duration,
    pub max_body: u64,
    pub max_concurrency: u32,
}

/// The limits of `spec`: what its manifest asks for, else the server's default.
/// A manifest asking for more than a server ceiling (`RuntimeConfig::ceiling_*`,
/// `wharf serve --ceiling-*`) is refused, naming the field, the value and the
/// ceiling; a default above a ceiling is lowered to it.
pub(crate) fn resolve_limits(
    c: &crate::RuntimeConfig,
    spec: &wharf_manifest::ComponentSpec,
) -> Result<ResolvedLimits, DeployError> {
    use wharf_engine::size::format_size;
    let l = &spec.limits;
    let refuse = |field: &str, asked: String, ceiling: String| {
        DeployError::Invalid(format!(
            "component `{}`: limits.{field} = {asked} is above this server's ceiling of \
             {ceiling} (set by the operator with `wharf serve --ceiling-{}`)",
            spec.id,
            field
                .replace('_', "-")
                .replace("max-concurrency", "concurrency")
        ))
    };
    if let Some(m) = l.memory
        && m > c.ceiling_memory
    {
        return Err(refuse(
            "memory",
            format_size(m),
            format_size(c.ceiling_memory),
        ));
    }
    if let Some(t) = l.timeout
        && t > c.ceiling_timeout
    {
        return Err(refuse(
            "timeout",
            format!("{t:?}"),
            format!("{:?}", c.ceiling_timeout),
        ));
    }
    if let Some(b) = l.max_body
        && b > c.ceiling_max_body
    {
        return Err(refuse(
            "max_body",
            format_size(b),
            format_size(c.ceiling_max_body),
        ));
    }
    if let Some(n) = l.max_concurrency
        && n > c.ceiling_concurrency
    {
        return Err(refuse(
            "max_concurrency",
            n.to_string(),
            c.ceiling_concurrency.to_string(),
        ));
    }
    Ok(ResolvedLimits {
        memory: l.memory.unwrap_or(c.default_memory.min(c.ceiling_memory)),
        timeout: l
            .timeout
            .unwrap_or(c.default_timeout.min(c.ceiling_timeout)),
        max_body: l
            .max_body
            .unwrap_or(c.default_max_body.min(c.ceiling_max_body)),
        max_concurrency: l
            .max_concurrency
            .unwrap_or(c.default_max_concurrency.min(c.ceiling_concurrency))
            .max(1),
    })
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
                    crate::mounts::plan(&self.config.state_dir, manifest, &src.id, sha, b)?
                }
                None => Vec::new(),
            };
            out.push(self.prepare_component(manifest, src, variables, mounts)?);
        }
        // Files are written only once every component's Wasm has been validated,
        // compiled and linked: a bundle refused above leaves nothing on disk.
        if let Some((sha, b)) = bundle {
            crate::mounts::extract(&self.config.state_dir, manifest, sha, b)?;
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
            .map_err(|e| DeployError::Invalid(e.to_string()))?
            .with_private_outbound(self.config.allow_private_outbound);
        let identity = Identity {
            app: manifest.app.name.as_str().into(),
            component: spec.id.as_str().into(),
            logs: self.logs_for(&manifest.app.name),
            cpu: Some(self.cpu_for(&manifest.app.name)),
        };
        let limits = resolve_limits(&self.config, spec)?;
        let (memory, timeout, max_concurrency) =
            (limits.memory, limits.timeout, limits.max_concurrency);
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
                // WASI 0.3 (`wasi:http/handler@0.3.0`) first, then 0.2
                // (`wasi:http/incoming-handler@0.2.x`): told from the exports alone.
                let http = match ServicePre::new(pre.clone()) {
                    Ok(p3) => HttpPre::P3(p3),
                    Err(_) => HttpPre::P2(ProxyPre::new(pre).map_err(|_| {
                        DeployError::Invalid(format!(
                            "{what} exports neither `wasi:http/incoming-handler` (WASI 0.2) nor \
                             `wasi:http/handler` (WASI 0.3), so it is not an HTTP component; \
                             `wharf run` runs command components"
                        ))
                    })?),
                };
                Exec::Proxy(http)
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
            max_body: limits.max_body,
            concurrency: Arc::new(Semaphore::new(max_concurrency as usize)),
            max_concurrency,
            source: spec.source.clone(),
            sha256: src.sha256.clone(),
        })
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;
    use crate::RuntimeConfig;

    fn spec(limits: &str) -> wharf_manifest::ComponentSpec {
        let text = format!(
            "[app]\nname = \"shop\"\nversion = \"1.0.0\"\n\n[[component]]\nid = \"web\"\n\
             source = \"web.wasm\"\nroute = \"/...\"\n\n[component.limits]\n{limits}\n"
        );
        wharf_manifest::parse_manifest(&text)
            .expect("manifest")
            .components
            .remove(0)
    }

    fn refused(limits: &str) -> String {
        let c = RuntimeConfig::new("/nonexistent".into());
        match resolve_limits(&c, &spec(limits)) {
            Err(DeployError::Invalid(m)) => m,
            Err(e) => panic!("{limits}: expected Invalid, got {e}"),
            Ok(_) => panic!("{limits}: a manifest above the ceiling was accepted"),
        }
    }

    #[test]
    fn manifests_above_the_server_ceilings_are_refused() {
        let m = refused("memory = \"4GiB\"");
        assert!(
            m.contains("limits.memory") && m.contains("4 GiB") && m.contains("1 GiB"),
            "{m}"
        );
        let m = refused("timeout = \"1h\"");
        assert!(
            m.contains("limits.timeout") && m.contains("3600s") && m.contains("300s"),
            "{m}"
        );
        let m = refused("max_body = \"1GiB\"");
        assert!(
            m.contains("limits.max_body") && m.contains("--ceiling-max-body"),
            "{m}"
        );
        let m = refused("max_concurrency = 100000");
        assert!(
            m.contains("limits.max_concurrency") && m.contains("100000") && m.contains("500"),
            "{m}"
        );
    }

    #[test]
    fn defaults_are_a_fair_share_and_at_most_the_ceilings() {
        let mut c = RuntimeConfig::new("/nonexistent".into());
        let l = resolve_limits(&c, &spec("")).expect("defaults");
        // A quarter of the 1000-slot pool, not all of it.
        assert_eq!(l.max_concurrency, 250);
        assert_eq!(crate::fair_share(1), 1);
        let l = resolve_limits(&c, &spec("memory = \"1GiB\"\ntimeout = \"5m\""))
            .expect("at the ceiling");
        assert_eq!(l.memory, 1 << 30);
        c.default_memory = 8 << 30;
        c.default_max_concurrency = 100_000;
        let l = resolve_limits(&c, &spec("")).expect("defaults");
        assert_eq!(l.memory, c.ceiling_memory);
        assert_eq!(l.max_concurrency, c.ceiling_concurrency);
    }
}
