//! Workflow notifications: the messages a workflow's `notify_ctls` (spec/workflow.md §1.5, with
//! a task's `notify_inputs` applied, §3.4) ask for when one of its tasks changes status.
//!
//! - [`status_changed`] is called once per status change, by whoever wrote it (the API for
//!   `created`, the engine for `running`, `wait_for_approval` and the end): each enabled
//!   setting whose `notify_type` lists the new status gets a send queued in the store
//!   ([`outbox`]). A change is written once (every task write is conditional), so of several
//!   replicas only the writer queues it, and a send's id (task version + setting) makes a
//!   repeated call harmless.
//! - [`deliver`] (a background loop of every replica that runs workers) claims queued sends with
//!   a lease and POSTs them through the release-plan hook client — its egress policy, timeout
//!   and no redirects — retrying on `notify_retry_secs`. A restart loses nothing queued.
//! - Settings of types that need an integration this server lacks (`feishu_app`,
//!   `feishu_person`, `mail`) or that cannot be sent (no hook address) are recorded as failed
//!   sends naming why, logged and counted, when they would fire; nothing is sent.
//!
//! The outcome of every send is on the task detail (`notifications`, our extension) and in the
//! `workflow_notifications_total{webhook_type,result}` counter; hook addresses and tokens are
//! never logged or recorded.

pub mod ctl;
pub mod deliver;
pub mod message;
pub mod outbox;

use serde_json::Value;

use crate::state::AppState;
use crate::workflow::model::arr_of;
use crate::workflow::task::{Status, Task};
use outbox::{Outbox, Send, SendState};

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

/// Whether a task that ended with `event` ended otherwise than the task before it (Zadig's
/// `changed`: a missing or unreadable previous task counts as a change).
async fn changed(state: &AppState, task: &Task, event: Status) -> bool {
    if !(event.is_final() || event == Status::Pause) {
        return false;
    }
    match state.tasks.get(&task.workflow_name, task.task_id - 1).await {
        Ok(Some(prev)) => prev.status != event,
        _ => true,
    }
}

/// The send for setting `ctl` (index `i`) about `event`: pending, or failed at once when the
/// setting cannot be sent (logged and counted).
fn new_send(state: &AppState, task: &Task, event: Status, i: usize, ctl: &Value) -> Send {
    let kind = ctl::kind(ctl).to_string();
    let mut send = Send {
        id: format!("{}:{i}", task.version),
        seq: task.version,
        ctl: i,
        webhook_type: kind.clone(),
        event,
        facts: message::Facts::of(task, event),
        next_attempt_ms: state.clock.now_ms(),
        ..Send::default()
    };
    if let Err(why) = ctl::channel(ctl) {
        tracing::warn!(workflow = %task.workflow_name, task_id = task.task_id, notify_ctl = i,
            "notification {i} ({kind}) of task {}#{} ({event}) cannot be sent: {why}",
            task.workflow_name, task.task_id);
        count(&kind, "failed");
        send.state = SendState::Failed;
        send.error = why;
        send.done_at = state.clock.now();
        send.next_attempt_ms = 0;
    }
    send
}

/// `task` (as just stored) changed status to `event`: queue the notifications its settings ask
/// for. Never fails the caller: a store failure is logged (the notification is lost).
pub async fn status_changed(state: &AppState, task: &Task, event: Status) {
    let ctls = arr_of(&task.workflow_args, "notify_ctls");
    let mut is_change = None;
    let mut sends = Vec::new();
    for (i, c) in ctls.iter().enumerate() {
        if !ctl::enabled(c) {
            continue;
        }
        let types = ctl::notify_types(c);
        let mut wants = subscribed(&types, event);
        if !wants && types.contains(&CHANGED) {
            if is_change.is_none() {
                is_change = Some(changed(state, task, event).await);
            }
            wants = is_change == Some(true);
        }
        if wants {
            sends.push(new_send(state, task, event, i, c));
        }
    }
    if sends.is_empty() {
        return;
    }
    let head = Outbox {
        id: task.id.clone(),
        workflow_name: task.workflow_name.clone(),
        task_id: task.task_id,
        ..Outbox::default()
    };
    match outbox::enqueue(state, &head, sends).await {
        Ok(()) => state.scheduler_wake.notifications.notify_one(),
        Err(e) => tracing::error!(workflow = %task.workflow_name, task_id = task.task_id,
            "cannot queue the notifications of task {}#{} ({event}): {e}", task.workflow_name, task.task_id),
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
