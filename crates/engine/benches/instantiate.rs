//! Instantiation cost: pooling vs on-demand allocator, core module (wasip1) vs
//! component (wasip2), for the `hello` guest; plus instantiate-and-run.
//!
//! Run: `cargo bench -p wharf-engine --bench instantiate`
//!
//! Each iteration does what a request or a `wharf run` does after loading: a fresh
//! `Store` with WASI context and the total-memory limiter, then instantiation from a
//! pre-linked `InstancePre` built once.

use criterion::{Criterion, criterion_group, criterion_main};
use wharf_engine::config::{AllocatorChoice, AllocatorUsed, EngineOptions};
use wharf_engine::wasmtime::component::{self, ResourceTable};
use wharf_engine::wasmtime::{self, Store};
use wharf_engine::wasmtime_wasi::p1::WasiP1Ctx;
use wharf_engine::wasmtime_wasi::p2::bindings::CommandPre;
use wharf_engine::wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wharf_engine::{TotalMemoryLimiter, WharfEngine};

struct P1 {
    wasi: WasiP1Ctx,
    limiter: TotalMemoryLimiter,
}

struct P2 {
    ctx: WasiCtx,
    table: ResourceTable,
    limiter: TotalMemoryLimiter,
}

impl WasiView for P2 {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

fn engine(choice: AllocatorChoice) -> WharfEngine {
    let e = WharfEngine::new(&EngineOptions {
        allocator: choice,
        pool_instances: 100,
        ..EngineOptions::default()
    })
    .expect("engine");
    if choice == AllocatorChoice::Pooling {
        assert_eq!(e.allocator(), AllocatorUsed::Pooling);
    }
    e
}

fn p1_store(e: &WharfEngine) -> Store<P1> {
    let mut store = Store::new(
        e.engine(),
        P1 {
            wasi: WasiCtxBuilder::new().args(&["hello"]).build_p1(),
            limiter: TotalMemoryLimiter::new(Some(64 << 20)),
        },
    );
    store.limiter(|d| &mut d.limiter);
    store.set_epoch_deadline(10_000);
    store.epoch_deadline_trap();
    store
}

fn p2_store(e: &WharfEngine) -> Store<P2> {
    let mut store = Store::new(
        e.engine(),
        P2 {
            ctx: WasiCtxBuilder::new().args(&["hello"]).build(),
            table: ResourceTable::new(),
            limiter: TotalMemoryLimiter::new(Some(64 << 20)),
        },
    );
    store.limiter(|d| &mut d.limiter);
    store.set_epoch_deadline(10_000);
    store.epoch_deadline_trap();
    store
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let p1_bytes = std::fs::read(wharf_test_programs::P1_HELLO).expect("p1 hello");
    let p2_bytes = std::fs::read(wharf_test_programs::P2_HELLO).expect("p2 hello");

    let mut group = c.benchmark_group("instantiate");
    for (name, choice) in [
        ("pooling", AllocatorChoice::Pooling),
        ("on-demand", AllocatorChoice::OnDemand),
    ] {
        let e = engine(choice);

        let module = wasmtime::Module::new(e.engine(), &p1_bytes).expect("module");
        let mut linker = wasmtime::Linker::<P1>::new(e.engine());
        wharf_engine::wasmtime_wasi::p1::add_to_linker_async(&mut linker, |d| &mut d.wasi)
            .expect("link p1");
        let pre1 = linker.instantiate_pre(&module).expect("pre p1");

        let comp = component::Component::new(e.engine(), &p2_bytes).expect("component");
        let mut clinker = component::Linker::<P2>::new(e.engine());
        wharf_engine::wasmtime_wasi::p2::add_to_linker_async(&mut clinker).expect("link p2");
        let pre2 = CommandPre::new(clinker.instantiate_pre(&comp).expect("pre p2")).expect("cmd");

        group.bench_function(format!("{name}/module"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut store = p1_store(&e);
                    pre1.instantiate_async(&mut store)
                        .await
                        .expect("instantiate")
                });
            })
        });
        group.bench_function(format!("{name}/component"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut store = p2_store(&e);
                    pre2.instantiate_async(&mut store)
                        .await
                        .expect("instantiate");
                });
            })
        });
        group.bench_function(format!("{name}/module+run"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut store = p1_store(&e);
                    let i = pre1
                        .instantiate_async(&mut store)
                        .await
                        .expect("instantiate");
                    let start = i
                        .get_typed_func::<(), ()>(&mut store, "_start")
                        .expect("_start");
                    start.call_async(&mut store, ()).await.expect("run");
                });
            })
        });
        group.bench_function(format!("{name}/component+run"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut store = p2_store(&e);
                    let cmd = pre2
                        .instantiate_async(&mut store)
                        .await
                        .expect("instantiate");
                    let r = cmd.wasi_cli_run().call_run(&mut store).await.expect("run");
                    assert!(r.is_ok());
                });
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
