//! Background loops that drive release plans without a request: scheduled execution
//! ([`schedule`]), window and approval timeouts ([`timeouts`]), hook delivery and retries
//! ([`hooks`]) and the safety net that follows running workflow jobs ([`reconcile`]).
//!
//! No timer lives only in memory: each loop finds what is due from the store, claims a plan
//! with a lease ([`CLAIM`] on the plan, one find-one-and-update; the claims run in a
//! [`crate::worker::Pool`]), and applies
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

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::release_plan::model::ReleasePlan;
pub use crate::release_plan::store::CLAIM;
use crate::state::AppState;
use crate::store::{Filter, StoreResult, Update};
use crate::worker::Pool;

/// Wake-ups for the loops, so that work made due by this process starts at once (other
/// replicas find it by polling). Owned by the state (`state.scheduler_wake`).
#[derive(Default)]
pub struct Wakers {
    pub schedule: Notify,
    pub timeouts: Notify,
    pub hooks: Notify,
    /// Workflow notifications were queued ([`crate::workflow::notify::deliver`]).
    pub notifications: Notify,
}

/// Start the release-plan loops.
pub fn spawn(state: &AppState) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(schedule::run(state.clone())),
        tokio::spawn(timeouts::run(state.clone())),
        tokio::spawn(hooks::run(state.clone())),
        tokio::spawn(reconcile::run(state.clone())),
    ]
}

fn lease_ttl(state: &AppState) -> Duration {
    Duration::from_secs(state.config.release_plan_lease_secs)
}

/// Claim the first unclaimed plan matching `filter` (in `sort` order) for this process.
pub async fn claim(
    state: &AppState,
    filter: Filter,
    sort: &str,
) -> StoreResult<Option<ReleasePlan>> {
    let f = filter.and(CLAIM.free());
    // Claiming bumps the version, so a writer holding an older copy (which would write the
    // claim fields back as they were) must re-read.
    let update = CLAIM.take(
        Update::new().inc("version", 1),
        &state.instance_id,
        lease_ttl(state),
    );
    state.release_plans.claim(&f, sort, &update).await
}

/// Extend this process' claim on a plan (long work such as slow hook receivers).
pub async fn renew(state: &AppState, id: &str) -> StoreResult<bool> {
    let mine = CLAIM.taken_by(&state.instance_id);
    let update = CLAIM.renew(Update::new(), lease_ttl(state));
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
    Pool::new(state.config.release_plan_workers)
        .drain(
            &state.shutdown,
            "release-plan scheduler",
            || claim(state, filter.clone(), sort),
            |plan| handle(state.clone(), plan),
        )
        .await;
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
    crate::worker::wait_due(state.clock.as_ref(), &state.shutdown, due_ms, wake, poll).await
}
