//! Timeouts: an `executing` plan whose release window closed (spec T1), and a native approval
//! not decided within its `timeout` minutes (DESIGN.md §1.5), both move to `timeout`.

use crate::release_plan::model::Status;
use crate::release_plan::service;
use crate::state::AppState;
use crate::store::Filter;

fn executing_with_window() -> Filter {
    Filter::eq("status", Status::Executing.as_str()).and(Filter::gt("end_time", 0))
}

fn approval_with_deadline() -> Filter {
    Filter::eq("status", Status::WaitForApproval.as_str())
        .and(Filter::gt("internal.approval_deadline", 0))
}

/// The loop: time out what is due, then sleep until the next window end or deadline.
pub async fn run(state: AppState) {
    loop {
        let now = state.clock.now();
        let due = Filter::Or(vec![
            executing_with_window().and(Filter::lt("end_time", now)),
            approval_with_deadline().and(Filter::lte("internal.approval_deadline", now)),
        ]);
        super::drain(&state, &due, "id", |state, plan| async move {
            let id = plan.id.clone();
            if let Err(e) = service::tick(&state, plan).await {
                tracing::warn!(release_plan.id = %id, "timeout check of release plan {id} failed: {}", e.description);
            }
        })
        .await;
        // A window times out once `now > end_time`, i.e. from the next second on.
        let window = super::earliest(&state, executing_with_window(), "end_time")
            .await
            .map(|s| s.saturating_add(1).saturating_mul(1000));
        let approval = super::earliest(
            &state,
            approval_with_deadline(),
            "internal.approval_deadline",
        )
        .await
        .map(|s| s.saturating_mul(1000));
        let next = match (window, approval) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if !super::wait(&state, next, &state.scheduler_wake.timeouts).await {
            return;
        }
    }
}
