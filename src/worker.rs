//! Background workers: claim work with a lease, run it, renew the lease while it runs, give
//! it back.
//!
//! The release-plan scheduler, the delivery pipeline and the engine's dispatcher share this
//! machinery; what differs is only what they claim (each with a conditional update on the
//! store, the lease encoded by [`crate::store::lease`]) and what a run does:
//!
//! - a [`Pool`] holds the runs of one worker loop, bounded by its number of slots: [`Pool::fill`]
//!   claims and starts work until the slots are full or nothing is claimable, [`Pool::wait`]
//!   sleeps until there may be more (a wake-up, the poll interval, a run ending) or shutdown,
//!   [`Pool::drain`] claims until nothing is left, and [`Pool::join`] waits for the runs;
//! - [`wait_due`] is how a loop whose work falls due at business-clock moments sleeps between
//!   rounds (the release-plan scheduler, the engine's clean-up retries);
//! - [`renewing`] runs one piece of work while renewing its lease every third of its TTL;
//!   when a renewal finds the lease gone (the work was deleted, retried or taken over by
//!   another replica) it cancels the run's token, which the work watches.
//!
//! Exactly-once comes from the claims, not from here: a claim is one conditional update, so
//! of several replicas exactly one gets a piece of work until its lease expires.

use std::future::Future;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::store::StoreResult;

/// The runs of one worker loop.
pub struct Pool {
    runs: JoinSet<()>,
    slots: usize,
}

impl Pool {
    /// A pool of `slots` concurrent runs (at least one).
    pub fn new(slots: usize) -> Self {
        Self {
            runs: JoinSet::new(),
            slots: slots.max(1),
        }
    }

    /// How many runs are in flight.
    pub fn len(&self) -> usize {
        self.runs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Start a run (claimed by the caller).
    pub fn spawn(&mut self, run: impl Future<Output = ()> + Send + 'static) {
        self.runs.spawn(run);
    }

    /// Claim with `claim` and start each piece with `start` while a slot is free and nothing
    /// stops it. True when it stopped because the slots are full (there may be more work).
    /// A failed claim is logged as `what` and ends the filling until the next round.
    pub async fn fill<W, C, CF, S, R>(
        &mut self,
        shutdown: &CancellationToken,
        what: &str,
        mut claim: C,
        mut start: S,
    ) -> bool
    where
        C: FnMut() -> CF,
        CF: Future<Output = StoreResult<Option<W>>>,
        S: FnMut(W) -> R,
        R: Future<Output = ()> + Send + 'static,
    {
        while !shutdown.is_cancelled() {
            if self.runs.len() >= self.slots {
                return true;
            }
            match claim().await {
                Ok(Some(work)) => self.spawn(start(work)),
                Ok(None) => return false,
                Err(e) => {
                    tracing::warn!(error = %e, "{what} cannot claim work: {e}");
                    return false;
                }
            }
        }
        false
    }

    /// Claim and run until nothing is claimable (or shutdown), at most `slots` at once, and
    /// wait for every run.
    pub async fn drain<W, C, CF, S, R>(
        &mut self,
        shutdown: &CancellationToken,
        what: &str,
        mut claim: C,
        mut start: S,
    ) where
        C: FnMut() -> CF,
        CF: Future<Output = StoreResult<Option<W>>>,
        S: FnMut(W) -> R,
        R: Future<Output = ()> + Send + 'static,
    {
        while self.fill(shutdown, what, &mut claim, &mut start).await {
            let _ = self.runs.join_next().await;
        }
        self.join().await;
    }

    /// Sleep until a wake-up, `pause`, or the end of a run: true, there may be work; false on
    /// shutdown.
    pub async fn wait(
        &mut self,
        shutdown: &CancellationToken,
        wake: &Notify,
        pause: Duration,
    ) -> bool {
        tokio::select! {
            () = shutdown.cancelled() => false,
            () = wake.notified() => true,
            () = tokio::time::sleep(pause) => true,
            Some(_) = self.runs.join_next(), if !self.runs.is_empty() => true,
        }
    }

    /// Wait for every run to end.
    pub async fn join(&mut self) {
        while self.runs.join_next().await.is_some() {}
    }
}

/// Sleep until the business-clock moment `due_ms` (when it is later than now: work already
/// due but claimed by another replica is looked at again after `poll`), `poll`, a wake-up or
/// shutdown. False on shutdown.
pub async fn wait_due(
    clock: &dyn Clock,
    shutdown: &CancellationToken,
    due_ms: Option<i64>,
    wake: &Notify,
    poll: Duration,
) -> bool {
    let until: BoxFuture<'static, ()> = match due_ms {
        Some(d) if d > clock.now_ms() => clock.sleep_until(d),
        _ => futures::future::pending().boxed(),
    };
    tokio::select! {
        () = shutdown.cancelled() => false,
        () = until => true,
        () = tokio::time::sleep(poll) => true,
        () = wake.notified() => true,
    }
}

/// Run `work` while renewing its lease every third of `ttl` with `renew`. `renew` answering
/// false (the lease is no longer ours) cancels `token`, which `work` must watch; a failed
/// renewal is logged and tried again at the next turn. Renewal stops when `work` ends.
pub async fn renewing<T, R, RF>(
    work: impl Future<Output = T>,
    ttl: Duration,
    token: &CancellationToken,
    what: &str,
    mut renew: R,
) -> T
where
    R: FnMut() -> RF,
    RF: Future<Output = StoreResult<bool>>,
{
    let every = (ttl / 3).max(Duration::from_millis(10));
    let renewal = async {
        loop {
            tokio::select! {
                () = token.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            match renew().await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::info!("{what} is no longer ours; stopping its run");
                    token.cancel();
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "cannot renew the lease of {what}: {e}"),
            }
        }
    };
    tokio::pin!(work);
    tokio::pin!(renewal);
    let mut renewing = true;
    loop {
        tokio::select! {
            out = &mut work => return out,
            () = &mut renewal, if renewing => renewing = false,
        }
    }
}
