//! Workflow notifications: the messages a workflow's `notify_ctls` (spec/workflow.md §1.5, with
//! a task's `notify_inputs` applied, §3.4) ask for when one of its tasks changes status.
//!
//! A transactional outbox, in two steps, so that a crash between them loses nothing:
//! - [`pending::record`]: whoever writes a status change (the API for `created`, the engine for
//!   `running`, `wait_for_approval` and the end) records a notice of it on the task, in the
//!   same conditional write as the status. Of several replicas only the one whose write won
//!   has recorded it; nothing else is written, so the task's own status never waits on or fails
//!   because of notifications.
//! - [`pending::flush`] (the writer, right after its write) or [`pending::sweep`] (the
//!   background loop, for notices a crash or a store failure left) turns the notices into sends
//!   for the settings that want them, queues them in the store ([`outbox`], idempotent) and
//!   then clears them from the task. A crash in between queues them again, adding nothing.
//! - [`deliver`] (a background loop of every replica that runs workers) claims queued sends with
//!   a lease and POSTs them through the release-plan hook client — its egress policy, timeout
//!   and no redirects — retrying on `notify_retry_secs`. A restart loses nothing queued; a send
//!   accepted just before a crash may be sent again (at least once).
//! - Settings of types that need an integration this server lacks (`feishu_app`,
//!   `feishu_person`, `mail`) or that cannot be sent (no hook address) are recorded as failed
//!   sends naming why, logged and counted, when they would fire; nothing is sent.
//!
//! The outcome of every send is on the task detail (`notifications`, our extension) and in the
//! `workflow_notifications_total{webhook_type,result}` counter; hook addresses and tokens are
//! never logged, recorded nor queued (they are read from the task at each attempt).

pub mod ctl;
pub mod deliver;
pub mod message;
pub mod outbox;
pub mod pending;

use serde_json::Value;

use crate::state::AppState;
use crate::workflow::model::arr_of;
use crate::workflow::task::{Status, Task};
use outbox::{Send, SendState};
use pending::Notice;

/// The status `Zadig` calls "changed": a final status other than the previous task's.
const CHANGED: &str = "changed";

/// Whether a setting listing `types` wants to hear of `event`. A rejected approval is a
/// failure outcome, so settings that list `failed` hear of `reject` too (as in Zadig).
pub fn subscribed(types: &[&str], event: Status) -> bool {
    types.contains(&event.as_str()) || (event == Status::Reject && types.contains(&"failed"))
}

/// `webhook_type` as a metric label: the known types, else `other` (the value is user input).
pub fn type_label(kind: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "dingding",
        "feishu",
        "feishu_app",
        "feishu_person",
        "wechat",
        "msteams",
        "mail",
        "webhook",
    ];
    KNOWN
        .iter()
        .find(|k| **k == kind)
        .copied()
        .unwrap_or("other")
}

/// Count a send's outcome (`sent`, `retrying`, `failed`).
pub fn count(kind: &str, result: &'static str) {
    metrics::counter!("workflow_notifications_total", "webhook_type" => type_label(kind), "result" => result)
        .increment(1);
}

/// Whether a setting listing `types` may want to hear of `event` (for `changed`, whether the
/// task ended otherwise than the previous one is decided when the notice is queued).
fn may_want(types: &[&str], event: Status) -> bool {
    subscribed(types, event) || (types.contains(&CHANGED) && ends(event))
}

/// The statuses `changed` is about.
fn ends(event: Status) -> bool {
    event.is_final() || event == Status::Pause
}

/// Whether an enabled setting of `task` may want to hear of `event`.
pub fn wanted(task: &Task, event: Status) -> bool {
    arr_of(&task.workflow_args, "notify_ctls")
        .iter()
        .any(|c| ctl::enabled(c) && may_want(&ctl::notify_types(c), event))
}

/// Whether a task that ended with `event` ended otherwise than the task before it (Zadig's
/// `changed`: a missing or unreadable previous task counts as a change).
async fn changed(state: &AppState, task: &Task, event: Status) -> bool {
    if !ends(event) {
        return false;
    }
    match state.tasks.get(&task.workflow_name, task.task_id - 1).await {
        Ok(Some(prev)) => prev.status != event,
        _ => true,
    }
}

/// The send for setting `ctl` (index `i`) about notice `n`: pending, or failed at once when
/// the setting cannot be sent.
fn new_send(state: &AppState, n: &Notice, i: usize, ctl: &Value) -> Send {
    let mut send = Send {
        id: format!("{}:{i}", n.seq),
        seq: n.seq,
        ctl: i,
        webhook_type: ctl::kind(ctl).to_string(),
        event: n.event,
        facts: n.facts.clone(),
        next_attempt_ms: state.clock.now_ms(),
        ..Send::default()
    };
    if let Err(why) = ctl::channel(ctl) {
        send.state = SendState::Failed;
        send.error = why;
        send.done_at = state.clock.now();
        send.next_attempt_ms = 0;
    }
    send
}

/// The sends `task`'s settings ask for about notice `n`.
async fn sends_for(state: &AppState, task: &Task, n: &Notice) -> Vec<Send> {
    let mut is_change = None;
    let mut sends = Vec::new();
    for (i, c) in arr_of(&task.workflow_args, "notify_ctls")
        .iter()
        .enumerate()
    {
        if !ctl::enabled(c) {
            continue;
        }
        let types = ctl::notify_types(c);
        let mut wants = subscribed(&types, n.event);
        if !wants && types.contains(&CHANGED) {
            if is_change.is_none() {
                is_change = Some(changed(state, task, n.event).await);
            }
            wants = is_change == Some(true);
        }
        if wants {
            sends.push(new_send(state, n, i, c));
        }
    }
    sends
}

/// Log and count the sends just queued that failed at once (once: a send queued again after
/// a crash is not added again).
fn report_impossible(task: &Task, added: &[Send]) {
    for s in added.iter().filter(|s| s.state == SendState::Failed) {
        let (kind, i, event) = (&s.webhook_type, s.ctl, s.event);
        tracing::warn!(workflow = %task.workflow_name, task_id = task.task_id, notify_ctl = i,
            "notification {i} ({kind}) of task {}#{} ({event}) cannot be sent: {}",
            task.workflow_name, task.task_id, s.error);
        count(kind, "failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        assert!(subscribed(&["running", "passed"], Status::Running));
        assert!(!subscribed(&["running", "passed"], Status::Failed));
        assert!(subscribed(&["failed"], Status::Reject));
        assert!(!subscribed(&["reject"], Status::Failed));
        assert!(subscribed(&["created"], Status::Created));
        assert_eq!(type_label("dingding"), "dingding");
        assert_eq!(type_label("anything"), "other");
    }
}
