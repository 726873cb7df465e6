//! Release plans: model, the pure state machine, the service applying its effects, approvals,
//! external hooks and the callback (seeds 000/001, spec/release-plan.md, DESIGN.md §1.4–1.5).
//!
//! - [`model`]: the stored plan; [`machine`]: `(plan, event, clock) → (plan, effects)`;
//! - [`input`]: request bodies and their validation; [`service`]: load → machine →
//!   conditional save → effects; [`hooks`]: outgoing hook body and delivery; [`egress`]:
//!   where hooks may connect;
//! - [`store`]: collections; [`details`]: the rendered-detail cache. The background loops
//!   (and their wake-ups) live in [`crate::scheduler`].

pub mod details;
pub mod egress;
pub mod hooks;
pub mod input;
pub mod machine;
pub mod model;
pub mod service;
pub mod store;

use std::sync::Arc;

use crate::engine::finished::{TaskFinished, TaskFinishedListener, TaskFinishedPort};
use crate::release_plan::model::TaskStatus;
use crate::state::AppState;
use crate::workflow::ReleaseRef;

/// Follow the engine's reports of finished tasks (called once, when the state is assembled).
pub fn subscribe(port: &TaskFinishedPort) {
    port.subscribe(Arc::new(TaskListener));
}

/// Moves a release job on when its task finishes.
struct TaskListener;

#[async_trait::async_trait]
impl TaskFinishedListener for TaskListener {
    async fn task_finished(&self, state: &AppState, e: TaskFinished<'_>) {
        on_workflow_task_finished(state, e.release, e.task_id, e.status).await;
    }
}

/// Reported by the engine (through [`subscribe`]) when a task started by a release job reaches a final status
/// (`passed`, `failed`, `timeout`, `cancelled`, `reject`); moves the job accordingly. Must be
/// idempotent (a repeat, or a call for a job already moved on, changes nothing).
pub async fn on_workflow_task_finished(
    state: &AppState,
    release: &ReleaseRef,
    task_id: i64,
    status: TaskStatus,
) {
    if let Err(e) = service::task_finished(state, release, task_id, status).await {
        // The scheduler's reconciliation applies the status later.
        tracing::warn!(release_plan.id = %release.plan_id, "release job {} (task {task_id}, {status}) not applied yet: {}", release.job_id, e.description);
    }
}
