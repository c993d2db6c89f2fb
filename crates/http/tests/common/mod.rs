//! What the HTTP trigger's in-process tests share: a real runtime over a SQLite
//! registry in a temporary state dir, a data plane on a loopback port, bundles built
//! from the repo's guests, and a bounded poll.
#![allow(dead_code)] // each test binary uses its own subset

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wharf_engine::{EngineOptions, WharfEngine};
use wharf_http::{DataPlane, ServerLimits};
use wharf_registry::SqliteRegistry;
use wharf_runtime::{AppInfo, Bundle, DeployError, DeployMode, Metrics, Runtime, RuntimeConfig};

/// A runtime over a registry in `dir`.
pub fn runtime(dir: &Path, options: &EngineOptions) -> Arc<Runtime> {
    let reg = Arc::new(SqliteRegistry::open(&dir.join("registry")).expect("registry"));
    let engine = WharfEngine::new(options).expect("engine");
    Arc::new(
        Runtime::new(
            engine,
            reg,
            wharf_host::Services::default(),
            RuntimeConfig::new(dir.to_path_buf()),
            Arc::new(Metrics::new()),
        )
        .expect("runtime"),
    )
}

/// A runtime and its data plane, serving on a loopback port.
pub struct Server {
    pub runtime: Arc<Runtime>,
    pub plane: Arc<DataPlane>,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Server {
    /// With the default engine and listener limits.
    pub async fn start() -> Server {
        Server::start_with(EngineOptions::default(), ServerLimits::default()).await
    }

    /// With these engine options and listener limits.
    pub async fn start_with(options: EngineOptions, limits: ServerLimits) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = runtime(dir.path(), &options);
        let plane = DataPlane::new(runtime.clone(), limits);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(plane.clone().serve(listener, std::future::pending()));
        Server {
            runtime,
            plane,
            addr,
            _dir: dir,
        }
    }

    /// Deploys a bundle of `wharf.toml` (`manifest`) and `files` (bundle path, path of
    /// a built guest).
    pub async fn deploy(
        &self,
        manifest: &str,
        files: &[(&str, &str)],
    ) -> Result<AppInfo, DeployError> {
        let mut all = BTreeMap::new();
        all.insert("wharf.toml".to_string(), manifest.as_bytes().to_vec());
        for (name, path) in files {
            all.insert(name.to_string(), std::fs::read(path).expect("guest built"));
        }
        self.runtime
            .deploy(Bundle::pack(&all).expect("pack"), None, DeployMode::Upsert)
            .await
    }

    /// Deploys the test HTTP component as app `name`, component `web`, with these
    /// extra `[[component]]` lines (a route among them).
    pub async fn deploy_http(&self, name: &str, component: &str) -> Result<AppInfo, DeployError> {
        self.deploy(
            &format!("[app]\nname = \"{name}\"\nversion = \"1\"\n\n[[component]]\nid = \"web\"\nsource = \"app.wasm\"\n{component}\n"),
            &[("app.wasm", wharf_test_programs::HTTP_COMPONENT)],
        )
        .await
    }
}

/// Polls `ready` until it holds or `bound` passes; says which.
pub async fn wait_for(bound: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while !ready() {
        if t.elapsed() > bound {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}
