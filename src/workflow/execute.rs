//! Execute: from an OpenAPI execute request to a queued task (spec/workflow.md §3).
//!
//! [`prepare`] applies the global `parameters` (§3.2) and the per-job `inputs` (§3.3) to a copy
//! of the definition and decides which jobs run; [`execute`] then checks the pre-approval
//! ticket (§7.2), expands the jobs into job tasks, takes the next task id from the
//! per-workflow counter and stores the task as `waiting` for the engine.
//!
//! Every check runs before the task id is taken, so a refused execution consumes no id.

use std::collections::HashSet;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Identity;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::validate;
use crate::workflow::error::{Kind, Op, refuse};
use crate::workflow::inputs::{self, RepoInput, decode};
use crate::workflow::lint::lint;
use crate::workflow::model::{Workflow, str_of};
use crate::workflow::notify::pending;
use crate::workflow::params::{Param, ParamType};
use crate::workflow::task::{Status, Task};
use crate::workflow::{ReleaseRef, StartedTask, definitions, expand, registry, tickets};
use crate::workflow::{bad, text};

/// An execute request (`POST /openapi/workflows/custom/task`); the free-form parts are
/// decoded here so that errors name their field.
#[derive(Debug, Clone, Default)]
pub struct ExecuteInput {
    pub project_key: String,
    pub workflow_key: String,
    pub parameters: Value,
    pub inputs: Value,
    pub notify_inputs: Value,
    /// The pre-approval ticket (its `approval_id` or id) for workflows that need one.
    pub approval_ticket_id: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ParamInput {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    value: Value,
    repo: Option<RepoInput>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct JobInput {
    job_name: String,
    job_type: String,
    parameters: Value,
}

fn create_failed(kind: Kind, what: impl Into<String>) -> ApiError {
    refuse(kind, Op::CreateTask, what)
}

/// A definition with an execute request applied, and the jobs that run.
pub struct Prepared {
    pub workflow: Workflow,
    pub runs: HashSet<String>,
    /// Positions of `inputs` entries naming a job the workflow does not have, when
    /// [`UnknownJobs::Ignore`] let them pass.
    pub ignored: Vec<usize>,
}

/// What an input for a job the workflow does not have means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownJobs {
    /// 400 naming `inputs[k].job_name` (execute: a task is created now).
    Reject,
    /// Ignored and reported (a release plan's workflow job, as Zadig: docs/compatibility.md).
    Ignore,
}

/// Every input names a job of `wf` once, with its type when it gives one; the positions of
/// inputs for unknown jobs that `unknown` ignores.
fn check_inputs(wf: &Workflow, inputs: &[JobInput], unknown: UnknownJobs) -> ApiResult<Vec<usize>> {
    let mut seen = HashSet::new();
    let mut ignored = Vec::new();
    for (k, i) in inputs.iter().enumerate() {
        let field = format!("inputs[{k}].job_name");
        validate::name(&field, &i.job_name)?;
        let Some(job) = wf.job(&i.job_name) else {
            if unknown == UnknownJobs::Ignore {
                ignored.push(k);
                continue;
            }
            return Err(bad(
                &field,
                format!("job {} not found in workflow {}", i.job_name, wf.name),
            ));
        };
        if !seen.insert(i.job_name.as_str()) {
            return Err(bad(&field, format!("job {} is listed twice", i.job_name)));
        }
        if !i.job_type.is_empty() {
            validate::one_of(
                &format!("inputs[{k}].job_type"),
                &i.job_type,
                crate::workflow::jobs::JobType::NAMES,
            )?;
            if i.job_type != job.job_type {
                return Err(bad(
                    &format!("inputs[{k}].job_type"),
                    format!(
                        "job {} is of type {}, not {}",
                        i.job_name, job.job_type, i.job_type
                    ),
                ));
            }
        }
    }
    Ok(ignored)
}

/// Apply `parameters` and `inputs` to `wf` (spec §3.2–3.3): listed jobs run, the others are
/// skipped. (Whether that makes a task is checked when one is created.)
pub async fn prepare(
    state: &AppState,
    mut wf: Workflow,
    parameters: &Value,
    inputs: &Value,
    unknown: UnknownJobs,
) -> ApiResult<Prepared> {
    let params: Vec<ParamInput> = decode(parameters, "parameters")?;
    apply_params(&mut wf, &params)?;

    let inputs: Vec<JobInput> = decode(inputs, "inputs")?;
    let ignored = check_inputs(&wf, &inputs, unknown)?;

    let mut runs = HashSet::new();
    for si in 0..wf.stages.len() {
        for ji in 0..wf.stages[si].jobs.len() {
            let mut job = wf.stages[si].jobs[ji].clone();
            match inputs
                .iter()
                .enumerate()
                .find(|(_, i)| i.job_name == job.name)
            {
                Some((k, input)) => {
                    let field = format!("inputs[{k}].parameters");
                    let takes_registry = job.kind().is_some_and(|t| t.kind().takes_registry());
                    let registry = match input.parameters.get("registry") {
                        Some(Value::String(addr)) if takes_registry && !addr.is_empty() => Some(
                            registry::resolve(state, addr, &format!("{field}.registry")).await?,
                        ),
                        _ => None,
                    };
                    inputs::apply(&wf, &mut job, &input.parameters, &field, registry)?;
                    job.skipped = false;
                    runs.insert(job.name.clone());
                }
                None => job.skipped = true,
            }
            wf.stages[si].jobs[ji] = job;
        }
    }
    lint(&mut wf)?;
    Ok(Prepared {
        workflow: wf,
        runs,
        ignored,
    })
}

impl Prepared {
    /// What task creation requires of the jobs that run (spec §3.5 steps 6–7): every
    /// `force_run` job runs, and something runs at all.
    fn check_runnable(&self) -> ApiResult<()> {
        let wf = &self.workflow;
        if let Some((_, job)) = wf
            .jobs()
            .find(|(_, j)| j.run_policy == "force_run" && !self.runs.contains(&j.name))
        {
            return Err(create_failed(
                Kind::BadRequest,
                format!(
                    "`inputs`: job {} skipped, but the run policy is set to force run",
                    job.name
                ),
            ));
        }
        if self.runs.is_empty() {
            return Err(create_failed(
                Kind::BadRequest,
                format!(
                    "`inputs`: no stage found in workflow task: {} (no job is listed in inputs)",
                    wf.name
                ),
            ));
        }
        Ok(())
    }
}

fn apply_params(wf: &mut Workflow, params: &[ParamInput]) -> ApiResult<()> {
    // The stored parameters, typed (a definition stored before a lint rule may hold a field of
    // the wrong type: a 400 naming `params[j].<field>`).
    let typed: Vec<Param> = decode(&Value::Array(wf.params.clone()), "params")?;
    let mut seen = HashSet::new();
    for (i, p) in params.iter().enumerate() {
        let field = format!("parameters[{i}]");
        validate::name(&format!("{field}.name"), &p.name)?;
        if !seen.insert(p.name.as_str()) {
            return Err(bad(
                &format!("{field}.name"),
                format!("param {} is given twice", p.name),
            ));
        }
        if !p.kind.is_empty() {
            validate::one_of(&format!("{field}.type"), &p.kind, ParamType::NAMES)?;
        }
        let Some((stored, param)) = wf
            .params
            .iter_mut()
            .zip(&typed)
            .find(|(_, t)| t.name == p.name)
        else {
            return Err(bad(
                &format!("{field}.name"),
                format!("param {} not found in workflow {}", p.name, wf.name),
            ));
        };
        // Exported to the jobs' environment (a definition stored before this rule may hold
        // another name).
        if param.kind.is_exported() {
            crate::limits::env_name(&format!("{field}.name"), &p.name)?;
        }
        set_param(stored, param, p, &field)?;
    }
    Ok(())
}

/// Set a stored parameter (`typed`: its typed reading) from its input `p` (at `field`), as its
/// type takes a value.
fn set_param(stored: &mut Value, typed: &Param, p: &ParamInput, field: &str) -> ApiResult<()> {
    let Some(m) = stored.as_object_mut() else {
        return Ok(());
    };
    let options = &typed.choice_option;
    match typed.kind {
        ParamType::Repo => {
            let Some(repo) = &p.repo else {
                return Err(bad(
                    &format!("{field}.repo"),
                    format!("param {} is a repo parameter: give repo", p.name),
                ));
            };
            let target = m.entry("repo").or_insert(Value::Null);
            if !target.is_object() || !repo.matches(target) {
                return Err(bad(
                    &format!("{field}.repo"),
                    format!(
                        "repository {}/{} is not the repository of param {}",
                        repo.repo_namespace, repo.repo_name, p.name
                    ),
                ));
            }
            repo.apply(target);
        }
        ParamType::File => {
            return Err(bad(
                &format!("{field}.name"),
                format!(
                    "param {} is a file parameter, which the OpenAPI cannot set",
                    p.name
                ),
            ));
        }
        ParamType::MultiSelect => {
            let values = multi_values(&p.value, &format!("{field}.value"))?;
            if let Some(bad_value) = values
                .iter()
                .find(|v| !options.is_empty() && !options.contains(v))
            {
                return Err(bad(
                    &format!("{field}.value"),
                    format!("invalid choice value {bad_value} for param {}", p.name),
                ));
            }
            m.insert("value".into(), json!(values.join(",")));
            m.insert("choice_value".into(), json!(values));
        }
        ParamType::Choice => {
            let v = text(&p.value);
            if !options.is_empty() && !options.contains(&v) {
                return Err(bad(
                    &format!("{field}.value"),
                    format!("invalid choice value {v} for param {}", p.name),
                ));
            }
            m.insert("value".into(), Value::String(v));
        }
        ParamType::String | ParamType::Text | ParamType::Script | ParamType::Image => {
            m.insert("value".into(), Value::String(text(&p.value)));
        }
    }
    Ok(())
}

/// A multi-select parameter's values (the input at `field`): a list of strings, or one string
/// separated by commas.
fn multi_values(v: &Value, field: &str) -> ApiResult<Vec<String>> {
    Ok(match v {
        Value::Array(_) => decode(v, field)?,
        v => text(v)
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

/// Override the recipients of `notify_ctls[id]` of the same type (spec §3.4); entries that
/// match no notification of that type are kept on the task but change nothing.
fn apply_notify(wf: &mut Workflow, notify: &Value) -> ApiResult<Vec<Value>> {
    let list: Vec<Value> = decode(notify, "notify_inputs")?;
    for (i, n) in list.iter().enumerate() {
        let Some(obj) = n.as_object() else {
            return Err(bad(&format!("notify_inputs[{i}]"), "must be an object"));
        };
        let id = match obj.get("id") {
            Some(v) => v.as_u64().ok_or_else(|| {
                bad(
                    &format!("notify_inputs[{i}].id"),
                    "must be a non-negative integer",
                )
            })?,
            None => return Err(bad(&format!("notify_inputs[{i}].id"), "is required")),
        };
        let kind = obj.get("type").and_then(Value::as_str).unwrap_or_default();
        let Some(ctl) = usize::try_from(id)
            .ok()
            .and_then(|id| wf.notify_ctls.get_mut(id))
        else {
            continue;
        };
        if str_of(ctl, "webhook_type") != kind {
            continue;
        }
        let Some(ctl) = ctl.as_object_mut() else {
            continue;
        };
        if let Some(enabled) = obj.get("enabled").and_then(Value::as_bool) {
            ctl.insert("enabled".into(), Value::Bool(enabled));
        }
        for (k, v) in obj
            .iter()
            .filter(|(k, _)| k.ends_with("_notification_config"))
        {
            let Value::Object(add) = v else { continue };
            if !ctl.get(k).is_some_and(Value::is_object) {
                ctl.insert(k.clone(), json!({}));
            }
            let Some(Value::Object(stored)) = ctl.get_mut(k) else {
                continue;
            };
            // Where the message goes stays as stored (spec §3.4): the input names recipients.
            // Its addresses were never checked against the hook egress policy, and a masked
            // one copied from a detail would replace the real one.
            for (ak, av) in add
                .iter()
                .filter(|(ak, _)| !crate::workflow::notify::ctl::DESTINATION.contains(&ak.as_str()))
            {
                stored.insert(ak.clone(), av.clone());
            }
        }
    }
    Ok(list)
}

/// The workflow an execute request names, if it may run at all (not disabled, not
/// `concurrency_limit` 0). `check_project`: the request's `project_key` must be its project.
async fn executable(
    state: &AppState,
    req: &ExecuteInput,
    check_project: bool,
) -> ApiResult<Workflow> {
    validate::name("workflow_key", &req.workflow_key)?;
    let wf = if check_project {
        validate::name("project_key", &req.project_key)?;
        definitions::find_in(state, &req.workflow_key, &req.project_key, Op::FindWorkflow).await?
    } else {
        definitions::find(state, &req.workflow_key).await?
    };
    if wf.disabled {
        return Err(create_failed(
            Kind::Conflict,
            format!("workflow {} is disabled", wf.name),
        ));
    }
    if wf.concurrency_limit == 0 {
        return Err(create_failed(
            Kind::Conflict,
            format!(
                "workflow cannot be executed: workflow {} has concurrency_limit 0 (0 means not executable; set it to -1 for unlimited or to the number of tasks that may run at once)",
                wf.name
            ),
        ));
    }
    Ok(wf)
}

/// Execute a workflow: `POST /openapi/workflows/custom/task` and release-plan jobs.
/// `check_project`: the request's `project_key` must be the workflow's project.
pub async fn execute(
    state: &AppState,
    caller: &Identity,
    req: ExecuteInput,
    release: Option<ReleaseRef>,
    check_project: bool,
) -> ApiResult<StartedTask> {
    let wf = executable(state, &req, check_project).await?;
    let enable_ticket = wf.enable_approval_ticket;
    let prepared = prepare(state, wf, &req.parameters, &req.inputs, UnknownJobs::Reject).await?;
    prepared.check_runnable()?;
    let Prepared {
        workflow: mut merged,
        runs,
        ..
    } = prepared;
    let notify_inputs = apply_notify(&mut merged, &req.notify_inputs)?;
    let ticket = if enable_ticket {
        Some(
            tickets::check(
                state,
                &req.approval_ticket_id,
                &merged,
                &|j| runs.contains(j),
                caller,
            )
            .await?,
        )
    } else {
        None
    };
    let stages = expand::stages(&merged, &|j| runs.contains(j))?;
    let workflow_args = serde_json::to_value(&merged).map_err(ApiError::internal)?;

    let task_id = state
        .sequences
        .next(&format!("workflow_task:{}", merged.name))
        .await
        .map_err(|e| {
            tracing::error!(workflow = %merged.name, error = %e, "task id counter failed: {e}");
            refuse(
                Kind::Internal,
                Op::GetCounter,
                "the task id counter is unavailable",
            )
        })?;
    let now = state.clock.now();
    let mut task = Task {
        id: validate::new_object_id(now),
        task_id,
        workflow_name: merged.name.clone(),
        workflow_display_name: merged.display_name.clone(),
        project_name: merged.project.clone(),
        params: merged.params.clone(),
        status: Status::Waiting,
        task_creator: caller.name.clone(),
        task_creator_account: caller.account.clone(),
        task_creator_id: caller.uid.clone(),
        create_time: now,
        stages,
        approval_ticket_id: ticket.as_ref().map(|t| t.id.clone()).unwrap_or_default(),
        approval_id: ticket.map(|t| t.approval_id).unwrap_or_default(),
        release,
        notify_inputs: Value::Array(notify_inputs),
        workflow_args,
        concurrency_limit: merged.concurrency_limit,
        queued_at_ms: state.clock.now_ms(),
        ..Task::default()
    };
    pending::record(&mut task, Status::Created, state.clock.now_ms());
    state.tasks.insert(&task).await?;
    tracing::info!(workflow = %task.workflow_name, task_id, "task {}#{task_id} created by {}", task.workflow_name, caller.account);
    pending::flush(state, &mut task).await;
    crate::engine::task_queued(state);
    Ok(StartedTask {
        project_name: task.project_name,
        workflow_name: task.workflow_name,
        task_id,
    })
}
