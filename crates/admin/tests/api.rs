//! The admin API in-process: `Admin::serve` on a loopback port over a real runtime (a
//! SQLite registry in a temporary state dir, real guests), driven over HTTP, with every
//! reply read as its `wharf_admin::api` type.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde::de::DeserializeOwned;
use wharf_admin::api::{
    AppInfo, AppList, ErrorBody, Exports, InvokeReply, InvokeRequest, LogsReply, Removed,
};
use wharf_admin::{Admin, AdminToken};
use wharf_engine::{EngineOptions, WharfEngine};
use wharf_registry::SqliteRegistry;
use wharf_runtime::{Bundle, Metrics, Runtime, RuntimeConfig, Verifier};
use wharf_test_programs as guests;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// A verification policy that refuses everything.
struct RefuseAll;

impl Verifier for RefuseAll {
    fn verify(&self, app: &str, id: &str, _wasm: &[u8]) -> Result<(), String> {
        Err(format!(
            "component `{id}` of app `{app}` carries no signature; sign it"
        ))
    }
}

/// A running admin API; stopped on drop.
struct Server {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A reply: status and body.
struct Reply {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Reply {
    /// The body as `T`; panics with the body when it is not one.
    #[track_caller]
    fn json<T: DeserializeOwned>(&self) -> T {
        match serde_json::from_slice(&self.body) {
            Ok(v) => v,
            Err(e) => panic!(
                "{}: not the expected JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            ),
        }
    }

    /// The error body; asserts the status and the kind.
    #[track_caller]
    fn error(&self, status: StatusCode, kind: &str) -> ErrorBody {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        let e: ErrorBody = self.json();
        assert_eq!(e.error.kind, kind, "{e:?}");
        e
    }
}

impl Server {
    /// Starts the admin API over a fresh runtime, with `verifier` if given.
    async fn start(verifier: Option<Arc<dyn Verifier>>) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry =
            SqliteRegistry::open(&dir.path().join("registry")).expect("open the registry");
        let engine = WharfEngine::new(&EngineOptions::default()).expect("engine");
        let mut runtime = Runtime::new(
            engine,
            Arc::new(registry),
            wharf_host::Services::default(),
            RuntimeConfig::new(dir.path().to_path_buf()),
            Arc::new(Metrics::new()),
        )
        .expect("runtime");
        if let Some(v) = verifier {
            runtime = runtime.with_verifier(v);
        }
        let admin = Admin::new(Arc::new(runtime), AdminToken::new(TOKEN.to_string()));
        admin.set_ready();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(admin.serve(listener, async move {
            let _ = stopped.await;
        }));
        Server {
            addr,
            dir,
            stop: Some(stop),
        }
    }

    /// Sends a request with `token` (none: no Authorization header).
    async fn send(&self, method: Method, path: &str, token: Option<&str>, body: Vec<u8>) -> Reply {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Full<Bytes>>();
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        if let Some(t) = token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req.body(Full::new(Bytes::from(body))).expect("request");
        let resp = client.request(req).await.expect("the admin API answers");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .expect("read the body")
            .to_bytes();
        Reply {
            status,
            headers,
            body,
        }
    }

    /// Sends a request with the right token.
    async fn admin(&self, method: Method, path: &str, body: Vec<u8>) -> Reply {
        self.send(method, path, Some(TOKEN), body).await
    }
}

fn bundle(manifest: &str, files: &[(&str, &str)]) -> Vec<u8> {
    let mut all = BTreeMap::new();
    all.insert("wharf.toml".to_string(), manifest.as_bytes().to_vec());
    for (name, path) in files {
        all.insert(name.to_string(), std::fs::read(path).expect("guest built"));
    }
    Bundle::pack(&all).expect("pack")
}

fn http_app(name: &str, version: &str) -> Vec<u8> {
    bundle(
        &format!(
            "[app]\nname = \"{name}\"\nversion = \"{version}\"\n\n[[component]]\nid = \"web\"\nsource = \"app.wasm\"\nroute = \"/{name}\"\n"
        ),
        &[("app.wasm", guests::HTTP_COMPONENT)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_needs_the_bearer_token() {
    let s = Server::start(None).await;
    for token in [None, Some("not-the-token-at-all-000000000000"), Some("")] {
        let r = s.send(Method::GET, "/v1/apps", token, Vec::new()).await;
        let e = r.error(StatusCode::UNAUTHORIZED, "unauthorized");
        assert!(e.error.message.contains("bearer token"), "{e:?}");
        assert_eq!(
            r.headers
                .get(http::header::WWW_AUTHENTICATE)
                .map(|v| v.as_bytes()),
            Some(&b"Bearer"[..])
        );
        // A deploy with a wrong token changes nothing. (The body is refused unread; a
        // small one is sent whole before the 401 arrives.)
        let r = s
            .send(Method::PUT, "/v1/apps/shop", token, b"a bundle".to_vec())
            .await;
        r.error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let list: AppList = s.admin(Method::GET, "/v1/apps", Vec::new()).await.json();
    assert!(list.apps.is_empty(), "{list:?}");
    // Probes stay open.
    let r = s.send(Method::GET, "/healthz", None, Vec::new()).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_list_replace_and_remove() {
    let s = Server::start(None).await;
    let r = s
        .admin(Method::PUT, "/v1/apps/shop", http_app("shop", "1.0"))
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let created: AppInfo = r.json();
    assert_eq!(
        (
            created.name.as_str(),
            created.version.as_str(),
            created.revision
        ),
        ("shop", "1.0", 1)
    );
    assert_eq!(created.components.len(), 1);
    let web = &created.components[0];
    assert_eq!(
        (web.id.as_str(), web.route.as_deref(), web.executor.as_str()),
        ("web", Some("/shop"), "wasi-http")
    );
    assert_eq!(web.sha256.len(), 64);

    let list: AppList = s.admin(Method::GET, "/v1/apps", Vec::new()).await.json();
    assert_eq!(list.apps, std::slice::from_ref(&created));
    let shown: AppInfo = s
        .admin(Method::GET, "/v1/apps/shop", Vec::new())
        .await
        .json();
    assert_eq!(shown, created);
    let logs: LogsReply = s
        .admin(Method::GET, "/v1/apps/shop/logs?tail=5", Vec::new())
        .await
        .json();
    assert_eq!((logs.app.as_str(), logs.dropped), ("shop", 0));
    let exports: Exports = s
        .admin(Method::GET, "/v1/apps/shop/exports", Vec::new())
        .await
        .json();
    assert_eq!(exports.app, "shop");
    assert!(exports.components.is_empty(), "{exports:?}");

    // Replacing answers 200 with the next revision.
    let r = s
        .admin(Method::PUT, "/v1/apps/shop", http_app("shop", "2.0"))
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let replaced: AppInfo = r.json();
    assert_eq!((replaced.version.as_str(), replaced.revision), ("2.0", 2));

    // Creating an existing app with POST is a conflict.
    s.admin(Method::POST, "/v1/apps", http_app("shop", "3.0"))
        .await
        .error(StatusCode::CONFLICT, "conflict");

    let r = s.admin(Method::DELETE, "/v1/apps/shop", Vec::new()).await;
    assert_eq!(r.status, StatusCode::OK);
    let removed: Removed = r.json();
    assert_eq!(removed.removed, Some(replaced));
    let e = s
        .admin(Method::GET, "/v1/apps/shop", Vec::new())
        .await
        .error(StatusCode::NOT_FOUND, "not-found");
    assert!(e.error.message.contains("shop"), "{e:?}");
    s.admin(Method::DELETE, "/v1/apps/shop", Vec::new())
        .await
        .error(StatusCode::NOT_FOUND, "not-found");
    let list: AppList = s.admin(Method::GET, "/v1/apps", Vec::new()).await.json();
    assert!(list.apps.is_empty(), "{list:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_takes_and_gives_the_api_types() {
    let s = Server::start(None).await;
    let calc = bundle(
        "[app]\nname = \"calc\"\nversion = \"1\"\n\n[[component]]\nid = \"rs\"\nsource = \"calc.wasm\"\nexecutor = { type = \"plugin\" }\n",
        &[("calc.wasm", guests::CALCULATOR_RS)],
    );
    let r = s.admin(Method::PUT, "/v1/apps/calc", calc).await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let exports: Exports = s
        .admin(Method::GET, "/v1/apps/calc/exports", Vec::new())
        .await
        .json();
    assert_eq!(exports.components.len(), 1);
    assert_eq!(exports.components[0].component, "rs");
    assert!(
        exports.components[0]
            .exports
            .iter()
            .any(|e| e == "add(a: s32, b: s32) -> s32"),
        "{exports:?}"
    );
    let requests = [
        InvokeRequest::Wave {
            wave: vec!["3".into(), "4".into()],
        },
        InvokeRequest::Args {
            args: serde_json::json!({"a": 3, "b": 4}),
        },
        InvokeRequest::Bare(serde_json::json!([3, 4])),
    ];
    for req in &requests {
        let body = serde_json::to_vec(req).expect("encode");
        let r = s
            .admin(Method::POST, "/v1/apps/calc/invoke/add", body)
            .await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{req:?}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let reply: InvokeReply = r.json();
        assert_eq!(reply.result, serde_json::json!(7), "{req:?}");
        assert_eq!(reply.wave, ["7"], "{req:?}");
    }
    let e = s
        .admin(
            Method::POST,
            "/v1/apps/calc/invoke/add",
            br#"{"wave": ["3"]}"#.to_vec(),
        )
        .await
        .error(StatusCode::BAD_REQUEST, "bad-arguments");
    assert!(e.error.message.contains("1 given"), "{e:?}");
    s.admin(
        Method::POST,
        "/v1/apps/calc/invoke/add",
        b"{not json".to_vec(),
    )
    .await
    .error(StatusCode::BAD_REQUEST, "bad-request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_the_verifier_refuses_is_403() {
    let s = Server::start(Some(Arc::new(RefuseAll))).await;
    let e = s
        .admin(Method::PUT, "/v1/apps/shop", http_app("shop", "1"))
        .await
        .error(StatusCode::FORBIDDEN, "refused");
    assert!(e.error.message.contains("carries no signature"), "{e:?}");
    let list: AppList = s.admin(Method::GET, "/v1/apps", Vec::new()).await.json();
    assert!(list.apps.is_empty(), "{list:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_fault_does_not_reveal_internals() {
    let s = Server::start(None).await;
    // The registry keeps blobs in registry/blobs/; a file in its place makes storing
    // the deploy's blobs fail with an I/O error that names paths.
    let blobs = s.dir.path().join("registry").join("blobs");
    assert!(blobs.is_dir(), "the registry keeps its blobs in {blobs:?}");
    std::fs::remove_dir_all(&blobs).expect("remove blobs");
    std::fs::write(&blobs, b"not a directory").expect("write");
    let r = s
        .admin(Method::PUT, "/v1/apps/shop", http_app("shop", "1"))
        .await;
    let e = r.error(StatusCode::INTERNAL_SERVER_ERROR, "internal");
    let text = String::from_utf8_lossy(&r.body);
    let dir = s.dir.path().display().to_string();
    for secret in [dir.as_str(), "blobs", "registry", "storage", "os error"] {
        assert!(
            !text.contains(secret),
            "the 500 body reveals `{secret}`: {text}"
        );
    }
    assert!(e.error.message.contains("log"), "{e:?}");
}

#[test]
fn invoke_requests_keep_their_wire_shape() {
    let wave = InvokeRequest::Wave {
        wave: vec!["3".into(), "\"x\"".into()],
    };
    assert_eq!(
        serde_json::to_value(&wave).expect("encode"),
        serde_json::json!({"wave": ["3", "\"x\""]})
    );
    let parse = |s: &str| serde_json::from_str::<InvokeRequest>(s).expect("decode");
    // A non-string WAVE argument stands for its JSON text.
    assert_eq!(
        parse(r#"{"wave": [3, "4"]}"#),
        InvokeRequest::Wave {
            wave: vec!["3".into(), "4".into()]
        }
    );
    assert_eq!(
        parse(r#"{"args": [1]}"#),
        InvokeRequest::Args {
            args: serde_json::json!([1])
        }
    );
    assert_eq!(
        parse(r#"{"a": 1}"#),
        InvokeRequest::Bare(serde_json::json!({"a": 1}))
    );
    assert_eq!(
        InvokeRequest::default(),
        InvokeRequest::Bare(serde_json::json!([]))
    );
}
