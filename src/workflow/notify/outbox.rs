//! The notifications of each task, in the store (`workflow_notifications`, one document per
//! task, its id the task's storage id): what is still to be sent, and what became of what was
//! sent — the record task detail shows.
//!
//! Sends are added from the notices the task's status writes recorded ([`super::pending`]):
//! [`enqueue`] is idempotent — a send's id is the notice's sequence number and the setting's
//! index, and `queued_seq` remembers the last notice queued — so moving the same notices again
//! after a crash adds nothing. They are delivered by whichever replica claims the document
//! ([`claim`], a lease on the document itself). Every write is conditional on the document's
//! `version`, so an enqueue and a delivery racing on one task lose nothing.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::message::Facts;
use crate::state::AppState;
use crate::store::lease::Encoding;
use crate::store::retry::{Attempts, exhausted};
use crate::store::{Dir, Filter, StoreError, StoreResult, Typed, Update};
use crate::wire::wire_enum;
use crate::workflow::task::Status;

/// The collection.
pub const COLLECTION: &str = "workflow_notifications";

/// Sends kept per task: the oldest finished ones go first.
const KEEP: usize = 100;

/// Where the delivery lease is kept on the document.
pub const LEASE: Encoding = Encoding::at("lease_owner", "lease_until_ms");

wire_enum! {
    /// Where one send stands.
    #[derive(Default)]
    pub enum SendState as "NotificationState" {
        #[default]
        Pending = "pending",
        Sent = "sent",
        Failed = "failed",
    }
}

/// One message for one setting (`notify_ctls[ctl]`) about one status change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Send {
    /// `<notice seq>:<ctl>`: the same change is never added twice.
    pub id: String,
    /// The notice's sequence number (sends of one setting go out in this order). Sends queued
    /// before notices existed have the task version at the change (lower than any notice's).
    pub seq: i64,
    /// The index of the setting in the task's `notify_ctls`.
    pub ctl: usize,
    pub webhook_type: String,
    /// The status the message tells.
    pub event: Status,
    pub facts: Facts,
    pub state: SendState,
    pub attempts: u32,
    /// POSTs of this send already accepted (a retry sends only the rest).
    pub posts_done: usize,
    /// Business-clock ms of the next attempt (pending sends).
    pub next_attempt_ms: i64,
    /// Why the last attempt failed (never the receiver's address).
    pub error: String,
    /// When it was sent or given up, Unix seconds.
    pub done_at: i64,
}

/// A task's notifications.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Outbox {
    /// The task's storage id.
    pub id: String,
    pub workflow_name: String,
    pub task_id: i64,
    pub sends: Vec<Send>,
    /// The sequence number of the last notice queued: notices up to it are never added again.
    pub queued_seq: i64,
    /// The earliest `next_attempt_ms` of a pending send; 0 when none is pending.
    pub due_ms: i64,
    pub lease_owner: String,
    pub lease_until_ms: i64,
    pub version: i64,
}

impl Outbox {
    /// Recompute `due_ms`, and drop the oldest finished sends beyond [`KEEP`].
    fn tidy(&mut self) {
        self.sends.sort_by_key(|s| (s.seq, s.ctl));
        while self.sends.len() > KEEP {
            match self
                .sends
                .iter()
                .position(|s| s.state != SendState::Pending)
            {
                Some(i) => {
                    self.sends.remove(i);
                }
                None => break,
            }
        }
        self.due_ms = self
            .sends
            .iter()
            .filter(|s| s.state == SendState::Pending)
            .map(|s| s.next_attempt_ms.max(1))
            .min()
            .unwrap_or(0);
    }
}

pub fn store(state: &AppState) -> Typed<Outbox> {
    Typed::new(state.backend.as_ref(), COLLECTION)
}

/// Write `o` if nobody wrote since it was read; bumps its version.
async fn save(coll: &Typed<Outbox>, o: &mut Outbox) -> StoreResult<bool> {
    let expected = o.version;
    o.version += 1;
    let ok = coll.replace_version(&o.id, expected, o).await?;
    if !ok {
        o.version -= 1;
    }
    Ok(ok)
}

/// Add `sends` (of notices up to `through`) to the notifications of a task (`head` names it);
/// sends of notices queued already (up to `queued_seq`, or the same id) are not added again.
/// Returns the sends added.
pub async fn enqueue(
    state: &AppState,
    head: &Outbox,
    sends: Vec<Send>,
    through: i64,
) -> StoreResult<Vec<Send>> {
    let coll = store(state);
    let mut attempts = Attempts::new();
    while attempts.next().await {
        let Some(mut o) = coll.get(&head.id).await? else {
            let mut o = Outbox {
                sends: sends.clone(),
                queued_seq: through,
                ..head.clone()
            };
            o.tidy();
            match coll.insert(&o).await {
                Err(StoreError::Duplicate(_)) => continue,
                other => return other.map(|()| sends),
            }
        };
        let fresh: Vec<Send> = sends
            .iter()
            .filter(|s| s.seq > o.queued_seq && !o.sends.iter().any(|have| have.id == s.id))
            .cloned()
            .collect();
        if fresh.is_empty() {
            return Ok(fresh);
        }
        o.sends.extend(fresh.iter().cloned());
        o.queued_seq = o.queued_seq.max(through);
        o.tidy();
        if save(&coll, &mut o).await? {
            return Ok(fresh);
        }
    }
    Err(exhausted("the notifications of a workflow task"))
}

/// Claim a task's notifications with a due send for this process for `ttl`.
pub async fn claim(state: &AppState, ttl: Duration) -> StoreResult<Option<Outbox>> {
    let due = Filter::gt("due_ms", 0)
        .and(Filter::lte("due_ms", state.clock.now_ms()))
        .and(LEASE.free());
    // Claiming bumps the version, so a writer holding an older copy re-reads.
    let update = LEASE.take(Update::new().inc("version", 1), &state.instance_id, ttl);
    store(state)
        .find_one_and_update(&due, &[("due_ms".to_string(), Dir::Asc)], &update)
        .await
}

/// Extend this process' claim.
pub async fn renew(state: &AppState, id: &str, ttl: Duration) -> StoreResult<bool> {
    let mine = Filter::id(id).and(LEASE.taken_by(&state.instance_id));
    store(state)
        .update_one(&mine, &LEASE.renew(Update::new(), ttl))
        .await
}

/// Give the claim back (the next due send may be taken by anyone at once).
pub async fn release(state: &AppState, id: &str) -> StoreResult<bool> {
    let mine = Filter::id(id).and(LEASE.taken_by(&state.instance_id));
    let update = LEASE.hand_over(Update::new().inc("version", 1));
    store(state).update_one(&mine, &update).await
}

/// Apply `change` to send `send_id` of the task's notifications (re-read on a lost race).
pub async fn settle(
    state: &AppState,
    id: &str,
    send_id: &str,
    change: impl Fn(&mut Send),
) -> StoreResult<()> {
    let coll = store(state);
    let mut attempts = Attempts::new();
    while attempts.next().await {
        let Some(mut o) = coll.get(id).await? else {
            return Ok(());
        };
        let Some(s) = o.sends.iter_mut().find(|s| s.id == send_id) else {
            return Ok(());
        };
        change(s);
        o.tidy();
        if save(&coll, &mut o).await? {
            return Ok(());
        }
    }
    Err(exhausted("the record of a workflow notification"))
}

/// A task's notifications (none when it has no document).
pub async fn of_task(state: &AppState, task_storage_id: &str) -> StoreResult<Vec<Send>> {
    Ok(store(state)
        .get(task_storage_id)
        .await?
        .map(|o| o.sends)
        .unwrap_or_default())
}

/// The task's notifications for its detail; a store failure shows none (logged) rather than
/// failing the detail.
pub async fn for_detail(state: &AppState, t: &crate::workflow::task::Task) -> Vec<Send> {
    of_task(state, &t.id).await.unwrap_or_else(|e| {
        tracing::warn!(workflow = %t.workflow_name, task_id = t.task_id, "cannot read the notifications of task {}#{}: {e}", t.workflow_name, t.task_id);
        Vec::new()
    })
}
