//! The dispatcher and the engine's housekeeping loops (spec/workflow.md §4).
//!
//! - **dispatch**: woken when a task is queued or a slot frees (and by a safety-net sweep every
//!   `engine_sweep_interval_ms`), it claims `waiting` tasks in `queued_at_ms` order while this
//!   process has a free slot (`engine_max_tasks`) and the task's workflow is under its
//!   `concurrency_limit` (running + waiting-for-approval tasks of that workflow, across every
//!   replica). Before counting a limited workflow's tasks a round takes the short
//!   `engine-dispatch` lease, so two replicas never count and claim at the same time; the claim
//!   itself is a conditional update (`status = waiting` and the read `version`), so each task
//!   starts exactly once.
//! - **heartbeat**: this process' liveness lease `engine-instance:<instance_id>`, renewed
//!   every third of `engine_lease_ttl_secs`. Claimed tasks carry the task lease
//!   ([`TASK_LEASE`]) with `owner = instance_id`; the runs live in a [`crate::worker::Pool`].
//! - **recovery** (at start, then every half TTL): a `running`/`wait_for_approval` task whose
//!   owner's liveness lease has expired (the process died) is marked `failed` with
//!   [`RESTART_ERROR`](super::runner::RESTART_ERROR) — never left running forever — and the
//!   Kubernetes Jobs of runs nobody watches any more are deleted ([`super::kube::records`]).
//! - **cancel check**: a task cancelled through another replica is noticed here by reading the
//!   stored status of the tasks this process runs.

use std::collections::HashMap;
use std::time::Duration;

use futures::FutureExt;
use tokio::task::JoinHandle;

use super::runner::{self, RESTART_ERROR};
use crate::state::AppState;
use crate::store::lease::{Encoding, now_ms};
use crate::store::retry::Attempts;
use crate::store::{Dir, Filter, FindOptions, Update};
use crate::worker::{Pool, renewing};
use crate::workflow::notify::pending;
use crate::workflow::task::{Status, Task};

const DISPATCH_LEASE: &str = "engine-dispatch";
const DISPATCH_LEASE_TTL: Duration = Duration::from_secs(5);

/// The lease a claimed task carries: the process running it, and until when a just-claimed
/// task counts as alive before that process registers it.
pub const TASK_LEASE: Encoding = Encoding::at("lease_owner", "lease_until_ms");

/// Statuses of a task that holds a slot (it is being run by some process).
const ACTIVE: &[Status] = &[Status::Running, Status::WaitForApproval];

/// Tasks holding a slot ([`ACTIVE`]).
pub(super) fn holding_slot() -> Filter {
    Filter::is_in("status", ACTIVE.iter().map(|s| s.as_str()))
}

/// The liveness lease of engine instance `instance`.
pub(crate) fn instance_lease(instance: &str) -> String {
    format!("engine-instance:{instance}")
}

/// Start the dispatcher, heartbeat, recovery and cancel-check loops.
pub fn spawn(state: &AppState) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(heartbeat_loop(state.clone())),
        tokio::spawn(dispatch_loop(state.clone())),
        tokio::spawn(recovery_loop(state.clone())),
        tokio::spawn(cancel_check_loop(state.clone())),
    ]
}

async fn heartbeat_loop(state: AppState) {
    let ttl = Duration::from_secs(state.config.engine_lease_ttl_secs);
    let name = instance_lease(&state.instance_id);
    let beat = || state.leases.claim(&name, &state.instance_id, ttl);
    if let Err(e) = beat().await {
        tracing::warn!("taking the engine liveness lease failed: {e}");
    }
    let token = state.shutdown.child_token();
    renewing(
        state.shutdown.cancelled(),
        ttl,
        &token,
        "the engine liveness lease",
        beat,
    )
    .await;
    // Released by the dispatcher once its tasks are finalized (see `dispatch_loop`).
}

async fn dispatch_loop(state: AppState) {
    let sweep = Duration::from_millis(state.config.engine_sweep_interval_ms);
    let mut runners = Pool::new(state.config.engine_task_cap());
    // The first round comes at once: tasks queued before this process started.
    let mut again = true;
    loop {
        let pause = if again {
            Duration::from_millis(50)
        } else {
            sweep
        };
        if !runners
            .wait(&state.shutdown, &state.engine.wake, pause)
            .await
        {
            break;
        }
        again = match dispatch_round(&state, &mut runners).await {
            Ok(again) => again,
            Err(e) => {
                tracing::warn!("dispatch round failed: {e}");
                false
            }
        };
    }
    // Shutdown: stop every task, let the runners write their end, give the lease back.
    state.engine.cancel_all();
    runners.join().await;
    let _ = state
        .leases
        .release(&instance_lease(&state.instance_id), &state.instance_id)
        .await;
}

/// One round: claim as many eligible waiting tasks as there are free slots. `Ok(true)` asks
/// for another round soon (another replica held the dispatch lease).
async fn dispatch_round(state: &AppState, runners: &mut Pool) -> crate::store::StoreResult<bool> {
    let cap = state.config.engine_task_cap();
    let mut free = cap.saturating_sub(state.engine.running_count());
    if free == 0 {
        return Ok(false);
    }
    let mut lease = DispatchLease { held: false };
    let result = claim_eligible(state, runners, &mut free, &mut lease).await;
    if lease.held {
        state
            .leases
            .release(DISPATCH_LEASE, &state.instance_id)
            .await?;
    }
    result
}

/// The `engine-dispatch` lease, taken only when a task of a workflow with a positive
/// `concurrency_limit` is considered (counting and claiming must not interleave with another
/// replica's); unlimited tasks need only their conditional claim.
struct DispatchLease {
    held: bool,
}

async fn claim_eligible(
    state: &AppState,
    runners: &mut Pool,
    free: &mut usize,
    lease: &mut DispatchLease,
) -> crate::store::StoreResult<bool> {
    let waiting = Filter::eq("status", Status::Waiting.as_str());
    let order = FindOptions::sort("queued_at_ms", Dir::Asc).then("task_id", Dir::Asc);
    // Workflows skipped this round, and the active count of each limited workflow.
    let mut full: Vec<String> = Vec::new();
    let mut active: HashMap<String, i64> = HashMap::new();
    let mut contended = false;
    while *free > 0 {
        let mut filter = waiting.clone();
        for wf in &full {
            filter = filter.and(Filter::ne("workflow_name", wf.as_str()));
        }
        let batch_size = u64::try_from((*free * 4).clamp(16, 256)).unwrap_or(64);
        let batch = state
            .tasks
            .tasks
            .find(&filter, &order.clone().limit(batch_size))
            .await?;
        if batch.is_empty() {
            break;
        }
        let mut progressed = false;
        for t in batch {
            if *free == 0 {
                break;
            }
            if full.contains(&t.workflow_name) {
                continue;
            }
            let limit = t.concurrency_limit;
            if limit == 0 {
                // Never runs (the workflow API refuses such executions; a task stored with it
                // waits until cancelled, as in Zadig).
                full.push(t.workflow_name.clone());
                progressed = true;
                continue;
            }
            if limit > 0 {
                let admit = admit_limited(state, &t, lease, &mut active).await?;
                if admit != Admit::Yes {
                    // Another replica is counting (its limited tasks wait for a later round),
                    // or the workflow is at its limit.
                    contended |= admit == Admit::Contended;
                    full.push(t.workflow_name.clone());
                    progressed = true;
                    continue;
                }
            }
            if let Some(mut claimed) = claim(state, &t).await? {
                if let Some(n) = active.get_mut(&t.workflow_name) {
                    *n += 1;
                }
                *free -= 1;
                progressed = true;
                // Before the runner starts, so that it starts from the version as cleared.
                pending::flush(state, &mut claimed).await;
                start(state, runners, claimed);
            }
        }
        if !progressed {
            break;
        }
    }
    Ok(contended)
}

/// Whether a task of a workflow with a positive `concurrency_limit` may start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admit {
    Yes,
    /// The workflow's running and approval-waiting tasks reach its limit.
    Full,
    /// Another replica holds the dispatch lease.
    Contended,
}

/// Count the task's workflow under the dispatch lease (taken on first need; `active` keeps
/// each workflow's count for the round).
async fn admit_limited(
    state: &AppState,
    t: &Task,
    lease: &mut DispatchLease,
    active: &mut HashMap<String, i64>,
) -> crate::store::StoreResult<Admit> {
    if !lease.held {
        lease.held = state
            .leases
            .claim(DISPATCH_LEASE, &state.instance_id, DISPATCH_LEASE_TTL)
            .await?;
        if !lease.held {
            return Ok(Admit::Contended);
        }
    }
    let n = match active.get(&t.workflow_name) {
        Some(n) => *n,
        None => {
            let filter = Filter::eq("workflow_name", t.workflow_name.as_str()).and(holding_slot());
            let n = state.tasks.tasks.count(&filter).await?;
            let n = i64::try_from(n).unwrap_or(i64::MAX);
            active.insert(t.workflow_name.clone(), n);
            n
        }
    };
    Ok(if n >= t.concurrency_limit {
        Admit::Full
    } else {
        Admit::Yes
    })
}

/// Take a waiting task for this process: `running`, `start_time`, `lease_owner`.
async fn claim(state: &AppState, t: &Task) -> crate::store::StoreResult<Option<Task>> {
    let ttl = Duration::from_secs(state.config.engine_lease_ttl_secs);
    let filter = Filter::id(&t.id)
        .and(Filter::eq("status", Status::Waiting.as_str()))
        .and(Filter::eq("version", t.version));
    // The task as claimed, for the notice of `running` written with the claim (the filter
    // pins the version, so the stored notices are the ones read).
    let mut running = t.clone();
    (running.status, running.start_time) = (Status::Running, state.clock.now());
    (running.end_time, running.error) = (0, String::new());
    pending::record(&mut running, Status::Running, state.clock.now_ms());
    let update = Update::new()
        .set("status", Status::Running.as_str())
        .set("start_time", running.start_time)
        .set("end_time", 0)
        .set("error", "")
        .set("final_notified", false)
        .inc("version", 1);
    let update = pending::set_fields(update, &running);
    let update = TASK_LEASE.take(update, &state.instance_id, ttl);
    state
        .tasks
        .tasks
        .find_one_and_update(&filter, &[], &update)
        .await
}

/// Run a claimed task in the background; its slot frees (and the dispatcher wakes) when it
/// ends, whatever happens — a panic marks the task failed.
fn start(state: &AppState, runners: &mut Pool, task: Task) {
    let key = (task.workflow_name.clone(), task.task_id);
    let reg = state
        .engine
        .register(key.clone(), task.id.clone(), &state.shutdown);
    let state = state.clone();
    runners.spawn(async move {
        let id = task.id.clone();
        let outcome = std::panic::AssertUnwindSafe(runner::run(state.clone(), task, reg))
            .catch_unwind()
            .await;
        if outcome.is_err() {
            tracing::error!(workflow = %key.0, task_id = key.1, "the runner of task {}#{} panicked", key.0, key.1);
            recover_task(&state, &id, "internal error: the task runner failed").await;
        }
        state.engine.unregister(&key);
    });
}

async fn recovery_loop(state: AppState) {
    let every =
        Duration::from_secs(state.config.engine_lease_ttl_secs).max(Duration::from_secs(1)) / 2;
    loop {
        if let Err(e) = recover_orphans(&state).await {
            tracing::warn!("recovering orphaned tasks failed: {e}");
        }
        // After the tasks: their Kubernetes Jobs (nobody watches them any more) go too.
        if let Err(e) = super::kube::records::sweep(&state).await {
            tracing::warn!("deleting orphaned Kubernetes Jobs failed: {e}");
        }
        tokio::select! {
            () = state.shutdown.cancelled() => break,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// Mark failed every active task whose owner process is gone.
async fn recover_orphans(state: &AppState) -> crate::store::StoreResult<()> {
    // Active tasks, and tasks the API cancelled while a (possibly dead) process ran them.
    let filter = Filter::Or(vec![
        holding_slot(),
        Filter::eq("status", Status::Cancelled.as_str()).and(Filter::ne("lease_owner", "")),
    ]);
    let active = state
        .tasks
        .tasks
        .find(&filter, &FindOptions::default())
        .await?;
    let mut alive: HashMap<String, bool> = HashMap::new();
    for t in active {
        let owner = t.lease_owner.clone();
        let live = if owner == state.instance_id {
            // Just claimed and not registered yet, or running here.
            t.lease_until_ms >= now_ms()
                || state.engine.is_running_here(&t.workflow_name, t.task_id)
        } else if owner.is_empty() {
            false
        } else {
            match alive.get(&owner) {
                Some(a) => *a,
                None => {
                    let held = state.leases.is_held(&instance_lease(&owner)).await?;
                    alive.insert(owner.clone(), held);
                    held
                }
            }
        };
        if !live {
            tracing::warn!(workflow = %t.workflow_name, task_id = t.task_id, owner = %owner,
                "task {}#{} was left {} by a process that is gone; marking it failed", t.workflow_name, t.task_id, t.status);
            recover_task(state, &t.id, RESTART_ERROR).await;
        }
    }
    Ok(())
}

/// Mark a task failed with `error` unless it already ended; tells its release plan.
async fn recover_task(state: &AppState, id: &str, error: &str) {
    let mut attempts = Attempts::new();
    while attempts.next().await {
        let mut t = match state.tasks.tasks.get(id).await {
            Ok(Some(t)) => t,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(task = id, "cannot read task to recover: {e}");
                continue;
            }
        };
        if !ACTIVE.contains(&t.status) && t.status != Status::Cancelled {
            return;
        }
        if t.status == Status::Cancelled && t.lease_owner.is_empty() {
            return;
        }
        runner::end_task(&mut t, Status::Failed, error, state.clock.now());
        let ended = t.status;
        pending::record(&mut t, ended, state.clock.now_ms());
        match state.tasks.save(&mut t).await {
            Ok(true) => {
                pending::flush(state, &mut t).await;
                // The task is stored already: what cannot be undone is noted with a write of
                // its own (and retried in the background).
                let notes = runner::clean_up(state, &t).await;
                if let Err(e) = super::clean_ups::write_notes(state, &t.id, &notes).await {
                    tracing::warn!(
                        task = id,
                        "cannot note the failed clean-up on the task: {e}"
                    );
                }
                state.task_finished.publish(state, &t, t.status).await;
                return;
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(task = id, "cannot store the recovered task: {e}"),
        }
    }
}

async fn cancel_check_loop(state: AppState) {
    let every = Duration::from_millis(state.config.engine_sweep_interval_ms);
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => break,
            () = tokio::time::sleep(every) => {}
        }
        let running = state.engine.running_ids();
        if running.is_empty() {
            continue;
        }
        let ids: Vec<&str> = running.iter().map(|(_, id)| id.as_str()).collect();
        let filter = Filter::is_in("id", ids).and(Filter::eq("status", Status::Cancelled.as_str()));
        match state
            .tasks
            .tasks
            .find(&filter, &FindOptions::default())
            .await
        {
            Ok(cancelled) => {
                for t in cancelled {
                    state.engine.cancel_local(&(t.workflow_name, t.task_id));
                }
            }
            Err(e) => tracing::warn!("cancel check failed: {e}"),
        }
    }
}
