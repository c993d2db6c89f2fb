//! Per-store limits: a cap on the **total** of all linear memories (wasmtime's
//! `StoreLimits` caps each memory separately), table, instance and memory-count caps,
//! and the peak-memory statistic.

use std::time::Duration;

use std::time::Instant;

use wasmtime::{ResourceLimiter, Result, Store, Trap, UpdateDeadline};

/// Epoch ticks (milliseconds) a guest runs between cooperative yields.
pub const YIELD_TICKS: u64 = 5;

/// Makes a store's wasm yield to the async runtime every [`YIELD_TICKS`] (so one busy
/// guest never starves other tasks on its thread) and trap with `Trap::Interrupt` once
/// `deadline(data)` has passed. The one place every long-lived or per-request store
/// (HTTP, WAGI, plugins) gets its wall-clock deadline from.
pub fn yield_until<T: 'static>(
    store: &mut Store<T>,
    deadline: impl Fn(&T) -> Option<Instant> + Send + Sync + 'static,
) {
    store.set_epoch_deadline(YIELD_TICKS);
    store.epoch_deadline_callback(move |ctx| match deadline(ctx.data()) {
        Some(d) if Instant::now() >= d => Err(Trap::Interrupt.into()),
        _ => Ok(UpdateDeadline::Yield(YIELD_TICKS)),
    });
}

/// Default cap on elements of any one table.
pub const DEFAULT_MAX_TABLE_ELEMENTS: usize = 1_000_000;
/// Default cap on instances, tables and memories in one store.
pub const DEFAULT_MAX_COUNT: usize = 10_000;
/// Default hostcall fuel: bytes the host may allocate on a guest's behalf in one call
/// (wasmtime's default is 128 MiB; we keep that unless a smaller memory cap is set).
pub const DEFAULT_HOSTCALL_FUEL: usize = 128 << 20;

/// What one store may use.
#[derive(Clone, Debug, Default)]
pub struct Limits {
    /// Cap on the total bytes of all linear memories, `None` for no cap beyond the
    /// allocator's.
    pub max_memory: Option<u64>,
    /// Wall-clock deadline for running (epoch interruption plus a host-side timeout).
    pub timeout: Option<Duration>,
    /// Fuel units granted; requires an engine built with fuel.
    pub fuel: Option<u64>,
}

/// A [`ResourceLimiter`] that caps the sum of all linear memories of a store, records
/// the peak, and remembers whether a grow was refused by the cap (so that the trap a
/// guest raises after a failed allocation can be reported as "memory cap reached").
#[derive(Debug)]
pub struct TotalMemoryLimiter {
    cap: Option<u64>,
    total: u64,
    peak: u64,
    hit_cap: bool,
    max_table_elements: usize,
}

impl TotalMemoryLimiter {
    /// A limiter with the given total cap.
    pub fn new(cap: Option<u64>) -> TotalMemoryLimiter {
        TotalMemoryLimiter {
            cap,
            total: 0,
            peak: 0,
            hit_cap: false,
            max_table_elements: DEFAULT_MAX_TABLE_ELEMENTS,
        }
    }

    /// The largest total of linear memory seen, in bytes.
    pub fn peak(&self) -> u64 {
        self.peak
    }

    /// Whether a grow (or a memory's creation) was refused because of the cap.
    pub fn hit_cap(&self) -> bool {
        self.hit_cap
    }

    /// The cap.
    pub fn cap(&self) -> Option<u64> {
        self.cap
    }
}

impl ResourceLimiter for TotalMemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Result<bool> {
        // Called with current = 0 when a memory is created, so the sum covers every
        // memory of every instance in the store.
        let delta = (desired as u64).saturating_sub(current as u64);
        let new_total = self.total.saturating_add(delta);
        if let Some(cap) = self.cap
            && new_total > cap
        {
            self.hit_cap = true;
            return Ok(false);
        }
        self.total = new_total;
        self.peak = self.peak.max(new_total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Result<bool> {
        Ok(desired <= self.max_table_elements)
    }

    fn instances(&self) -> usize {
        DEFAULT_MAX_COUNT
    }

    fn tables(&self) -> usize {
        DEFAULT_MAX_COUNT
    }

    fn memories(&self) -> usize {
        DEFAULT_MAX_COUNT
    }
}

/// What every store's data carries so that [`new_store`] can wire its limits: the
/// total-memory limiter and the current call's deadline. Every store Wharf builds (HTTP,
/// WAGI, plugins, `wharf run`) goes through [`new_store`].
pub trait Limited: Send + 'static {
    /// The total-memory limiter (also the peak-memory statistic).
    fn limiter(&mut self) -> &mut TotalMemoryLimiter;
    /// When the current call must stop (`None`: no deadline).
    fn deadline(&self) -> Option<Instant>;
    /// The memory cap, if any.
    fn memory_cap(&self) -> Option<u64>;
}

/// A store for `data` with its limits wired, the one place that does it: the
/// total-memory limiter; hostcall fuel no larger than the memory cap; the deadline
/// (cooperative yield every [`YIELD_TICKS`], `Trap::Interrupt` once it passes); and,
/// when the engine meters fuel, `fuel` units (`None`: unlimited, so metering never
/// stops a server guest).
pub fn new_store<T: Limited>(
    engine: &crate::WharfEngine,
    data: T,
    fuel: Option<u64>,
) -> Result<Store<T>> {
    let cap = data.memory_cap();
    let mut store = Store::new(engine.engine(), data);
    store.limiter(|s| s.limiter());
    store.set_hostcall_fuel(
        cap.map(|c| usize::try_from(c).unwrap_or(usize::MAX))
            .unwrap_or(DEFAULT_HOSTCALL_FUEL)
            .min(DEFAULT_HOSTCALL_FUEL),
    );
    yield_until(&mut store, |d: &T| d.deadline());
    if engine.fuel_enabled() {
        store.set_fuel(fuel.unwrap_or(u64::MAX))?;
    }
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_the_total_not_each_memory() {
        let mut l = TotalMemoryLimiter::new(Some(100));
        assert!(l.memory_growing(0, 60, None).expect("ok"));
        // A second memory of 60 would fit a per-memory cap of 100, but not the total.
        assert!(!l.memory_growing(0, 60, None).expect("ok"));
        assert!(l.hit_cap());
        assert!(l.memory_growing(60, 100, None).expect("ok"));
        assert_eq!(l.peak(), 100);
    }

    #[test]
    fn records_peak_without_cap() {
        let mut l = TotalMemoryLimiter::new(None);
        assert!(l.memory_growing(0, 1 << 20, None).expect("ok"));
        assert!(l.memory_growing(1 << 20, 3 << 20, None).expect("ok"));
        assert_eq!(l.peak(), 3 << 20);
        assert!(!l.hit_cap());
    }
}
