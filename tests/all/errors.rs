//! Bad input gets a precise message and a distinct exit code.

use crate::*;

#[test]
fn missing_file_and_directory() {
    let env = Env::shared();
    let o = env.wharf(&["run", "/no/such/program.wasm"]);
    assert_fails(
        &o,
        127,
        &["cannot read `/no/such/program.wasm`", "no such file"],
    );
    let d = tempfile::tempdir().expect("tempdir");
    let o = env.wharf(&["run", d.path().to_str().expect("utf8")]);
    assert_fails(&o, 127, &["directory"]);
}

#[test]
fn not_webassembly() {
    let env = Env::shared();
    let d = tempfile::tempdir().expect("tempdir");
    let script = d.path().join("script.wasm");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").expect("write");
    let o = env.wharf(&["run", script.to_str().expect("utf8")]);
    assert_fails(&o, 126, &["is not WebAssembly", "#!/bin/s"]);

    let empty = d.path().join("empty.wasm");
    std::fs::write(&empty, "").expect("write");
    let o = env.wharf(&["run", empty.to_str().expect("utf8")]);
    assert_fails(&o, 126, &["the file is empty"]);

    let binary = d.path().join("bin.wasm");
    std::fs::write(&binary, [0x7f, 0x00, 0x13, 0x37, 0xff]).expect("write");
    let o = env.wharf(&["run", binary.to_str().expect("utf8")]);
    assert_fails(&o, 126, &["is not WebAssembly", "\\x7f"]);
}

#[test]
fn malformed_wasm_binary() {
    let env = Env::isolated();
    let d = tempfile::tempdir().expect("tempdir");
    let bad = d.path().join("bad.wasm");
    // Valid header, then a truncated section.
    std::fs::write(&bad, b"\0asm\x01\0\0\0\x01\x05\x01").expect("write");
    let o = env.wharf(&["run", bad.to_str().expect("utf8")]);
    assert_fails(&o, 126, &["is not valid WebAssembly"]);
    // Nothing half-written is left in the cache.
    let leftovers: Vec<_> = walk(&env.cache_dir());
    assert!(
        leftovers
            .iter()
            .all(|p| !p.to_string_lossy().ends_with(".tmp")),
        "{leftovers:?}"
    );
    assert!(
        leftovers
            .iter()
            .all(|p| !p.to_string_lossy().ends_with(".cwasm")),
        "{leftovers:?}"
    );

    let version = d.path().join("v.wasm");
    std::fs::write(&version, b"\0asm\x02\0\0\0").expect("write");
    let o = env.wharf(&["run", version.to_str().expect("utf8")]);
    assert_fails(&o, 126, &["unsupported binary version"]);
}

pub fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn wat_syntax_error_names_the_line() {
    let env = Env::shared();
    let o = env.wharf(&["run", guests::WAT_BAD_SYNTAX]);
    assert_fails(
        &o,
        126,
        &["text format does not parse", "bad_syntax.wat:4:1"],
    );
}

#[test]
fn unknown_import_is_named() {
    let env = Env::shared();
    let o = env.wharf(&["run", guests::WAT_IMPORTS_UNKNOWN]);
    assert_fails(
        &o,
        129,
        &["imports `acme:db::query`", "wharf does not provide"],
    );
    let o = env.wharf(&["run", guests::WAT_COMPONENT_UNKNOWN_IMPORT]);
    assert_fails(
        &o,
        129,
        &[
            "imports instance `acme:db/query@1.0.0`",
            "wharf does not provide",
        ],
    );
}

#[test]
fn bad_flag_values_are_usage_errors() {
    let env = Env::shared();
    let o = env.wharf(&["run", "--max-memory", "lots", guests::P2_HELLO]);
    assert_fails(&o, 2, &["lots", "64MiB"]);
    let o = env.wharf(&["run", "--timeout", "soon", guests::P2_HELLO]);
    assert_fails(&o, 2, &["soon", "500ms"]);
    let o = env.wharf(&["run", "--dir", "::/x", guests::P2_HELLO]);
    assert_fails(&o, 2, &["HOST::GUEST"]);
    let o = env.wharf(&["run", "--env", "=v", guests::P2_HELLO]);
    assert_fails(&o, 2, &["name is empty"]);
}
