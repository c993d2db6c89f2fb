//! Per-call overhead of the plugin API and JSON marshalling cost.
//!
//! Run: `cargo bench -p wharf-plugin --bench call`
//!
//! - `call/warm`: a trivial export (`add`) on a warm instance;
//! - `call/fresh`: the same call on a fresh instance each time (pooling allocator);
//! - `json/1KiB-record`: JSON → `Val` → JSON for a record of about 1 KiB.

use criterion::{Criterion, criterion_group, criterion_main};
use wharf_engine::compile::Compiler;
use wharf_engine::config::AllocatorChoice;
use wharf_engine::load::LoadOptions;
use wharf_engine::wasmtime::component::Val;
use wharf_engine::{EngineOptions, WharfEngine};
use wharf_plugin::{Plugin, PluginConfig, json};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let engine = WharfEngine::new(&EngineOptions {
        allocator: AllocatorChoice::Pooling,
        pool_instances: 16,
        ..EngineOptions::default()
    })
    .expect("engine");
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = LoadOptions {
        cache: None,
        compiler: Compiler::InProcess,
        key_path: Some(dir.path().join("key")),
        progress: false,
    };
    let plugin = Plugin::load(
        &engine,
        wharf_test_programs::CALCULATOR_RS.as_ref(),
        &opts,
        PluginConfig::default(),
    )
    .expect("plugin");
    let args = [Val::S32(3), Val::S32(4)];
    let mut warm = rt.block_on(plugin.instantiate()).expect("instance");
    let mut g = c.benchmark_group("call");
    g.bench_function("warm", |b| {
        b.iter(|| rt.block_on(warm.call("add", &args)).expect("call"))
    });
    g.bench_function("fresh", |b| {
        b.iter(|| rt.block_on(plugin.call("add", &args)).expect("call"))
    });
    g.finish();

    // JSON -> Val -> JSON for a ~1 KiB record (the test calc component's `profile`).
    let calc = Plugin::load(
        &engine,
        wharf_test_programs::CALC_COMPONENT.as_ref(),
        &opts,
        PluginConfig::default(),
    )
    .expect("calc plugin");
    let info = calc.export("echo-profile").expect("echo-profile").clone();
    let profile = serde_json::json!([{
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "bio": "x".repeat(820),
        "tags": ["math", "engines", "poetry", "notes", "analysis", "bernoulli"],
        "scores": [1.5, 2.25, 3.125, 4.0625, 5.5, 6.75, 7.875, 8.5, 9.25, 10.0],
        "active": true,
        "age": 36
    }]);
    let size = profile.to_string().len();
    assert!(
        (1000..=1100).contains(&size),
        "about 1 KiB of JSON, got {size}"
    );
    let mut g = c.benchmark_group("json");
    g.bench_function("1KiB-record", |b| {
        b.iter(|| {
            let vals = json::json_to_args(&info.params, &profile).expect("args");
            vals.iter().map(json::val_to_json).collect::<Vec<_>>()
        })
    });
    let mut warm_calc = rt.block_on(calc.instantiate()).expect("instance");
    let vals = json::json_to_args(&info.params, &profile).expect("args");
    g.bench_function("1KiB-record-call-roundtrip", |b| {
        b.iter(|| {
            let out = rt
                .block_on(warm_calc.call("echo-profile", &vals))
                .expect("call");
            out.iter().map(json::val_to_json).collect::<Vec<_>>()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
