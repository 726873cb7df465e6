//! Delivery of outgoing release-plan hooks (spec §8.3, DESIGN.md §5): each plan's queue of
//! pending hooks (saved with the transition that caused them) is sent in order, with the
//! address and secret of the current hook setting, a timeout of
//! `release_plan_hook_timeout_secs`, and retries after the delays of
//! `release_plan_hook_retry_secs` (business clock); redirects are not followed and the
//! destination must pass the hook egress policy ([`crate::release_plan::egress`]). A hook that fails every attempt is dropped
//! with an error log; the queue is in the store, so a restart loses nothing.

use std::time::Duration;

use crate::release_plan::hooks::{self, HookSetting};
use crate::release_plan::model::ReleasePlan;
use crate::release_plan::service;
use crate::state::AppState;
use crate::store::Filter;

fn pending() -> Filter {
    Filter::gt("internal.hook_due_ms", 0)
}

/// The loop.
pub async fn run(state: AppState) {
    let client = hooks::Sender::new(
        &state.config,
        Duration::from_secs(state.config.release_plan_hook_timeout_secs),
    );
    loop {
        let due = pending().and(Filter::lte("internal.hook_due_ms", state.clock.now_ms()));
        let c = client.clone();
        super::drain(&state, &due, "internal.hook_due_ms", move |state, plan| {
            let client = c.clone();
            async move {
                let id = plan.id.clone();
                match deliver_plan(&state, &client, plan).await {
                    Ok(()) => service::release(&state, &id).await,
                    Err(e) => {
                        tracing::warn!(release_plan.id = %id, error = %e, "cannot record hook delivery of release plan {id}: {e}");
                    }
                }
            }
        })
        .await;
        let next = super::earliest(&state, pending(), "internal.hook_due_ms").await;
        if !super::wait(&state, next, &state.scheduler_wake.hooks).await {
            return;
        }
    }
}

/// What became of one attempt.
enum Outcome {
    Delivered,
    Failed(String),
    /// Hooks were switched off after the hook was queued: not sent.
    Dropped(&'static str),
}

/// Send the due hooks of a claimed plan, oldest first; stop at the first that must wait.
async fn deliver_plan(
    state: &AppState,
    client: &hooks::Sender,
    mut plan: ReleasePlan,
) -> crate::store::StoreResult<()> {
    let setting = state.release_plans.hook_setting().await?;
    loop {
        let Some(hook) = plan.internal.pending_hooks.first().cloned() else {
            return Ok(());
        };
        if hook.next_attempt_ms > state.clock.now_ms() {
            return Ok(());
        }
        super::renew(state, &plan.id).await?;
        let outcome = attempt(state, client, &setting, &hook).await;
        match &outcome {
            Outcome::Delivered => {
                tracing::info!(release_plan.id = %plan.id, "release plan {} hook {} delivered (attempt {})", plan.id, hook.event.as_str(), hook.attempts + 1);
            }
            Outcome::Failed(why) => {
                tracing::warn!(release_plan.id = %plan.id, "release plan {} hook {} attempt {} failed: {why}", plan.id, hook.event.as_str(), hook.attempts + 1);
            }
            Outcome::Dropped(why) => {
                tracing::warn!(release_plan.id = %plan.id, "release plan {} hook {} not sent: {why}", plan.id, hook.event.as_str());
            }
        }
        match settle(state, &plan.id, &hook.id, outcome).await? {
            Some(p) => plan = p,
            None => return Ok(()),
        }
    }
}

async fn attempt(
    state: &AppState,
    client: &hooks::Sender,
    setting: &HookSetting,
    hook: &crate::release_plan::model::PendingHook,
) -> Outcome {
    if !setting.enable {
        return Outcome::Dropped("hooks are disabled in the hook setting (enable = false)");
    }
    if setting.hook_address.is_empty() {
        return Outcome::Dropped("the hook setting has no hook_address");
    }
    match hooks::deliver(client, setting, hook, state.clock.now()).await {
        Ok(()) => Outcome::Delivered,
        Err(e) => Outcome::Failed(e),
    }
}

/// Record an attempt on the plan with a conditional update (re-read on a lost race): remove
/// the hook when delivered, dropped or out of attempts, else schedule its next attempt.
/// Returns the saved plan (None when the plan is gone).
async fn settle(
    state: &AppState,
    plan_id: &str,
    hook_id: &str,
    outcome: Outcome,
) -> crate::store::StoreResult<Option<ReleasePlan>> {
    let retries = &state.config.release_plan_hook_retry_secs;
    let store = &state.release_plans;
    let mut attempts = crate::store::retry::Attempts::new();
    while attempts.next().await {
        let Some(mut plan) = store.get(plan_id).await? else {
            return Ok(None);
        };
        let now_ms = state.clock.now_ms();
        let queue = &mut plan.internal.pending_hooks;
        let Some(pos) = queue.iter().position(|h| h.id == hook_id) else {
            return Ok(Some(plan));
        };
        match &outcome {
            Outcome::Delivered | Outcome::Dropped(_) => {
                queue.remove(pos);
            }
            Outcome::Failed(why) => {
                let h = &mut queue[pos];
                let delay = retries.get(h.attempts as usize).copied();
                h.attempts += 1;
                h.last_error.clone_from(why);
                match delay {
                    Some(secs) => {
                        let secs = i64::try_from(secs).unwrap_or(i64::MAX / 2000);
                        h.next_attempt_ms = now_ms + secs * 1000;
                    }
                    None => {
                        tracing::error!(release_plan.id = %plan_id, "release plan {plan_id} hook {} given up after {} attempts: {why}", h.event.as_str(), h.attempts);
                        queue.remove(pos);
                    }
                }
            }
        }
        plan.internal.hook_due_ms = plan
            .internal
            .pending_hooks
            .first()
            .map_or(0, |h| h.next_attempt_ms);
        let expected = plan.version;
        plan.version += 1;
        if store.save(&plan, expected).await? {
            return Ok(Some(plan));
        }
    }
    Err(crate::store::retry::exhausted(&format!(
        "release plan {plan_id} (recording its hook delivery)"
    )))
}
