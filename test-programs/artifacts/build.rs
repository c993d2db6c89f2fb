//! Builds the guest programs in `../guests` for wasm32-wasip1 (core modules) and
//! wasm32-wasip2 (components) and writes `guests.rs`, a list of path constants:
//! `P1_HELLO`, `P2_HELLO`, ..., `CALC_COMPONENT`, and `WAT_*` for the text sources in
//! `../wat` (which `wharf run` accepts directly).

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const BINS: &[&str] = &[
    "hello",
    "echo",
    "files",
    "exit_code",
    "spin",
    "sleep",
    "membomb",
    "recurse",
    "trap",
    "fuel",
    "wagi",
];

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("test-programs dir").to_path_buf();
    let guests = root.join("guests");
    let wat = root.join("wat");
    println!(
        "cargo:rerun-if-changed={}",
        guests.join("Cargo.toml").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        guests.join("Cargo.lock").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        guests.join("programs").display()
    );
    println!("cargo:rerun-if-changed={}", guests.join("calc").display());
    println!("cargo:rerun-if-changed={}", guests.join("http").display());
    for dir in ["spin3", "http3", "cli3", "plugin3"] {
        println!("cargo:rerun-if-changed={}", guests.join(dir).display());
    }
    println!("cargo:rerun-if-changed={}", wat.display());

    let examples = root.parent().expect("repo root").join("examples");
    let example = examples.join("http-hello");
    let guestbook = examples.join("guestbook");
    let calc_rs = examples.join("calculator-rs");
    let bytes_upper = examples.join("bytes-upper");
    let sdk = root
        .parent()
        .expect("repo root")
        .join("sdk/wharf-plugin-sdk");
    println!("cargo:rerun-if-changed={}", sdk.join("src").display());
    let calc_py = examples.join("calculator-py");
    let calc_js = examples.join("calculator-js");
    for f in [
        "calculator.js",
        "build.mjs",
        "build.sh",
        "package-lock.json",
    ] {
        println!("cargo:rerun-if-changed={}", calc_js.join(f).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        calc_py.join("app.py").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        calc_py.join("build.sh").display()
    );
    for dir in [&example, &guestbook, &calc_rs, &bytes_upper] {
        for part in ["src", "wit", "Cargo.toml"] {
            println!("cargo:rerun-if-changed={}", dir.join(part).display());
        }
    }
    // The guests and examples read the shared WIT packages.
    println!(
        "cargo:rerun-if-changed={}",
        root.parent().expect("repo root").join("wit").display()
    );
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let target_dir = out.join("guests-target");
    build(
        &guests,
        &target_dir,
        "wasm32-wasip1",
        &["-p", "programs", "--bins"],
    );
    build(&guests, &target_dir, "wasm32-wasip2", &["--workspace"]);

    let mut code = String::new();
    for bin in BINS {
        for (prefix, target) in [("P1", "wasm32-wasip1"), ("P2", "wasm32-wasip2")] {
            let path = target_dir
                .join(target)
                .join("release")
                .join(format!("{bin}.wasm"));
            assert!(
                path.exists(),
                "guest `{bin}` for {target} was not built: {}",
                path.display()
            );
            writeln!(
                code,
                "/// `{bin}` built for {target}.\npub const {prefix}_{}: &str = {:?};",
                bin.to_uppercase(),
                path.display().to_string()
            )
            .expect("write");
        }
    }
    let calc = target_dir.join("wasm32-wasip2/release/calc.wasm");
    assert!(calc.exists(), "calc component was not built");
    writeln!(
        code,
        "/// The calculator component with typed exports.\npub const CALC_COMPONENT: &str = {:?};",
        calc.display().to_string()
    )
    .expect("write");
    let example_target = out.join("example-target");
    build(&example, &example_target, "wasm32-wasip2", &[]);
    let example_wasm = example_target.join("wasm32-wasip2/release/http_hello.wasm");
    assert!(example_wasm.exists(), "examples/http-hello was not built");
    writeln!(
        code,
        "/// The shipped example `examples/http-hello`, built.\npub const EXAMPLE_HTTP_HELLO: &str = {:?};\n/// Its directory (holding wharf.toml).\npub const EXAMPLE_HTTP_HELLO_DIR: &str = {:?};",
        example_wasm.display().to_string(),
        example.display().to_string()
    )
    .expect("write");
    build(&guestbook, &example_target, "wasm32-wasip2", &[]);
    let guestbook_wasm = example_target.join("wasm32-wasip2/release/guestbook.wasm");
    assert!(guestbook_wasm.exists(), "examples/guestbook was not built");
    writeln!(
        code,
        "/// The example `examples/guestbook`, built.\npub const EXAMPLE_GUESTBOOK: &str = {:?};\n/// Its directory.\npub const EXAMPLE_GUESTBOOK_DIR: &str = {:?};",
        guestbook_wasm.display().to_string(),
        guestbook.display().to_string()
    )
    .expect("write");
    build(&calc_rs, &example_target, "wasm32-wasip2", &[]);
    let calc_rs_wasm = example_target.join("wasm32-wasip2/release/calculator_rs.wasm");
    assert!(
        calc_rs_wasm.exists(),
        "examples/calculator-rs was not built"
    );
    build(&bytes_upper, &example_target, "wasm32-wasip2", &[]);
    let bytes_wasm = example_target.join("wasm32-wasip2/release/bytes_upper.wasm");
    assert!(bytes_wasm.exists(), "examples/bytes-upper was not built");
    writeln!(
        code,
        "/// The bytes plugin built with the SDK (`examples/bytes-upper`).\npub const BYTES_UPPER: &str = {:?};",
        bytes_wasm.display().to_string()
    )
    .expect("write");
    // The Python calculator, through componentize-py (installed from PyPI by the script
    // when missing).
    let py_out = out.join("calculator-py");
    std::fs::create_dir_all(&py_out).expect("mkdir");
    let status = Command::new("bash")
        .arg(calc_py.join("build.sh"))
        .arg(&py_out)
        .status()
        .expect("running examples/calculator-py/build.sh");
    assert!(
        status.success(),
        "building the Python calculator failed (needs python3 and pip)"
    );
    let calc_py_wasm = py_out.join("calculator_py.wasm");
    // The JavaScript calculator, through componentize-js (npm).
    let js_out = out.join("calculator-js");
    std::fs::create_dir_all(&js_out).expect("mkdir");
    let status = Command::new("bash")
        .arg(calc_js.join("build.sh"))
        .arg(&js_out)
        .status()
        .expect("running examples/calculator-js/build.sh");
    assert!(
        status.success(),
        "building the JavaScript calculator failed (needs node and npm)"
    );
    let calc_js_wasm = js_out.join("calculator_js.wasm");
    writeln!(
        code,
        "/// The Rust calculator (`examples/calculator-rs`).\npub const CALCULATOR_RS: &str = {:?};\n/// The Python calculator (`examples/calculator-py`, componentize-py).\npub const CALCULATOR_PY: &str = {:?};\n/// The JavaScript calculator (`examples/calculator-js`, componentize-js).\npub const CALCULATOR_JS: &str = {:?};",
        calc_rs_wasm.display().to_string(),
        calc_py_wasm.display().to_string(),
        calc_js_wasm.display().to_string()
    )
    .expect("write");
    let http = target_dir.join("wasm32-wasip2/release/http_test.wasm");
    assert!(http.exists(), "http test component was not built");
    writeln!(
        code,
        "/// The `wasi:http/proxy` test component (see guests/http).\npub const HTTP_COMPONENT: &str = {:?};",
        http.display().to_string()
    )
    .expect("write");
    for (name, file, doc) in [
        (
            "SPIN3_COMPONENT",
            "spin3.wasm",
            "A WASI 0.3 HTTP component made with `spin-sdk` 7's `#[http_service]` (guests/spin3).",
        ),
        (
            "HTTP3_COMPONENT",
            "http3.wasm",
            "A WASI 0.3 HTTP component written against the `wasip3` bindings (guests/http3).",
        ),
        (
            "CLI3_COMMAND",
            "cli3.wasm",
            "A WASI 0.3 command exporting `wasi:cli/run@0.3.0` (guests/cli3).",
        ),
        (
            "PLUGIN3_COMPONENT",
            "plugin3.wasm",
            "A plugin component whose exports are async-lifted (guests/plugin3).",
        ),
    ] {
        let path = target_dir.join("wasm32-wasip2/release").join(file);
        assert!(path.exists(), "{file} was not built");
        writeln!(
            code,
            "/// {doc}\npub const {name}: &str = {:?};",
            path.display().to_string()
        )
        .expect("write");
    }
    for entry in std::fs::read_dir(&wat).expect("wat dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "wat") {
            let stem = path
                .file_stem()
                .expect("stem")
                .to_string_lossy()
                .to_uppercase();
            writeln!(
                code,
                "/// Text-format source `{}`.\npub const WAT_{stem}: &str = {:?};",
                path.file_name().expect("name").to_string_lossy(),
                path.display().to_string()
            )
            .expect("write");
        }
    }
    std::fs::write(out.join("guests.rs"), code).expect("write guests.rs");
}

fn build(guests: &Path, target_dir: &Path, target: &str, extra: &[&str]) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--target")
        .arg(target)
        .arg("--manifest-path")
        .arg(guests.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .args(extra);
    if guests.join("Cargo.lock").exists() {
        cmd.arg("--locked");
    }
    // The outer build's settings are for the host; keep them away from the guests.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_PROFILE_RELEASE_LTO",
        "CARGO_INCREMENTAL",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("running cargo for the guests");
    assert!(
        status.success(),
        "building the guest programs for {target} failed; is the target installed? \
         (rustup target add {target})"
    );
}
