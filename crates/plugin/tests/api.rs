//! The plugin API against real components: the calculator in Rust and in Python.

use std::sync::Arc;
use std::time::Duration;

use wharf_engine::compile::Compiler;
use wharf_engine::load::LoadOptions;
use wharf_engine::wasmtime::component::Val;
use wharf_engine::{EngineOptions, WharfEngine};
use wharf_plugin::{Plugin, PluginConfig, PluginError, PluginPool};
use wharf_test_programs as guests;

fn load(path: &str, config: PluginConfig) -> Plugin {
    let engine = WharfEngine::new(&EngineOptions::default()).expect("engine");
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = LoadOptions {
        cache: None,
        compiler: Compiler::InProcess,
        key_path: Some(dir.path().join("key")),
        progress: false,
    };
    Plugin::load(&engine, path.as_ref(), &opts, config).expect("load plugin")
}

fn point(x: f64, y: f64) -> Val {
    Val::Record(vec![
        ("x".into(), Val::Float64(x)),
        ("y".into(), Val::Float64(y)),
    ])
}

#[tokio::test(flavor = "current_thread")]
async fn calculator_in_rust_and_python() {
    for path in [
        guests::CALCULATOR_RS,
        guests::CALCULATOR_PY,
        guests::CALCULATOR_JS,
    ] {
        let plugin = load(path, PluginConfig::default());
        let sigs: Vec<&str> = plugin
            .exports()
            .iter()
            .map(|e| e.signature.as_str())
            .collect();
        assert!(sigs.contains(&"add(a: s32, b: s32) -> s32"), "{sigs:?}");
        assert!(
            sigs.contains(&"midpoint(a: record { x: f64, y: f64 }, b: record { x: f64, y: f64 }) -> record { x: f64, y: f64 }"),
            "{sigs:?}"
        );
        assert_eq!(
            plugin
                .call("midpoint", &[point(0.0, 0.0), point(2.0, 4.0)])
                .await
                .expect("midpoint"),
            vec![point(1.0, 2.0)]
        );
        assert_eq!(
            plugin
                .call("divide", &[Val::S32(1), Val::S32(0)])
                .await
                .expect("divide"),
            vec![Val::Result(Err(Some(Box::new(Val::String(
                "division by zero".into()
            )))))]
        );
        // A warm instance serves many calls.
        let mut warm = plugin.instantiate().await.expect("instantiate");
        for i in 0..50 {
            assert_eq!(
                warm.call("add", &[Val::S32(i), Val::S32(1)])
                    .await
                    .expect("add"),
                vec![Val::S32(i + 1)]
            );
        }
        // Wrong arity and unknown exports are typed errors.
        assert!(matches!(
            warm.call("add", &[Val::S32(1)]).await,
            Err(PluginError::Args(_))
        ));
        assert!(matches!(
            plugin.call("nope", &[]).await,
            Err(PluginError::NoSuchExport { .. })
        ));
        assert!(matches!(
            warm.call("add", &[Val::String("x".into()), Val::S32(1)])
                .await,
            Err(PluginError::Args(_))
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_serves_concurrent_callers() {
    let plugin = Arc::new(load(guests::CALCULATOR_RS, PluginConfig::default()));
    let pool = Arc::new(PluginPool::new(plugin, 4));
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.call("add", &[Val::S32(i), Val::S32(i)]).await })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(
            t.await.expect("join").expect("call"),
            vec![Val::S32(2 * i as i32)]
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn limits_apply_to_plugin_calls() {
    // The Python calculator needs far more than 1 MiB: instantiation hits the cap.
    let tiny = PluginConfig {
        max_memory: Some(1 << 20),
        ..PluginConfig::default()
    };
    let plugin = load(guests::CALCULATOR_PY, tiny);
    match plugin.call("add", &[Val::S32(1), Val::S32(2)]).await {
        Err(PluginError::MemoryCap(cap)) => assert_eq!(cap, 1 << 20),
        other => panic!("expected the memory cap, got {other:?}"),
    }
    // A spinning export is stopped at the deadline (the test calc component).
    let quick = PluginConfig {
        timeout: Some(Duration::from_millis(100)),
        ..PluginConfig::default()
    };
    let plugin = load(guests::CALC_COMPONENT, quick);
    let t = std::time::Instant::now();
    assert!(matches!(
        plugin.call("spin", &[]).await,
        Err(PluginError::Timeout(_))
    ));
    assert!(t.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "current_thread")]
async fn core_modules_with_numeric_exports() {
    let plugin = load(guests::WAT_ADD, PluginConfig::default());
    let sigs: Vec<&str> = plugin
        .exports()
        .iter()
        .map(|e| e.signature.as_str())
        .collect();
    assert_eq!(
        sigs,
        [
            "add(p0: s32, p1: s32) -> s32",
            "mul64(p0: s64, p1: s64) -> s64",
            "half(p0: f64) -> f64"
        ]
    );
    assert_eq!(
        plugin
            .call("add", &[Val::S32(3), Val::S32(4)])
            .await
            .expect("add"),
        vec![Val::S32(7)]
    );
    assert_eq!(
        plugin
            .call("mul64", &[Val::S64(-3), Val::S64(5_000_000_000)])
            .await
            .expect("mul64"),
        vec![Val::S64(-15_000_000_000)]
    );
    let mut warm = plugin.instantiate().await.expect("instance");
    assert_eq!(
        warm.call("half", &[Val::Float64(3.0)]).await.expect("half"),
        vec![Val::Float64(1.5)]
    );
    assert!(matches!(
        warm.call("add", &[Val::S64(1), Val::S32(2)]).await,
        Err(PluginError::Args(_))
    ));
}
