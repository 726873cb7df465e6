//! Background loops that drive release plans without a request: scheduled execution
//! ([`schedule`]), window and approval timeouts ([`timeouts`]), hook delivery and retries
//! ([`hooks`]) and the safety net that follows running workflow jobs ([`reconcile`]).
//!
//! No timer lives only in memory: each loop finds what is due from the store, claims a plan
//! with a lease (`internal.claim_owner`/`claim_until_ms`, one find-one-and-update), and applies
//! the change through the release-plan service's conditional update — so a restart loses
//! nothing and several replicas on one MongoDB never apply a change twice. A loop sleeps until
//! the next due moment on the injected clock, a poll interval (work of other replicas), a
//! wake-up from this process, or shutdown.

pub mod hooks;
pub mod reconcile;
pub mod schedule;
pub mod timeouts;

use std::future::Future;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

use crate::release_plan::model::ReleasePlan;
use crate::state::AppState;
use crate::store::lease::now_ms as wall_ms;
use crate::store::{Filter, StoreResult, Update};

/// Start the release-plan loops.
pub fn spawn(state: &AppState) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(schedule::run(state.clone())),
        tokio::spawn(timeouts::run(state.clone())),
        tokio::spawn(hooks::run(state.clone())),
        tokio::spawn(reconcile::run(state.clone())),
    ]
}

fn lease_ms(state: &AppState) -> i64 {
    i64::try_from(state.config.release_plan_lease_secs.saturating_mul(1000)).unwrap_or(i64::MAX / 4)
}

/// Claim the first unclaimed plan matching `filter` (in `sort` order) for this process.
pub async fn claim(
    state: &AppState,
    filter: Filter,
    sort: &str,
) -> StoreResult<Option<ReleasePlan>> {
    let wall = wall_ms();
    let f = filter.and(Filter::lt("internal.claim_until_ms", wall));
    // Claiming bumps the version, so a writer holding an older copy (which would write the
    // claim fields back as they were) must re-read.
    let update = Update::new()
        .set("internal.claim_owner", state.instance_id.as_str())
        .set("internal.claim_until_ms", wall + lease_ms(state))
        .inc("version", 1);
    state.release_plans.claim(&f, sort, &update).await
}

/// Extend this process' claim on a plan (long work such as slow hook receivers).
pub async fn renew(state: &AppState, id: &str) -> StoreResult<bool> {
    let mine = Filter::eq("internal.claim_owner", state.instance_id.as_str());
    let update = Update::new().set("internal.claim_until_ms", wall_ms() + lease_ms(state));
    state.release_plans.update(id, mine, &update).await
}

/// Claim every plan `filter` matches and run `handle` on each, at most `release_plan_workers`
/// at once. A handler that fails keeps its claim until the lease expires (a retry later,
/// without spinning).
pub async fn drain<F, Fut>(state: &AppState, filter: &Filter, sort: &str, handle: F)
where
    F: Fn(AppState, ReleasePlan) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let workers = state.config.release_plan_workers.max(1);
    let mut set = JoinSet::new();
    while !state.shutdown.is_cancelled() {
        while set.len() >= workers {
            let _ = set.join_next().await;
        }
        match claim(state, filter.clone(), sort).await {
            Ok(Some(plan)) => {
                set.spawn(handle(state.clone(), plan));
            }
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(error = %e, "release-plan scheduler cannot claim work: {e}");
                break;
            }
        }
    }
    while set.join_next().await.is_some() {}
}

/// The earliest value of `path` (a due time) among plans matching `filter`.
pub async fn earliest(state: &AppState, filter: Filter, path: &str) -> Option<i64> {
    match state.release_plans.earliest(&filter, path).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "release-plan scheduler cannot read due work: {e}");
            None
        }
    }
}

/// Wait for the business-clock moment `due_ms` (if later than now), the poll interval, a
/// wake-up or shutdown. False on shutdown.
pub async fn wait(state: &AppState, due_ms: Option<i64>, wake: &Notify) -> bool {
    let poll = Duration::from_millis(state.config.release_plan_poll_ms);
    let until: BoxFuture<'static, ()> = match due_ms {
        Some(d) if d > state.clock.now_ms() => state.clock.sleep_until(d),
        _ => futures::future::pending().boxed(),
    };
    tokio::select! {
        () = state.shutdown.cancelled() => false,
        () = until => true,
        () = tokio::time::sleep(poll) => true,
        () = wake.notified() => true,
    }
}
