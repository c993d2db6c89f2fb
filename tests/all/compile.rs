//! `wharf compile` and the rule that only artifacts this wharf wrote are loaded.

use crate::*;

#[test]
fn compile_then_run_the_cwasm() {
    let env = Env::isolated();
    let d = tempfile::tempdir().expect("tempdir");
    for (src, name) in [
        (guests::P2_HELLO, "p2.cwasm"),
        (guests::P1_HELLO, "p1.cwasm"),
    ] {
        let out = d.path().join(name);
        let out_s = out.to_str().expect("utf8");
        let o = env.wharf(&["compile", src, "-o", out_s]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert!(stderr(&o).contains("Compiled"), "{}", stderr(&o));
        let json = d.path().join("s.json");
        let o = env.wharf(&["run", "--stats-json", json.to_str().expect("utf8"), out_s]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_eq!(stdout(&o), "Hello, world!\n");
        assert_eq!(read_stats(&json)["load_method"], "precompiled");
    }
}

#[test]
fn default_output_path_and_json() {
    let env = Env::isolated();
    let d = tempfile::tempdir().expect("tempdir");
    let src = d.path().join("calc.wasm");
    std::fs::copy(guests::CALC_COMPONENT, &src).expect("copy");
    let o = env.wharf(&["compile", "--json", src.to_str().expect("utf8")]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("json");
    assert_eq!(v["kind"], "component");
    let out = d.path().join("calc.cwasm");
    assert_eq!(v["output"], out.to_str().expect("utf8"));
    assert!(v["bytes"].as_u64().expect("bytes") > 1000);
    let o = env.wharf(&["run", "--invoke", "add(1, 2)", out.to_str().expect("utf8")]);
    assert_eq!(stdout(&o), "3\n", "{}", stderr(&o));
}

#[test]
fn tampered_or_foreign_cwasm_is_refused() {
    let env = Env::isolated();
    let d = tempfile::tempdir().expect("tempdir");
    let out = d.path().join("h.cwasm");
    let out_s = out.to_str().expect("utf8");
    let o = env.wharf(&["compile", guests::P2_HELLO, "-o", out_s]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));

    // One flipped byte in the native code.
    let mut bytes = std::fs::read(&out).expect("read");
    let n = bytes.len();
    bytes[n - 100] ^= 0x01;
    let tampered = d.path().join("tampered.cwasm");
    std::fs::write(&tampered, &bytes).expect("write");
    let o = env.wharf(&["run", tampered.to_str().expect("utf8")]);
    assert_fails(
        &o,
        128,
        &[
            "refusing to load",
            "not produced by this wharf installation",
        ],
    );

    // Written by another installation (another key).
    let other = Env::isolated();
    let o = other.wharf(&["run", out_s]);
    assert_fails(&o, 128, &["not produced by this wharf installation"]);

    // A raw wasmtime artifact (what `wasmtime compile` writes): take one from the cache.
    let o = env.wharf(&["run", guests::P2_HELLO]);
    assert_eq!(code(&o), 0);
    let raw = crate::errors::walk(&env.cache_dir())
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .expect("a cached artifact");
    let o = env.wharf(&["run", raw.to_str().expect("utf8")]);
    assert_fails(
        &o,
        128,
        &["precompiled wasmtime artifact that wharf did not write"],
    );

    // compile refuses precompiled input.
    let o = env.wharf(&[
        "compile",
        out_s,
        "-o",
        d.path().join("x.cwasm").to_str().expect("utf8"),
    ]);
    assert_fails(&o, 2, &["already precompiled"]);
}

#[test]
fn fuel_artifacts_need_fuel_runs() {
    let env = Env::isolated();
    let d = tempfile::tempdir().expect("tempdir");
    let plain = d.path().join("plain.cwasm");
    let fueled = d.path().join("fuel.cwasm");
    assert_eq!(
        code(&env.wharf(&[
            "compile",
            guests::P2_FUEL,
            "-o",
            plain.to_str().expect("utf8")
        ])),
        0
    );
    assert_eq!(
        code(&env.wharf(&[
            "compile",
            "--fuel",
            guests::P2_FUEL,
            "-o",
            fueled.to_str().expect("utf8")
        ])),
        0
    );
    let o = env.wharf(&[
        "run",
        "--fuel",
        "1000000",
        plain.to_str().expect("utf8"),
        "10",
    ]);
    assert_fails(
        &o,
        128,
        &["different engine configuration", "wharf compile --fuel"],
    );
    let o = env.wharf(&["run", fueled.to_str().expect("utf8"), "10"]);
    assert_fails(&o, 128, &["different engine configuration"]);
    let o = env.wharf(&[
        "run",
        "--fuel",
        "1000000",
        fueled.to_str().expect("utf8"),
        "10",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), "55\n");
}

/// A module with many large functions: compiling it takes far longer than 50 ms.
fn big_module(path: &std::path::Path) {
    let mut wat = String::from("(module\n");
    for i in 0..1000 {
        wat.push_str(&format!(
            "(func $f{i} (param i32) (result i32)\n  local.get 0\n"
        ));
        for j in 0..200 {
            wat.push_str(&format!(
                "  i32.const {j}\n  i32.add\n  i32.const 3\n  i32.mul\n"
            ));
        }
        wat.push_str(")\n");
    }
    wat.push_str("(func (export \"_start\"))\n)\n");
    std::fs::write(path, wat).expect("write");
}

#[test]
fn compile_timeout_and_memory_bound() {
    let env = Env::isolated();
    let d = tempfile::tempdir().expect("tempdir");
    let big = d.path().join("big.wat");
    big_module(&big);
    let big_s = big.to_str().expect("utf8");

    let t = std::time::Instant::now();
    let o = env.wharf(&["run", "--compile-timeout", "50ms", big_s]);
    assert_fails(&o, 131, &["took longer than 50ms", "--compile-timeout"]);
    assert!(t.elapsed() < std::time::Duration::from_secs(30));

    let o = env.wharf(&[
        "compile",
        "--compile-timeout",
        "50ms",
        big_s,
        "-o",
        d.path().join("b.cwasm").to_str().expect("utf8"),
    ]);
    assert_fails(&o, 131, &["took longer than 50ms"]);
    assert!(!d.path().join("b.cwasm").exists());

    let o = env.wharf(&["run", "--compile-max-memory", "64MiB", big_s]);
    assert_fails(
        &o,
        131,
        &["needed more than 64 MiB", "--compile-max-memory"],
    );

    // No partial artifact is left behind in the cache.
    let files = crate::errors::walk(&env.cache_dir());
    assert!(
        files
            .iter()
            .all(|p| p.extension().is_none_or(|e| e != "cwasm")),
        "{files:?}"
    );
}
