//! Custom workflows (Zadig "workflow v4"): definitions, views, pre-approval tickets, task
//! creation and the task APIs.
//!
//! Release plans start workflow tasks through [`check_release_input`] and
//! [`start_release_task`]; when such a task ends, the engine reports it through
//! [`crate::engine::finished`], which the release-plan side subscribes to.
//!
//! - [`model`], [`params`], [`lint`], [`legacy`], [`store`], [`definitions`]: the definitions;
//! - [`approval`]: the typed reading of approval settings (stage approvals, approval jobs);
//! - [`views`], [`tickets`]: workflow views and pre-approval tickets;
//! - [`jobs`]: the job types, one module each (lint, inputs, expansion, view, engine);
//! - [`execute`] (with [`inputs`], [`expand`], [`registry`]): execute → a queued task;
//! - [`task`], [`tasks`]: the task record (shared with the engine) and the task API;
//! - [`notify`]: the notifications `notify_ctls` ask for when a task's status changes.

pub mod approval;
pub mod definitions;
pub mod error;
pub mod execute;
pub mod expand;
pub mod inputs;
pub mod jobs;
pub mod legacy;
pub mod lint;
pub mod model;
pub mod notify;
pub mod params;
pub mod registry;
pub mod store;
pub mod task;
pub mod task_view;
pub mod tasks;
pub mod tickets;
pub mod views;
pub mod votes;

use serde::{Deserialize, Serialize};

use crate::auth::Identity;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Test support: every value of a closed enum with Zadig's names (`all`, in declaration
/// order, `index` its position) serialises as its name and reads back, and `parse` knows
/// exactly those names.
#[cfg(test)]
pub(crate) fn assert_wire_names<T>(
    all: &[T],
    index: fn(T) -> usize,
    name: fn(T) -> &'static str,
    parse: fn(&str) -> Option<T>,
) where
    T: Copy + PartialEq + std::fmt::Debug + Serialize + serde::de::DeserializeOwned,
{
    for (i, t) in all.iter().enumerate() {
        assert_eq!(index(*t), i);
        let wire = serde_json::to_value(t).unwrap();
        assert_eq!(wire, serde_json::Value::String(name(*t).to_string()));
        assert_eq!(serde_json::from_value::<T>(wire).unwrap(), *t);
        assert_eq!(parse(name(*t)), Some(*t));
    }
    assert_eq!(parse("nope"), None);
}

/// A 400 naming `field` (its JSON path or query parameter).
pub(crate) fn bad(field: &str, what: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("`{field}`: {what}"))
}

/// A value given as a string, number or boolean, as text.
pub(crate) fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

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

/// A release job's workflow reference after [`check_release_input`].
#[derive(Debug, Clone)]
pub struct ReleaseInput {
    /// The workflow definition with the parameters and inputs applied (jobs not listed are
    /// `skipped`), which the release plan shows on the job.
    pub workflow: serde_json::Value,
    /// The `inputs` that apply: those naming a job of the workflow.
    pub inputs: serde_json::Value,
    /// One line per ignored input: `inputs[k]: workflow W has no job J; ignored`.
    pub warnings: Vec<String>,
}

/// Check a release job's workflow reference as the execute route would: the workflow exists
/// (else 404, code 6542) and `parameters`/`inputs` (the execute body's shapes) apply to it
/// (else 400 naming the field). An input naming a job the workflow does not have is ignored
/// and reported, as Zadig ignores it (seed 001's PATCH example names `build`, `deploy` and
/// `test` whatever the workflow has). The project key is not compared (spec/release-plan.md:
/// the workflow is looked up by name only).
pub async fn check_release_input(
    state: &AppState,
    _project_key: &str,
    workflow_key: &str,
    parameters: &serde_json::Value,
    inputs: &serde_json::Value,
) -> ApiResult<ReleaseInput> {
    crate::validate::name("workflow_key", workflow_key)?;
    let wf = definitions::find(state, workflow_key).await?;
    let name = wf.name.clone();
    let prepared =
        execute::prepare(state, wf, parameters, inputs, execute::UnknownJobs::Ignore).await?;
    let all = inputs.as_array().map(Vec::as_slice).unwrap_or_default();
    let warnings = prepared
        .ignored
        .iter()
        .map(|&k| {
            let job = all
                .get(k)
                .and_then(|v| v.get("job_name"))
                .map(text)
                .unwrap_or_default();
            format!("inputs[{k}]: workflow {name} has no job {job}; ignored")
        })
        .collect();
    let kept = all
        .iter()
        .enumerate()
        .filter(|(k, _)| !prepared.ignored.contains(k))
        .map(|(_, v)| v.clone())
        .collect();
    Ok(ReleaseInput {
        workflow: serde_json::to_value(&prepared.workflow).map_err(ApiError::internal)?,
        inputs: serde_json::Value::Array(kept),
        warnings,
    })
}

/// Start a task for a release job with the same rules as `POST /openapi/workflows/custom/task`,
/// recording `release` on the task.
pub async fn start_release_task(
    state: &AppState,
    project_key: &str,
    workflow_key: &str,
    parameters: &serde_json::Value,
    inputs: &serde_json::Value,
    caller: &Identity,
    release: ReleaseRef,
) -> ApiResult<StartedTask> {
    let req = execute::ExecuteInput {
        project_key: project_key.to_string(),
        workflow_key: workflow_key.to_string(),
        parameters: parameters.clone(),
        inputs: inputs.clone(),
        ..execute::ExecuteInput::default()
    };
    execute::execute(state, caller, req, Some(release), false).await
}

/// The status of a task (`waiting`, `running`, `passed`, …), `None` when it does not exist.
pub async fn task_status(
    state: &AppState,
    workflow_key: &str,
    task_id: i64,
) -> ApiResult<Option<task::Status>> {
    Ok(state
        .tasks
        .get(workflow_key, task_id)
        .await?
        .map(|t| t.status))
}
