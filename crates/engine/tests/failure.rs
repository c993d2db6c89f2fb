//! Every [`GuestFailure`] kind, produced from a real wasmtime error by a WAT guest.

use std::path::Path;
use std::time::Duration;

use wharf_engine::error::{EXIT_FUEL, EXIT_MEMORY, EXIT_MISSING_IMPORT, EXIT_TIMEOUT, EXIT_TRAP};
use wharf_engine::failure::{FailureContext, GuestFailure, classify, link_failure};
use wharf_engine::wasmtime::{
    self, Config, Engine, InstanceAllocationStrategy, Linker, Module, PoolingAllocationConfig,
    Store,
};
use wharf_engine::{TotalMemoryLimiter, WharfError};

fn module(engine: &Engine, wat: &str) -> Module {
    Module::new(engine, wat).expect("test module compiles")
}

/// Instantiates `wat` with no imports and calls its `run` export; the error.
fn call_run<T>(store: &mut Store<T>, wat: &str) -> wasmtime::Error {
    let m = module(store.engine(), wat);
    let instance = Linker::new(store.engine())
        .instantiate(&mut *store, &m)
        .expect("instantiates");
    let run = instance
        .get_typed_func::<(), ()>(&mut *store, "run")
        .expect("exports run");
    run.call(&mut *store, ()).expect_err("run must fail")
}

#[test]
fn unreachable_is_a_trap_with_a_named_backtrace() {
    let engine = Engine::default();
    let mut store = Store::new(&engine, ());
    let e = call_run(
        &mut store,
        r#"(module
             (func $wharf_fails_here unreachable)
             (func (export "run") call $wharf_fails_here))"#,
    );
    let f = classify(&e, &FailureContext::default());
    let GuestFailure::Trap { kind, backtrace } = &f else {
        panic!("expected a trap, got {f:?}");
    };
    assert!(kind.contains("unreachable"), "{kind}");
    let backtrace = backtrace.as_deref().expect("a backtrace");
    assert!(backtrace.contains("wharf_fails_here"), "{backtrace}");
    assert_eq!(f.kind(), "trap");
    let w = WharfError::from_failure(f, Path::new("t.wasm"));
    assert_eq!(w.exit_code(), EXIT_TRAP);
    assert!(w.to_string().contains("wharf_fails_here"), "{w}");
}

#[test]
fn epoch_deadline_is_a_timeout() {
    let mut config = Config::new();
    config.epoch_interruption(true);
    let engine = Engine::new(&config).expect("engine");
    let mut store = Store::new(&engine, ());
    store.set_epoch_deadline(1);
    store.epoch_deadline_trap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tick = {
        let (engine, stop) = (engine.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(5));
                engine.increment_epoch();
            }
        })
    };
    let e = call_run(&mut store, r#"(module (func (export "run") (loop br 0)))"#);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    tick.join().expect("ticker");
    let cx = FailureContext {
        timeout: Some(Duration::from_millis(5)),
        ..FailureContext::default()
    };
    let f = classify(&e, &cx);
    assert_eq!(
        f,
        GuestFailure::Timeout {
            limit: Some(Duration::from_millis(5))
        }
    );
    assert_eq!(f.kind(), "timeout");
    let w = WharfError::from_failure(f, Path::new("t.wasm"));
    assert_eq!(w.exit_code(), EXIT_TIMEOUT);
    assert!(w.to_string().contains("5ms deadline"), "{w}");
}

#[test]
fn refused_grow_then_trap_is_the_memory_cap() {
    let engine = Engine::default();
    let mut store = Store::new(&engine, TotalMemoryLimiter::new(Some(2 << 16)));
    store.limiter(|l| l);
    // Grows by 10 pages (past the 2-page cap) and traps when that fails, as an
    // allocator that aborts on out-of-memory does.
    let e = call_run(
        &mut store,
        r#"(module
             (memory 1)
             (func (export "run")
               (if (i32.eq (memory.grow (i32.const 10)) (i32.const -1))
                 (then unreachable))))"#,
    );
    let hit_cap = store.data().hit_cap();
    assert!(hit_cap);
    let cx = FailureContext {
        max_memory: Some(2 << 16),
        hit_cap,
        ..FailureContext::default()
    };
    let f = classify(&e, &cx);
    let GuestFailure::MemoryCap {
        cap: Some(131072),
        while_instantiating: false,
        detail: Some(detail),
    } = &f
    else {
        panic!("expected the memory cap after a trap, got {f:?}");
    };
    assert!(detail.contains("unreachable"), "{detail}");
    let w = WharfError::from_failure(f, Path::new("t.wasm"));
    assert_eq!(w.exit_code(), EXIT_MEMORY);
    assert!(w.to_string().contains("memory cap of 128 KiB"), "{w}");
}

#[test]
fn initial_memory_over_the_cap_is_the_memory_cap_while_instantiating() {
    let engine = Engine::default();
    let mut store = Store::new(&engine, TotalMemoryLimiter::new(Some(1 << 16)));
    store.limiter(|l| l);
    let m = module(&engine, "(module (memory 100))");
    let e = Linker::new(&engine)
        .instantiate(&mut store, &m)
        .expect_err("100 pages do not fit in 1");
    let cx = FailureContext {
        max_memory: Some(1 << 16),
        hit_cap: store.data().hit_cap(),
        instantiating: true,
        ..FailureContext::default()
    };
    assert_eq!(
        classify(&e, &cx),
        GuestFailure::MemoryCap {
            cap: Some(1 << 16),
            while_instantiating: true,
            detail: None
        }
    );
    let w = WharfError::from_failure(classify(&e, &cx), Path::new("t.wasm"));
    assert!(w.to_string().contains("while instantiating"), "{w}");
}

#[test]
fn running_out_of_fuel_is_fuel_exhausted() {
    let mut config = Config::new();
    config.consume_fuel(true);
    let engine = Engine::new(&config).expect("engine");
    let mut store = Store::new(&engine, ());
    store.set_fuel(1000).expect("fuel");
    let e = call_run(&mut store, r#"(module (func (export "run") (loop br 0)))"#);
    let cx = FailureContext {
        fuel: Some(1000),
        ..FailureContext::default()
    };
    let f = classify(&e, &cx);
    assert_eq!(f, GuestFailure::FuelExhausted { fuel: Some(1000) });
    assert_eq!(f.kind(), "fuel");
    let w = WharfError::from_failure(f, Path::new("t.wasm"));
    assert_eq!(w.exit_code(), EXIT_FUEL);
}

#[test]
fn proc_exit_is_an_exit() {
    use wharf_engine::wasmtime_wasi::WasiCtxBuilder;
    use wharf_engine::wasmtime_wasi::p1::{self, WasiP1Ctx};
    let engine = Engine::default();
    let mut linker = Linker::<WasiP1Ctx>::new(&engine);
    p1::add_to_linker_sync(&mut linker, |c| c).expect("wasi");
    let mut store = Store::new(&engine, WasiCtxBuilder::new().build_p1());
    let m = module(
        &engine,
        r#"(module
             (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
             (memory (export "memory") 1)
             (func (export "_start") (call $exit (i32.const 3))))"#,
    );
    let instance = linker.instantiate(&mut store, &m).expect("instantiates");
    let start = instance
        .get_typed_func::<(), ()>(&mut store, "_start")
        .expect("_start");
    let e = start.call(&mut store, ()).expect_err("exits");
    let f = classify(&e, &FailureContext::default());
    assert_eq!(f, GuestFailure::Exit(3));
    assert_eq!(f.kind(), "exit");
}

#[test]
fn component_import_missing_from_the_linker_is_named() {
    use wharf_engine::wasmtime::component::{Component, Linker};
    let engine = Engine::default();
    let c = Component::new(
        &engine,
        r#"(component
             (import "acme:db/query@1.0.0" (instance
               (export "get" (func (param "key" string) (result string))))))"#,
    )
    .expect("component compiles");
    let e = Linker::<()>::new(&engine)
        .instantiate_pre(&c)
        .err()
        .expect("nothing provides acme:db/query");
    let expected = GuestFailure::MissingImport {
        import: "instance `acme:db/query@1.0.0`".into(),
    };
    assert_eq!(link_failure(&e), expected);
    let cx = FailureContext {
        instantiating: true,
        ..FailureContext::default()
    };
    assert_eq!(classify(&e, &cx), expected);
    // Outside linking, the same error is not read as a missing import.
    assert_eq!(classify(&e, &FailureContext::default()).kind(), "host");
    let w = WharfError::from_failure(expected, Path::new("app.wasm"));
    assert_eq!(w.exit_code(), EXIT_MISSING_IMPORT);
    assert!(
        w.to_string()
            .contains("imports instance `acme:db/query@1.0.0`"),
        "{w}"
    );
}

#[test]
fn module_import_missing_from_the_linker_is_named() {
    let engine = Engine::default();
    let m = module(
        &engine,
        r#"(module (import "acme:db" "query" (func (param i32))))"#,
    );
    let linker = Linker::<()>::new(&engine);
    let expected = GuestFailure::MissingImport {
        import: "`acme:db::query`".into(),
    };
    let e = linker.instantiate_pre(&m).err().expect("not defined");
    assert_eq!(link_failure(&e), expected);
    let mut store = Store::new(&engine, ());
    let e = linker.instantiate(&mut store, &m).expect_err("not defined");
    let cx = FailureContext {
        instantiating: true,
        ..FailureContext::default()
    };
    assert_eq!(classify(&e, &cx), expected);
}

#[test]
fn a_full_pool_is_pool_exhausted() {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_core_instances(1)
        .total_memories(1)
        .total_tables(1)
        .total_stacks(1)
        .total_component_instances(1)
        .max_memory_size(1 << 16);
    let mut config = Config::new();
    config
        .memory_reservation(1 << 16)
        .memory_guard_size(0)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    let engine = Engine::new(&config).expect("pooling engine");
    let m = module(&engine, "(module (memory 1))");
    let linker = Linker::<()>::new(&engine);
    let mut first = Store::new(&engine, ());
    let _alive = linker.instantiate(&mut first, &m).expect("first fits");
    let mut second = Store::new(&engine, ());
    let e = linker
        .instantiate(&mut second, &m)
        .expect_err("the only slot is taken");
    let cx = FailureContext {
        instantiating: true,
        ..FailureContext::default()
    };
    let f = classify(&e, &cx);
    let GuestFailure::PoolExhausted { detail } = &f else {
        panic!("expected pool exhaustion, got {f:?}");
    };
    assert!(detail.contains("concurrent limit of 1"), "{detail}");
    assert_eq!(f.kind(), "pool-exhausted");
    assert!(!f.is_guest_fault());
    drop(first);
    // The slot is free again.
    let mut third = Store::new(&engine, ());
    linker.instantiate(&mut third, &m).expect("slot reused");
}

#[test]
fn other_errors_are_host_errors() {
    let e = wasmtime::Error::msg("disk on fire").context("writing the log");
    assert_eq!(
        classify(&e, &FailureContext::default()),
        GuestFailure::Host {
            detail: "writing the log: disk on fire".into()
        }
    );
    assert_eq!(
        link_failure(&e),
        GuestFailure::Host {
            detail: "writing the log: disk on fire".into()
        }
    );
}
