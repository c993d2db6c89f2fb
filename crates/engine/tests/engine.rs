//! The engine crate used as a library (as `wharf serve` and embedders will): load with
//! the in-process compiler and a cache, run with limits, read the report.

use std::time::Duration;

use wharf_engine::compile::Compiler;
use wharf_engine::config::{AllocatorChoice, EngineOptions};
use wharf_engine::load::{LoadMethod, LoadOptions, load_file};
use wharf_engine::run::{RunOutput, run};
use wharf_engine::{Invocation, Limits, RunOptions, WharfEngine, WharfError};
use wharf_test_programs as guests;

fn engine(fuel: bool) -> WharfEngine {
    WharfEngine::new(&EngineOptions {
        allocator: AllocatorChoice::Auto,
        pool_instances: 8,
        fuel,
        ..EngineOptions::default()
    })
    .expect("engine")
}

fn load_opts(cache: &std::path::Path) -> LoadOptions {
    LoadOptions {
        cache: Some(wharf_engine::artifact::ArtifactCache::new(cache)),
        compiler: Compiler::InProcess,
        key_path: Some(cache.join("key")),
        progress: false,
    }
}

fn opts(args: &[&str], limits: Limits) -> RunOptions {
    RunOptions {
        args: args.iter().map(|s| s.to_string()).collect(),
        limits,
        ..RunOptions::default()
    }
}

#[test]
fn exit_status_and_cache_through_the_library() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = engine(false);
    let lo = load_opts(dir.path());
    let first = load_file(&e, guests::P2_EXIT_CODE.as_ref(), &lo).expect("load");
    assert_eq!(first.method, LoadMethod::Compiled);
    let again = load_file(&e, guests::P2_EXIT_CODE.as_ref(), &lo).expect("load");
    assert_eq!(again.method, LoadMethod::CacheHit);
    assert_eq!(first.source_sha256, again.source_sha256);

    let report = run(&e, &again, &opts(&["exit_code", "42"], Limits::default()));
    assert!(
        matches!(report.outcome, Ok(RunOutput::Exit(42))),
        "{:?}",
        report.outcome
    );
    assert_eq!(report.stats.exit_code, 42);
    assert!(report.stats.peak_memory_bytes > 0);
}

#[test]
fn limits_map_to_typed_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = engine(false);
    let lo = load_opts(dir.path());

    let bomb = load_file(&e, guests::P1_MEMBOMB.as_ref(), &lo).expect("load");
    let r = run(
        &e,
        &bomb,
        &opts(
            &["membomb"],
            Limits {
                max_memory: Some(16 << 20),
                ..Limits::default()
            },
        ),
    );
    assert!(
        matches!(r.outcome, Err(WharfError::MemoryCap { .. })),
        "{:?}",
        r.outcome
    );
    assert!(r.stats.peak_memory_bytes <= 16 << 20);

    let spin = load_file(&e, guests::P2_SPIN.as_ref(), &lo).expect("load");
    let r = run(
        &e,
        &spin,
        &opts(
            &["spin"],
            Limits {
                timeout: Some(Duration::from_millis(100)),
                ..Limits::default()
            },
        ),
    );
    assert!(
        matches!(r.outcome, Err(WharfError::Timeout { .. })),
        "{:?}",
        r.outcome
    );
    assert!(r.stats.run_us >= 100_000, "{}", r.stats.run_us);

    let fe = engine(true);
    let fuel = load_file(&fe, guests::P1_FUEL.as_ref(), &lo).expect("load");
    let r = run(
        &fe,
        &fuel,
        &opts(
            &["fuel", "1000000000"],
            Limits {
                fuel: Some(10_000),
                ..Limits::default()
            },
        ),
    );
    assert!(
        matches!(r.outcome, Err(WharfError::FuelExhausted { fuel: 10_000 })),
        "{:?}",
        r.outcome
    );
    assert_eq!(r.stats.fuel_consumed, Some(10_000));
}

#[test]
fn invoke_returns_wave_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = engine(false);
    let calc =
        load_file(&e, guests::CALC_COMPONENT.as_ref(), &load_opts(dir.path())).expect("load");
    let mut o = opts(&["calc"], Limits::default());
    o.invoke = Some(Invocation::parse(r#"divide(9, 3)"#).expect("parse"));
    match run(&e, &calc, &o).outcome {
        Ok(RunOutput::Values(v)) => assert_eq!(v, vec!["ok(3)".to_string()]),
        other => panic!("{other:?}"),
    }
    o.invoke = Some(Invocation::parse(r#"first(["x"])"#).expect("parse"));
    match run(&e, &calc, &o).outcome {
        Ok(RunOutput::Values(v)) => assert_eq!(v, vec![r#"some("x")"#.to_string()]),
        other => panic!("{other:?}"),
    }
}
