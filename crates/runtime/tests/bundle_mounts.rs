//! Mount extraction (issue 9, class 5): files are written only after every component's
//! Wasm was validated and compiled, and once per bundle, not once per mount.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use wharf_engine::{EngineOptions, WharfEngine};
use wharf_registry::SqliteRegistry;
use wharf_runtime::{Bundle, DeployError, DeployMode, Metrics, Runtime, RuntimeConfig};
use wharf_test_programs as guests;

fn runtime(dir: &Path) -> Arc<Runtime> {
    let reg = Arc::new(SqliteRegistry::open(&dir.join("registry")).expect("registry"));
    let engine = WharfEngine::new(&EngineOptions::default()).expect("engine");
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

const MANIFEST: &str = "[app]\nname = \"m\"\nversion = \"1\"\n\n\
    [[component]]\nid = \"a\"\nsource = \"cgi.wasm\"\nroute = \"/a/...\"\nexecutor = { type = \"wagi\" }\n\
    files = [{ source = \"static\", dest = \"/static\" }]\n\n\
    [[component]]\nid = \"b\"\nsource = \"cgi.wasm\"\nroute = \"/b/...\"\nexecutor = { type = \"wagi\" }\n\
    files = [{ source = \"static\", dest = \"/s\" }, { source = \"static/img\", dest = \"/img\" }]\n";

fn bundle(wasm: Vec<u8>) -> Vec<u8> {
    let mut files = BTreeMap::new();
    files.insert("wharf.toml".to_string(), MANIFEST.as_bytes().to_vec());
    files.insert("cgi.wasm".to_string(), wasm);
    files.insert("static/index.html".to_string(), b"<p>hi</p>".to_vec());
    files.insert("static/img/logo.svg".to_string(), b"<svg/>".to_vec());
    files.insert("other/secret.txt".to_string(), b"not mounted".to_vec());
    Bundle::pack(&files).expect("pack")
}

/// Every regular file under `dir`, relative.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(
                    p.strip_prefix(dir)
                        .expect("under")
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_wasm_leaves_no_files_and_mounts_share_one_copy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime(dir.path());

    // Not WebAssembly: refused at prepare, and nothing was extracted.
    match rt
        .deploy(
            bundle(b"not wasm at all".to_vec()),
            None,
            DeployMode::Upsert,
        )
        .await
    {
        Err(DeployError::Invalid(m)) => assert!(m.contains("not WebAssembly"), "{m}"),
        other => panic!("expected invalid, got {other:?}"),
    }
    assert_eq!(
        files_under(&dir.path().join("mounts")),
        Vec::<String>::new()
    );

    // Valid: one tree for the bundle, holding only mounted files, once.
    let wasm = std::fs::read(guests::P1_WAGI).expect("guest built");
    rt.deploy(bundle(wasm), None, DeployMode::Upsert)
        .await
        .expect("deploy");
    let files = files_under(&dir.path().join("mounts"));
    let sha = files
        .first()
        .and_then(|f| f.split('/').next())
        .expect("a bundle dir")
        .to_string();
    assert_eq!(
        files,
        vec![
            format!("{sha}/@tree/static/img/logo.svg"),
            format!("{sha}/@tree/static/index.html"),
        ]
    );
    // Each component's mounts point into that one tree.
    let app = rt.app("m").expect("live");
    let tree = dir.path().join("mounts").join(&sha).join("@tree");
    let mounts: Vec<(std::path::PathBuf, String)> = app
        .components
        .iter()
        .flat_map(|c| c.grants.mounts.clone())
        .collect();
    assert_eq!(
        mounts,
        vec![
            (tree.join("static"), "/static".to_string()),
            (tree.join("static"), "/s".to_string()),
            (tree.join("static/img"), "/img".to_string()),
        ]
    );
}
