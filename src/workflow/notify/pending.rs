//! The task's half of the notification outbox: notices of status changes, written with them.
//!
//! A writer calls [`record`] inside the change it writes conditionally (the task's `version`, or
//! its status): the notice — the change's sequence number, the status told and the task's
//! [`Facts`] at that moment — is stored in the same write as the status, or not at all. After
//! the write, [`flush`] moves the task's notices into `workflow_notifications` (as sends, for
//! the settings that want them) and then clears them from the task with a write conditional on
//! the version it read, which bumps it (a writer holding an older copy re-reads, so no stale
//! copy writes the notices back). [`sweep`], in the delivery loop, does the same for tasks whose
//! notices are older: a crash between the steps, or a store failure, leaves them for it. Moving
//! notices again adds nothing (`queued_seq`), so a crash anywhere neither loses nor repeats a
//! notification; notices are moved in sequence order, so one setting's messages stay in order.

use serde::{Deserialize, Serialize};

use super::message::Facts;
use super::outbox::{self, Outbox};
use crate::fault::{self, Point};
use crate::state::AppState;
use crate::store::{Dir, Filter, FindOptions, StoreResult, Update};
use crate::workflow::task::{Status, Task};

/// Notices a task keeps at most while none can be queued (a store that keeps failing): the
/// oldest are dropped (logged), so the task document stays bounded.
const MAX_PENDING: usize = 32;

/// Tasks whose notices one sweep moves at most (the oldest first; the rest next round).
const SWEEP_BATCH: u64 = 32;

/// A status change to tell, recorded on the task in the write that made it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Notice {
    /// The task's notification sequence number of this change (`Task::notify_seq`).
    pub seq: i64,
    /// The status told.
    pub event: Status,
    /// The task as it was when the status changed.
    pub facts: Facts,
}

/// Record on `t` — a task about to be written, with its status change applied — that it
/// changed to `event`, when one of its enabled settings may want to hear of it. Pure: call it
/// inside the change a conditional write applies (again, on a re-read, when the write lost).
pub fn record(t: &mut Task, event: Status, now_ms: i64) {
    if !super::wanted(t, event) {
        return;
    }
    // Above the version too: sends queued before notices existed are numbered by the task
    // version at their change, and a notice must come after them.
    let seq = t.notify_seq.max(t.version) + 1;
    t.notify_seq = seq;
    let facts = Facts::of(t, event);
    t.notify_pending.push(Notice { seq, event, facts });
    if t.notify_pending.len() > MAX_PENDING {
        let dropped = t.notify_pending.len() - MAX_PENDING;
        t.notify_pending.drain(..dropped);
        tracing::error!(workflow = %t.workflow_name, task_id = t.task_id,
            "task {}#{} has more than {MAX_PENDING} notifications that could not be queued; the oldest {dropped} are dropped",
            t.workflow_name, t.task_id);
    }
    if t.notify_pending_ms == 0 {
        t.notify_pending_ms = now_ms.max(1);
    }
}

/// The notice fields of `t` set on `update`: for a writer that changes a task with a partial
/// update conditional on the version it read (the notices as [`record`] left them on its copy).
pub fn set_fields(update: Update, t: &Task) -> Update {
    // A notice is strings, numbers and statuses: it always serializes.
    let notices = t
        .notify_pending
        .iter()
        .filter_map(|n| serde_json::to_value(n).ok());
    update
        .set(
            "notify_pending",
            serde_json::Value::Array(notices.collect()),
        )
        .set("notify_pending_ms", t.notify_pending_ms)
        .set("notify_seq", t.notify_seq)
}

/// Queue the notices of `t`, the task as its writer just stored it, and clear them from the
/// task; on a clear, `t` becomes the task as stored again (its new version, no notices).
/// Never fails the caller: what is not done now is left to [`sweep`] (logged).
pub async fn flush(state: &AppState, t: &mut Task) {
    if t.notify_pending.is_empty() {
        return;
    }
    fault::point(Point::NotifyBeforeQueue);
    if let Err(e) = move_notices(state, t).await {
        tracing::warn!(workflow = %t.workflow_name, task_id = t.task_id,
            "cannot queue the notifications of task {}#{} yet (retried in the background): {e}",
            t.workflow_name, t.task_id);
    }
}

/// Queue the notices of tasks that still have some (left by a crash, a store failure, or a
/// writer that lost the race to clear them).
pub async fn sweep(state: &AppState) {
    let filter = Filter::gt("notify_pending_ms", 0);
    let opts = FindOptions::sort("notify_pending_ms", Dir::Asc).limit(SWEEP_BATCH);
    let tasks = match state.tasks.tasks.find(&filter, &opts).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "cannot look for workflow notifications to queue: {e}");
            return;
        }
    };
    for mut t in tasks {
        if let Err(e) = move_notices(state, &mut t).await {
            tracing::warn!(workflow = %t.workflow_name, task_id = t.task_id,
                "cannot queue the notifications of task {}#{}: {e}", t.workflow_name, t.task_id);
        }
    }
}

/// Queue the sends of `t`'s notices (idempotent), then clear the notices if `t` is still the
/// stored version.
async fn move_notices(state: &AppState, t: &mut Task) -> StoreResult<()> {
    let mut sends = Vec::new();
    for n in &t.notify_pending {
        sends.extend(super::sends_for(state, t, n).await);
    }
    let through = t.notify_pending.iter().map(|n| n.seq).max().unwrap_or(0);
    let mut added = Vec::new();
    if !sends.is_empty() {
        let head = Outbox {
            id: t.id.clone(),
            workflow_name: t.workflow_name.clone(),
            task_id: t.task_id,
            ..Outbox::default()
        };
        added = outbox::enqueue(state, &head, sends, through).await?;
        super::report_impossible(t, &added);
    }
    fault::point(Point::NotifyBeforeClear);
    let cleared = clear(state, t).await;
    // Woken after the clear, the loop's sweep does not find these notices again.
    if !added.is_empty() {
        state.scheduler_wake.notifications.notify_one();
    }
    cleared
}

/// Remove the notices from the task if nobody wrote it since `t` was read (else whoever reads
/// it next finds them, queued already, and clears them).
async fn clear(state: &AppState, t: &mut Task) -> StoreResult<()> {
    let filter = Filter::id(&t.id).and(Filter::eq("version", t.version));
    let update = Update::new()
        .set("notify_pending", serde_json::Value::Array(Vec::new()))
        .set("notify_pending_ms", 0)
        .inc("version", 1);
    if state.tasks.tasks.update_one(&filter, &update).await? {
        t.notify_pending.clear();
        t.notify_pending_ms = 0;
        t.version += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn task(types: &[&str], enabled: bool) -> Task {
        Task {
            workflow_args: json!({"notify_ctls": [{"enabled": enabled, "webhook_type": "webhook",
                "notify_type": types, "webhook_notification_config": {"address": "http://x"}}]}),
            version: 4,
            ..Task::default()
        }
    }

    #[test]
    fn records_only_what_a_setting_may_want() {
        let mut t = task(&["created", "changed"], true);
        record(&mut t, Status::Running, 10);
        assert!(t.notify_pending.is_empty());
        record(&mut t, Status::Created, 10);
        record(&mut t, Status::Passed, 20);
        let seqs: Vec<i64> = t.notify_pending.iter().map(|n| n.seq).collect();
        assert_eq!(seqs, [5, 6], "after the version, then in order");
        assert_eq!((t.notify_seq, t.notify_pending_ms), (6, 10));
        assert_eq!(t.notify_pending[1].facts.status, Status::Passed);

        let mut off = task(&["created"], false);
        record(&mut off, Status::Created, 10);
        assert!(off.notify_pending.is_empty() && off.notify_pending_ms == 0);
    }

    #[test]
    fn bounded() {
        let mut t = task(&["created"], true);
        for _ in 0..MAX_PENDING + 3 {
            record(&mut t, Status::Created, 10);
        }
        assert_eq!(t.notify_pending.len(), MAX_PENDING);
        assert_eq!(t.notify_pending[0].seq, 5 + 3);
    }
}
