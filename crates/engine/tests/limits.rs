//! The total-memory limiter against real wasmtime stores (issue 9, class 10): table
//! bytes count against the same cap as linear memory, and grows wasmtime refuses after
//! the limiter allowed them are not counted.

use wharf_engine::TotalMemoryLimiter;
use wharf_engine::limits::TABLE_ELEMENT_BYTES;
use wharf_engine::wasmtime::{
    Config, Engine, InstanceAllocationStrategy, Linker, Module, PoolingAllocationConfig, Store,
};

fn instance(
    store: &mut Store<TotalMemoryLimiter>,
    wat: &str,
) -> wharf_engine::wasmtime::Result<wharf_engine::wasmtime::Instance> {
    let m = Module::new(store.engine(), wat).expect("test module compiles");
    Linker::new(store.engine()).instantiate(&mut *store, &m)
}

fn call_i32(store: &mut Store<TotalMemoryLimiter>, i: &wharf_engine::wasmtime::Instance) -> i32 {
    i.get_typed_func::<(), i32>(&mut *store, "run")
        .expect("exports run")
        .call(&mut *store, ())
        .expect("run")
}

/// On-demand (what `wharf run` uses by default): a 1M-element table is 8 MB of host
/// memory; under a 4 MiB cap it is refused. The old limiter let it (and 100 like it)
/// through whatever the cap.
#[test]
fn table_growth_counts_against_the_memory_cap() {
    let engine = Engine::default();
    let mut store = Store::new(&engine, TotalMemoryLimiter::new(Some(4 << 20)));
    store.limiter(|l| l);
    let i = instance(
        &mut store,
        r#"(module
             (memory 1)
             (table 0 funcref)
             (func (export "run") (result i32)
               (table.grow (ref.null func) (i32.const 1000000))))"#,
    )
    .expect("instantiates");
    assert_eq!(
        call_i32(&mut store, &i),
        -1,
        "a 1M-element table must not fit"
    );
    assert!(store.data().hit_cap());
    assert_eq!(store.data().table_bytes(), 0);
    assert_eq!(store.data().total(), 1 << 16);

    // Tables declared at creation count too: 100 tables of 100k elements (80 MB) do
    // not fit a 64 MiB cap.
    let tables: String = (0..100).map(|_| "(table 100000 funcref)").collect();
    let mut store = Store::new(&engine, TotalMemoryLimiter::new(Some(64 << 20)));
    store.limiter(|l| l);
    let err = instance(&mut store, &format!("(module {tables})"))
        .expect_err("80 MB of tables must not fit in 64 MiB");
    assert!(store.data().hit_cap(), "{err:#}");

    // A table within the cap is counted, element by element.
    let mut store = Store::new(&engine, TotalMemoryLimiter::new(Some(4 << 20)));
    store.limiter(|l| l);
    instance(&mut store, "(module (table 1000 funcref))").expect("instantiates");
    assert_eq!(store.data().table_bytes(), 1000 * TABLE_ELEMENT_BYTES);
    assert_eq!(store.data().peak(), 1000 * TABLE_ELEMENT_BYTES);
}

/// A pooled slot of 4 MiB under an 8 MiB cap: wasmtime refuses a grow to 101 pages
/// (6.3 MiB) after the limiter allowed it. That grow must not be counted, so the guest
/// can still grow to 41 pages afterwards (the old limiter counted the 101 pages and
/// refused the next grow as over the cap).
#[test]
fn grows_wasmtime_refuses_are_not_counted() {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_memories(2)
        .total_tables(2)
        .total_core_instances(2)
        .max_memory_size(4 << 20);
    let mut config = Config::new();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    let engine = Engine::new(&config).expect("pooling engine");
    let mut store = Store::new(&engine, TotalMemoryLimiter::new(Some(8 << 20)));
    store.limiter(|l| l);
    let i = instance(
        &mut store,
        r#"(module
             (memory 1)
             (func (export "run") (result i32)
               (if (i32.ne (memory.grow (i32.const 100)) (i32.const -1))
                 (then (return (i32.const -2))))
               (memory.grow (i32.const 40))))"#,
    )
    .expect("instantiates");
    assert_eq!(
        call_i32(&mut store, &i),
        1,
        "after the refused grow, a 40-page grow within the cap must succeed"
    );
    assert!(!store.data().hit_cap());
    assert_eq!(store.data().total(), 41 << 16);
    assert_eq!(store.data().peak(), 41 << 16);

    // A grow past the memory's own maximum is not counted either.
    let mut store = Store::new(&Engine::default(), TotalMemoryLimiter::new(None));
    store.limiter(|l| l);
    let i = instance(
        &mut store,
        r#"(module
             (memory 1 2)
             (func (export "run") (result i32) (memory.grow (i32.const 50))))"#,
    )
    .expect("instantiates");
    assert_eq!(call_i32(&mut store, &i), -1);
    assert_eq!(store.data().peak(), 1 << 16);
}
