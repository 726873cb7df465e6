//! Driving one claimed task through its stages and jobs (spec/workflow.md §5).
//!
//! Stages run in order; stages (and job tasks) already `passed`/`skipped`/`unstable` are kept,
//! which is how a retry resumes. A parallel stage runs its job tasks concurrently (at most
//! `engine_parallel_jobs` at once) and all of them to their end; a sequential stage stops at
//! the first job that fails. A stage with a native `approval` waits for the votes first; an
//! `approval` job waits for its own. Statuses roll up per §5.2.
//!
//! Every write goes through [`TaskCtl::update`]: a change is a closure applied to the latest
//! stored task and saved conditionally on `version`; when the workflow API wrote in between
//! (cancel, a vote) the task is re-read and the closure applied again, so neither side loses
//! the other's write. A status the API set to `cancelled` is never overwritten.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::approval::{self, Decision, JobApproval};
use super::executor::{self, JobContext, JobStatus};
use super::{Registered, rollup, work};
use crate::state::AppState;
use crate::store::{Filter, StoreError, Update};
use crate::workflow::task::{JobTask, Task, status};

/// The error of a task whose process died (or stopped) while it ran.
pub const RESTART_ERROR: &str = "server restarted while the task was running";

/// The error of a task whose writes kept failing.
const STORE_ERROR: &str = "the store failed while the task was running";

/// Pause between attempts of a job whose error policy is `retry` (Zadig's 10 s).
const RETRY_PAUSE_MS: i64 = 10_000;

/// Why a runner stops writing.
#[derive(Debug)]
pub(super) enum Stop {
    /// The task was deleted, or another process took it over (it was declared dead).
    Lost,
    /// The store kept failing.
    Store(StoreError),
}

/// The runner's handle on its task: the latest stored version and the conditional writer.
pub(super) struct TaskCtl {
    state: AppState,
    /// The latest stored task with the deferred changes applied.
    pub task: Task,
    /// Changes made but not stored yet: they ride along with the next write.
    pending: Vec<Change>,
    /// Fired when a re-read shows the API cancelled the task.
    cancel: CancellationToken,
}

/// A change to a task, re-applicable to a fresher copy.
type Change = Box<dyn Fn(&mut Task) + Send + Sync>;

impl TaskCtl {
    pub fn new(state: AppState, task: Task, cancel: CancellationToken) -> Self {
        Self {
            state,
            task,
            pending: Vec::new(),
            cancel,
        }
    }

    /// Apply `f` now but store it with the next [`Self::update`]: for bookkeeping nobody waits
    /// for (a stage's start and end), which saves a write per stage boundary.
    pub fn defer(&mut self, f: impl Fn(&mut Task) + Send + Sync + 'static) {
        f(&mut self.task);
        self.pending.push(Box::new(f));
    }

    /// Apply `f` to the task and store it with the deferred changes (see the module doc).
    pub async fn update(&mut self, f: impl Fn(&mut Task)) -> Result<(), Stop> {
        let mut failures = 0u32;
        loop {
            let mut next = self.task.clone();
            f(&mut next);
            let res = match self.state.tasks.save(&mut next).await {
                Ok(true) => {
                    self.task = next;
                    self.pending.clear();
                    return Ok(());
                }
                Ok(false) => self.refresh().await,
                Err(e) => Err(Stop::Store(e)),
            };
            match res {
                Ok(()) => {}
                Err(Stop::Store(e)) => {
                    failures += 1;
                    if failures >= 30 {
                        return Err(Stop::Store(e));
                    }
                    tracing::warn!(workflow = %self.task.workflow_name, task_id = self.task.task_id,
                        "writing the task failed (attempt {failures}): {e}");
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(failures.min(20))))
                        .await;
                }
                Err(lost) => return Err(lost),
            }
        }
    }

    /// Re-read the task (keeping the deferred changes); [`Stop::Lost`] when it is gone or no
    /// longer ours.
    pub async fn refresh(&mut self) -> Result<(), Stop> {
        match self.state.tasks.tasks.get(&self.task.id).await {
            Ok(Some(mut t)) if t.lease_owner == self.state.instance_id => {
                if t.status == status::CANCELLED {
                    self.cancel.cancel();
                }
                for p in &self.pending {
                    p(&mut t);
                }
                self.task = t;
                Ok(())
            }
            Ok(_) => Err(Stop::Lost),
            Err(e) => Err(Stop::Store(e)),
        }
    }
}

type Ctl = Arc<Mutex<TaskCtl>>;

fn now(state: &AppState) -> i64 {
    state.clock.now()
}

/// Run a claimed task to its end (or until it is cancelled, lost, or the server stops).
pub(super) async fn run(state: AppState, task: Task, reg: Registered) {
    let key = (task.workflow_name.clone(), task.task_id);
    tracing::info!(workflow = %key.0, task_id = key.1, "task {}#{} started", key.0, key.1);
    if task.status == status::CANCELLED {
        reg.cancel.cancel();
    }
    let ctl: Ctl = Arc::new(Mutex::new(TaskCtl::new(
        state.clone(),
        task,
        reg.cancel.clone(),
    )));
    let driven = drive(&state, &ctl, &reg).await;
    if let Err(Stop::Lost) = driven {
        tracing::warn!(workflow = %key.0, task_id = key.1, "task {}#{} was taken over or deleted; stopping", key.0, key.1);
        reg.cancel.cancel();
        return;
    }
    if let Err(Stop::Store(e)) = &driven {
        tracing::error!(workflow = %key.0, task_id = key.1, "task {}#{} stopped: the store failed: {e}", key.0, key.1);
    }
    reg.cancel.cancel();
    let interrupted = if driven.is_err() {
        Some(STORE_ERROR)
    } else if state.shutdown.is_cancelled() {
        Some(RESTART_ERROR)
    } else {
        None
    };
    finalize(&state, &ctl, interrupted).await;
}

async fn drive(state: &AppState, ctl: &Ctl, reg: &Registered) -> Result<(), Stop> {
    let stages = ctl.lock().await.task.stages.len();
    for si in 0..stages {
        if reg.cancel.is_cancelled() {
            break;
        }
        let done = rollup::is_done(&ctl.lock().await.task.stages[si].status);
        if done {
            continue;
        }
        let end = run_stage(state, ctl, reg, si).await?;
        if rollup::stops_sequence(&end) {
            break;
        }
    }
    Ok(())
}

/// End every stage and job task still open (running, preparing, waiting for approval) with
/// `status` and `error`; then close the task itself: `status` (a task cancelled by the API
/// stays `cancelled`, keeping its own error), `end_time`, the lease given back.
pub(super) fn end_task(t: &mut Task, status: &str, error: &str, at: i64) {
    const OPEN: &[&str] = &[
        status::RUNNING,
        status::WAIT_FOR_APPROVAL,
        status::WAIT_FOR_MANUAL_ERROR_HANDLING,
        status::PREPARE,
    ];
    let (status, error) = if t.status == status::CANCELLED {
        (status::CANCELLED, "workflow was canceled")
    } else {
        (status, error)
    };
    for s in &mut t.stages {
        for j in &mut s.jobs {
            if OPEN.contains(&j.status.as_str()) {
                j.status = status.to_string();
                j.error = error.to_string();
                j.end_time = at;
            }
        }
        if OPEN.contains(&s.status.as_str()) {
            s.status = status.to_string();
            s.error = error.to_string();
            s.end_time = at;
        }
    }
    if t.status != status::CANCELLED {
        t.status = status.to_string();
        t.error = error.to_string();
    }
    t.end_time = at;
    t.lease_owner.clear();
    t.lease_until_ms = 0;
    t.final_notified = status::is_final(&t.status);
}

/// Write the task's end — the roll-up of its stages, or `failed` with `interrupted` when the
/// server stopped under it, or `cancelled` — then tell the release plan.
async fn finalize(state: &AppState, ctl: &Ctl, interrupted: Option<&str>) {
    let at = now(state);
    let mut c = ctl.lock().await;
    let res = c
        .update(|t| match interrupted {
            Some(why) => end_task(t, status::FAILED, why, at),
            None => {
                let rolled = rollup::task_status(t.stages.iter().map(|s| s.status.as_str()));
                let rolled = match rolled {
                    status::RUNNING if t.stages.is_empty() => status::PASSED,
                    status::RUNNING => status::FAILED,
                    s => s,
                };
                end_task(t, rolled, "", at);
            }
        })
        .await;
    let task = c.task.clone();
    drop(c);
    match res {
        Ok(()) => {
            tracing::info!(workflow = %task.workflow_name, task_id = task.task_id,
                "task {}#{} ended {}", task.workflow_name, task.task_id, task.status);
            metrics::counter!("engine_tasks_finished_total", "status" => task.status.clone())
                .increment(1);
            if status::is_final(&task.status)
                && let Some(r) = &task.release
            {
                state
                    .task_finished
                    .publish(state, r, task.task_id, &task.status)
                    .await;
            }
        }
        Err(e) => tracing::error!(workflow = %task.workflow_name, task_id = task.task_id,
            "cannot store the end of task {}#{}: {e:?}; recovery will mark it failed", task.workflow_name, task.task_id),
    }
}

async fn run_stage(
    state: &AppState,
    ctl: &Ctl,
    reg: &Registered,
    si: usize,
) -> Result<String, Stop> {
    let at = now(state);
    let stage = {
        let mut c = ctl.lock().await;
        c.defer(move |t| {
            let s = &mut t.stages[si];
            s.status = status::RUNNING.to_string();
            s.start_time = at;
            s.end_time = 0;
            s.error.clear();
        });
        c.task.stages[si].clone()
    };
    let manual = stage
        .manual_exec
        .get("enabled")
        .and_then(Value::as_bool)
        .unwrap_or(false)
        && !stage
            .manual_exec
            .get("executed")
            .and_then(Value::as_bool)
            .unwrap_or(false);
    if manual {
        // The stage waits for someone to trigger it (§5.8): the task pauses and frees its slot.
        return end_stage(
            state,
            ctl,
            si,
            status::PAUSE,
            "the stage waits for manual execution",
        )
        .await;
    }
    if stage.approval.as_ref().is_some_and(|a| a.enabled) {
        match stage_approval(state, ctl, reg, si).await? {
            Decision::Approved => {}
            Decision::Rejected(user) => {
                return end_stage(
                    state,
                    ctl,
                    si,
                    status::REJECT,
                    &format!("{user} reject this task"),
                )
                .await;
            }
            Decision::TimedOut => {
                return end_stage(state, ctl, si, status::TIMEOUT, "approval timed out").await;
            }
            Decision::Waiting => {
                let (st, err) = if reg.cancel.is_cancelled() {
                    (status::CANCELLED, "workflow was canceled".to_string())
                } else {
                    (status::FAILED, stage_approval_error(&stage))
                };
                return end_stage(state, ctl, si, st, &err).await;
            }
        }
    }
    let todo: Vec<usize> = stage
        .jobs
        .iter()
        .enumerate()
        .filter(|(_, j)| !rollup::is_done(&j.status))
        .map(|(i, _)| i)
        .collect();
    if stage.parallel {
        let bound = state.config.engine_parallel_jobs;
        futures::stream::iter(todo)
            .map(|ji| run_job_task(state, ctl, reg, si, ji))
            .buffer_unordered(bound)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
    } else {
        for ji in todo {
            let st = run_job_task(state, ctl, reg, si, ji).await?;
            if rollup::stops_sequence(&st) {
                break;
            }
        }
    }
    let at = now(state);
    let cancelled = reg.cancel.is_cancelled();
    let mut c = ctl.lock().await;
    // Stored with the next write (the next job's start, or the task's end).
    c.defer(move |t| {
        let task_cancelled = cancelled || t.status == status::CANCELLED;
        let s = &mut t.stages[si];
        let rolled = rollup::stage_status(task_cancelled, s.jobs.iter().map(|j| j.status.as_str()));
        s.status = if rolled == status::RUNNING && s.jobs.is_empty() {
            status::SKIPPED
        } else {
            rolled
        }
        .to_string();
        s.end_time = at;
    });
    Ok(c.task.stages[si].status.clone())
}

fn stage_approval_error(stage: &crate::workflow::task::StageTask) -> String {
    let kind = stage.approval.as_ref().map_or("", |a| a.kind.as_str());
    work::missing_integration(&format!("stage approval of type {kind}"), "im")
}

async fn end_stage(
    state: &AppState,
    ctl: &Ctl,
    si: usize,
    st: &str,
    error: &str,
) -> Result<String, Stop> {
    let at = now(state);
    let mut c = ctl.lock().await;
    c.update(|t| {
        if t.status == status::WAIT_FOR_APPROVAL {
            t.status = status::RUNNING.to_string();
        }
        let s = &mut t.stages[si];
        s.status = st.to_string();
        s.error = error.to_string();
        s.end_time = at;
    })
    .await?;
    Ok(st.to_string())
}

/// Wait for a stage's native approval. `Waiting` comes back when the wait ended without a
/// decision: the task was cancelled, or the approval type needs an integration.
async fn stage_approval(
    state: &AppState,
    ctl: &Ctl,
    reg: &Registered,
    si: usize,
) -> Result<Decision, Stop> {
    let at_ms = state.clock.now_ms();
    let kind = {
        let mut c = ctl.lock().await;
        c.update(|t| {
            if t.status != status::CANCELLED {
                t.status = status::WAIT_FOR_APPROVAL.to_string();
            }
            let s = &mut t.stages[si];
            s.status = status::WAIT_FOR_APPROVAL.to_string();
            if let Some(a) = &mut s.approval {
                a.reject_or_approve.clear();
                approval::clear_votes(&mut a.approve_users);
                a.wait_start_ms = at_ms;
            }
        })
        .await?;
        c.task.stages[si]
            .approval
            .as_ref()
            .map(|a| a.kind.clone())
            .unwrap_or_default()
    };
    if !(kind.is_empty() || kind == "native") {
        return Ok(Decision::Waiting);
    }
    let decision = wait_votes(state, ctl, reg, |t| {
        let a = t.stages[si].approval.clone().unwrap_or_default();
        let deadline = approval::deadline_ms(a.wait_start_ms, a.timeout);
        (
            approval::decide(
                &a.approve_users,
                a.needed_approvers,
                deadline,
                state.clock.now_ms(),
            ),
            deadline,
        )
    })
    .await?;
    let mut c = ctl.lock().await;
    c.update(|t| {
        let approved = decision == Decision::Approved;
        if approved && t.status == status::WAIT_FOR_APPROVAL {
            t.status = status::RUNNING.to_string();
        }
        let s = &mut t.stages[si];
        if approved {
            s.status = status::RUNNING.to_string();
        }
        if let Some(a) = &mut s.approval {
            a.reject_or_approve = match decision {
                Decision::Approved => "approve",
                Decision::Rejected(_) => "reject",
                _ => "",
            }
            .to_string();
        }
    })
    .await?;
    Ok(decision)
}

/// Wait until `decide` (run on the latest task) says something else than `Waiting`, waking
/// on a vote, the deadline, the cancel token, and a periodic re-read (votes recorded through
/// another replica). `Waiting` comes back when cancelled.
async fn wait_votes(
    state: &AppState,
    ctl: &Ctl,
    reg: &Registered,
    decide: impl Fn(&Task) -> (Decision, i64),
) -> Result<Decision, Stop> {
    let sweep = Duration::from_millis(state.config.engine_sweep_interval_ms);
    loop {
        let voted = reg.votes.notified();
        let (decision, deadline) = decide(&ctl.lock().await.task);
        if decision != Decision::Waiting {
            return Ok(decision);
        }
        tokio::select! {
            () = reg.cancel.cancelled() => return Ok(Decision::Waiting),
            () = voted => {}
            () = state.clock.sleep_until(deadline) => {}
            () = tokio::time::sleep(sweep) => {}
        }
        ctl.lock().await.refresh().await?;
    }
}

/// The task context for rendering (`{{.workflow.params.x}}`, `{{.job.<key>.output.X}}`, …).
fn context_of(task: &Task) -> BTreeMap<String, String> {
    let mut ctx = BTreeMap::new();
    let mut put = |k: String, v: String| {
        ctx.insert(k, v);
    };
    put("project".into(), task.project_name.clone());
    put("project.id".into(), task.project_name.clone());
    put("project.name".into(), task.project_name.clone());
    put("workflow.id".into(), task.workflow_name.clone());
    put("workflow.name".into(), task.workflow_name.clone());
    put(
        "workflow.display_name".into(),
        task.workflow_display_name.clone(),
    );
    put("workflow.task.id".into(), task.task_id.to_string());
    put("workflow.task.creator".into(), task.task_creator.clone());
    put(
        "workflow.task.creator.id".into(),
        task.task_creator_account.clone(),
    );
    put(
        "workflow.task.creator.userId".into(),
        task.task_creator_id.clone(),
    );
    put(
        "workflow.task.timestamp".into(),
        task.create_time.to_string(),
    );
    for p in &task.params {
        if let Some(name) = p.get("name").and_then(Value::as_str) {
            put(
                format!("workflow.params.{name}"),
                value_text(p.get("value")),
            );
        }
    }
    for s in &task.stages {
        for j in &s.jobs {
            let key = job_key(j);
            put(format!("job.{key}.status"), j.status.clone());
            for (k, v) in &j.outputs {
                put(format!("job.{key}.output.{k}"), v.clone());
            }
            for list in ["envs", "key_vals"] {
                for kv in j
                    .spec
                    .get(list)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(k) = kv.get("key").and_then(Value::as_str) {
                        put(format!("job.{key}.{k}"), value_text(kv.get("value")));
                    }
                }
            }
        }
    }
    ctx
}

fn value_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => String::new(),
        Some(other) => other.to_string(),
    }
}

/// A job task's key in the context: the workflow job name, plus `.<service>.<module>` for a
/// service job task (`{{.job.build.svc.mod.output.IMAGE}}`).
pub fn job_key(j: &JobTask) -> String {
    let base = [&j.key, &j.origin_name, &j.name]
        .into_iter()
        .find(|s| !s.is_empty())
        .cloned()
        .unwrap_or_default();
    let svc = j
        .spec
        .get("service_name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let module = j
        .spec
        .get("service_module")
        .and_then(Value::as_str)
        .unwrap_or("");
    if svc.is_empty() || base.ends_with(&format!(".{svc}.{module}")) {
        base
    } else {
        format!("{base}.{svc}.{module}")
    }
}

fn job_context(task: &Task, job: &JobTask) -> JobContext {
    let mut params = Vec::new();
    let mut secrets = Vec::new();
    for p in &task.params {
        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
        let kind = p.get("type").and_then(Value::as_str).unwrap_or("");
        let value = value_text(p.get("value"));
        if p.get("is_credential")
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            secrets.push(value.clone());
        }
        if !name.is_empty() && kind != "repo" && kind != "file" {
            params.push((name.to_string(), value));
        }
    }
    JobContext {
        project: task.project_name.clone(),
        workflow: task.workflow_name.clone(),
        task_id: task.task_id,
        job_name: job.name.clone(),
        job_type: job.job_type.clone(),
        spec: job.spec.clone(),
        params,
        secrets,
        context: context_of(task),
        creator: task.task_creator.clone(),
    }
}

/// Run one job task; returns its final status (`""` when it never started).
async fn run_job_task(
    state: &AppState,
    ctl: &Ctl,
    reg: &Registered,
    si: usize,
    ji: usize,
) -> Result<String, Stop> {
    if reg.cancel.is_cancelled() {
        return Ok(String::new());
    }
    let (job, ctx) = {
        let c = ctl.lock().await;
        let job = c.task.stages[si].jobs[ji].clone();
        let ctx = job_context(&c.task, &job);
        (job, ctx)
    };
    if job.job_type == "approval" {
        return approval_job(state, ctl, reg, si, ji).await;
    }
    match execute_policy(&job.execute_policy, &ctx.context) {
        Ok(true) => {}
        Ok(false) => {
            let at = now(state);
            set_job(ctl, si, ji, |j| {
                j.status = status::SKIPPED.to_string();
                j.start_time = at;
                j.end_time = at;
            })
            .await?;
            return Ok(status::SKIPPED.to_string());
        }
        Err(e) => {
            let at = now(state);
            set_job(ctl, si, ji, |j| {
                j.status = status::FAILED.to_string();
                j.error = e.clone();
                j.start_time = at;
                j.end_time = at;
            })
            .await?;
            return Ok(status::FAILED.to_string());
        }
    }
    let policy = job
        .error_policy
        .get("policy")
        .and_then(Value::as_str)
        .unwrap_or("stop")
        .to_string();
    let max_retry = job
        .error_policy
        .get("maximum_retry")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        .max(0);
    let mut attempt = 0;
    loop {
        let at = now(state);
        set_job(ctl, si, ji, |j| {
            j.status = status::RUNNING.to_string();
            j.start_time = at;
            j.end_time = 0;
            j.error.clear();
            j.outputs.clear();
            j.retry_count = attempt;
        })
        .await?;
        let mut attempt_ctx = ctx.clone();
        // Outputs of jobs that ended since the context was taken (earlier stages are final).
        attempt_ctx.context = context_of(&ctl.lock().await.task);
        let mut end = executor::run_job(state, attempt_ctx, reg.cancel.child_token()).await;
        if job.job_type == "zadig-build"
            && let Some(image) = end.outputs.get("IMAGE").cloned()
        {
            end.outputs
                .insert("IMAGETAG".into(), work::image_tag(&image));
        }
        let failed = matches!(end.status, JobStatus::Failed | JobStatus::Timeout);
        if failed && policy == "retry" && attempt < max_retry && !reg.cancel.is_cancelled() {
            attempt += 1;
            let until = state.clock.now_ms() + RETRY_PAUSE_MS;
            tokio::select! {
                () = state.clock.sleep_until(until) => continue,
                () = reg.cancel.cancelled() => {}
            }
        }
        let mut st = end.status.as_str();
        let mut error = end.error.clone();
        if failed && policy == "ignore_error" {
            st = status::UNSTABLE;
        } else if failed && policy == "manual_check" && !reg.cancel.is_cancelled() {
            match manual_error_handling(state, ctl, reg, si, ji, &end).await? {
                Decision::Approved => st = status::UNSTABLE,
                Decision::Rejected(user) => error = format!("{error} (rejected by {user})"),
                Decision::Waiting | Decision::TimedOut => {
                    st = status::CANCELLED;
                    error = "workflow was canceled".to_string();
                }
            }
        }
        let at = now(state);
        set_job(ctl, si, ji, |j| {
            j.status = st.to_string();
            j.error = error.clone();
            j.end_time = at;
            j.outputs = end.outputs.clone();
        })
        .await?;
        tracing::debug!(workflow = %ctx.workflow, task_id = ctx.task_id, job = %job.name, "job {} ended {st}", job.name);
        return Ok(st.to_string());
    }
}

async fn set_job(ctl: &Ctl, si: usize, ji: usize, f: impl Fn(&mut JobTask)) -> Result<(), Stop> {
    ctl.lock()
        .await
        .update(|t| {
            if let Some(j) = t.stages.get_mut(si).and_then(|s| s.jobs.get_mut(ji)) {
                f(j);
            }
        })
        .await
}

/// A failed job under the `manual_check` error policy (spec §5.3): it waits, holding the
/// task's slot, until a user records `ignore` (→ `Approved`: the job becomes `unstable`) or
/// `reject` (→ `Rejected`: the job keeps its failure) in its spec's `error_handling`; `Waiting`
/// when the task was cancelled meanwhile.
async fn manual_error_handling(
    state: &AppState,
    ctl: &Ctl,
    reg: &Registered,
    si: usize,
    ji: usize,
    end: &executor::JobEnd,
) -> Result<Decision, Stop> {
    set_job(ctl, si, ji, |j| {
        j.status = status::WAIT_FOR_MANUAL_ERROR_HANDLING.to_string();
        j.error = end.error.clone();
        j.outputs = end.outputs.clone();
        if let Some(spec) = j.spec.as_object_mut() {
            spec.remove(ERROR_HANDLING);
        }
        j.error_handler_user_id.clear();
        j.error_handler_username.clear();
    })
    .await?;
    // No deadline: the decision is a person's (a cancel ends the wait); the wait is re-armed
    // every day.
    const DAY_MS: i64 = 24 * 3600 * 1000;
    wait_votes(state, ctl, reg, |t| {
        let h = t.stages[si].jobs[ji].spec.get(ERROR_HANDLING);
        let text = |k: &str| {
            h.and_then(|h| h.get(k))
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        let decision = match text("decision") {
            "ignore" => Decision::Approved,
            "reject" => Decision::Rejected(text("user").to_string()),
            _ => Decision::Waiting,
        };
        (decision, state.clock.now_ms() + DAY_MS)
    })
    .await
}

/// Where the manual error-handling decision is recorded on a job task's spec.
pub const ERROR_HANDLING: &str = "error_handling";

/// An `approval` job: waits for the votes recorded on its spec.
async fn approval_job(
    state: &AppState,
    ctl: &Ctl,
    reg: &Registered,
    si: usize,
    ji: usize,
) -> Result<String, Stop> {
    let at = now(state);
    set_job(ctl, si, ji, |j| {
        j.status = status::WAIT_FOR_APPROVAL.to_string();
        j.start_time = at;
        j.end_time = 0;
        j.error.clear();
        approval::clear_job_votes(&mut j.spec);
    })
    .await?;
    let kind = JobApproval::from_spec(&ctl.lock().await.task.stages[si].jobs[ji].spec).kind;
    let (st, error) = if kind != "native" {
        (
            status::FAILED,
            work::missing_integration(&format!("approval ({kind})"), "im"),
        )
    } else {
        let decision = wait_votes(state, ctl, reg, |t| {
            let j = &t.stages[si].jobs[ji];
            let a = JobApproval::from_spec(&j.spec);
            let deadline =
                approval::deadline_ms(j.start_time.saturating_mul(1000), a.timeout_minutes);
            (
                approval::decide(&a.users, a.needed_approvers, deadline, state.clock.now_ms()),
                deadline,
            )
        })
        .await?;
        match decision {
            Decision::Approved => (status::PASSED, String::new()),
            Decision::Rejected(u) => (status::REJECT, format!("{u} reject this task")),
            Decision::TimedOut => (status::TIMEOUT, "approval timed out".to_string()),
            Decision::Waiting => (status::CANCELLED, "workflow was canceled".to_string()),
        }
    };
    let at = now(state);
    set_job(ctl, si, ji, |j| {
        j.status = st.to_string();
        j.error = error.clone();
        j.end_time = at;
    })
    .await?;
    Ok(st.to_string())
}

/// Evaluate a job's `execute_policy` (`{type: skip|execute, match_rule: all|any, rules:
/// [{field, verb, value}]}`): whether the job runs.
pub fn execute_policy(policy: &Value, ctx: &BTreeMap<String, String>) -> Result<bool, String> {
    let rules = policy
        .get("rules")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    if rules.is_empty() {
        return Ok(true);
    }
    let mut results = Vec::new();
    for r in rules {
        let field = super::render::render_str(&value_text(r.get("field")), ctx);
        let value = super::render::render_str(&value_text(r.get("value")), ctx);
        let verb = value_text(r.get("verb"));
        let hit = match verb.as_str() {
            "=" | "==" | "eq" | "equal" => field == value,
            "!=" | "neq" | "not-equal" | "not_equal" => field != value,
            "contains" => field.contains(&value),
            "not-contains" | "not_contains" | "not-contain" => !field.contains(&value),
            "in" => value.split(',').map(str::trim).any(|v| v == field),
            "not-in" | "not_in" => !value.split(',').map(str::trim).any(|v| v == field),
            other => {
                return Err(format!(
                    "execute_policy: unknown verb {other:?} in rule on {field:?}"
                ));
            }
        };
        results.push(hit);
    }
    let matched = match value_text(policy.get("match_rule")).as_str() {
        "any" => results.iter().any(|x| *x),
        _ => results.iter().all(|x| *x),
    };
    Ok(match value_text(policy.get("type")).as_str() {
        "skip" => !matched,
        _ => matched,
    })
}

/// A task the API cancelled while it waited in the queue never had a runner: tell the release
/// plan that started it (once).
pub(super) async fn finish_unclaimed_cancel(state: &AppState, workflow: &str, task_id: i64) {
    let task = match state.tasks.get(workflow, task_id).await {
        Ok(Some(t)) => t,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(workflow, task_id, "cannot read cancelled task: {e}");
            return;
        }
    };
    if task.status != status::CANCELLED || !task.lease_owner.is_empty() || task.final_notified {
        return;
    }
    let filter = Filter::id(&task.id)
        .and(Filter::eq("status", status::CANCELLED))
        .and(Filter::eq("lease_owner", ""))
        .and(Filter::eq("final_notified", false));
    let update = Update::new().set("final_notified", true).inc("version", 1);
    match state.tasks.tasks.update_one(&filter, &update).await {
        Ok(true) => {
            if let Some(r) = &task.release {
                state
                    .task_finished
                    .publish(state, r, task_id, status::CANCELLED)
                    .await;
            }
        }
        Ok(false) => {}
        Err(e) => tracing::warn!(workflow, task_id, "cannot mark cancelled task: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execute_policy_rules() {
        let ctx: BTreeMap<String, String> =
            [("workflow.params.env".to_string(), "prod".to_string())].into();
        let p = serde_json::json!({"type": "execute", "match_rule": "all",
            "rules": [{"field": "{{.workflow.params.env}}", "verb": "=", "value": "prod"}]});
        assert_eq!(execute_policy(&p, &ctx), Ok(true));
        let p = serde_json::json!({"type": "skip", "match_rule": "any",
            "rules": [{"field": "{{.workflow.params.env}}", "verb": "contains", "value": "pro"}]});
        assert_eq!(execute_policy(&p, &ctx), Ok(false));
        assert_eq!(execute_policy(&Value::Null, &ctx), Ok(true));
        let bad = serde_json::json!({"rules": [{"field": "a", "verb": "~", "value": "b"}]});
        assert!(execute_policy(&bad, &ctx).is_err());
    }

    #[test]
    fn job_keys() {
        let mut j = JobTask {
            name: "job-0-0-0-build".into(),
            key: "build".into(),
            spec: serde_json::json!({"service_name": "svc", "service_module": "mod"}),
            ..JobTask::default()
        };
        assert_eq!(job_key(&j), "build.svc.mod");
        j.key = "build.svc.mod".into();
        assert_eq!(job_key(&j), "build.svc.mod");
    }
}
