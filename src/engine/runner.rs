//! Driving one claimed task through its stages and jobs (spec/workflow.md §5).
//!
//! Stages run in order; stages (and job tasks) already `passed`/`skipped`/`unstable` are kept,
//! which is how a retry resumes. A parallel stage runs its job tasks concurrently (at most
//! `engine_parallel_jobs` at once) and all of them to their end; a sequential stage stops at
//! the first job that fails. A stage with a native `approval` waits for the votes first; an
//! `approval` job waits for its own. Statuses roll up per §5.2.
//!
//! Every write goes through [`TaskCtl::update`] (`task_ctl.rs`). Waiting for votes and
//! decisions is in `waits.rs`; the rendering context and execute policies in
//! `job_context.rs`.

use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::Mutex;

use super::approval::Decision;
use super::clean_ups::{self, Note};
use super::executor::{self, JobContext, JobEnd, JobStatus};
use super::job_context::{context_of, execute_policy, job_context};
use super::task_ctl::{Ctl, Stop, TaskCtl};
use super::waits::{approval_job, manual_error_handling, stage_approval, stage_approval_error};
use super::{Registered, rollup};
use crate::state::AppState;
use crate::store::{Filter, Update};
use crate::workflow::approval::ManualExec;
use crate::workflow::jobs::{JobKind, JobType, Runs};
use crate::workflow::model::{ErrorPolicy, OnError};
use crate::workflow::notify::pending;
use crate::workflow::task::{JobTask, Status, Task, Timed};

/// The error of a task whose process died (or stopped) while it ran.
pub const RESTART_ERROR: &str = "server restarted while the task was running";

/// The error of a task whose writes kept failing.
const STORE_ERROR: &str = "the store failed while the task was running";

/// Pause between attempts of a job whose error policy is `retry` (Zadig's 10 s).
const RETRY_PAUSE_MS: i64 = 10_000;

pub(super) fn now(state: &AppState) -> i64 {
    state.clock.now()
}

/// One job task of the task being run: where it is (job `ji` of stage `si`) and what every
/// step of running it needs — the state, the task under its lock, the task's registration
/// (cancel token, vote wake-ups).
#[derive(Clone, Copy)]
pub(super) struct JobRun<'a> {
    pub state: &'a AppState,
    pub ctl: &'a Ctl,
    pub reg: &'a Registered,
    pub si: usize,
    pub ji: usize,
}

impl JobRun<'_> {
    /// This job task in `t`.
    pub fn of<'t>(&self, t: &'t Task) -> &'t JobTask {
        &t.stages[self.si].jobs[self.ji]
    }

    /// Change the job task (and store the task).
    pub async fn set(&self, f: impl Fn(&mut JobTask)) -> Result<(), Stop> {
        self.set_telling(None, f).await
    }

    /// [`Self::set`], recording that the task's status changed to `event` (if any) with the
    /// same write and queueing its notifications after it.
    pub async fn set_telling(
        &self,
        event: Option<Status>,
        f: impl Fn(&mut JobTask),
    ) -> Result<(), Stop> {
        let (si, ji, at_ms) = (self.si, self.ji, self.state.clock.now_ms());
        let mut c = self.ctl.lock().await;
        c.update(|t| {
            if let Some(j) = t.stages.get_mut(si).and_then(|s| s.jobs.get_mut(ji)) {
                f(j);
            }
            if let Some(e) = event {
                pending::record(t, e, at_ms);
            }
        })
        .await?;
        pending::flush(self.state, &mut c.task).await;
        Ok(())
    }
}

/// Run a claimed task to its end (or until it is cancelled, lost, or the server stops).
pub(super) async fn run(state: AppState, task: Task, reg: Registered) {
    let key = (task.workflow_name.clone(), task.task_id);
    tracing::info!(workflow = %key.0, task_id = key.1, "task {}#{} started", key.0, key.1);
    if task.status == Status::Cancelled {
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
        let done = rollup::is_done(ctl.lock().await.task.stages[si].status);
        if done {
            continue;
        }
        let end = run_stage(state, ctl, reg, si).await?;
        if rollup::stops_sequence(end) {
            break;
        }
    }
    Ok(())
}

/// End every stage and job task still open (running, preparing, waiting for approval) with
/// `status` and `error`; then close the task itself: `status` (a task cancelled by the API
/// stays `cancelled`, keeping its own error), `end_time`, the lease given back.
pub(super) fn end_task(t: &mut Task, status: Status, error: &str, at: i64) {
    const OPEN: &[Status] = &[
        Status::Running,
        Status::WaitForApproval,
        Status::WaitForManualErrorHandling,
        Status::Prepare,
    ];
    let (status, error) = if t.status == Status::Cancelled {
        (Status::Cancelled, "workflow was canceled")
    } else {
        (status, error)
    };
    for s in &mut t.stages {
        for j in &mut s.jobs {
            if OPEN.contains(&j.status) {
                j.end(status, error, at);
            }
        }
        if OPEN.contains(&s.status) {
            s.end(status, error, at);
        }
    }
    if t.status != Status::Cancelled {
        t.status = status;
        t.error = error.to_string();
    }
    t.end_time = at;
    t.lease_owner.clear();
    t.lease_until_ms = 0;
    t.final_notified = t.status.is_final();
}

/// Let each job task's type undo what it set up for the task's duration only
/// ([`crate::workflow::jobs::JobKind::clean`]), a few times a little apart (a cluster that
/// blinked); what still could not be undone is kept to be retried in the background
/// ([`super::clean_ups`]). Returns what the job tasks' errors must say about it: that, and
/// what a clean-up left to a newer task.
pub(super) async fn clean_up(state: &AppState, task: &Task) -> Vec<Note> {
    use std::time::Duration;
    const PAUSES: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(4)];
    let (mut failed, mut notes) = (Vec::new(), Vec::new());
    for job in task.stages.iter().flat_map(|s| &s.jobs) {
        let Some(ty) = job.kind() else { continue };
        let mut done = ty.kind().clean(state, &task.project_name, job).await;
        for pause in PAUSES {
            if done.is_ok() {
                break;
            }
            tokio::time::sleep(pause).await;
            done = ty.kind().clean(state, &task.project_name, job).await;
        }
        match done {
            Ok(None) => {}
            Ok(Some(left)) => notes.push(Note {
                job: job.name.clone(),
                old: None,
                new: left,
                append: true,
            }),
            Err(e) => {
                tracing::warn!(workflow = %task.workflow_name, task_id = task.task_id, job = %job.name,
                    "clean-up of job {} failed (retried in the background): {e}", job.name);
                failed.push((job.name.clone(), e));
            }
        }
    }
    notes.extend(clean_ups::keep(state, task, &failed).await);
    notes
}

/// Clean up after the task's job tasks, then write the task's end — the roll-up of its
/// stages, or `failed` with `interrupted` when the server stopped under it, or `cancelled` —
/// and tell the release plan. Cleaning comes first: a runner that dies meanwhile leaves the
/// task to recovery, which cleans again.
async fn finalize(state: &AppState, ctl: &Ctl, interrupted: Option<&str>) {
    let task = ctl.lock().await.task.clone();
    let unclean = clean_up(state, &task).await;
    let (at, at_ms) = (now(state), state.clock.now_ms());
    let mut c = ctl.lock().await;
    let res = c
        .update(|t| {
            match interrupted {
                Some(why) => end_task(t, Status::Failed, why, at),
                None => {
                    let rolled = rollup::task_status(t.stages.iter().map(|s| s.status));
                    let rolled = match rolled {
                        Status::Running if t.stages.is_empty() => Status::Passed,
                        Status::Running => Status::Failed,
                        s => s,
                    };
                    end_task(t, rolled, "", at);
                }
            }
            clean_ups::apply_notes(t, &unclean);
            let ended = t.status;
            pending::record(t, ended, at_ms);
        })
        .await;
    if res.is_ok() {
        pending::flush(state, &mut c.task).await;
    }
    let task = c.task.clone();
    drop(c);
    match res {
        Ok(()) => {
            tracing::info!(workflow = %task.workflow_name, task_id = task.task_id,
                "task {}#{} ended {}", task.workflow_name, task.task_id, task.status);
            metrics::counter!("engine_tasks_finished_total", "status" => task.status.as_str())
                .increment(1);
            if task.status.is_final() {
                state.task_finished.publish(state, &task, task.status).await;
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
) -> Result<Status, Stop> {
    let at = now(state);
    let stage = {
        let mut c = ctl.lock().await;
        c.defer(move |t| t.stages[si].begin(Status::Running, at));
        c.task.stages[si].clone()
    };
    // A setting stored before lint checked it fails the stage rather than read as "no gate".
    let manual = match ManualExec::read(&stage.manual_exec, "manual_exec") {
        Ok(m) => m.waits(),
        Err(e) => return end_stage(state, ctl, si, Status::Failed, &e.description).await,
    };
    if let Some((st, error)) = stage_gate(state, ctl, reg, si, &stage, manual).await? {
        return end_stage(state, ctl, si, st, &error).await;
    }
    let todo: Vec<usize> = stage
        .jobs
        .iter()
        .enumerate()
        .filter(|(_, j)| !rollup::is_done(j.status))
        .map(|(i, _)| i)
        .collect();
    let job = |ji| JobRun {
        state,
        ctl,
        reg,
        si,
        ji,
    };
    if stage.parallel {
        let bound = state.config.engine_parallel_jobs;
        futures::stream::iter(todo)
            .map(|ji| run_job_task(job(ji)))
            .buffer_unordered(bound)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
    } else {
        for ji in todo {
            let st = run_job_task(job(ji)).await?;
            if rollup::stops_sequence(st) {
                break;
            }
        }
    }
    let at = now(state);
    let cancelled = reg.cancel.is_cancelled();
    let mut c = ctl.lock().await;
    // Stored with the next write (the next job's start, or the task's end).
    c.defer(move |t| {
        let task_cancelled = cancelled || t.status == Status::Cancelled;
        let s = &mut t.stages[si];
        let rolled = rollup::stage_status(task_cancelled, s.jobs.iter().map(|j| j.status));
        s.status = if rolled == Status::Running && s.jobs.is_empty() {
            Status::Skipped
        } else {
            rolled
        };
        s.end_time = at;
    });
    Ok(c.task.stages[si].status)
}

/// What stops a stage before its jobs: a manual trigger not given yet (the task pauses and
/// frees its slot, §5.8), or a native approval that did not pass. `None`: the jobs run.
async fn stage_gate(
    state: &AppState,
    ctl: &Ctl,
    reg: &Registered,
    si: usize,
    stage: &crate::workflow::task::StageTask,
    manual: bool,
) -> Result<Option<(Status, String)>, Stop> {
    if manual {
        return Ok(Some((
            Status::Pause,
            "the stage waits for manual execution".to_string(),
        )));
    }
    if !stage.approval.as_ref().is_some_and(|a| a.enabled) {
        return Ok(None);
    }
    Ok(match stage_approval(state, ctl, reg, si).await? {
        Decision::Approved => None,
        Decision::Rejected(user) => Some((Status::Reject, format!("{user} reject this task"))),
        Decision::TimedOut => Some((Status::Timeout, "approval timed out".to_string())),
        Decision::Waiting if reg.cancel.is_cancelled() => {
            Some((Status::Cancelled, "workflow was canceled".to_string()))
        }
        Decision::Waiting => Some((Status::Failed, stage_approval_error(stage))),
        Decision::Invalid(error) => Some((Status::Failed, error)),
    })
}

async fn end_stage(
    state: &AppState,
    ctl: &Ctl,
    si: usize,
    st: Status,
    error: &str,
) -> Result<Status, Stop> {
    let at = now(state);
    let mut c = ctl.lock().await;
    c.update(|t| {
        if t.status == Status::WaitForApproval {
            t.status = Status::Running;
        }
        t.stages[si].end(st, error, at);
    })
    .await?;
    Ok(st)
}

/// Run one job task; returns its final status (`""` when it never started).
async fn run_job_task(this: JobRun<'_>) -> Result<Status, Stop> {
    let (state, reg) = (this.state, this.reg);
    if reg.cancel.is_cancelled() {
        return Ok(Status::NotRun);
    }
    let (job, ctx) = {
        let c = this.ctl.lock().await;
        let job = this.of(&c.task).clone();
        let ctx = job_context(&c.task, &job);
        (job, ctx)
    };
    let kind = job.kind().map(JobType::kind);
    if kind.is_some_and(|k| k.runs() == Runs::Votes) {
        return approval_job(this).await;
    }
    let ready = ctx
        .map_err(|e| (Status::Failed, e))
        .and_then(|ctx| Ok((runs_at_all(&job, &ctx)?, ctx)));
    let (policy, ctx) = match ready {
        Ok(ready) => ready,
        Err((st, error)) => {
            let at = now(state);
            this.set(|j| {
                j.status = st;
                j.error.clone_from(&error);
                j.start_time = at;
                j.end_time = at;
            })
            .await?;
            return Ok(st);
        }
    };
    let max_retry = policy.maximum_retry.max(0);
    let mut attempt = 0;
    loop {
        let end = run_attempt(this, &ctx, kind, attempt).await?;
        let failed = matches!(end.status, JobStatus::Failed | JobStatus::Timeout);
        if failed
            && policy.policy == OnError::Retry
            && attempt < max_retry
            && !reg.cancel.is_cancelled()
        {
            attempt += 1;
            let until = state.clock.now_ms() + RETRY_PAUSE_MS;
            if retry_pause(state, reg, until).await {
                continue;
            }
        }
        let (st, error) = if failed {
            on_failure(this, policy.policy, &end).await?
        } else {
            (Status::from(end.status), end.error.clone())
        };
        record_end(this, st, &error, &end).await?;
        tracing::debug!(workflow = %ctx.workflow, task_id = ctx.task_id, job = %job.name, "job {} ended {st}", job.name);
        return Ok(st);
    }
}

/// One attempt (`attempt`, 0 the first) at the job task: marked running, run with the outputs
/// of the jobs that ended so far.
async fn run_attempt(
    this: JobRun<'_>,
    ctx: &JobContext,
    kind: Option<&'static dyn JobKind>,
    attempt: i64,
) -> Result<JobEnd, Stop> {
    let at = now(this.state);
    this.set(|j| {
        j.begin(Status::Running, at);
        j.outputs.clear();
        j.retry_count = attempt;
    })
    .await?;
    let mut attempt_ctx = ctx.clone();
    // Outputs of jobs that ended since the context was taken (earlier stages are final).
    attempt_ctx.context = match context_of(&this.ctl.lock().await.task) {
        Ok(context) => context,
        Err(e) => return Ok(JobEnd::failed(e)),
    };
    let cancel = this.reg.cancel.child_token();
    let mut end = executor::run_job(this.state, attempt_ctx, cancel).await;
    if let Some(k) = kind {
        k.finish_outputs(&mut end.outputs);
    }
    Ok(end)
}

/// Record how the job task ended: its status, error, outputs, and what it recorded in its spec.
async fn record_end(this: JobRun<'_>, st: Status, error: &str, end: &JobEnd) -> Result<(), Stop> {
    let at = now(this.state);
    this.set(|j| {
        j.end(st, error, at);
        j.outputs = end.outputs.clone();
        if let Some(spec) = j.spec.as_object_mut() {
            spec.extend(end.record.clone());
        }
    })
    .await
}

/// Whether a job task runs: its `execute_policy` may skip it (or fail it, when a rule is
/// malformed), and a malformed `error_policy` fails it naming the field — never a silent
/// `stop`. `Ok`: it runs under that error policy; `Err`: it ends now with that status.
fn runs_at_all(job: &JobTask, ctx: &JobContext) -> Result<ErrorPolicy, (Status, String)> {
    match execute_policy(&job.execute_policy, &ctx.context) {
        Ok(true) => {}
        Ok(false) => return Err((Status::Skipped, String::new())),
        Err(e) => return Err((Status::Failed, e)),
    }
    ErrorPolicy::of(&job.error_policy).map_err(|e| (Status::Failed, e))
}

/// Wait until `until` (ms) before a retry; `false` when the task was cancelled meanwhile.
async fn retry_pause(state: &AppState, reg: &Registered, until: i64) -> bool {
    tokio::select! {
        () = state.clock.sleep_until(until) => true,
        () = reg.cancel.cancelled() => false,
    }
}

/// A failed job's end under its error policy: `ignore_error` → `unstable`; `manual_check` →
/// waits for a person's decision (`ignore` → `unstable`, `reject` keeps the failure); else the
/// failure as it is.
async fn on_failure(
    this: JobRun<'_>,
    policy: OnError,
    end: &executor::JobEnd,
) -> Result<(Status, String), Stop> {
    let failure = (Status::from(end.status), end.error.clone());
    Ok(match policy {
        OnError::IgnoreError => (Status::Unstable, end.error.clone()),
        OnError::ManualCheck if !this.reg.cancel.is_cancelled() => {
            match manual_error_handling(this, end).await? {
                Decision::Approved => (Status::Unstable, end.error.clone()),
                Decision::Rejected(user) => {
                    (failure.0, format!("{} (rejected by {user})", end.error))
                }
                Decision::Waiting | Decision::TimedOut => {
                    (Status::Cancelled, "workflow was canceled".to_string())
                }
                Decision::Invalid(error) => (failure.0, error),
            }
        }
        _ => failure,
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
    if task.status != Status::Cancelled || !task.lease_owner.is_empty() || task.final_notified {
        return;
    }
    let filter = Filter::id(&task.id)
        .and(Filter::eq("status", Status::Cancelled.as_str()))
        .and(Filter::eq("lease_owner", ""))
        .and(Filter::eq("final_notified", false));
    let update = Update::new().set("final_notified", true).inc("version", 1);
    match state.tasks.tasks.update_one(&filter, &update).await {
        Ok(true) => {
            // Its notifications were told with the cancel (`workflow::tasks::cancel`).
            state
                .task_finished
                .publish(state, &task, Status::Cancelled)
                .await;
        }
        Ok(false) => {}
        Err(e) => tracing::warn!(workflow, task_id, "cannot mark cancelled task: {e}"),
    }
}
