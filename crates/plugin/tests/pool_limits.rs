//! Pool sizing against real componentize-py / componentize-js components: with the
//! server's default pool, running out is per instance slot, not per hidden
//! core-instance, memory or table sub-budget (issue 9, class 8).

use std::time::Duration;

use wharf_engine::compile::Compiler;
use wharf_engine::config::{AllocatorChoice, AllocatorUsed, DEFAULT_SERVER_POOL_INSTANCES};
use wharf_engine::load::LoadOptions;
use wharf_engine::wasmtime::component::Val;
use wharf_engine::{EngineOptions, WharfEngine};
use wharf_plugin::{Plugin, PluginConfig, PluginPool};
use wharf_test_programs as guests;

fn load(engine: &WharfEngine, path: &str) -> Plugin {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = LoadOptions {
        cache: None,
        compiler: Compiler::InProcess,
        key_path: Some(dir.path().join("key")),
        progress: false,
    };
    Plugin::load(engine, path.as_ref(), &opts, PluginConfig::default()).expect("load plugin")
}

/// A pooling engine with the server's default settings and `pool_instances` slots.
fn pooling_engine(pool_instances: u32) -> WharfEngine {
    let engine = WharfEngine::new(&EngineOptions {
        allocator: AllocatorChoice::Pooling,
        pool_instances,
        ..EngineOptions::server_default()
    })
    .expect("a pooling engine");
    assert_eq!(engine.allocator(), AllocatorUsed::Pooling);
    engine
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// With the server's default pool (1000 slots): 200 fresh Python and JavaScript
/// calculator instances one after another, each called and dropped, all succeed; and
/// 300 Python instances kept alive at once fit too. Before the pool was sized per
/// component, its 4-core-instances-per-slot budget (4000) ran dry at the 286th live
/// Python instance (14 core instances each), long before the 1000 instance slots.
#[tokio::test(flavor = "current_thread")]
async fn python_and_js_instances_fit_the_server_pool() {
    let engine = pooling_engine(DEFAULT_SERVER_POOL_INSTANCES);
    for path in [guests::CALCULATOR_PY, guests::CALCULATOR_JS] {
        let plugin = load(&engine, path);
        for i in 0..200 {
            let r = plugin.call("add", &[Val::S32(i), Val::S32(1)]).await;
            assert_eq!(
                r.unwrap_or_else(|e| panic!("{path}: fresh instance {} failed: {e}", i + 1)),
                vec![Val::S32(i + 1)]
            );
        }
    }
    let plugin = load(&engine, guests::CALCULATOR_PY);
    let before = rss_kib();
    let mut live = Vec::new();
    for i in 0..300 {
        match plugin.instantiate().await {
            Ok(inst) => live.push(inst),
            Err(e) => panic!("live Python instance {} of 300 failed: {e}", i + 1),
        }
    }
    let m = engine
        .engine()
        .pooling_allocator_metrics()
        .expect("pooling metrics");
    eprintln!(
        "300 live Python instances: {} core instances, {} memories, {} tables, RSS +{} MiB",
        m.core_instances(),
        m.memories(),
        m.tables(),
        rss_kib().saturating_sub(before) / 1024
    );
    let last = live.last_mut().expect("an instance");
    assert_eq!(
        last.call("add", &[Val::S32(2), Val::S32(3)])
            .await
            .expect("call"),
        vec![Val::S32(5)]
    );
}

/// A small pool runs out per instance slot: every slot can hold a Python instance
/// (old sizing: 4 core instances per slot, so 64 slots held only 18), and the next
/// instance is refused because the instance slots are gone.
#[tokio::test(flavor = "current_thread")]
async fn a_pool_runs_out_per_instance_slot() {
    const SLOTS: u32 = 64;
    let engine = pooling_engine(SLOTS);
    let plugin = load(&engine, guests::CALCULATOR_PY);
    let mut live = Vec::new();
    for i in 0..SLOTS {
        match plugin.instantiate().await {
            Ok(inst) => live.push(inst),
            Err(e) => panic!("Python instance {} of {SLOTS} failed: {e}", i + 1),
        }
    }
    let err = match plugin.instantiate().await {
        Ok(_) => panic!("instance {} of a {SLOTS}-slot pool succeeded", SLOTS + 1),
        Err(e) => format!("{e:?}"),
    };
    assert!(
        err.contains("for component instances"),
        "the pool should be out of component instance slots: {err}"
    );
    // A freed slot is usable again.
    live.pop();
    plugin.instantiate().await.expect("a freed slot");
}

/// A plugin pool keeps at most its idle bound, and drops idle instances older than
/// the time-to-live at the next checkout or return.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_pool_bounds_idle_instances_and_expires_them() {
    let engine = WharfEngine::new(&EngineOptions::default()).expect("engine");
    let plugin = std::sync::Arc::new(load(&engine, guests::CALCULATOR_RS));
    let pool = std::sync::Arc::new(
        PluginPool::new(plugin, 16)
            .with_max_idle(3)
            .with_idle_ttl(Duration::from_millis(300)),
    );
    // 16 concurrent calls need up to 16 instances; at most 3 stay idle afterwards.
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(16));
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let pool = pool.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                pool.call("add", &[Val::S32(i), Val::S32(1)]).await
            })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(
            t.await.expect("join").expect("call"),
            vec![Val::S32(i as i32 + 1)]
        );
    }
    assert!(pool.idle_count() <= 3, "idle: {}", pool.idle_count());
    assert!(pool.idle_count() >= 1);
    // One call reuses an idle instance and puts it back.
    pool.call("add", &[Val::S32(1), Val::S32(1)])
        .await
        .expect("call");
    assert!(pool.idle_count() >= 1);
    // Past the time-to-live, idle instances are dropped at the next checkout/return
    // (and by `trim`); the call itself still works, on a fresh instance.
    tokio::time::sleep(Duration::from_millis(400)).await;
    pool.trim();
    assert_eq!(pool.idle_count(), 0);
    pool.call("add", &[Val::S32(2), Val::S32(2)])
        .await
        .expect("call");
    assert_eq!(pool.idle_count(), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    pool.call("add", &[Val::S32(2), Val::S32(2)])
        .await
        .expect("call");
    // The stale instance was dropped at checkout; only the one just used is idle.
    assert_eq!(pool.idle_count(), 1);
}
