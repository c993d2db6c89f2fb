//! CPU lanes: fair sharing of the cores between apps whose guests run long.
//!
//! Every guest runs its first slice ([`YIELD_TICKS`](crate::limits::YIELD_TICKS)
//! milliseconds of wall time) freely, so short requests never wait here. A guest that
//! is still running when its first slice ends becomes *gated*: from then on it runs
//! wasm only while it holds one of the server's [`CpuLanes`], gives its lane back at
//! every yield and whenever it calls into the host (so a guest blocked in a host call
//! holds no lane), and takes one again before its wasm resumes.
//!
//! When every lane is busy, a freed lane goes to the waiting app that holds the
//! fewest lanes (ties: the longest waiter), so ten busy guests of one app get the same
//! share as one busy guest of another. By default there is one lane fewer than the
//! async runtime has worker threads (at least one), so a core is always left for I/O
//! and short requests, however many guests spin.
//!
//! Waiting is bounded by the store's deadline: a gated guest whose deadline passes
//! while it waits traps with `Trap::Interrupt` (reported as a timeout).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use wasmtime::{CallHook, CallHookHandler, StoreContextMut, Trap};

/// The server-wide lanes. Cheap to clone.
#[derive(Clone)]
pub struct CpuLanes {
    inner: Arc<Inner>,
}

struct Inner {
    lanes: usize,
    next_app: AtomicU64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    busy: usize,
    next_ticket: u64,
    /// Counts grants; an app's `last_served` is this count at its latest grant.
    grants: u64,
    apps: HashMap<u64, AppQueue>,
}

#[derive(Default)]
struct AppQueue {
    running: usize,
    last_served: u64,
    waiters: VecDeque<(u64, oneshot::Sender<Lane>)>,
}

impl State {
    fn grant(&mut self, app: u64) {
        self.busy += 1;
        self.grants += 1;
        let grants = self.grants;
        let q = self.apps.entry(app).or_default();
        q.running += 1;
        q.last_served = grants;
    }
}

impl std::fmt::Debug for CpuLanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuLanes")
            .field("lanes", &self.inner.lanes)
            .finish()
    }
}

/// What is called with each wait for a lane (for a per-app metric).
pub type OnWait = Arc<dyn Fn(Duration) + Send + Sync>;

/// One app's handle on the lanes; every store of the app shares it.
#[derive(Clone)]
pub struct CpuShare {
    lanes: Arc<Inner>,
    app: u64,
    on_wait: OnWait,
}

impl std::fmt::Debug for CpuShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuShare").field("app", &self.app).finish()
    }
}

/// A lane held; given back when dropped.
pub struct Lane {
    lanes: Option<Arc<Inner>>,
    app: u64,
}

impl Drop for Lane {
    fn drop(&mut self) {
        if let Some(inner) = self.lanes.take() {
            release(&inner, self.app);
        }
    }
}

/// The default number of lanes for `workers` async worker threads: one fewer (so a
/// core is always left for I/O and short requests), and at least one.
pub fn default_lanes(workers: usize) -> usize {
    workers.saturating_sub(1).max(1)
}

impl CpuLanes {
    /// `lanes` lanes (at least one).
    pub fn new(lanes: usize) -> CpuLanes {
        CpuLanes {
            inner: Arc::new(Inner {
                lanes: lanes.max(1),
                next_app: AtomicU64::new(0),
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// How many lanes there are.
    pub fn lanes(&self) -> usize {
        self.inner.lanes
    }

    /// Lanes held now.
    pub fn busy(&self) -> usize {
        lock(&self.inner).busy
    }

    /// A new app's share; `on_wait` is told how long each wait for a lane took.
    pub fn share(&self, on_wait: OnWait) -> CpuShare {
        CpuShare {
            lanes: self.inner.clone(),
            app: self.inner.next_app.fetch_add(1, Ordering::Relaxed),
            on_wait,
        }
    }
}

fn lock(inner: &Inner) -> MutexGuard<'_, State> {
    inner.state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records the wait when dropped, so that a wait cut short by a deadline counts too.
struct WaitTimer {
    start: Instant,
    on_wait: OnWait,
}

impl Drop for WaitTimer {
    fn drop(&mut self) {
        (self.on_wait)(self.start.elapsed());
    }
}

impl CpuShare {
    /// Whether a lane is free now.
    pub fn lane_free(&self) -> bool {
        lock(&self.lanes).busy < self.lanes.lanes
    }

    /// Takes a lane, waiting for one when all are busy. The place in line is taken
    /// when this is called, not when the future is first polled.
    pub fn acquire(&self) -> impl Future<Output = Lane> + Send + 'static {
        let queued = {
            let mut st = lock(&self.lanes);
            if st.busy < self.lanes.lanes {
                st.grant(self.app);
                Ok(Lane {
                    lanes: Some(self.lanes.clone()),
                    app: self.app,
                })
            } else {
                let (tx, rx) = oneshot::channel();
                let ticket = st.next_ticket;
                st.next_ticket += 1;
                st.apps
                    .entry(self.app)
                    .or_default()
                    .waiters
                    .push_back((ticket, tx));
                Err(rx)
            }
        };
        let (app, on_wait) = (self.app, self.on_wait.clone());
        async move {
            match queued {
                Ok(lane) => lane,
                Err(rx) => {
                    let _timer = WaitTimer {
                        start: Instant::now(),
                        on_wait,
                    };
                    // The sender is only ever dropped after sending (a lane is never
                    // lost), so an error cannot happen; run ungated if it ever did.
                    rx.await.unwrap_or(Lane { lanes: None, app })
                }
            }
        }
    }

    /// Takes a lane unless `deadline` passes first (`None`: it passed). The place in
    /// line is taken when this is called.
    pub fn acquire_until(
        &self,
        deadline: Option<Instant>,
    ) -> impl Future<Output = Option<Lane>> + Send + 'static {
        let acquire = self.acquire();
        async move {
            match deadline {
                None => Some(acquire.await),
                Some(d) => tokio::time::timeout_at(d.into(), acquire).await.ok(),
            }
        }
    }
}

/// Gives `app`'s lane back and hands it to the next waiter, if any.
fn release(inner: &Arc<Inner>, mut app: u64) {
    loop {
        let (tx, next) = {
            let mut st = lock(inner);
            st.busy = st.busy.saturating_sub(1);
            if let Some(q) = st.apps.get_mut(&app) {
                q.running = q.running.saturating_sub(1);
                if q.running == 0 && q.waiters.is_empty() {
                    st.apps.remove(&app);
                }
            }
            match pick(&mut st) {
                None => return,
                Some((next, tx)) => {
                    st.grant(next);
                    (tx, next)
                }
            }
        };
        let lane = Lane {
            lanes: Some(inner.clone()),
            app: next,
        };
        match tx.send(lane) {
            Ok(()) => return,
            // The waiter went away between the pick and the send: give this lane back
            // too (here, not in `Drop`, so that no recursion builds up).
            Err(mut lane) => {
                lane.lanes = None;
                app = next;
            }
        }
    }
}

/// The next waiter: of the apps with live waiters, the one running the fewest lanes,
/// then the one served least recently (so apps take turns, however many waiters each
/// has), then the one whose first waiter came first. Waiters that went away are
/// dropped.
fn pick(st: &mut State) -> Option<(u64, oneshot::Sender<Lane>)> {
    let mut best: Option<(usize, u64, u64, u64)> = None; // (running, last served, ticket, app)
    let mut empty = Vec::new();
    for (&app, q) in st.apps.iter_mut() {
        while q.waiters.front().is_some_and(|(_, tx)| tx.is_closed()) {
            q.waiters.pop_front();
        }
        match q.waiters.front() {
            Some(&(ticket, _)) => {
                let key = (q.running, q.last_served, ticket, app);
                if best.is_none_or(|b| key < b) {
                    best = Some(key);
                }
            }
            None if q.running == 0 => empty.push(app),
            None => {}
        }
    }
    for app in empty {
        st.apps.remove(&app);
    }
    let (_, _, _, app) = best?;
    let (_, tx) = st.apps.get_mut(&app)?.waiters.pop_front()?;
    Some((app, tx))
}

/// One store's use of its app's share: whether it is gated yet, and the lane it
/// holds.
pub(crate) struct StoreCpu {
    share: CpuShare,
    gated: AtomicBool,
    lane: Mutex<Option<Lane>>,
}

impl StoreCpu {
    pub(crate) fn new(share: CpuShare) -> Arc<StoreCpu> {
        Arc::new(StoreCpu {
            share,
            gated: AtomicBool::new(false),
            lane: Mutex::new(None),
        })
    }

    fn slot(&self) -> MutexGuard<'_, Option<Lane>> {
        self.lane.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// At the end of a slice: the store is gated from now on, and its lane (if any)
    /// goes back.
    pub(crate) fn end_slice(&self) {
        self.gated.store(true, Ordering::Relaxed);
        drop(self.slot().take());
    }

    /// Gives the lane back (the store is about to run host code).
    fn release(&self) {
        drop(self.slot().take());
    }

    fn needs_lane(&self) -> bool {
        self.gated.load(Ordering::Relaxed) && self.slot().is_none()
    }

    /// Takes a lane before wasm resumes; `false` if `deadline` passed first.
    pub(crate) async fn resume(&self, deadline: Option<Instant>) -> bool {
        if !self.needs_lane() {
            return true;
        }
        match self.share.acquire_until(deadline).await {
            Some(lane) => {
                *self.slot() = Some(lane);
                true
            }
            None => false,
        }
    }

    /// What a gated store waits on at the end of a slice (its lane already given
    /// back). When all lanes are busy it joins the line at once: were it to yield
    /// first, `tokio::task::yield_now` could defer it until its worker next parks,
    /// while the lane went round the guests already in line. When a lane is free it
    /// yields first (so I/O and other tasks run) and then takes one.
    pub(crate) fn next_slice(
        self: &Arc<StoreCpu>,
        deadline: Option<Instant>,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
        let cpu = self.clone();
        if self.share.lane_free() {
            Box::pin(async move {
                tokio::task::yield_now().await;
                // A deadline that passes while waiting traps at the next check.
                cpu.resume(deadline).await;
            })
        } else {
            let acquire = self.share.acquire_until(deadline);
            Box::pin(async move {
                if let Some(lane) = acquire.await {
                    *cpu.slot() = Some(lane);
                }
            })
        }
    }
}

/// Reads a store's deadline from its data.
pub(crate) type DeadlineFn<T> = Arc<dyn Fn(&T) -> Option<Instant> + Send + Sync>;

/// The call hook of a gated store: the lane goes back when wasm calls the host or
/// returns to it, and is taken again before wasm runs.
pub(crate) struct CpuHook<T> {
    pub(crate) cpu: Arc<StoreCpu>,
    pub(crate) deadline: DeadlineFn<T>,
}

#[async_trait::async_trait]
impl<T: Send> CallHookHandler<T> for CpuHook<T> {
    async fn handle_call_event(
        &self,
        store: StoreContextMut<'_, T>,
        ch: CallHook,
    ) -> wasmtime::Result<()> {
        match ch {
            CallHook::CallingHost | CallHook::ReturningFromWasm => {
                self.cpu.release();
                Ok(())
            }
            CallHook::CallingWasm | CallHook::ReturningFromHost => {
                if !self.cpu.needs_lane() {
                    return Ok(());
                }
                let deadline = (self.deadline)(store.data());
                if self.cpu.resume(deadline).await {
                    Ok(())
                } else {
                    Err(Trap::Interrupt.into())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(lanes: &CpuLanes) -> CpuShare {
        lanes.share(Arc::new(|_| {}))
    }

    #[tokio::test]
    async fn lanes_are_capped_and_given_back() {
        let lanes = CpuLanes::new(2);
        let a = share(&lanes);
        let l1 = a.acquire().await;
        let l2 = a.acquire().await;
        assert_eq!(lanes.busy(), 2);
        // A third waits until one is dropped.
        let waiter = tokio::spawn({
            let a = a.clone();
            async move { a.acquire().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(l1);
        let l3 = waiter.await.expect("join");
        assert_eq!(lanes.busy(), 2);
        drop((l2, l3));
        assert_eq!(lanes.busy(), 0);
    }

    #[tokio::test]
    async fn apps_take_turns_however_many_waiters_each_has() {
        let lanes = CpuLanes::new(1);
        let (busy, quiet) = (share(&lanes), share(&lanes));
        let held = busy.acquire().await;
        // Three waiters of the busy app queue first, then one of the quiet app.
        let mut busy_waiters = Vec::new();
        for _ in 0..3 {
            let b = busy.clone();
            busy_waiters.push(tokio::spawn(async move { b.acquire().await }));
            tokio::task::yield_now().await;
        }
        let q = quiet.clone();
        let quiet_waiter = tokio::spawn(async move { q.acquire().await });
        tokio::task::yield_now().await;
        // The busy app was served last, so the lane it gives back goes to the quiet
        // app, although the busy app's waiters came first.
        drop(held);
        let got = quiet_waiter.await.expect("join");
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        assert!(busy_waiters.iter().all(|w| !w.is_finished()));
        // Then the busy app's waiters, in order.
        drop(got);
        for w in busy_waiters {
            drop(w.await.expect("join"));
        }
        assert_eq!(lanes.busy(), 0);
    }

    #[tokio::test]
    async fn with_more_lanes_the_app_running_fewest_comes_first() {
        let lanes = CpuLanes::new(2);
        let (a, b) = (share(&lanes), share(&lanes));
        let b1 = b.acquire().await;
        let a1 = a.acquire().await;
        // A waiter of `a` queues first, then one of `b`.
        let a2 = tokio::spawn({
            let a = a.clone();
            async move { a.acquire().await }
        });
        tokio::task::yield_now().await;
        let b2 = tokio::spawn({
            let b = b.clone();
            async move { b.acquire().await }
        });
        tokio::task::yield_now().await;
        // `a` gives its lane back: `a` now runs none and `b` one, so `a` comes first
        // although `a` was served more recently; then `b`'s lane goes to `b`.
        drop(a1);
        let a2 = a2.await.expect("join");
        assert!(!b2.is_finished());
        drop(b1);
        let b2 = b2.await.expect("join");
        drop((a2, b2));
        assert_eq!(lanes.busy(), 0);
    }

    #[tokio::test]
    async fn a_cancelled_waiter_does_not_lose_the_lane() {
        let lanes = CpuLanes::new(1);
        let a = share(&lanes);
        let held = a.acquire().await;
        // A waiter that gives up (its deadline passes).
        assert!(
            a.acquire_until(Some(Instant::now() + Duration::from_millis(20)))
                .await
                .is_none()
        );
        drop(held);
        assert_eq!(lanes.busy(), 0);
        let again = a.acquire_until(Some(Instant::now())).await;
        // Free again: taken at once even with a deadline of now (the timeout is only
        // checked when the acquire is pending).
        assert!(again.is_some());
    }

    #[tokio::test]
    async fn waits_are_reported() {
        let lanes = CpuLanes::new(1);
        let waited = Arc::new(AtomicU64::new(0));
        let w = waited.clone();
        let a = lanes.share(Arc::new(move |d| {
            w.fetch_add(d.as_micros() as u64 + 1, Ordering::Relaxed);
        }));
        let held = a.acquire().await;
        let b = a.clone();
        let waiter = tokio::spawn(async move { b.acquire().await });
        tokio::task::yield_now().await;
        drop(held);
        drop(waiter.await.expect("join"));
        assert!(waited.load(Ordering::Relaxed) > 0);
    }
}
