//! The injected clock. Business time (release windows, schedules, approval and job timeouts)
//! always comes from a [`Clock`], so tests move time forward instead of sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::Notify;

/// A source of the current time, and a way to wait for a moment of it.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    /// Resolve once `now_ms() >= at_ms`. Background loops wait on this, so a manual clock
    /// wakes them as soon as a test moves time past their deadline.
    fn sleep_until(&self, at_ms: i64) -> BoxFuture<'static, ()>;
    /// Seconds since the Unix epoch (Zadig's wire unit).
    fn now(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
    fn sleep_until(&self, at_ms: i64) -> BoxFuture<'static, ()> {
        let wait = at_ms.saturating_sub(self.now_ms()).max(0);
        Box::pin(tokio::time::sleep(Duration::from_millis(
            u64::try_from(wait).unwrap_or(0),
        )))
    }
}

/// A clock that only moves when told to (tests and benchmarks).
#[derive(Debug)]
pub struct ManualClock {
    ms: AtomicI64,
    moved: Notify,
}

impl ManualClock {
    /// A manual clock starting at `start_ms`.
    pub fn new(start_ms: i64) -> Arc<Self> {
        Arc::new(Self {
            ms: AtomicI64::new(start_ms),
            moved: Notify::new(),
        })
    }
    /// A manual clock starting at the current wall-clock time.
    pub fn starting_now() -> Arc<Self> {
        Self::new(SystemClock.now_ms())
    }
    pub fn set_ms(&self, ms: i64) {
        self.ms.store(ms, Ordering::SeqCst);
        self.moved.notify_waiters();
    }
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX / 4);
        self.ms.fetch_add(by, Ordering::SeqCst);
        self.moved.notify_waiters();
    }
}

impl Clock for Arc<ManualClock> {
    fn now_ms(&self) -> i64 {
        self.ms.load(Ordering::SeqCst)
    }
    fn sleep_until(&self, at_ms: i64) -> BoxFuture<'static, ()> {
        let this = self.clone();
        Box::pin(async move {
            loop {
                let moved = this.moved.notified();
                if this.now_ms() >= at_ms {
                    return;
                }
                moved.await;
            }
        })
    }
}
