//! Release plans: model, the pure state machine, the service applying its effects, approvals,
//! external hooks and the callback.

use crate::state::AppState;
use crate::workflow::ReleaseRef;

/// Called by the engine once when a task started by a release job reaches a final status
/// (`passed`, `failed`, `timeout`, `cancelled`, `reject`); moves the job accordingly. Must be
/// idempotent (a repeat, or a call for a job already moved on, changes nothing).
pub async fn on_workflow_task_finished(
    _state: &AppState,
    _release: &ReleaseRef,
    _task_id: i64,
    _status: &str,
) {
}
