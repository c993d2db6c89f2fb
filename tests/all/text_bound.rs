//! WebAssembly text is parsed in the bounded compile worker, under --compile-timeout
//! and --compile-max-memory, not in the process that loads it (a tenant's `.wat` in a
//! bundle, or a file given to `wharf inspect`).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use wharf_engine::compile::Compiler;
use wharf_engine::config::EngineOptions;
use wharf_engine::load::{LoadOptions, load_file};
use wharf_engine::{WharfEngine, WharfError};

use crate::*;

/// Writes a module that is quick to write and costly to parse: one function of `n`
/// (a multiple of 65,536) `nop`s, four bytes of text each, while the parser holds
/// about 90 bytes per instruction (4Mi of them: 16 MiB of text, ~380 MiB to parse).
pub fn nop_module(path: &Path, n: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    f.write_all(b"(module (func (export \"_start\")\n")
        .expect("write");
    let chunk = "nop\n".repeat(1 << 16);
    for _ in 0..n >> 16 {
        f.write_all(chunk.as_bytes()).expect("write");
    }
    f.write_all(b"))\n").expect("write");
    f.flush().expect("flush");
}

/// Writes a Wasm binary that is small but slow to compile: 1,000 functions of 800
/// instructions each.
pub fn slow_to_compile_binary(path: &Path) {
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
    std::fs::write(path, wat::parse_str(&wat).expect("valid text")).expect("write");
}

/// This process's peak resident memory (VmHWM), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .expect("VmHWM")
        * 1024
}

const HELPER: &str = "WHARF_TEST_TEXT_BOUND_HELPER";

#[test]
fn wat_text_is_parsed_under_the_bound_not_in_the_loading_process() {
    // The body runs in a process of its own (this test binary, running only the helper
    // below), so that tests running alongside cannot move its peak memory.
    let exe = std::env::current_exe().expect("test binary");
    let o = std::process::Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            "text_bound::text_bound_helper",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(HELPER, "1")
        .output()
        .expect("run the helper");
    let out = stdout(&o);
    assert!(
        o.status.success() && out.contains("1 passed"),
        "{out}\n{}",
        stderr(&o)
    );
}

#[test]
#[ignore = "the body of wat_text_is_parsed_under_the_bound_not_in_the_loading_process"]
fn text_bound_helper() {
    if std::env::var_os(HELPER).is_none() {
        return;
    }
    let d = tempfile::tempdir().expect("tempdir");
    let path = d.path().join("nops.wat");
    nop_module(&path, 4 << 20);
    let engine = WharfEngine::new(&EngineOptions::default()).expect("engine");
    let opts = LoadOptions {
        cache: None,
        compiler: Compiler::Subprocess {
            program: env!("CARGO_BIN_EXE_wharf").into(),
            timeout: Duration::from_secs(60),
            max_memory: 64 << 20,
        },
        key_path: None,
        progress: false,
    };
    let before = peak_rss();
    let result = load_file(&engine, &path, &opts);
    let grew = peak_rss().saturating_sub(before);
    match result {
        Err(WharfError::CompileBound { reason, .. }) => assert!(
            reason.contains("needed more than 64 MiB of memory to parse its text format")
                && reason.contains("--compile-max-memory"),
            "{reason}"
        ),
        Err(e) => panic!("not the bound error: {e}"),
        Ok(_) => panic!("a parse over the bound was not stopped"),
    }
    // This process read the text (16 MiB) and handed a copy to the worker; parsing it
    // here would have taken some 380 MiB.
    println!("peak memory grew by {} MiB", grew >> 20);
    assert!(grew < 128 << 20, "peak memory grew by {} MiB", grew >> 20);
}

#[test]
fn wat_parse_time_is_under_the_compile_timeout() {
    let env = Env::isolated();
    let d = tempfile::tempdir().expect("tempdir");
    let path = d.path().join("nops.wat");
    nop_module(&path, 2 << 20);
    let o = env.wharf(&[
        "compile",
        "--compile-timeout",
        "50ms",
        path.to_str().expect("utf8"),
        "-o",
        d.path().join("nops.cwasm").to_str().expect("utf8"),
    ]);
    assert_fails(
        &o,
        131,
        &[
            "took longer than 50ms to parse its text format",
            "--compile-timeout",
        ],
    );
    assert!(!d.path().join("nops.cwasm").exists());
}

#[test]
fn wat_syntax_error_from_the_worker_names_the_line_and_stays_short() {
    let env = Env::shared();
    let o = env.wharf(&["run", guests::WAT_BAD_SYNTAX]);
    assert_fails(
        &o,
        126,
        &["text format does not parse", "bad_syntax.wat:4:1"],
    );

    // The parser quotes the offending line; the worker sends back at most 1,000
    // bytes of it, not this line's 8 MiB.
    let d = tempfile::tempdir().expect("tempdir");
    let path = d.path().join("long_line.wat");
    let text = format!("(module (func bogus{}))", " nop".repeat(2 << 20));
    std::fs::write(&path, text).expect("write");
    let o = env.wharf(&["run", path.to_str().expect("utf8")]);
    assert_fails(
        &o,
        126,
        &[
            "text format does not parse",
            "unknown operator",
            "long_line.wat:1:15",
            "bogus nop nop",
            "[...]",
        ],
    );
    assert!(stderr(&o).len() < 16 << 10, "{} bytes", stderr(&o).len());
}
