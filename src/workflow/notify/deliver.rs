//! Delivery of queued workflow notifications (see the module above): a loop that claims the
//! notifications of a task with a due send ([`outbox::claim`], a lease renewed while it works),
//! sends its due sends in order — one setting's messages never overtake each other: a setting
//! whose send must wait holds back its later ones — and records each outcome.
//!
//! Each POST goes through the release-plan hook client ([`hooks::Sender`]):
//! the hook egress policy (`hook_denied_networks` / `hook_allowed_networks`), a timeout of
//! `notify_timeout_secs`, no proxy, no redirects. A failed send is tried again after each delay
//! of `notify_retry_secs` (business clock), then given up. A send accepted by the receiver but
//! not recorded (the process died in between) is sent again by the next claimer: delivery is
//! at least once.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::message::{self, Context, Reply};
use super::outbox::{self, Outbox, Send, SendState};
use super::{count, ctl};
use crate::release_plan::hooks;
use crate::state::AppState;
use crate::worker::{Pool, renewing};

/// Tasks whose notifications one replica sends at once.
const SLOTS: usize = 8;

fn lease_ttl(state: &AppState) -> Duration {
    Duration::from_secs(state.config.release_plan_lease_secs)
}

/// The loop, until shutdown.
pub async fn run(state: AppState) {
    let sender = hooks::Sender::new(
        &state.config,
        Duration::from_secs(state.config.notify_timeout_secs),
    );
    let poll = Duration::from_millis(state.config.release_plan_poll_ms);
    let ttl = lease_ttl(&state);
    let mut pool = Pool::new(SLOTS);
    loop {
        // Notices a crash (or a store failure) left on tasks are queued first.
        super::pending::sweep(&state).await;
        pool.fill(
            &state.shutdown,
            "workflow notifications",
            || outbox::claim(&state, ttl),
            |o| run_claimed(state.clone(), sender.clone(), o),
        )
        .await;
        // Due retries are found by the next round (the poll), as are sends other replicas
        // queued.
        if !pool
            .wait(&state.shutdown, &state.scheduler_wake.notifications, poll)
            .await
        {
            break;
        }
    }
    pool.join().await;
}

async fn run_claimed(state: AppState, sender: hooks::Sender, o: Outbox) {
    let token = state.shutdown.child_token();
    let ttl = lease_ttl(&state);
    let id = o.id.clone();
    let what = format!(
        "the notifications of task {}#{}",
        o.workflow_name, o.task_id
    );
    renewing(
        send_due(&state, &sender, o, &token),
        ttl,
        &token,
        &what,
        || outbox::renew(&state, &id, ttl),
    )
    .await;
    token.cancel();
    if let Err(e) = outbox::release(&state, &id).await {
        tracing::warn!(error = %e, "cannot give back {what}: {e}");
    }
}

/// What became of one attempt.
enum Outcome {
    Sent,
    /// Failed after `posts_done` POSTs were accepted; may be tried again.
    Failed {
        posts_done: usize,
        error: String,
    },
    /// Cannot ever be sent.
    Impossible(String),
}

/// Send the claimed task's due sends, in order; stop when the claim is lost.
async fn send_due(state: &AppState, sender: &hooks::Sender, o: Outbox, token: &CancellationToken) {
    // The settings (with their hook addresses, opened from the store's encryption) are read
    // from the task, never copied into the notifications.
    let task = match state.tasks.tasks.get(&o.id).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read task {}#{} to notify: {e}", o.workflow_name, o.task_id);
            return;
        }
    };
    let ctls: &[Value] = task.as_ref().map_or(&[], |t| {
        crate::workflow::model::arr_of(&t.workflow_args, "notify_ctls")
    });
    let now_ms = state.clock.now_ms();
    let mut held_back = HashSet::new();
    for send in o.sends.iter().filter(|s| s.state == SendState::Pending) {
        if token.is_cancelled() {
            return;
        }
        if held_back.contains(&send.ctl) || send.next_attempt_ms > now_ms {
            held_back.insert(send.ctl);
            continue;
        }
        let outcome = match (&task, ctls.get(send.ctl)) {
            (None, _) => Outcome::Impossible("the task was deleted".to_string()),
            (Some(_), None) => Outcome::Impossible(format!(
                "the task has no notify_ctls[{}] any more",
                send.ctl
            )),
            (Some(_), Some(c)) => attempt(state, sender, c, send).await,
        };
        if !matches!(outcome, Outcome::Sent) {
            held_back.insert(send.ctl);
        }
        record(state, &o, send, outcome).await;
    }
}

/// Send the POSTs of `send` not accepted yet.
async fn attempt(state: &AppState, sender: &hooks::Sender, c: &Value, send: &Send) -> Outcome {
    let channel = match ctl::channel(c) {
        Ok(ch) => ch,
        Err(why) => return Outcome::Impossible(why),
    };
    let ctx = Context {
        base: state.config.public_base(),
        now: state.clock.now(),
    };
    let posts = message::posts(&channel, &send.facts, &ctx);
    for (i, p) in posts.iter().enumerate().skip(send.posts_done) {
        let body = p.body.to_string();
        let answer = sender.post(&p.url, "hook address", &p.headers, body).await;
        let error = match answer {
            Ok(answer) => match refusal(p.reply, &answer) {
                None => continue,
                Some(why) => why,
            },
            Err(why) => why,
        };
        return Outcome::Failed {
            posts_done: i,
            error,
        };
    }
    Outcome::Sent
}

/// Why a chat bot refused a message it answered with 2xx (DingTalk, WeCom and Lark report
/// refusals — a bad key, a rate limit, a keyword filter — in the body).
fn refusal(reply: Reply, answer: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(answer).ok()?;
    let (code, msg) = match reply {
        Reply::Status => return None,
        Reply::ErrCode => (v.get("errcode")?, v.get("errmsg")),
        Reply::LarkCode => (
            v.get("code").or_else(|| v.get("StatusCode"))?,
            v.get("msg").or_else(|| v.get("StatusMessage")),
        ),
    };
    if code.as_i64() == Some(0) {
        return None;
    }
    let msg: String = msg
        .and_then(Value::as_str)
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect();
    Some(format!(
        "the receiver refused the message: code {code}: {msg}"
    ))
}

/// Store how the attempt went (retry time, or the end), log and count it.
async fn record(state: &AppState, o: &Outbox, send: &Send, outcome: Outcome) {
    let (now, now_ms) = (state.clock.now(), state.clock.now_ms());
    let retry = state
        .config
        .notify_retry_secs
        .get(send.attempts as usize)
        .map(|secs| now_ms.saturating_add(i64::try_from(*secs).unwrap_or(i64::MAX / 2000) * 1000));
    let (kind, n) = (&send.webhook_type, send.attempts + 1);
    let task = format!("{}#{}", o.workflow_name, o.task_id);
    let result = match &outcome {
        Outcome::Sent => {
            tracing::info!(workflow = %o.workflow_name, task_id = o.task_id, notify_ctl = send.ctl,
                "notification {} ({kind}) of task {task} ({}) sent", send.ctl, send.event);
            "sent"
        }
        Outcome::Failed { error, .. } if retry.is_some() => {
            tracing::warn!(workflow = %o.workflow_name, task_id = o.task_id, notify_ctl = send.ctl,
                "notification {} ({kind}) of task {task} ({}) attempt {n} failed, will retry: {error}", send.ctl, send.event);
            "retrying"
        }
        Outcome::Failed { error, .. } | Outcome::Impossible(error) => {
            tracing::warn!(workflow = %o.workflow_name, task_id = o.task_id, notify_ctl = send.ctl,
                "notification {} ({kind}) of task {task} ({}) failed after {n} attempt(s), given up: {error}", send.ctl, send.event);
            "failed"
        }
    };
    count(kind, result);
    let settled = outbox::settle(state, &o.id, &send.id, |s| {
        s.attempts += 1;
        match &outcome {
            Outcome::Sent => {
                s.state = SendState::Sent;
                s.error.clear();
                s.done_at = now;
            }
            Outcome::Failed { posts_done, error } => {
                s.posts_done = *posts_done;
                error.clone_into(&mut s.error);
                match retry {
                    Some(at) => s.next_attempt_ms = at,
                    None => {
                        s.state = SendState::Failed;
                        s.done_at = now;
                    }
                }
            }
            Outcome::Impossible(error) => {
                error.clone_into(&mut s.error);
                s.state = SendState::Failed;
                s.done_at = now;
            }
        }
    })
    .await;
    if let Err(e) = settled {
        tracing::warn!(error = %e, "cannot record notification {} of task {task}: {e}", send.ctl);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_in_a_200_answer() {
        assert_eq!(
            refusal(Reply::ErrCode, br#"{"errcode":0,"errmsg":"ok"}"#),
            None
        );
        let r = refusal(
            Reply::ErrCode,
            br#"{"errcode":310000,"errmsg":"keywords not in content"}"#,
        );
        assert!(r.unwrap().contains("310000"));
        assert_eq!(refusal(Reply::LarkCode, br#"{"StatusCode":0}"#), None);
        assert!(refusal(Reply::LarkCode, br#"{"code":19001,"msg":"param invalid"}"#).is_some());
        assert_eq!(refusal(Reply::ErrCode, b""), None);
        assert_eq!(refusal(Reply::Status, br#"{"errcode":1}"#), None);
    }
}
