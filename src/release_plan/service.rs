//! The release-plan service: validates requests, runs the state machine on the stored plan,
//! saves the outcome with a conditional update on `version` (retrying on a lost race) and then
//! carries out the effects — operation records, workflow tasks, waking the scheduler.
//!
//! Every writer (API calls, the engine's task notifications, the scheduler) goes through
//! [`apply`], so racing writers never lose each other's changes.

use axum::body::Bytes;
use rand::RngCore;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::hooks::{HookSetting, SETTING_ID};
use super::input::{
    self, ApproveInput, CallbackInput, HookSettingInput, JobActionInput, PlanInput,
};
use super::machine::{self, Actor, CallbackResult, Ctx, Effect, Event, RejectKind, Rejection};
use super::model::{HookEvent, HookSnapshot, JobKind, PendingHook, ReleasePlan, Status};
use super::store::LogRecord;
use crate::auth::Identity;
use crate::error::{ApiError, ApiResult, ErrorKind};
use crate::state::AppState;
use crate::store::retry::{self, Attempts};
use crate::store::{Dir, Filter, FindOptions, StoreError};
use crate::validate;
use crate::workflow::ReleaseRef;

impl From<&Identity> for Actor {
    fn from(i: &Identity) -> Self {
        Actor {
            uid: i.uid.clone(),
            name: i.name.clone(),
            account: i.account.clone(),
            is_admin: i.is_admin,
        }
    }
}

impl From<&Actor> for Identity {
    fn from(a: &Actor) -> Self {
        Identity {
            uid: a.uid.clone(),
            account: a.account.clone(),
            name: a.name.clone(),
            identity_type: "system".to_string(),
            is_admin: a.is_admin,
        }
    }
}

/// The identity background work acts as (task creator of scheduled executions).
pub fn system_identity() -> Identity {
    Identity {
        uid: String::new(),
        account: "system".to_string(),
        name: machine::SYSTEM_NAME.to_string(),
        identity_type: "system".to_string(),
        is_admin: true,
    }
}

fn rejection(r: Rejection) -> ApiError {
    match r.kind {
        RejectKind::BadRequest => ApiError::bad_request(r.message),
        RejectKind::Forbidden => ApiError::forbidden(r.message),
        RejectKind::NotFound => ApiError::not_found(r.message),
        RejectKind::Conflict => ApiError::conflict(r.message),
    }
}

/// 16 lowercase hex characters (spec §3.5: a fresh random code at the same moments).
pub fn new_instance_code() -> String {
    let mut b = [0u8; 8];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

fn check_id(id: &str) -> ApiResult<()> {
    validate::object_id("id", id)
}

async fn load(state: &AppState, id: &str) -> ApiResult<ReleasePlan> {
    state
        .release_plans
        .get(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("release plan {id} not found")))
}

/// A saved change.
pub struct Applied {
    /// The plan as it was read before the change.
    pub before: ReleasePlan,
    /// The plan as saved.
    pub plan: ReleasePlan,
    pub effects: Vec<Effect>,
    /// The change was saved, but the call fails with this (e.g. timed out on execute).
    pub error: Option<Rejection>,
}

impl Applied {
    fn started_jobs(&self) -> impl Iterator<Item = &str> {
        self.effects.iter().filter_map(|e| match e {
            Effect::StartTask { job_id } => Some(job_id.as_str()),
            _ => None,
        })
    }

    /// The workflow tasks to cancel (workflow key, task id).
    fn cancels(&self) -> impl Iterator<Item = (&str, i64)> {
        self.effects.iter().filter_map(|e| match e {
            Effect::CancelTask {
                workflow_key,
                task_id,
            } => Some((workflow_key.as_str(), *task_id)),
            _ => None,
        })
    }
}

/// Run `event` on plan `id` and save the outcome conditionally; re-read and retry when another
/// writer saved first. `release_claim` clears a scheduler claim in the same write.
pub async fn apply(
    state: &AppState,
    id: &str,
    event: &Event,
    release_claim: bool,
) -> ApiResult<Applied> {
    apply_from(state, id, None, event, release_claim).await
}

/// [`apply`], starting from `first` (a copy just read, e.g. by a claim) instead of a read.
async fn apply_from(
    state: &AppState,
    id: &str,
    mut first: Option<ReleasePlan>,
    event: &Event,
    release_claim: bool,
) -> ApiResult<Applied> {
    let store = &state.release_plans;
    let mut attempts = Attempts::new();
    while attempts.next().await {
        let before = match first.take() {
            Some(p) => p,
            None => load(state, id).await?,
        };
        let snapshot = if event.may_replan() {
            store.hook_setting().await?.snapshot()
        } else {
            HookSnapshot::default()
        };
        let code = new_instance_code();
        let now_ms = state.clock.now_ms();
        let ctx = Ctx {
            now_ms,
            fresh_code: &code,
            hook_setting: &snapshot,
        };
        let out = machine::step(&before, event, &ctx).map_err(rejection)?;
        if out.is_noop(&before) {
            if release_claim {
                release(state, id).await;
            }
            return Ok(Applied {
                plan: before.clone(),
                before,
                effects: Vec::new(),
                error: out.error,
            });
        }
        let mut plan = out.plan;
        plan.version = before.version + 1;
        queue_hooks(&mut plan, &out.effects, now_ms);
        if release_claim {
            plan.internal.claim_owner.clear();
            plan.internal.claim_until_ms = 0;
        }
        if store.save(&plan, before.version).await? {
            wake(state, &plan);
            return Ok(Applied {
                before,
                plan,
                effects: out.effects,
                error: out.error,
            });
        }
    }
    Err(ApiError::conflict(format!(
        "release plan {id} is being changed concurrently; retry"
    )))
}

/// Put the step's hooks at the end of the plan's queue (saved with the transition).
fn queue_hooks(plan: &mut ReleasePlan, effects: &[Effect], now_ms: i64) {
    for e in effects {
        if let Effect::Hook { event, body } = e {
            plan.internal.pending_hooks.push(PendingHook {
                id: uuid::Uuid::new_v4().to_string(),
                event: *event,
                body: body.clone(),
                attempts: 0,
                next_attempt_ms: now_ms,
                last_error: String::new(),
            });
        }
    }
    plan.internal.hook_due_ms = plan
        .internal
        .pending_hooks
        .first()
        .map_or(0, |h| h.next_attempt_ms);
}

/// Tell this process' loops about work the saved plan makes due.
fn wake(state: &AppState, plan: &ReleasePlan) {
    let w = &state.scheduler_wake;
    if plan.internal.hook_due_ms > 0 {
        w.hooks.notify_one();
    }
    if plan.internal.schedule_at > 0 {
        w.schedule.notify_one();
    }
    if plan.internal.approval_deadline > 0
        || (plan.status == Status::Executing && plan.end_time > 0)
    {
        w.timeouts.notify_one();
    }
}

/// Give up a scheduler claim on a plan without changing it.
pub async fn release(state: &AppState, id: &str) {
    let claim = super::store::CLAIM;
    let mine = claim.taken_by(&state.instance_id);
    // Bumping the version keeps a writer with an older copy from restoring the claim.
    let update = claim.clear(crate::store::Update::new().inc("version", 1));
    if let Err(e) = state.release_plans.update(id, mine, &update).await {
        tracing::warn!(release_plan.id = %id, error = %e, "cannot release the claim on release plan {id}: {e}");
    }
}

/// Write the operation records of a saved change (spec §9).
pub async fn record(state: &AppState, plan: &ReleasePlan, effects: &[Effect]) {
    let now = state.clock.now();
    let mut seq = 0;
    for e in effects {
        let Effect::Log(l) = e else { continue };
        seq += 1;
        let rec = LogRecord {
            id: uuid::Uuid::new_v4().to_string(),
            plan_id: plan.id.clone(),
            username: l.username.clone(),
            account: l.account.clone(),
            verb: l.verb.to_string(),
            target_name: l.target_name.clone(),
            target_type: l.target_type.to_string(),
            before: l.before.clone(),
            after: l.after.clone(),
            detail: l.detail.clone(),
            version: plan.version,
            created_at: now,
            seq,
        };
        if let Err(e) = state.release_plans.logs.insert(&rec).await {
            tracing::error!(release_plan.id = %plan.id, error = %e, "cannot write an operation record of release plan {}: {e}", plan.id);
        }
    }
}

async fn apply_recorded(state: &AppState, id: &str, event: &Event) -> ApiResult<Applied> {
    let applied = apply(state, id, event, false).await?;
    record(state, &applied.plan, &applied.effects).await;
    if applied.cancels().next().is_some() {
        let caller = event.actor().map_or_else(system_identity, Identity::from);
        cancel_tasks(state, &applied, &caller).await;
    }
    Ok(applied)
}

/// Cancel the workflow tasks a saved change left behind (spec §4.4 step 4), as the caller of
/// the change. A task that already ended is left alone.
async fn cancel_tasks(state: &AppState, applied: &Applied, caller: &Identity) {
    for (workflow_key, task_id) in applied.cancels() {
        if let Err(err) = crate::workflow::tasks::cancel(state, caller, workflow_key, task_id).await
            && err.kind.is_server_fault()
        {
            tracing::warn!(release_plan.id = %applied.plan.id, "cannot cancel workflow {workflow_key} task {task_id}: {}", err.description);
        }
    }
}

// ---- queries ------------------------------------------------------------------------------

/// One item of the list (exactly the seven keys of seed 001).
#[derive(Debug, Serialize, ToSchema)]
pub struct ListItem {
    pub id: String,
    pub index: i64,
    pub name: String,
    pub manager: String,
    pub description: String,
    pub created_by: String,
    pub create_time: i64,
}

/// A page of plans, newest index first, and the total.
pub async fn list(state: &AppState, page: u64, size: u64) -> ApiResult<(Vec<ListItem>, u64)> {
    let plans = &state.release_plans;
    let opts = FindOptions::sort("index", Dir::Desc).page(page, size);
    let list = plans
        .find(&Filter::All, &opts)
        .await?
        .into_iter()
        .map(|p| ListItem {
            id: p.id,
            index: p.index,
            name: p.name,
            manager: p.manager,
            description: p.description,
            created_by: p.created_by,
            create_time: p.create_time,
        })
        .collect();
    Ok((list, plans.count(&Filter::All).await?))
}

/// The stored plan without our bookkeeping, as JSON (spec §2.2: the raw document).
pub async fn detail(state: &AppState, id: &str) -> ApiResult<Bytes> {
    check_id(id)?;
    state
        .plan_details
        .detail(&state.release_plans, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("release plan {id} not found")))
}

/// The operation records of a plan, newest first (spec §9).
pub async fn logs(state: &AppState, id: &str) -> ApiResult<Vec<LogRecord>> {
    check_id(id)?;
    let logs = state.release_plans.logs_of(id).await?;
    if logs.is_empty() && state.release_plans.get(id).await?.is_none() {
        return Err(ApiError::not_found(format!("release plan {id} not found")));
    }
    Ok(logs)
}

// ---- plan changes -------------------------------------------------------------------------

/// `POST /openapi/release_plan/v1` (spec §2.3).
/// Returns the new plan's id and the warnings about ignored inputs.
pub async fn create(
    state: &AppState,
    caller: &Identity,
    input: PlanInput,
) -> ApiResult<(String, Vec<String>)> {
    let (content, warnings) = input::content(state, input).await?;
    let now_ms = state.clock.now_ms();
    let id = validate::new_object_id(now_ms.div_euclid(1000));
    let index = state.sequences.next("release_plan").await.map_err(|e| {
        tracing::error!(error = %e, "release plan index counter failed: {e}");
        ApiError::code(
            ErrorKind::Internal,
            crate::error::codes::GET_COUNTER,
            "cannot allocate the release plan index",
        )
    })?;
    let snapshot = state.release_plans.hook_setting().await?.snapshot();
    let code = new_instance_code();
    let ctx = Ctx {
        now_ms,
        fresh_code: &code,
        hook_setting: &snapshot,
    };
    let out = machine::create(&id, index, &content, &Actor::from(caller), &ctx);
    state.release_plans.insert(&out.plan).await?;
    record(state, &out.plan, &out.effects).await;
    tracing::info!(release_plan.id = %id, "release plan {id} (#{index}) created by {}", caller.account);
    Ok((id, warnings))
}

/// `PATCH /openapi/release_plan/v1/:id` (spec §2.4): replace metadata and jobs; a re-plan.
/// Returns the warnings about ignored inputs.
pub async fn update(
    state: &AppState,
    caller: &Identity,
    id: &str,
    input: PlanInput,
) -> ApiResult<Vec<String>> {
    check_id(id)?;
    let plan = load(state, id).await?;
    // Refuse a caller who may not edit before validating what they sent; the machine checks
    // again on the copy it applies to (and the manager hand-over rule).
    machine::require_editor(&plan, &caller.into(), "edit").map_err(rejection)?;
    let (content, warnings) = input::content(state, input).await?;
    let event = Event::Edit {
        actor: caller.into(),
        content,
    };
    apply_recorded(state, id, &event).await?;
    Ok(warnings)
}

/// `DELETE /openapi/release_plan/v1/:id` (our extension): the manager, the creator or an
/// admin; the operation records stay.
pub async fn delete(state: &AppState, caller: &Identity, id: &str) -> ApiResult<()> {
    check_id(id)?;
    let plan = load(state, id).await?;
    machine::require_editor(&plan, &caller.into(), "delete").map_err(rejection)?;
    if !state.release_plans.delete(id).await? {
        return Err(ApiError::not_found(format!("release plan {id} not found")));
    }
    let effects = [Effect::Log(machine::LogEntry {
        username: caller.name.clone(),
        account: caller.account.clone(),
        verb: "删除",
        target_type: "release_plan",
        target_name: plan.name.clone(),
        before: Value::Null,
        after: Value::Null,
        detail: String::new(),
    })];
    // The record outlives the plan; it comes after the plan's last change.
    let gone = ReleasePlan {
        version: plan.version + 1,
        ..plan
    };
    record(state, &gone, &effects).await;
    tracing::info!(release_plan.id = %id, "release plan {id} deleted by {}", caller.account);
    Ok(())
}

/// `POST …/:id/status/:status` (spec §4.2).
pub async fn set_status(
    state: &AppState,
    caller: &Identity,
    id: &str,
    target: &str,
) -> ApiResult<()> {
    let target = Status::parse(target).ok_or_else(|| {
        ApiError::bad_request(format!(
            "`status` must be one of {}, got {target:?}",
            Status::ALL.map(Status::as_str).join(", ")
        ))
    })?;
    check_id(id)?;
    let applied = apply_recorded(
        state,
        id,
        &Event::SetStatus {
            actor: caller.into(),
            target,
        },
    )
    .await?;
    tracing::info!(release_plan.id = %id, "release plan {id} moved {} -> {}", applied.before.status, applied.plan.status);
    Ok(())
}

/// `POST …/:id/approve` (spec §7.2).
pub async fn approve(
    state: &AppState,
    caller: &Identity,
    id: &str,
    input: ApproveInput,
) -> ApiResult<()> {
    check_id(id)?;
    let event = Event::Vote {
        actor: caller.into(),
        approve: input.approve,
        comment: input.comment,
    };
    apply_recorded(state, id, &event).await?;
    Ok(())
}

/// The job actions of spec §5.3–5.5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobAction {
    Execute,
    Skip,
    Retry,
}

/// `POST …/:id/execute|skip|retry`. A workflow job's task is started after the job is saved
/// as `running`; if the start fails the job is put back and the call fails.
pub async fn job_action(
    state: &AppState,
    caller: &Identity,
    id: &str,
    action: JobAction,
    input: JobActionInput,
) -> ApiResult<()> {
    let kind = JobKind::parse(&input.kind).ok_or_else(|| {
        ApiError::bad_request(format!(
            "`type` must be one of text, workflow, got {:?}",
            input.kind
        ))
    })?;
    if input.id.trim().is_empty() {
        return Err(ApiError::bad_request(
            "`id` (the release job id) is required",
        ));
    }
    check_id(id)?;
    let remark = match input.spec.get("remark") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(ApiError::bad_request("`spec.remark` must be a string")),
    };
    let actor = Actor::from(caller);
    let job_id = input.id;
    let event = match action {
        JobAction::Execute => Event::Execute {
            actor,
            job_id,
            kind,
            remark,
        },
        JobAction::Skip => Event::Skip {
            actor,
            job_id,
            kind,
            remark,
        },
        JobAction::Retry => Event::Retry {
            actor,
            job_id,
            kind,
        },
    };
    let applied = apply(state, id, &event, false).await?;
    if let Some(err) = applied.error.clone() {
        record(state, &applied.plan, &applied.effects).await;
        return Err(rejection(err));
    }
    start_tasks(state, &applied, caller, true).await?;
    record(state, &applied.plan, &applied.effects).await;
    Ok(())
}

/// Start the workflow tasks of the jobs a saved change marked `running`. `manual`: an API call
/// that answers the first failure (the job is put back as it was); otherwise (scheduler) a
/// failure marks the job `failed` with the reason and the others still start.
async fn start_tasks(
    state: &AppState,
    applied: &Applied,
    caller: &Identity,
    manual: bool,
) -> ApiResult<()> {
    let plan = &applied.plan;
    for job_id in applied.started_jobs() {
        let Some(job) = plan.job(job_id) else {
            continue;
        };
        let release = ReleaseRef {
            plan_id: plan.id.clone(),
            plan_name: plan.name.clone(),
            plan_index: plan.index,
            job_id: job.id.clone(),
        };
        let s = &job.spec;
        let started = crate::workflow::start_release_task(
            state,
            &s.project_key,
            &s.workflow_key,
            &s.parameters,
            &s.inputs,
            caller,
            release,
        )
        .await;
        match started {
            Ok(task) => {
                let ev = Event::TaskStarted {
                    job_id: job.id.clone(),
                    workflow_key: s.workflow_key.clone(),
                    task_id: task.task_id,
                };
                let started = apply(state, &plan.id, &ev, false).await?;
                cancel_tasks(state, &started, caller).await;
                tracing::info!(release_plan.id = %plan.id, "release job {} started workflow {} task {}", job.name, s.workflow_key, task.task_id);
            }
            Err(err) => {
                tracing::warn!(release_plan.id = %plan.id, "release job {} could not start workflow {}: {}", job.name, s.workflow_key, err.description);
                let revert_to = if manual {
                    applied.before.job(job_id).cloned()
                } else {
                    None
                };
                let ev = Event::TaskStartFailed {
                    job_id: job.id.clone(),
                    reason: format!(
                        "cannot start workflow {}: {}",
                        s.workflow_key, err.description
                    ),
                    revert_to,
                };
                let reverted = apply(state, &plan.id, &ev, false).await?;
                record(state, &reverted.plan, &reverted.effects).await;
                if manual {
                    return Err(err);
                }
            }
        }
    }
    Ok(())
}

/// `POST /api/callback/release_plan` (seed 000, spec §2.5/§8.4). Returns the plan id.
pub async fn callback(
    state: &AppState,
    caller: &Identity,
    input: CallbackInput,
) -> ApiResult<String> {
    // The instance code is no secret (every user reads it in the plan detail), so the token
    // is what authorizes a check result: the checking system calls with an admin's token.
    caller.require_admin()?;
    let hook_event = HookEvent::parse(&input.hook_event).ok_or_else(|| {
        ApiError::bad_request(format!(
            "`hook_event` must be one of finish_planning, start_execute, all_job_done, got {:?}",
            input.hook_event
        ))
    })?;
    let result = match input.result.as_str() {
        "success" => CallbackResult::Success,
        "failed" => CallbackResult::Failed,
        other => {
            return Err(ApiError::bad_request(format!(
                "`result` must be one of success, failed, got {other:?}"
            )));
        }
    };
    validate::object_id("release_plan_id", &input.release_plan_id)?;
    if input.instance_code.is_empty() {
        return Err(ApiError::bad_request("`instance_code` is required"));
    }
    let id = input.release_plan_id;
    let event = Event::Callback {
        actor: caller.into(),
        hook_event,
        instance_code: input.instance_code,
        result,
        reason: input.failed_reason,
    };
    let applied = apply_recorded(state, &id, &event).await?;
    tracing::info!(release_plan.id = %id, "release plan {id} callback {} {}: now {}", hook_event.as_str(), result.as_str(), applied.plan.status);
    Ok(id)
}

// ---- hook setting ---------------------------------------------------------------------------

/// The hook setting as `GET` shows it: never the secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct HookSettingView {
    pub enable: bool,
    pub enable_call_back: bool,
    pub hook_address: String,
    pub hook_events: Vec<String>,
}

pub async fn hook_setting(state: &AppState) -> ApiResult<HookSettingView> {
    let s = state.release_plans.hook_setting().await?;
    Ok(HookSettingView {
        enable: s.enable,
        enable_call_back: s.enable_call_back,
        hook_address: s.hook_address,
        hook_events: s
            .hook_events
            .iter()
            .map(|e| e.as_str().to_string())
            .collect(),
    })
}

/// `PUT …/hook/setting` (admin only).
pub async fn put_hook_setting(
    state: &AppState,
    caller: &Identity,
    input: HookSettingInput,
) -> ApiResult<()> {
    caller.require_admin()?;
    let mut events = Vec::new();
    for (i, e) in input.hook_events.iter().enumerate() {
        let ev = HookEvent::parse(e).ok_or_else(|| {
            ApiError::bad_request(format!(
                "`hook_events[{i}]` must be one of finish_planning, start_execute, all_job_done, got {e:?}"
            ))
        })?;
        if !events.contains(&ev) {
            events.push(ev);
        }
    }
    let address = input.hook_address.trim().to_string();
    if input.enable || !address.is_empty() {
        let ok = reqwest::Url::parse(&address)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if !ok {
            return Err(ApiError::bad_request(format!(
                "`hook_address` must be an http(s) URL when hooks are enabled, got {address:?}"
            )));
        }
    }
    // A literal address or metadata host name the egress policy denies is refused now;
    // names are checked again on every resolution at delivery.
    if let Ok(url) = reqwest::Url::parse(&address) {
        super::egress::EgressPolicy::of(&state.config)
            .check_url(&url)
            .map_err(|why| {
                ApiError::bad_request(format!("`hook_address` {address:?} is not allowed: {why}"))
            })?;
    }
    let store = &state.release_plans;
    let old = store.hook_setting().await?;
    let setting = HookSetting {
        id: SETTING_ID.to_string(),
        enable: input.enable,
        enable_call_back: input.enable_call_back,
        hook_address: address,
        hook_secret: input.hook_secret.unwrap_or(old.hook_secret),
        hook_events: events,
    };
    // Upsert: replace, or insert the first time (a racing insert loses and replaces).
    let mut attempts = Attempts::new();
    let mut saved = false;
    while !saved && attempts.next().await {
        saved = store
            .settings
            .replace(&Filter::id(SETTING_ID), &setting)
            .await?
            || match store.settings.insert(&setting).await {
                Ok(()) => true,
                Err(StoreError::Duplicate(_)) => false,
                Err(e) => return Err(e.into()),
            };
    }
    if !saved {
        return Err(retry::exhausted("the release-plan hook setting").into());
    }
    tracing::info!("release-plan hook setting changed by {}", caller.account);
    Ok(())
}

// ---- background work ------------------------------------------------------------------------

/// The engine's notification that a release job's task ended (see [`super::on_workflow_task_finished`]).
pub async fn task_finished(
    state: &AppState,
    release: &ReleaseRef,
    task_id: i64,
    status: &str,
) -> ApiResult<()> {
    let event = Event::TaskFinished {
        job_id: release.job_id.clone(),
        task_id,
        task_status: status.to_string(),
    };
    match apply_recorded(state, &release.plan_id, &event).await {
        Ok(_) => Ok(()),
        // The plan was deleted meanwhile: nothing to follow.
        Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The scheduler's step on a claimed plan: timeouts and the scheduled execution, then the
/// tasks of the jobs it started.
pub async fn tick(state: &AppState, claimed: ReleasePlan) -> ApiResult<()> {
    let id = claimed.id.clone();
    let applied = apply_from(state, &id, Some(claimed), &Event::Tick, true).await?;
    record(state, &applied.plan, &applied.effects).await;
    if applied.plan.status != applied.before.status {
        tracing::info!(release_plan.id = %id, "release plan {id} moved {} -> {}", applied.before.status, applied.plan.status);
    }
    start_tasks(state, &applied, &system_identity(), false).await
}

/// Follow the running workflow jobs of a claimed plan: apply a final task status the engine's
/// notification may have missed (a crash), and fail jobs whose task was never started.
pub async fn reconcile(state: &AppState, plan: &ReleasePlan) -> ApiResult<()> {
    let now = state.clock.now();
    let lease = i64::try_from(state.config.release_plan_lease_secs).unwrap_or(i64::MAX);
    for job in plan
        .jobs
        .iter()
        .filter(|j| j.kind == JobKind::Workflow && j.status == super::model::JobStatus::Running)
    {
        let release = ReleaseRef {
            plan_id: plan.id.clone(),
            plan_name: plan.name.clone(),
            plan_index: plan.index,
            job_id: job.id.clone(),
        };
        if job.spec.task_id > 0 {
            let status =
                crate::workflow::task_status(state, &job.spec.workflow_key, job.spec.task_id)
                    .await?;
            match status {
                Some(s) if s.is_final() => {
                    task_finished(state, &release, job.spec.task_id, s.as_str()).await?;
                }
                Some(_) => {}
                None => {
                    let reason = format!(
                        "workflow {} task {} no longer exists",
                        job.spec.workflow_key, job.spec.task_id
                    );
                    task_finished(state, &release, job.spec.task_id, "failed").await?;
                    tracing::warn!(release_plan.id = %plan.id, "release job {}: {reason}", job.name);
                }
            }
        } else if job.executed_time + lease < now {
            let ev = Event::TaskStartFailed {
                job_id: job.id.clone(),
                reason: "the workflow task was never started (the server stopped while starting it); retry the job".to_string(),
                revert_to: None,
            };
            apply_recorded(state, &plan.id, &ev).await?;
        }
    }
    release(state, &plan.id).await;
    Ok(())
}
