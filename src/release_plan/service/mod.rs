//! The release-plan service: validates requests, runs the state machine on the stored plan,
//! saves the outcome with a conditional update on `version` (retrying on a lost race) and then
//! carries out the effects — operation records, workflow tasks, waking the scheduler.
//!
//! Every writer (API calls, the engine's task notifications, the scheduler) goes through
//! [`apply`], so racing writers never lose each other's changes. This file holds that path;
//! the callers are split by who calls: [`queries`] (reads), [`changes`] (the API's plan
//! changes), [`hook_setting`] (the hook setting) and [`background`] (the engine's task
//! notifications, the scheduler's tick and reconcile, and the workflow tasks they start).

mod background;
mod changes;
mod hook_setting;
mod queries;

pub use background::{reconcile, task_finished, tick};
pub use changes::{JobAction, approve, callback, create, delete, job_action, set_status, update};
pub use hook_setting::{HookSettingView, hook_setting, put_hook_setting};
pub use queries::{ListItem, detail, list, logs};

use rand::RngCore;

use super::machine::{self, Actor, Ctx, Effect, Event, RejectKind, Rejection};
use super::model::{HookSnapshot, PendingHook, ReleasePlan, Status};
use super::store::{LogEntry, LogRecord};
use crate::auth::Identity;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::retry::Attempts;
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

/// The identity a scheduled execution of `plan` starts its tasks as: shown as the system
/// (Zadig's `系统`), with the uid and rights of who moved the plan towards `executing` (its
/// manager for plans recorded before that was kept), so that the tasks' deploy jobs may change
/// only what that user may (docs/security.md). Plan editors are any users: acting with the
/// server's own admin rights would let any of them deploy anywhere.
pub async fn scheduled_identity(state: &AppState, plan: &ReleasePlan) -> ApiResult<Identity> {
    let uid = match plan.internal.executor_id.as_str() {
        "" => plan.manager_id.as_str(),
        uid => uid,
    };
    let Some(user) = state.users.get(uid).await? else {
        return Err(ApiError::forbidden(format!(
            "the user who started the execution of release plan {} (uid {uid:?}) no longer \
             exists, so its scheduled jobs run for nobody",
            plan.name
        )));
    };
    Ok(Identity {
        uid: user.id,
        account: "system".to_string(),
        name: machine::SYSTEM_NAME.to_string(),
        identity_type: "system".to_string(),
        is_admin: user.is_admin,
    })
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
            entry: LogEntry {
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
            },
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
        // Events without an actor (a task's end) cancel as the system: housekeeping, no deploy.
        let caller = Identity::from(event.actor().unwrap_or(&machine::Actor::system()));
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

/// What a workflow task started for `job` of `plan` carries back to the plan.
fn release_ref(plan: &ReleasePlan, job_id: &str) -> ReleaseRef {
    ReleaseRef {
        plan_id: plan.id.clone(),
        plan_name: plan.name.clone(),
        plan_index: plan.index,
        job_id: job_id.to_string(),
    }
}
