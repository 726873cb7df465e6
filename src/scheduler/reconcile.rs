//! The safety net for workflow jobs: every `release_plan_reconcile_secs`, each `running`
//! workflow job's task is looked up and a final status the engine's notification may have
//! missed (e.g. a crash) is applied; a job whose task was never started is failed.

use std::time::Duration;

use crate::release_plan::service;
use crate::state::AppState;
use crate::store::{Dir, Filter, FindOptions};

/// Plans looked at per round.
const BATCH: u64 = 1000;

/// The loop.
pub async fn run(state: AppState) {
    let every = Duration::from_secs(state.config.release_plan_reconcile_secs);
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        round(&state).await;
    }
}

/// One pass over the plans with running jobs, each claimed (and so checked by one replica).
pub async fn round(state: &AppState) {
    let running = || Filter::gt("internal.running_jobs", 0);
    let opts = FindOptions::sort("id", Dir::Asc).limit(BATCH);
    let plans = match state.release_plans.find(&running(), &opts).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list release plans with running jobs: {e}");
            return;
        }
    };
    for p in plans {
        if state.shutdown.is_cancelled() {
            return;
        }
        let claimed = super::claim(state, Filter::id(&p.id).and(running()), "id").await;
        if let Ok(Some(plan)) = claimed
            && let Err(e) = service::reconcile(state, &plan).await
        {
            tracing::warn!(release_plan.id = %plan.id, "cannot reconcile the jobs of release plan {}: {}", plan.id, e.description);
        }
    }
}
