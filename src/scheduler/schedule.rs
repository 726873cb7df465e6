//! Scheduled execution (spec §6.2): at `schedule_execute_time`, an `executing` plan starts its
//! workflow jobs that are `todo` or `failed`, as the system user, once.

use crate::release_plan::model::Status;
use crate::release_plan::service;
use crate::state::AppState;
use crate::store::Filter;

fn scheduled() -> Filter {
    Filter::eq("status", Status::Executing.as_str()).and(Filter::gt("internal.schedule_at", 0))
}

/// The loop: fire every due schedule, then sleep until the next one.
pub async fn run(state: AppState) {
    loop {
        let now = state.clock.now();
        let due = scheduled().and(Filter::lte("internal.schedule_at", now));
        super::drain(&state, &due, "internal.schedule_at", |state, plan| async move {
            let id = plan.id.clone();
            if let Err(e) = service::tick(&state, plan).await {
                tracing::warn!(release_plan.id = %id, "scheduled execution of release plan {id} failed: {}", e.description);
            }
        })
        .await;
        let next = super::earliest(&state, scheduled(), "internal.schedule_at")
            .await
            .map(|s| s.saturating_mul(1000));
        if !super::wait(&state, next, &state.scheduler_wake.schedule).await {
            return;
        }
    }
}
