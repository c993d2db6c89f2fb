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
    runtime_with(dir, options, |_| {})
}

/// A runtime over a registry in `dir`, with its settings changed by `configure`.
pub fn runtime_with(
    dir: &Path,
    options: &EngineOptions,
    configure: impl FnOnce(&mut RuntimeConfig),
) -> Arc<Runtime> {
    let reg = Arc::new(SqliteRegistry::open(&dir.join("registry")).expect("registry"));
    let engine = WharfEngine::new(options).expect("engine");
    let mut config = RuntimeConfig::new(dir.to_path_buf());
    configure(&mut config);
    Arc::new(
        Runtime::new(
            engine,
            reg,
            wharf_host::Services::default(),
            config,
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
        Server::start_configured(options, limits, |_| {}).await
    }

    /// With these engine options and listener limits, and runtime settings changed by
    /// `configure`.
    pub async fn start_configured(
        options: EngineOptions,
        limits: ServerLimits,
        configure: impl FnOnce(&mut RuntimeConfig),
    ) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = runtime_with(dir.path(), &options, configure);
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

/// A reply read to its end: status, head, and the body (de-chunked).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Reply {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// One request on a new connection, read to its end.
pub async fn request(s: &Server, method: &str, path: &str, body: &[u8]) -> Reply {
    let mut c = tokio::net::TcpStream::connect(s.addr)
        .await
        .expect("connect");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    c.write_all(head.as_bytes()).await.expect("write");
    c.write_all(body).await.expect("write body");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), c.read_to_end(&mut out))
        .await
        .expect("reply within 30 s")
        .expect("read");
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Reply {
        status,
        head: head.to_string(),
        body: if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    }
}

/// Decodes a chunked body (sizes in hex, each chunk followed by CRLF).
pub fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if n == 0 {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    out
}
