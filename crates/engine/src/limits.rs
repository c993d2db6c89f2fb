//! Per-store limits: a cap on the **total** of all linear memories (wasmtime's
//! `StoreLimits` caps each memory separately), table, instance and memory-count caps,
//! and the peak-memory statistic.

use std::time::Duration;

use std::sync::Arc;
use std::time::Instant;

use wasmtime::{ResourceLimiter, Result, Store, Trap, UpdateDeadline};

use crate::cpu::{CpuHook, CpuShare, StoreCpu};

/// Epoch ticks (milliseconds) a guest runs between cooperative yields: the longest a
/// busy guest keeps a worker thread from other tasks.
pub const YIELD_TICKS: u64 = 2;

/// Makes a store's wasm yield to the async runtime every [`YIELD_TICKS`] (so one busy
/// guest never starves other tasks on its thread) and trap with `Trap::Interrupt` once
/// `deadline(data)` has passed. The one place every long-lived or per-request store
/// (HTTP, WAGI, plugins) gets its wall-clock deadline from.
///
/// With a [`CpuShare`], a guest still running after its first slice runs wasm only
/// while it holds a CPU lane of its app's share (see [`crate::cpu`]); the store then
/// needs async calls (a call hook takes the lane back around host calls).
pub fn yield_until<T: Send + 'static>(
    store: &mut Store<T>,
    deadline: impl Fn(&T) -> Option<Instant> + Send + Sync + 'static,
    cpu: Option<CpuShare>,
) {
    store.set_epoch_deadline(YIELD_TICKS);
    let deadline = Arc::new(deadline);
    let cpu = cpu.map(StoreCpu::new);
    if let Some(cpu) = &cpu {
        let deadline = deadline.clone();
        store.call_hook_async(CpuHook {
            cpu: cpu.clone(),
            deadline: Arc::new(move |d: &T| deadline(d)),
        });
    }
    store.epoch_deadline_callback(move |ctx| {
        let deadline = deadline(ctx.data());
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Trap::Interrupt.into());
        }
        // `tokio::task::yield_now` puts the task at the back of the queue, behind I/O;
        // a plain `Yield` would wake it into the worker's LIFO slot, ahead of others.
        let resume: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> = match &cpu {
            None => Box::pin(tokio::task::yield_now()),
            Some(cpu) => {
                cpu.end_slice();
                cpu.next_slice(deadline)
            }
        };
        Ok(UpdateDeadline::YieldCustom(YIELD_TICKS, resume))
    });
}

/// Default cap on elements of any one table.
pub const DEFAULT_MAX_TABLE_ELEMENTS: usize = 1_000_000;
/// Default cap on instances, tables and memories in one store.
pub const DEFAULT_MAX_COUNT: usize = 10_000;
/// Default hostcall fuel: bytes the host may allocate on a guest's behalf in one call
/// (wasmtime's default is 128 MiB; we keep that unless a smaller memory cap is set).
pub const DEFAULT_HOSTCALL_FUEL: usize = 128 << 20;
/// Bytes one table element is counted as against the memory cap: the size of a
/// `funcref` slot in wasmtime 48 (`Option<NonNull<VMFuncRef>>`, one pointer), the
/// largest element type a table can have (an `externref`/GC slot is 4 bytes). The
/// limiter is not told an element's type, so every element counts as a pointer.
pub const TABLE_ELEMENT_BYTES: u64 = std::mem::size_of::<usize>() as u64;

/// The wall-clock deadline `timeout` from now, or `None` (no deadline) when that
/// instant is not representable: `Instant::now() + timeout` panics on overflow
/// (e.g. `--timeout 1e20`), so every deadline is computed here.
pub fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// What one store may use.
#[derive(Clone, Debug, Default)]
pub struct Limits {
    /// Cap on the total bytes of all linear memories and tables, `None` for no cap
    /// beyond the allocator's.
    pub max_memory: Option<u64>,
    /// Wall-clock deadline for running (epoch interruption plus a host-side timeout).
    pub timeout: Option<Duration>,
    /// Fuel units granted; requires an engine built with fuel.
    pub fuel: Option<u64>,
}

/// A [`ResourceLimiter`] that caps the sum of all linear memories **and tables** of a
/// store against one total (table bytes = elements × [`TABLE_ELEMENT_BYTES`]), records
/// the peak of that total, and remembers whether a grow was refused by the cap (so that
/// the trap a guest raises after a failed allocation can be reported as "memory cap
/// reached").
///
/// A grow that wasmtime refuses after this limiter allowed it (past the memory's or
/// table's own maximum, past a pooled slot's capacity) is not counted: grows past the
/// maximum wasmtime reports are refused here before they are counted, and a grow that
/// fails later is reported through `memory_grow_failed` / `table_grow_failed`, which
/// take it back out of the total.
#[derive(Debug)]
pub struct TotalMemoryLimiter {
    cap: Option<u64>,
    /// Bytes of linear memory plus table bytes currently counted.
    total: u64,
    /// Of which table bytes.
    tables: u64,
    peak: u64,
    hit_cap: bool,
    max_table_elements: usize,
    /// The last memory grow allowed (bytes, and the peak before it), until the next
    /// one: what a following `memory_grow_failed` takes back.
    pending_memory: Option<(u64, u64)>,
    /// Likewise for tables.
    pending_table: Option<(u64, u64)>,
}

/// Whether a grow failure reported to the limiter is one that wasmtime raises *after*
/// the limiter allowed the grow (so the grow was counted and must be taken back).
/// wasmtime 48 also reports failures it detects *before* asking the limiter ("memory
/// growth exceeds memory type's limits", "overflow calculating new table size"); those
/// were never counted, and taking the previous grow back for them would let a guest
/// shrink its count at will. Only the known post-approval failures are taken back; an
/// unknown one is left counted (the conservative side).
fn failed_after_approval(error: &wasmtime::Error) -> bool {
    let msg = format!("{error:#}").to_ascii_lowercase();
    msg.contains("maximum size exceeded")
}

impl TotalMemoryLimiter {
    /// A limiter with the given total cap.
    pub fn new(cap: Option<u64>) -> TotalMemoryLimiter {
        TotalMemoryLimiter {
            cap,
            total: 0,
            tables: 0,
            peak: 0,
            hit_cap: false,
            max_table_elements: DEFAULT_MAX_TABLE_ELEMENTS,
            pending_memory: None,
            pending_table: None,
        }
    }

    /// The largest total of linear memory plus table bytes seen, in bytes.
    pub fn peak(&self) -> u64 {
        self.peak
    }

    /// Linear memory plus table bytes counted now.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Table bytes counted now (part of [`total`](Self::total)).
    pub fn table_bytes(&self) -> u64 {
        self.tables
    }

    /// Whether a grow (or a memory's or table's creation) was refused because of the
    /// cap.
    pub fn hit_cap(&self) -> bool {
        self.hit_cap
    }

    /// The cap.
    pub fn cap(&self) -> Option<u64> {
        self.cap
    }

    /// Counts `delta` more bytes if the cap allows it.
    fn admit(&mut self, delta: u64) -> bool {
        let new_total = self.total.saturating_add(delta);
        if let Some(cap) = self.cap
            && new_total > cap
        {
            self.hit_cap = true;
            return false;
        }
        self.total = new_total;
        self.peak = self.peak.max(new_total);
        true
    }

    /// Takes a counted grow back out, peak included (as if it never happened).
    fn take_back(&mut self, (delta, peak_before): (u64, u64)) {
        self.total = self.total.saturating_sub(delta);
        self.peak = peak_before;
    }
}

impl ResourceLimiter for TotalMemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> Result<bool> {
        self.pending_memory = None;
        // wasmtime refuses a grow past the memory's maximum after asking us: refuse it
        // here so that it is never counted (and is not the cap's doing).
        if let Some(max) = maximum
            && desired > max
        {
            return Ok(false);
        }
        // Called with current = 0 when a memory is created, so the sum covers every
        // memory of every instance in the store.
        let delta = (desired as u64).saturating_sub(current as u64);
        let peak_before = self.peak;
        if !self.admit(delta) {
            return Ok(false);
        }
        self.pending_memory = Some((delta, peak_before));
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> Result<()> {
        if let Some(grow) = self.pending_memory.take()
            && failed_after_approval(&error)
        {
            self.take_back(grow);
        }
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> Result<bool> {
        self.pending_table = None;
        if desired > self.max_table_elements {
            return Ok(false);
        }
        if let Some(max) = maximum
            && desired > max
        {
            return Ok(false);
        }
        // Called with current = 0 when a table is created.
        let elements = (desired as u64).saturating_sub(current as u64);
        let delta = elements.saturating_mul(TABLE_ELEMENT_BYTES);
        let peak_before = self.peak;
        if !self.admit(delta) {
            return Ok(false);
        }
        self.tables = self.tables.saturating_add(delta);
        self.pending_table = Some((delta, peak_before));
        Ok(true)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> Result<()> {
        if let Some(grow) = self.pending_table.take()
            && failed_after_approval(&error)
        {
            self.take_back(grow);
            self.tables = self.tables.saturating_sub(grow.0);
        }
        Ok(())
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
    /// The app's share of the CPU lanes (`None`: not gated, e.g. `wharf run`).
    fn cpu_share(&self) -> Option<CpuShare> {
        None
    }
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
    let cpu = store.data().cpu_share();
    yield_until(&mut store, |d: &T| d.deadline(), cpu);
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
    fn tables_count_against_the_same_cap() {
        let mut l = TotalMemoryLimiter::new(Some(1 << 20));
        assert!(l.memory_growing(0, 1 << 19, None).expect("ok"));
        // 100k elements of 8 bytes: 800 KB, over what is left of 1 MiB.
        assert!(!l.table_growing(0, 100_000, None).expect("ok"));
        assert!(l.hit_cap());
        assert!(l.table_growing(0, 1000, None).expect("ok"));
        assert_eq!(l.table_bytes(), 1000 * TABLE_ELEMENT_BYTES);
        assert_eq!(l.total(), (1 << 19) + 1000 * TABLE_ELEMENT_BYTES);
    }

    #[test]
    fn failed_grows_are_not_counted() {
        let mut l = TotalMemoryLimiter::new(Some(1 << 30));
        assert!(l.memory_growing(0, 1 << 16, None).expect("ok"));
        // Past the memory's maximum: refused before counting, not the cap's doing.
        assert!(
            !l.memory_growing(1 << 16, 1 << 20, Some(1 << 17))
                .expect("ok")
        );
        assert!(!l.hit_cap());
        // Allowed here, then refused by wasmtime (pooled slot too small): taken back.
        assert!(l.memory_growing(1 << 16, 1 << 25, None).expect("ok"));
        l.memory_grow_failed(wasmtime::format_err!("Memory maximum size exceeded"))
            .expect("ok");
        assert_eq!(l.total(), 1 << 16);
        assert_eq!(l.peak(), 1 << 16);
        // A failure wasmtime detects before asking the limiter must not take the
        // previous (successful) grow back.
        assert!(l.memory_growing(1 << 16, 1 << 17, None).expect("ok"));
        l.memory_grow_failed(wasmtime::format_err!(
            "memory growth exceeds memory type's limits"
        ))
        .expect("ok");
        assert_eq!(l.total(), 1 << 17);
        // Tables likewise.
        assert!(!l.table_growing(0, 10, Some(5)).expect("ok"));
        assert!(l.table_growing(0, 10, None).expect("ok"));
        l.table_grow_failed(wasmtime::format_err!("Table maximum size exceeded"))
            .expect("ok");
        assert_eq!(l.table_bytes(), 0);
        assert_eq!(l.total(), 1 << 17);
    }

    #[test]
    fn deadlines_never_overflow() {
        assert!(deadline_after(Duration::MAX).is_none());
        assert!(deadline_after(Duration::from_secs(1)).is_some());
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
