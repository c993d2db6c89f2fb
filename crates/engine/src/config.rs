//! The process-wide wasmtime [`Engine`], configured in one place.
//!
//! Decisions (see `shared/design/ARCHITECTURE.md`):
//! - **Pooling allocator** when the host can reserve the address space it needs (probed
//!   with one `PROT_NONE` mapping, as `wasmtime serve` does), else on-demand with a log
//!   line. Callers size the pool: `wharf run` needs a handful of slots, a server many.
//! - **Copy-on-write memory images** (wasmtime's default, stated here so it stays on).
//! - **Epoch interruption always on**, with one ticker thread per engine, so every
//!   store can have a wall-clock deadline. The ticker holds only a weak reference and
//!   stops when the engine is dropped.
//! - **Fuel only on request** (`--fuel`): it changes the generated code, so it is part
//!   of the artifact cache key through the engine's compatibility hash.
//! - Memory tunables are fixed explicitly, identical for pooling and on-demand engines,
//!   so an artifact compiled by one (for example in the bounded compile child, which
//!   always uses on-demand) loads in the other.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch ticker advances the engine's epoch. Deadlines are rounded up to
/// whole ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Default maximum size of the wasm stack (wasmtime's default; deep recursion past it
/// traps with "call stack exhausted").
pub const DEFAULT_MAX_WASM_STACK: usize = 512 << 10;

/// Instance slots `wharf serve` pools by default (`--pool-instances`).
pub const DEFAULT_SERVER_POOL_INSTANCES: u32 = 1000;

/// Core instances one component instance may hold, and the pool's core-instance budget
/// per instance slot. componentize-py components make 14 to 32 (one per bundled
/// library, adapter and shim); the budget is only a counter, so it is generous.
pub const CORE_INSTANCES_PER_COMPONENT: u32 = 64;
/// Linear memories one component instance may hold, and the pool's memory budget per
/// instance slot (real components have 1 or 2; componentize-py and -js have 1). Each
/// pooled memory reserves `4 GiB + 32 MiB` of address space (not memory): 1000 slots
/// reserve about 16 TiB of the 128 TiB a 64-bit Linux process can address, which
/// the pooling probe checks before choosing the pool.
pub const MEMORIES_PER_COMPONENT: u32 = 4;
/// Tables one component instance may hold, and the pool's table budget per slot
/// (componentize-py has 2). A pooled table is `POOL_TABLE_ELEMENTS × 8` bytes (800 KB)
/// of reserved, lazily committed memory: 6.4 GB of reservation for 1000 slots.
pub const TABLES_PER_COMPONENT: u32 = 8;
/// Elements of a pooled table.
pub const POOL_TABLE_ELEMENTS: usize = 100_000;

/// Which instance allocator to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AllocatorChoice {
    /// Pooling when the host allows it, else on-demand.
    #[default]
    Auto,
    /// Pooling, or fail.
    Pooling,
    /// On-demand (mmap per instance).
    OnDemand,
}

/// Everything that shapes the engine. Serializable, because the bounded compile child
/// rebuilds the same configuration from it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EngineOptions {
    /// The instance allocator.
    pub allocator: AllocatorChoice,
    /// Pool size: how many instances (and memories, tables, stacks) may be live at
    /// once when pooling. Ignored on-demand.
    pub pool_instances: u32,
    /// Whether generated code counts fuel (needed by `--fuel`).
    pub fuel: bool,
    /// Maximum wasm stack in bytes.
    pub max_wasm_stack: usize,
    /// Per-memory maximum size in bytes that a pooled slot can hold.
    pub pool_max_memory_size: u64,
    /// Bytes of each linear memory (and of each table) kept resident when a pooled slot
    /// is freed: reset with `memset` instead of `madvise`, which avoids the syscall, the
    /// cross-CPU TLB shootdown and the page faults on the slot's next use. Costs up to
    /// this much resident memory per warm slot.
    pub pool_keep_resident: usize,
    /// Use Linux's `PAGEMAP_SCAN` (6.7+) to reset only the pages a guest dirtied, when
    /// the host supports it.
    pub pool_pagemap_scan: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            allocator: AllocatorChoice::Auto,
            pool_instances: 100,
            fuel: false,
            max_wasm_stack: DEFAULT_MAX_WASM_STACK,
            pool_max_memory_size: 4 << 30,
            pool_keep_resident: 0,
            pool_pagemap_scan: false,
        }
    }
}

impl EngineOptions {
    /// The defaults of `wharf serve`: a [`DEFAULT_SERVER_POOL_INSTANCES`]-slot pool
    /// with 2 MiB kept resident per warm slot and `PAGEMAP_SCAN` when available.
    pub fn server_default() -> EngineOptions {
        EngineOptions {
            pool_instances: DEFAULT_SERVER_POOL_INSTANCES,
            pool_keep_resident: 2 << 20,
            pool_pagemap_scan: true,
            ..EngineOptions::default()
        }
    }
}

/// Which allocator an engine actually got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AllocatorUsed {
    /// The pooling allocator.
    Pooling,
    /// The on-demand allocator.
    OnDemand,
}

/// A configured engine plus its epoch ticker. Cheap to clone.
#[derive(Clone)]
pub struct WharfEngine {
    engine: Engine,
    options: EngineOptions,
    allocator: AllocatorUsed,
    compat: [u8; 32],
    _ticker: Arc<EpochTicker>,
}

impl WharfEngine {
    /// Builds the engine described by `options` and starts its epoch ticker.
    pub fn new(options: &EngineOptions) -> Result<WharfEngine> {
        let (engine, allocator) = build_engine(options)?;
        let ticker = Arc::new(EpochTicker::start(&engine)?);
        let compat = compatibility_key(&engine);
        Ok(WharfEngine {
            engine,
            options: options.clone(),
            allocator,
            compat,
            _ticker: ticker,
        })
    }

    /// Builds the engine without a ticker and always on-demand: what the bounded compile
    /// child uses. Artifacts it writes load in any engine built from the same options.
    pub fn for_compiling(options: &EngineOptions) -> Result<Engine> {
        let mut opts = options.clone();
        opts.allocator = AllocatorChoice::OnDemand;
        Ok(build_engine(&opts)?.0)
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The options it was built from.
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// The allocator it got.
    pub fn allocator(&self) -> AllocatorUsed {
        self.allocator
    }

    /// The engine's artifact compatibility key (see [`compatibility_key`]).
    pub fn compat_key(&self) -> &[u8; 32] {
        &self.compat
    }

    /// Whether generated code counts fuel.
    pub fn fuel_enabled(&self) -> bool {
        self.options.fuel
    }

    /// Converts a wall-clock deadline to epoch ticks (rounded up, at least one).
    pub fn deadline_ticks(timeout: Duration) -> u64 {
        let tick = EPOCH_TICK.as_nanos().max(1);
        let ticks = timeout.as_nanos().div_ceil(tick);
        u64::try_from(ticks)
            .unwrap_or(u64::MAX / 2)
            .clamp(1, u64::MAX / 2)
    }
}

/// The compatibility key of an engine: a sha256 over wasmtime's
/// `precompile_compatibility_hash` (compiler, target, tunables, features) plus the
/// wasmtime version. Two engines with the same key can share artifacts.
pub fn compatibility_key(engine: &Engine) -> [u8; 32] {
    use sha2::Digest;
    use std::hash::Hash;
    struct ShaHasher(sha2::Sha256);
    impl std::hash::Hasher for ShaHasher {
        fn finish(&self) -> u64 {
            0
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut h = ShaHasher(sha2::Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut h);
    h.0.update(b"wasmtime-48");
    h.0.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.0.finalize().into()
}

fn base_config(options: &EngineOptions) -> Config {
    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .consume_fuel(options.fuel)
        .memory_init_cow(true)
        .max_wasm_stack(options.max_wasm_stack)
        .wasm_backtrace_max_frames(std::num::NonZeroUsize::new(20))
        .wasm_component_model(true)
        // Fixed explicitly so that pooling and on-demand engines agree (see module docs).
        .memory_reservation(4 << 30)
        .memory_guard_size(32 << 20)
        .memory_reservation_for_growth(0);
    config
}

fn build_engine(options: &EngineOptions) -> Result<(Engine, AllocatorUsed)> {
    let want_pooling = match options.allocator {
        AllocatorChoice::OnDemand => false,
        AllocatorChoice::Pooling => true,
        AllocatorChoice::Auto => {
            let ok = pooling_supported(options);
            if !ok {
                tracing::info!(
                    "pooling allocator unavailable (cannot reserve the address space it \
                     needs); using the on-demand allocator"
                );
            }
            ok
        }
    };
    let mut config = base_config(options);
    if want_pooling {
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config(options)));
        match Engine::new(&config) {
            Ok(engine) => return Ok((engine, AllocatorUsed::Pooling)),
            Err(err) if options.allocator == AllocatorChoice::Auto => {
                tracing::info!("pooling allocator failed ({err:#}); using on-demand");
            }
            Err(err) => {
                return Err(anyhow::Error::from(err).context("building a pooling engine"));
            }
        }
        config = base_config(options);
    }
    config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
    let engine = Engine::new(&config)
        .map_err(|e| anyhow::Error::from(e).context("building the wasmtime engine"))?;
    Ok((engine, AllocatorUsed::OnDemand))
}

fn pooling_config(options: &EngineOptions) -> PoolingAllocationConfig {
    let n = options.pool_instances.max(1);
    let mut pool = PoolingAllocationConfig::new();
    // Every sub-budget is the per-component maximum times the instance slots, so the
    // pool runs out per instance slot and never per hidden core-instance, memory or
    // table budget (a componentize-py component holds 32 core instances; with 4 per
    // slot the pool ran dry after 125 of them). A component needing more than the
    // per-component maxima is refused when it is loaded, not at its 126th request.
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
        .total_memories(n.saturating_mul(MEMORIES_PER_COMPONENT))
        .total_tables(n.saturating_mul(TABLES_PER_COMPONENT))
        .total_stacks(n)
        .max_memory_size(usize::try_from(options.pool_max_memory_size).unwrap_or(usize::MAX))
        .max_memories_per_component(MEMORIES_PER_COMPONENT)
        .max_memories_per_module(MEMORIES_PER_COMPONENT)
        .max_tables_per_module(TABLES_PER_COMPONENT)
        .max_tables_per_component(TABLES_PER_COMPONENT)
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .table_elements(POOL_TABLE_ELEMENTS)
        .max_unused_warm_slots(n.min(100))
        .linear_memory_keep_resident(options.pool_keep_resident)
        .table_keep_resident(options.pool_keep_resident.min(64 << 10))
        .pagemap_scan(if options.pool_pagemap_scan {
            wasmtime::Enabled::Auto
        } else {
            wasmtime::Enabled::No
        });
    pool
}

/// Whether the host can reserve the address space a pool of this size needs: each
/// memory slot reserves `memory_reservation + guard`. Probed with one `PROT_NONE`
/// mapping that is released at once.
fn pooling_supported(options: &EngineOptions) -> bool {
    let slots = u64::from(options.pool_instances.max(1)) * u64::from(MEMORIES_PER_COMPONENT);
    let per_slot: u64 = (4 << 30) + (32 << 20);
    let Some(total) = slots.checked_mul(per_slot) else {
        return false;
    };
    let Ok(len) = usize::try_from(total) else {
        return false;
    };
    // SAFETY: a fresh anonymous PROT_NONE mapping at an address of the kernel's
    // choosing touches no existing memory; it is unmapped right away.
    unsafe {
        use rustix::mm::{MapFlags, ProtFlags, mmap_anonymous, munmap};
        match mmap_anonymous(
            std::ptr::null_mut(),
            len,
            ProtFlags::empty(),
            MapFlags::PRIVATE | MapFlags::NORESERVE,
        ) {
            Ok(ptr) => {
                let _ = munmap(ptr, len);
                true
            }
            Err(_) => false,
        }
    }
}

/// One thread per engine that increments its epoch every [`EPOCH_TICK`].
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: &Engine) -> Result<EpochTicker> {
        let weak = engine.weak();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        std::thread::Builder::new()
            .name("wharf-epoch".into())
            .spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .context("starting the epoch ticker thread")?;
        Ok(EpochTicker { stop })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_and_on_demand_share_artifacts() {
        let opts = EngineOptions {
            allocator: AllocatorChoice::Pooling,
            pool_instances: 2,
            ..EngineOptions::default()
        };
        let (pooled, used) = build_engine(&opts).expect("pooling engine");
        assert_eq!(used, AllocatorUsed::Pooling);
        let on_demand = WharfEngine::for_compiling(&opts).expect("on-demand engine");
        assert_eq!(compatibility_key(&pooled), compatibility_key(&on_demand));
    }

    #[test]
    fn fuel_changes_the_key() {
        let a = WharfEngine::for_compiling(&EngineOptions::default()).expect("engine");
        let b = WharfEngine::for_compiling(&EngineOptions {
            fuel: true,
            ..EngineOptions::default()
        })
        .expect("engine");
        assert_ne!(compatibility_key(&a), compatibility_key(&b));
    }

    #[test]
    fn deadline_rounds_up() {
        assert_eq!(WharfEngine::deadline_ticks(Duration::from_micros(1)), 1);
        assert_eq!(WharfEngine::deadline_ticks(Duration::from_millis(250)), 250);
        assert!(WharfEngine::deadline_ticks(Duration::MAX) <= u64::MAX / 2);
    }
}
