//! The transparent artifact cache: compile once, map afterwards, survive damage and
//! concurrency.

use crate::*;

fn method(env: &Env, extra: &[&str], file: &str) -> String {
    let d = tempfile::tempdir().expect("tempdir");
    let json = d.path().join("s.json");
    let mut args = vec!["run", "--stats-json", json.to_str().expect("utf8")];
    args.extend_from_slice(extra);
    args.push(file);
    let o = env.wharf(&args);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), "Hello, world!\n");
    read_stats(&json)["load_method"]
        .as_str()
        .expect("method")
        .to_string()
}

fn artifacts(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    crate::errors::walk(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect()
}

#[test]
fn first_run_compiles_later_runs_hit() {
    let env = Env::isolated();
    assert_eq!(method(&env, &[], guests::P2_HELLO), "compiled");
    assert_eq!(method(&env, &[], guests::P2_HELLO), "cache-hit");
    assert_eq!(method(&env, &[], guests::P1_HELLO), "compiled");
    assert_eq!(method(&env, &[], guests::P1_HELLO), "cache-hit");
    assert_eq!(artifacts(&env.cache_dir()).len(), 2);
    // --fuel is a different engine configuration, hence a different artifact.
    assert_eq!(
        method(&env, &["--fuel", "100000000"], guests::P1_HELLO),
        "compiled"
    );
    assert_eq!(
        method(&env, &["--fuel", "100000000"], guests::P1_HELLO),
        "cache-hit"
    );
    assert_eq!(artifacts(&env.cache_dir()).len(), 3);
}

#[test]
fn no_cache_and_cache_dir() {
    let env = Env::isolated();
    assert_eq!(method(&env, &["--no-cache"], guests::P2_HELLO), "compiled");
    assert_eq!(method(&env, &["--no-cache"], guests::P2_HELLO), "compiled");
    assert!(
        artifacts(env.home()).is_empty(),
        "--no-cache wrote an artifact"
    );

    let custom = tempfile::tempdir().expect("tempdir");
    let c = custom.path().to_str().expect("utf8");
    assert_eq!(
        method(&env, &["--cache-dir", c], guests::P2_HELLO),
        "compiled"
    );
    assert_eq!(
        method(&env, &["--cache-dir", c], guests::P2_HELLO),
        "cache-hit"
    );
    assert_eq!(artifacts(custom.path()).len(), 1);
    assert!(artifacts(&env.cache_dir()).is_empty());
}

#[test]
fn damaged_cache_entry_is_recompiled() {
    let env = Env::isolated();
    assert_eq!(method(&env, &[], guests::P2_HELLO), "compiled");
    let files = artifacts(&env.cache_dir());
    assert_eq!(files.len(), 1);
    std::fs::write(&files[0], b"garbage").expect("damage it");
    assert_eq!(method(&env, &[], guests::P2_HELLO), "compiled");
    assert_eq!(method(&env, &[], guests::P2_HELLO), "cache-hit");
}

#[test]
fn concurrent_cold_runs_all_succeed() {
    let env = Env::isolated();
    let children: Vec<_> = (0..8)
        .map(|_| {
            env.cmd()
                .args(["run", guests::P2_HELLO])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().expect("wait");
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_eq!(stdout(&o), "Hello, world!\n");
    }
    let all = crate::errors::walk(&env.cache_dir());
    assert_eq!(artifacts(&env.cache_dir()).len(), 1, "{all:?}");
    assert!(
        all.iter().all(|p| !p.to_string_lossy().ends_with(".tmp")),
        "{all:?}"
    );
}

#[test]
fn rewritten_file_is_never_served_from_a_stale_index() {
    let env = Env::isolated();
    let d = tempfile::tempdir().expect("tempdir");
    let app = d.path().join("app.wasm");
    let app_s = app.to_str().expect("utf8");
    std::fs::copy(guests::P2_HELLO, &app).expect("copy");
    assert_eq!(method(&env, &[], app_s), "compiled");
    assert_eq!(method(&env, &[], app_s), "cache-hit");
    // Replace the contents in place (same path, same inode).
    std::fs::write(&app, std::fs::read(guests::P2_EXIT_CODE).expect("read")).expect("rewrite");
    let o = env.wharf(&["run", app_s, "7"]);
    assert_eq!(code(&o), 7, "{}", stderr(&o));
    assert_eq!(stdout(&o), "exiting with 7\n");
    // And back: the first artifact is still in the cache, found by content.
    std::fs::copy(guests::P2_HELLO, &app).expect("copy back");
    assert_eq!(method(&env, &[], app_s), "cache-hit");
}
