//! Plugins: the calculator world implemented in Rust (wit-bindgen), Python
//! (componentize-py) and JavaScript (componentize-js), called through `wharf call`, `wharf inspect`, and the admin API's
//! invoke endpoint. (The Rust API is tested in crates/plugin/tests.)

use crate::serve::{Server, deploy, http};
use crate::*;

const CALCULATORS: [(&str, &str); 3] = [
    ("rust", guests::CALCULATOR_RS),
    ("python", guests::CALCULATOR_PY),
    ("javascript", guests::CALCULATOR_JS),
];

#[test]
fn wharf_call_with_wave_in_both_languages() {
    let env = Env::shared();
    for (lang, file) in CALCULATORS {
        let call = |args: &[&str]| {
            let mut full = vec!["call", file];
            full.extend_from_slice(args);
            env.wharf(&full)
        };
        let o = call(&["add", "3", "4"]);
        assert_eq!(
            (code(&o), stdout(&o).as_str()),
            (0, "7\n"),
            "{lang}: {}",
            stderr(&o)
        );
        let o = call(&["midpoint", "{x: 0.0, y: 0.0}", "{x: 2.0, y: 4.0}"]);
        assert_eq!(stdout(&o), "{x: 1, y: 2}\n", "{lang}: {}", stderr(&o));
        let o = call(&["divide", "1", "0"]);
        assert_eq!(
            stdout(&o),
            "err(\"division by zero\")\n",
            "{lang}: {}",
            stderr(&o)
        );
        let o = call(&["divide", "-7", "2"]);
        assert_eq!(stdout(&o), "ok(-3)\n", "{lang}");
        let o = call(&[
            "--json",
            "midpoint",
            "{x: 1.0, y: -3.0}",
            "{x: 2.0, y: 0.0}",
        ]);
        let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("json");
        assert_eq!(v, serde_json::json!({"x": 1.5, "y": -1.5}), "{lang}");
        let o = call(&["--json", "divide", "7", "2"]);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(stdout(&o).trim()).expect("json"),
            serde_json::json!({"ok": 3})
        );
        // Usage errors name the signature.
        let o = call(&["add", "three", "4"]);
        assert_fails(&o, 2, &["argument 1 (`a`)", "add(a: s32, b: s32) -> s32"]);
        let o = call(&["add", "3"]);
        assert_fails(&o, 2, &["takes 2 argument(s), 1 given"]);
        let o = call(&["subtract", "3", "4"]);
        assert_fails(
            &o,
            2,
            &[
                "no function `subtract`",
                "midpoint(a: record { x: f64, y: f64 }, b: record { x: f64, y: f64 }) -> record { x: f64, y: f64 }",
            ],
        );
    }
}

#[test]
fn wharf_inspect_describes_components_and_modules() {
    let env = Env::shared();
    let o = env.wharf(&["inspect", guests::CALCULATOR_RS]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    for s in [
        "kind:     component",
        "plugin world",
        "func add(a: s32, b: s32) -> s32",
        "func divide(a: s32, b: s32) -> result<s32, string>",
        "signature: none",
    ] {
        assert!(out.contains(s), "lacks `{s}`:\n{out}");
    }
    // Which WASI version a component targets: its world's export says it, and the
    // versions it names are listed.
    for (file, world, version) in [
        (guests::HTTP_COMPONENT, "wasi:http/proxy", "WASI 0.2."),
        (guests::SPIN3_COMPONENT, "wasi:http/service", "WASI 0.3.0"),
        (guests::HTTP3_COMPONENT, "wasi:http/service", "WASI 0.3.0"),
        (guests::CLI3_COMMAND, "wasi:cli/command", "WASI 0.3.0"),
        (guests::P2_HELLO, "wasi:cli/command", "WASI 0.2."),
    ] {
        let o = env.wharf(&["inspect", "--json", file]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("json");
        let w = v["world"].as_str().expect("world");
        assert!(w.starts_with(world) && w.contains(version), "{file}: {w}");
        let versions = v["wasi"].as_array().expect("wasi");
        let v3 = versions.iter().any(|x| x == "0.3.0");
        assert_eq!(v3, version == "WASI 0.3.0", "{file}: {versions:?}");
    }
    let o = env.wharf(&["inspect", guests::SPIN3_COMPONENT]);
    // Rust's standard library imports WASI 0.2 next to the SDK's 0.3.
    let line = stdout(&o)
        .lines()
        .find(|l| l.starts_with("wasi:     "))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(line.contains("0.2.") && line.contains("0.3.0"), "{line}");
    let o = env.wharf(&["inspect", "--json", guests::HTTP_COMPONENT]);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("json");
    assert_eq!(v["kind"], "component");
    assert!(
        v["world"]
            .as_str()
            .expect("world")
            .starts_with("wasi:http/proxy")
    );
    assert!(
        v["imports"]
            .as_array()
            .expect("imports")
            .iter()
            .any(|i| i.as_str().unwrap_or("").contains("wasi:keyvalue/store"))
    );
    let o = env.wharf(&["inspect", guests::P1_HELLO]);
    let out = stdout(&o);
    assert!(
        out.contains("kind:     module")
            && out.contains("wasip1 command")
            && out.contains("wasi_snapshot_preview1::fd_write"),
        "{out}"
    );
    assert!(
        out.contains("custom sections:") && out.contains("name ("),
        "{out}"
    );
    let o = env.wharf(&["inspect", "/no/such.wasm"]);
    assert_fails(&o, 127, &["cannot read"]);
}

#[test]
fn wharf_inspect_parses_and_compiles_under_the_bound() {
    let env = Env::shared();
    // Text is described as before, and its syntax errors name the file and line.
    let o = env.wharf(&["inspect", guests::WAT_ADD]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    for s in [
        "kind:     module (",
        "world:    plain core module",
        "exports:  3\n  add: func(i32, i32) -> (i32)\n",
        "signature: none",
    ] {
        assert!(out.contains(s), "lacks `{s}`:\n{out}");
    }
    let o = env.wharf(&["inspect", guests::WAT_BAD_SYNTAX]);
    assert_fails(
        &o,
        126,
        &["text format does not parse", "bad_syntax.wat:4:1"],
    );

    let d = tempfile::tempdir().expect("tempdir");
    // Text whose parse needs more memory than the bound.
    let nops = d.path().join("nops.wat");
    crate::text_bound::nop_module(&nops, 4 << 20);
    let o = env.wharf(&[
        "inspect",
        "--compile-max-memory",
        "64MiB",
        nops.to_str().expect("utf8"),
    ]);
    assert_fails(
        &o,
        131,
        &[
            "needed more than 64 MiB of memory to parse its text format",
            "--compile-max-memory",
        ],
    );
    // A binary whose compile takes longer than the bound.
    let slow = d.path().join("slow.wasm");
    crate::text_bound::slow_to_compile_binary(&slow);
    let o = env.wharf(&[
        "inspect",
        "--json",
        "--compile-timeout",
        "50ms",
        slow.to_str().expect("utf8"),
    ]);
    assert_fails(&o, 131, &["took longer than 50ms", "--compile-timeout"]);
    assert_eq!(stdout(&o), "");
}

fn plugin_app() -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::copy(guests::CALCULATOR_RS, d.path().join("calc_rs.wasm")).expect("copy");
    std::fs::copy(guests::CALCULATOR_PY, d.path().join("calc_py.wasm")).expect("copy");
    std::fs::copy(guests::CALCULATOR_JS, d.path().join("calc_js.wasm")).expect("copy");
    std::fs::write(
        d.path().join("wharf.toml"),
        "[app]\nname = \"calc\"\nversion = \"1\"\n\n[[component]]\nid = \"rs\"\nsource = \"calc_rs.wasm\"\nexecutor = { type = \"plugin\" }\n\n[[component]]\nid = \"py\"\nsource = \"calc_py.wasm\"\nexecutor = { type = \"plugin\" }\n\n[[component]]\nid = \"js\"\nsource = \"calc_js.wasm\"\nexecutor = { type = \"plugin\" }\n",
    )
    .expect("write");
    d
}

#[test]
fn invoke_endpoint_maps_json_to_wit_types() {
    let s = Server::start(&[]);
    deploy(&s, plugin_app().path());
    let v = s.admin("GET", "/v1/apps/calc/exports", b"").json();
    assert_eq!(v["components"].as_array().expect("components").len(), 3);
    assert!(
        v["components"][0]["exports"]
            .as_array()
            .expect("exports")
            .iter()
            .any(|e| e == "add(a: s32, b: s32) -> s32")
    );
    for comp in ["rs", "py", "js"] {
        let invoke = |export: &str, body: &str| {
            s.admin(
                "POST",
                &format!("/v1/apps/calc/invoke/{export}?component={comp}"),
                body.as_bytes(),
            )
        };
        let r = invoke("add", "[3, 4]");
        assert_eq!(r.status, 200, "{comp}: {}", r.text());
        assert_eq!(r.json()["result"], 7);
        assert_eq!(r.json()["wave"][0], "7");
        let r = invoke("add", r#"{"args": {"a": 40, "b": 2}}"#);
        assert_eq!(r.json()["result"], 42, "{comp}: {}", r.text());
        let r = invoke(
            "midpoint",
            r#"{"args": [{"x": 0, "y": 0}, {"x": 2, "y": 4}]}"#,
        );
        assert_eq!(
            r.json()["result"],
            serde_json::json!({"x": 1.0, "y": 2.0}),
            "{comp}: {}",
            r.text()
        );
        let r = invoke("divide", "[1, 0]");
        assert_eq!(
            r.json()["result"],
            serde_json::json!({"err": "division by zero"}),
            "{comp}"
        );
        let r = invoke("divide", r#"{"wave": ["9", "3"]}"#);
        assert_eq!(
            r.json()["result"],
            serde_json::json!({"ok": 3}),
            "{comp}: {}",
            r.text()
        );
        // A type mismatch names the path and the expected WIT type.
        let r = invoke("midpoint", r#"[{"x": 0, "y": "up"}, {"x": 2, "y": 4}]"#);
        assert_eq!(r.status, 400, "{comp}: {}", r.text());
        let msg = r.json()["error"]["message"]
            .as_str()
            .expect("msg")
            .to_string();
        assert!(msg.contains("args[0].y") && msg.contains("f64"), "{msg}");
        let r = invoke("add", "[2147483648, 1]");
        assert_eq!(r.status, 400, "{comp}: {}", r.text());
        assert!(
            r.text().contains("args[0]") && r.text().contains("s32"),
            "{}",
            r.text()
        );
        let r = invoke("nope", "[]");
        assert_eq!(r.status, 404, "{}", r.text());
    }
    // Plugins are not routed, and invoking needs the token.
    assert_eq!(s.get("/calc/add").status, 404);
    let r = http(&s.admin, "POST", "/v1/apps/calc/invoke/add", &[], b"[1, 2]");
    assert_eq!(r.status, 401);
    // `wharf call APP EXPORT` goes through the same endpoint.
    let o = s.wharf(&["call", "calc", "add", "20", "22"]);
    assert_eq!(
        (code(&o), stdout(&o).as_str()),
        (0, "42\n"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_plugin_component_must_not_have_a_route() {
    let s = Server::start(&[]);
    let d = plugin_app();
    let manifest = std::fs::read_to_string(d.path().join("wharf.toml"))
        .expect("read")
        .replacen(
            "executor = { type = \"plugin\" }",
            "executor = { type = \"plugin\" }\nroute = \"/calc\"",
            1,
        );
    std::fs::write(d.path().join("wharf.toml"), manifest).expect("write");
    let o = s.wharf(&["deploy", d.path().to_str().expect("utf8")]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("not routed; remove the route"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bytes_plugin_built_with_the_sdk() {
    let env = Env::shared();
    let o = env.wharf(&["call", guests::BYTES_UPPER, "handle", "[104, 105, 33]"]);
    assert_eq!(
        (code(&o), stdout(&o).as_str()),
        (0, "ok([72, 73, 33])\n"),
        "{}",
        stderr(&o)
    );
    let o = env.wharf(&["call", guests::BYTES_UPPER, "handle", "[]"]);
    assert_eq!(stdout(&o), "err(\"empty input\")\n");
    let o = env.wharf(&["inspect", guests::BYTES_UPPER]);
    assert!(
        stdout(&o).contains("func handle(input: list<u8>) -> result<list<u8>, string>"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn wharf_call_on_a_core_module() {
    let env = Env::shared();
    let o = env.wharf(&["call", guests::WAT_ADD, "add", "3", "4"]);
    assert_eq!(
        (code(&o), stdout(&o).as_str()),
        (0, "7\n"),
        "{}",
        stderr(&o)
    );
    let o = env.wharf(&["call", "--json", guests::WAT_ADD, "half", "3.0"]);
    assert_eq!(stdout(&o).trim(), "1.5", "{}", stderr(&o));
}

/// Exports lifted async (component-model async, as WASI 0.3 toolchains build them) are
/// called by `wharf call` and the invoke endpoint in the store's event loop, under the
/// same deadline and memory cap as sync ones, and the listing marks them `async`.
#[test]
fn async_exports_through_call_inspect_and_invoke() {
    let env = Env::shared();
    let plugin = guests::PLUGIN3_COMPONENT;
    let o = env.wharf(&["inspect", plugin]);
    assert!(
        stdout(&o).contains("func async greet(name: string) -> string"),
        "{}",
        stdout(&o)
    );
    // A WASI 0.3 import is async too.
    assert!(stdout(&o).contains("async wait-for(how-long: u64)"));

    let o = env.wharf(&["call", plugin, "greet", "\"Ada\""]);
    assert_eq!(
        (code(&o), stdout(&o).as_str()),
        (0, "\"Hello, Ada!\"\n"),
        "{}",
        stderr(&o)
    );
    // The guest waits on the 0.3 clock (a host future) before it answers.
    let o = env.wharf(&["call", "--json", plugin, "add-after", "30", "40", "2"]);
    assert_eq!((code(&o), stdout(&o).trim()), (0, "42"), "{}", stderr(&o));
    // A busy loop, and a wait on a host timer, are both stopped by the deadline.
    let o = env.wharf(&["call", "--timeout", "300ms", plugin, "spin"]);
    assert_fails(&o, 124, &["300ms deadline"]);
    let o = env.wharf(&["call", "--timeout", "300ms", plugin, "nap", "60000"]);
    assert_fails(&o, 124, &["300ms deadline"]);
    // The memory cap holds inside an async export: growth past 4 MiB fails in the
    // guest (which counts what it got) instead of growing.
    let o = env.wharf(&["call", "--max-memory", "4MiB", plugin, "grow", "1000"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let pages: u32 = stdout(&o).trim().parse().expect("a page count");
    assert!(pages < 64, "grew {pages} pages under a 4 MiB cap");
    let o = env.wharf(&["call", plugin, "grow", "100"]);
    assert_eq!(stdout(&o).trim(), "100", "{}", stderr(&o));

    // The invoke endpoint, with the component's own deadline.
    let s = Server::start(&[]);
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::copy(plugin, d.path().join("p3.wasm")).expect("copy");
    std::fs::write(
        d.path().join("wharf.toml"),
        "[app]\nname = \"p3\"\nversion = \"1\"\n\n[[component]]\nid = \"p\"\nsource = \"p3.wasm\"\nexecutor = { type = \"plugin\" }\n\n[component.limits]\ntimeout = \"400ms\"\nmemory = \"4MiB\"\n",
    )
    .expect("write");
    deploy(&s, d.path());
    let v = s.admin("GET", "/v1/apps/p3/exports", b"").json();
    assert!(
        v["components"][0]["exports"]
            .as_array()
            .expect("exports")
            .iter()
            .any(|e| e == "async greet(name: string) -> string"),
        "{v}"
    );
    let invoke = |export: &str, body: &str| {
        s.admin(
            "POST",
            &format!("/v1/apps/p3/invoke/{export}"),
            body.as_bytes(),
        )
    };
    let r = invoke("greet", r#"["Grace"]"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"], "Hello, Grace!");
    let r = invoke("add-after", r#"{"args": {"ms": 20, "a": 1, "b": 2}}"#);
    assert_eq!(r.json()["result"], 3, "{}", r.text());
    for (export, body) in [("spin", "[]"), ("nap", "[60000]")] {
        let r = invoke(export, body);
        assert_eq!(r.status, 503, "{export}: {}", r.text());
        assert_eq!(r.json()["error"]["kind"], "timeout", "{export}");
    }
    let r = invoke("grow", "[1000]");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.json()["result"].as_u64().is_some_and(|p| p < 64),
        "{}",
        r.text()
    );
    // The plugin still answers after its failures.
    let r = invoke("greet", r#"["again"]"#);
    assert_eq!(r.json()["result"], "Hello, again!", "{}", r.text());
}
