//! The runtime in-process: the deploy pipeline's steps, `apply`, restore ordering, the
//! trigger seam and the grants each executor can honour. Real guests built from this
//! repo; a real SQLite registry in a temporary state dir.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use wharf_engine::{EngineOptions, WharfEngine};
use wharf_manifest::Manifest;
use wharf_registry::{NewApp, Registry, SqliteRegistry};
use wharf_runtime::{
    Applied, Apps, Bundle, DeployError, DeployMode, Metrics, Runtime, RuntimeConfig, Trigger,
};
use wharf_test_programs as guests;

/// A trigger that records every set of live app names it is told about, and refuses
/// deploys of apps named in `veto`.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Vec<String>>>,
    veto: Vec<String>,
}

impl Trigger for Recorder {
    fn kind(&self) -> &'static str {
        "recorder"
    }
    fn check(&self, manifest: &Manifest, _live: &Apps) -> Result<(), String> {
        if self.veto.contains(&manifest.app.name) {
            return Err(format!("recorder refuses `{}`", manifest.app.name));
        }
        Ok(())
    }
    fn apps_changed(&self, live: &Arc<Apps>) {
        let names = live.iter().map(|a| a.name.to_string()).collect();
        self.seen.lock().expect("lock").push(names);
    }
}

fn runtime(dir: &std::path::Path, registry: Arc<SqliteRegistry>) -> Arc<Runtime> {
    let engine = WharfEngine::new(&EngineOptions::default()).expect("engine");
    Arc::new(
        Runtime::new(
            engine,
            registry,
            wharf_host::Services::default(),
            RuntimeConfig::new(dir.to_path_buf()),
            Arc::new(Metrics::new()),
        )
        .expect("runtime"),
    )
}

fn bundle(manifest: &str, wasm_name: &str, wasm_path: &str) -> Vec<u8> {
    let mut files = BTreeMap::new();
    files.insert("wharf.toml".to_string(), manifest.as_bytes().to_vec());
    files.insert(
        wasm_name.to_string(),
        std::fs::read(wasm_path).expect("guest built"),
    );
    Bundle::pack(&files).expect("pack")
}

fn http_app(name: &str, route: &str) -> Vec<u8> {
    bundle(
        &format!(
            "[app]\nname = \"{name}\"\nversion = \"1\"\n\n[[component]]\nid = \"web\"\nsource = \"app.wasm\"\nroute = \"{route}\"\n"
        ),
        "app.wasm",
        guests::HTTP_COMPONENT,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_racing_restore_is_never_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reg = Arc::new(SqliteRegistry::open(&dir.path().join("registry")).expect("registry"));
    {
        let first = runtime(dir.path(), reg.clone());
        first
            .deploy(http_app("old", "/old"), None, DeployMode::Upsert)
            .await
            .expect("deploy old");
    }
    // A restarted runtime: restore and a deploy start together.
    let rt = runtime(dir.path(), reg.clone());
    let rec = Arc::new(Recorder::default());
    rt.add_trigger(rec.clone());
    let (restored, deployed) = tokio::join!(
        rt.restore(),
        rt.deploy(http_app("new", "/new"), None, DeployMode::Create)
    );
    assert!(restored.is_empty(), "restore failures: {restored:?}");
    deployed.expect("deploy during restore");
    let live: Vec<String> = rt.apps().iter().map(|a| a.name.to_string()).collect();
    assert_eq!(live, ["new", "old"]);
    let last = rec.seen.lock().expect("lock").last().cloned();
    assert_eq!(last, Some(vec!["new".to_string(), "old".to_string()]));
    let stored = reg.snapshot().await.expect("snapshot").apps;
    assert_eq!(stored.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_installs_a_record_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reg = Arc::new(SqliteRegistry::open(&dir.path().join("registry")).expect("registry"));
    let writer = runtime(dir.path(), reg.clone());
    writer
        .deploy(http_app("shop", "/shop"), None, DeployMode::Upsert)
        .await
        .expect("deploy");
    let record = reg.get("shop").await.expect("get").expect("stored");

    let reader = runtime(dir.path(), reg.clone());
    let rec = Arc::new(Recorder::default());
    reader.add_trigger(rec.clone());
    assert_eq!(
        reader.apply(&record).await.expect("apply"),
        Applied::Installed
    );
    assert_eq!(
        reader.apply(&record).await.expect("apply"),
        Applied::AlreadyLive
    );
    assert_eq!(reader.app("shop").map(|a| a.revision), Some(1));
    // Told once at plug-in (empty) and once for the install; not for the no-op.
    assert_eq!(rec.seen.lock().expect("lock").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_veto_fails_the_deploy_before_anything_is_committed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reg = Arc::new(SqliteRegistry::open(&dir.path().join("registry")).expect("registry"));
    let rt = runtime(dir.path(), reg.clone());
    rt.add_trigger(Arc::new(Recorder {
        veto: vec!["banned".into()],
        ..Recorder::default()
    }));
    match rt
        .deploy(http_app("banned", "/b"), None, DeployMode::Upsert)
        .await
    {
        Err(DeployError::Conflict(m)) => assert!(m.contains("recorder refuses"), "{m}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(rt.app("banned").is_none());
    assert!(reg.get("banned").await.expect("get").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_racing_another_writer_is_refused_by_compare_and_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reg = Arc::new(SqliteRegistry::open(&dir.path().join("registry")).expect("registry"));
    let rt = runtime(dir.path(), reg.clone());
    rt.deploy(http_app("shop", "/shop"), None, DeployMode::Upsert)
        .await
        .expect("deploy");
    // Another node replaces the app behind this runtime's back.
    let cur = reg.get("shop").await.expect("get").expect("stored");
    reg.deploy(
        NewApp {
            name: cur.name.clone(),
            version: "2".into(),
            manifest: cur.manifest.clone(),
            components: cur.components.clone(),
        },
        Some(cur.revision),
    )
    .await
    .expect("other writer");
    match rt
        .deploy(http_app("shop", "/shop"), None, DeployMode::Upsert)
        .await
    {
        Err(DeployError::Conflict(m)) => assert!(m.contains("changed"), "{m}"),
        other => panic!("expected a compare-and-set conflict, got {other:?}"),
    }
    assert_eq!(
        reg.get("shop").await.expect("get").map(|r| r.revision),
        Some(2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_a_wagi_module_cannot_honour_are_refused_naming_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reg = Arc::new(SqliteRegistry::open(&dir.path().join("registry")).expect("registry"));
    let rt = runtime(dir.path(), reg);
    for (grant, field) in [
        ("key_value_stores = [\"default\"]", "key_value_stores"),
        (
            "allowed_outbound_hosts = [\"https://example.com\"]",
            "allowed_outbound_hosts",
        ),
    ] {
        let b = bundle(
            &format!(
                "[app]\nname = \"cgi\"\nversion = \"1\"\n\n[[component]]\nid = \"cgi\"\nsource = \"cgi.wasm\"\nroute = \"/cgi\"\nexecutor = {{ type = \"wagi\" }}\n{grant}\n"
            ),
            "cgi.wasm",
            guests::P1_WAGI,
        );
        match rt.deploy(b, None, DeployMode::Upsert).await {
            Err(DeployError::Invalid(m)) => {
                assert!(m.contains(&format!("`{field}`")), "{m}");
                assert!(m.contains("WAGI"), "{m}");
            }
            other => panic!("expected {field} to be refused, got {other:?}"),
        }
    }
    assert!(rt.app("cgi").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_output_lands_in_the_app_log() {
    use wharf_engine::wasmtime::component::Val;
    let dir = tempfile::tempdir().expect("tempdir");
    let reg = Arc::new(SqliteRegistry::open(&dir.path().join("registry")).expect("registry"));
    let rt = runtime(dir.path(), reg);
    let b = bundle(
        "[app]\nname = \"calc\"\nversion = \"1\"\n\n[[component]]\nid = \"calc\"\nsource = \"calc.wasm\"\nexecutor = { type = \"plugin\" }\n",
        "calc.wasm",
        guests::CALC_COMPONENT,
    );
    let info = rt
        .deploy(b, None, DeployMode::Upsert)
        .await
        .expect("deploy plugin");
    assert_eq!(info.components[0].executor, "plugin");
    let app = rt.app("calc").expect("live");
    let (_, pool) = app.plugins().next().expect("a plugin");
    let out = pool
        .plugin()
        .call("greet", &[Val::String("Ada".into())])
        .await
        .expect("call");
    assert_eq!(out, vec![Val::String("Hello, Ada!".into())]);
    let (lines, _) = rt.logs_for("calc").tail(10);
    assert!(
        lines
            .iter()
            .any(|l| l.line == "greeting Ada" && l.stream == "stderr" && l.component == "calc"),
        "plugin stderr did not reach the app log: {lines:?}"
    );
}
