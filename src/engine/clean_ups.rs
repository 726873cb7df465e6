//! Clean-ups that failed when their task ended, kept and retried in the background.
//!
//! When a task ends, each job task's type undoes what it set up for the task's duration
//! ([`crate::workflow::jobs::JobKind::clean`], e.g. a blue-green deploy's blue copy); the runner
//! tries a few times a little apart (`runner::clean_up`). What still fails then — the cluster
//! was unreachable for a minute — is not forgotten:
//!
//! - [`keep`] stores a [`PendingCleanUp`] (collection `clean_ups`, both backends; the job task
//!   as it was, its credential variables sealed like the task's) and returns the [`Note`] the
//!   job task's error gets: `clean-up failed: <error>; retried in the background for up to
//!   <span>`;
//! - [`run`], one of the engine's background loops, claims due records with a lease on the
//!   record (one find-one-and-update, so with several replicas on one store each retry runs
//!   once; a crashed replica's claim expires), renews it while the clean-up runs, and settles:
//!   success rewrites the note to say the clean-up succeeded later, failure schedules the next
//!   retry (`engine_clean_up_retry_secs`, doubling up to `engine_clean_up_retry_max_secs`) until
//!   `engine_clean_up_give_up_secs` after the first failure, when the note says it was given up.
//!
//! Due times are on the injected business clock (tests move it instead of waiting); leases on
//! the wall clock ([`crate::store::lease`]). A retry runs whatever else the project runs: a
//! newer task may have set up objects under the same names (a new blue copy), which the job
//! type's clean-up tells from its own (their uids, its marks) and leaves alone, saying so in
//! the note. Only a record from before clean-ups could tell
//! ([`crate::workflow::jobs::JobKind::clean_waits_for_idle_project`]) waits until no task of
//! its project holds a slot.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::state::AppState;
use crate::store::lease::Encoding;
use crate::store::retry::Attempts;
use crate::store::{Dir, Filter, FindOptions, StoreError, StoreResult, Update};
use crate::worker::{Pool, renewing, wait_due};
use crate::workflow::task::{JobTask, Task};

/// The collection of pending clean-ups.
pub const COLLECTION: &str = "clean_ups";

/// Where a pending clean-up's claim is kept.
const CLAIM: Encoding = Encoding::at("lease_owner", "lease_until_ms");

/// Clean-ups retried at once by one process.
const SLOTS: usize = 4;

/// A job task's clean-up still to be done.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingCleanUp {
    /// `<task storage id>/<job task name>`.
    pub id: String,
    /// The task's storage id.
    pub task: String,
    pub workflow: String,
    pub task_id: i64,
    pub project: String,
    /// The job task when its task ended: what [`crate::workflow::jobs::JobKind::clean`] reads
    /// (a retry of the task may regenerate the stored one).
    pub job: JobTask,
    /// The note on the job task's error saying the clean-up is retried; replaced when it ends.
    pub note: String,
    /// The error of the clean-up when its task ended.
    pub first_error: String,
    pub last_error: String,
    /// Background attempts made.
    pub attempts: u32,
    /// Business-clock ms: when it failed first, when it is due, when it is given up.
    pub first_failed_ms: i64,
    pub next_at_ms: i64,
    pub give_up_ms: i64,
    #[serde(default)]
    pub lease_owner: String,
    #[serde(default)]
    pub lease_until_ms: i64,
}

/// A change to a job task's error about its clean-up: `new` replaces `old` where the error
/// holds it; else it is added (`append`) or the error stays (a retry of the task has written a
/// new error since, which a late note would confuse).
#[derive(Debug, Clone)]
pub struct Note {
    pub job: String,
    pub old: Option<String>,
    pub new: String,
    pub append: bool,
}

/// Apply `notes` to the job tasks of `t`; true when an error changed.
pub fn apply_notes(t: &mut Task, notes: &[Note]) -> bool {
    let mut changed = false;
    for n in notes {
        for j in t.stages.iter_mut().flat_map(|s| &mut s.jobs) {
            if j.name != n.job {
                continue;
            }
            let next = match n.old.as_deref() {
                Some(old) if !old.is_empty() && j.error.contains(old) => {
                    j.error.replace(old, &n.new)
                }
                // Said already (a clean-up run again: recovery).
                _ if !n.append || j.error.contains(&n.new) => continue,
                _ if j.error.is_empty() => n.new.clone(),
                _ => format!("{}; {}", j.error, n.new),
            };
            changed |= next != j.error;
            j.error = next;
        }
    }
    changed
}

/// A span of seconds for a person: `6h`, `1h30m`, `45s`.
fn span(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if out.is_empty() {
        "0s".to_string()
    } else {
        out
    }
}

/// A business-clock moment as RFC 3339 (UTC, seconds).
fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

/// Store the clean-ups of `task` that failed (`(job task, error)`, from the runner) to be
/// retried, and say so on their job tasks. A clean-up that cannot be stored is only reported.
pub async fn keep(state: &AppState, task: &Task, failed: &[(String, String)]) -> Vec<Note> {
    let cfg = &state.config;
    let now = state.clock.now_ms();
    let mut notes = Vec::new();
    for (name, error) in failed {
        let Some(job) = task
            .stages
            .iter()
            .flat_map(|s| &s.jobs)
            .find(|j| j.name == *name)
        else {
            continue;
        };
        let id = format!("{}/{name}", task.id);
        let old = match state.engine.clean_ups.get(&id).await {
            Ok(p) => p.map(|p| p.note),
            Err(_) => None,
        };
        let give_up = cfg.engine_clean_up_give_up_secs;
        let note = format!(
            "clean-up failed: {error}; retried in the background for up to {}",
            span(give_up)
        );
        let pending = PendingCleanUp {
            id: id.clone(),
            task: task.id.clone(),
            workflow: task.workflow_name.clone(),
            task_id: task.task_id,
            project: task.project_name.clone(),
            job: job.clone(),
            note: note.clone(),
            first_error: error.clone(),
            last_error: error.clone(),
            attempts: 0,
            first_failed_ms: now,
            next_at_ms: now.saturating_add(secs_ms(cfg.engine_clean_up_retry_secs)),
            give_up_ms: now.saturating_add(secs_ms(give_up)),
            lease_owner: String::new(),
            lease_until_ms: 0,
        };
        let new = match upsert(state, &pending).await {
            Ok(()) => note,
            Err(e) => {
                tracing::error!(workflow = %task.workflow_name, task_id = task.task_id, job = %name,
                    "cannot keep the failed clean-up of job {name} to retry it: {e}");
                format!("clean-up failed: {error}")
            }
        };
        notes.push(Note {
            job: name.clone(),
            old,
            new,
            append: true,
        });
    }
    if !notes.is_empty() {
        state.engine.clean_up_wake.notify_one();
    }
    notes
}

fn secs_ms(secs: u64) -> i64 {
    i64::try_from(secs)
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000)
}

/// Write `p` in place of the record of its id, or insert it (a racing insert is replaced).
async fn upsert(state: &AppState, p: &PendingCleanUp) -> StoreResult<()> {
    let store = &state.engine.clean_ups;
    for _ in 0..2 {
        if store.replace(&Filter::id(&p.id), p).await? {
            return Ok(());
        }
        match store.insert(p).await {
            Err(StoreError::Duplicate(_)) => {}
            done => return done,
        }
    }
    Err(StoreError::Backend(format!(
        "pending clean-up {} kept changing while it was written",
        p.id
    )))
}

/// Apply `notes` to the stored task `id` (a conditional write, re-read on a lost race); a task
/// that is gone or already says it is nothing to do.
pub async fn write_notes(state: &AppState, id: &str, notes: &[Note]) -> StoreResult<()> {
    if notes.is_empty() {
        return Ok(());
    }
    let mut attempts = Attempts::new();
    while attempts.next().await {
        let Some(mut t) = state.tasks.tasks.get(id).await? else {
            return Ok(());
        };
        if !apply_notes(&mut t, notes) || state.tasks.save(&mut t).await? {
            return Ok(());
        }
    }
    Err(crate::store::retry::exhausted(&format!(
        "task {id} (noting its clean-up)"
    )))
}

/// When the next retry is due after background attempt `attempts` (1 = the first) failed at
/// `now`, or `None`: give up. The pause doubles from `first_secs` up to `max_secs`; the last
/// retry comes at `give_up_ms`.
pub fn next_retry(
    (first_secs, max_secs): (u64, u64),
    attempts: u32,
    now: i64,
    give_up_ms: i64,
) -> Option<i64> {
    if now >= give_up_ms {
        return None;
    }
    let doubled = first_secs.saturating_mul(1u64 << attempts.min(32));
    let pause = secs_ms(doubled.min(max_secs));
    Some(now.saturating_add(pause).min(give_up_ms))
}

/// The background loop: retry every due clean-up, then sleep until the next is due (or the
/// sweep interval, for records of other replicas).
pub async fn run(state: AppState) {
    let poll = Duration::from_millis(state.config.engine_sweep_interval_ms);
    let mut pool = Pool::new(SLOTS);
    loop {
        pool.drain(
            &state.shutdown,
            "clean-up retries",
            || claim(&state),
            |p| retry(state.clone(), p),
        )
        .await;
        let next = earliest(&state).await;
        let (clock, wake) = (state.clock.as_ref(), &state.engine.clean_up_wake);
        if !wait_due(clock, &state.shutdown, next, wake, poll).await {
            return;
        }
    }
}

fn lease_ttl(state: &AppState) -> Duration {
    Duration::from_secs(state.config.engine_lease_ttl_secs)
}

/// Claim the most overdue pending clean-up for this process.
async fn claim(state: &AppState) -> StoreResult<Option<PendingCleanUp>> {
    let due = Filter::lte("next_at_ms", state.clock.now_ms()).and(CLAIM.free());
    let update = CLAIM.take(Update::new(), &state.instance_id, lease_ttl(state));
    let sort = [("next_at_ms".to_string(), Dir::Asc)];
    state
        .engine
        .clean_ups
        .find_one_and_update(&due, &sort, &update)
        .await
}

/// When the next pending clean-up is due.
async fn earliest(state: &AppState) -> Option<i64> {
    let opts = FindOptions::sort("next_at_ms", Dir::Asc).limit(1);
    match state.engine.clean_ups.find(&Filter::All, &opts).await {
        Ok(v) => v.first().map(|p| p.next_at_ms),
        Err(e) => {
            tracing::warn!("cannot read the pending clean-ups: {e}");
            None
        }
    }
}

/// How a background attempt ended.
enum Outcome {
    /// Done; what the clean-up left to a newer task, if anything.
    Done(Option<String>),
    Failed(String),
    /// A task of the project runs and the record cannot tell its objects: not tried (see the
    /// module doc).
    Deferred,
}

/// Retry one claimed clean-up, renewing its claim meanwhile, and settle it.
async fn retry(state: AppState, p: PendingCleanUp) {
    let token = state.shutdown.child_token();
    let ttl = lease_ttl(&state);
    let what = format!(
        "the clean-up of job {} of task {}#{}",
        p.job.name, p.workflow, p.task_id
    );
    let renew = || {
        let fence = Filter::id(&p.id).and(CLAIM.taken_by(&state.instance_id));
        let update = CLAIM.renew(Update::new(), ttl);
        let store = state.engine.clean_ups.clone();
        async move { store.update_one(&fence, &update).await }
    };
    let outcome = renewing(attempt(&state, &p, &token), ttl, &token, &what, renew).await;
    let settled = match outcome {
        Some(o) => settle(&state, &p, o).await,
        // Stopped (shutdown, claim lost): given back for the next claim.
        None => update_mine(&state, &p, CLAIM.clear(Update::new())).await,
    };
    if let Err(e) = settled {
        tracing::warn!(workflow = %p.workflow, task_id = p.task_id, job = %p.job.name,
            "cannot record the retry of {what} (it is tried again once its claim expires): {e}");
    }
}

/// One background attempt; `None` when stopped first.
async fn attempt(
    state: &AppState,
    p: &PendingCleanUp,
    token: &CancellationToken,
) -> Option<Outcome> {
    let Some(ty) = p.job.kind() else {
        return Some(Outcome::Done(None));
    };
    if ty.kind().clean_waits_for_idle_project(&p.job) {
        let busy =
            Filter::eq("project_name", p.project.as_str()).and(super::dispatch::holding_slot());
        match state.tasks.tasks.count(&busy).await {
            Ok(0) => {}
            Ok(_) => return Some(Outcome::Deferred),
            Err(e) => {
                return Some(Outcome::Failed(format!(
                    "cannot read the project's tasks: {e}"
                )));
            }
        }
    }
    tokio::select! {
        r = ty.kind().clean(state, &p.project, &p.job) => Some(match r {
            Ok(left) => Outcome::Done(left),
            Err(e) => Outcome::Failed(e),
        }),
        () = token.cancelled() => None,
    }
}

/// Record how an attempt ended: on the job task's error when the clean-up is over (done or
/// given up; the record goes), else on the record (the next retry).
async fn settle(state: &AppState, p: &PendingCleanUp, outcome: Outcome) -> StoreResult<()> {
    let cfg = &state.config;
    let now = state.clock.now_ms();
    let (job, task) = (&p.job.name, format!("{}#{}", p.workflow, p.task_id));
    let attempts = p.attempts + 1;
    let end = match outcome {
        Outcome::Deferred => {
            let next = now.saturating_add(secs_ms(cfg.engine_clean_up_retry_secs));
            let update = CLAIM.clear(Update::new().set("next_at_ms", next));
            return update_mine(state, p, update).await;
        }
        Outcome::Done(left) => {
            tracing::info!(workflow = %p.workflow, task_id = p.task_id, job = %job,
                "clean-up of job {job} of task {task} succeeded on background retry {attempts}");
            metrics::counter!("engine_clean_up_retries_total", "outcome" => "succeeded")
                .increment(1);
            let left = left.map(|l| format!("; {l}")).unwrap_or_default();
            format!(
                "clean-up failed at first ({}) and succeeded on background retry {attempts} at {}{left}",
                p.first_error,
                when(now)
            )
        }
        Outcome::Failed(e) => {
            let backoff = (
                cfg.engine_clean_up_retry_secs,
                cfg.engine_clean_up_retry_max_secs,
            );
            if let Some(next) = next_retry(backoff, attempts, now, p.give_up_ms) {
                tracing::warn!(workflow = %p.workflow, task_id = p.task_id, job = %job,
                    "clean-up of job {job} of task {task} failed again (background retry {attempts}): {e}");
                metrics::counter!("engine_clean_up_retries_total", "outcome" => "failed")
                    .increment(1);
                let update = Update::new()
                    .set("attempts", i64::from(attempts))
                    .set("last_error", e.as_str())
                    .set("next_at_ms", next);
                return update_mine(state, p, CLAIM.clear(update)).await;
            }
            tracing::error!(workflow = %p.workflow, task_id = p.task_id, job = %job,
                "clean-up of job {job} of task {task} given up after {attempts} background retries: {e}");
            metrics::counter!("engine_clean_up_retries_total", "outcome" => "given_up")
                .increment(1);
            let over = u64::try_from((now - p.first_failed_ms) / 1000).unwrap_or(0);
            let retries = if attempts == 1 { "retry" } else { "retries" };
            format!(
                "clean-up failed: {e}; given up after {attempts} background {retries} over {}: undo it by hand",
                span(over)
            )
        }
    };
    let note = Note {
        job: job.clone(),
        old: Some(p.note.clone()),
        new: end,
        append: false,
    };
    write_notes(state, &p.task, &[note]).await?;
    let mine = Filter::id(&p.id).and(CLAIM.taken_by(&state.instance_id));
    state.engine.clean_ups.delete(&mine).await.map(|_| ())
}

/// Update the record of `p` while this process holds its claim.
async fn update_mine(state: &AppState, p: &PendingCleanUp, update: Update) -> StoreResult<()> {
    let mine = Filter::id(&p.id).and(CLAIM.taken_by(&state.instance_id));
    state
        .engine
        .clean_ups
        .update_one(&mine, &update)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_up_to_the_cap_and_end_at_the_give_up() {
        let backoff = (30, 100);
        assert_eq!(next_retry(backoff, 1, 0, 1_000_000), Some(60_000));
        assert_eq!(next_retry(backoff, 2, 0, 1_000_000), Some(100_000));
        assert_eq!(next_retry(backoff, 40, 0, 1_000_000), Some(100_000));
        assert_eq!(next_retry(backoff, 1, 990_000, 1_000_000), Some(1_000_000));
        assert_eq!(next_retry(backoff, 3, 1_000_000, 1_000_000), None);
    }

    #[test]
    fn spans_read_as_hours_minutes_seconds() {
        assert_eq!(span(21_600), "6h");
        assert_eq!(span(5_430), "1h30m30s");
        assert_eq!(span(45), "45s");
        assert_eq!(span(0), "0s");
    }

    #[test]
    fn notes_replace_their_old_text_or_are_added() {
        let mut t: Task = serde_json::from_value(serde_json::json!({"id": "t", "task_id": 1,
            "workflow_name": "w", "project_name": "p", "status": "passed", "release": null,
            "stages": [{"name": "s", "jobs": [{"name": "a", "type": "freestyle", "error": "boom; clean-up failed: x; retried"},
                {"name": "b", "type": "freestyle", "error": "new error"}]}]}))
        .unwrap();
        let note = |job: &str, old: &str, append| Note {
            job: job.into(),
            old: Some(old.into()),
            new: "clean-up succeeded".into(),
            append,
        };
        assert!(apply_notes(
            &mut t,
            &[note("a", "clean-up failed: x; retried", false)]
        ));
        assert!(!apply_notes(
            &mut t,
            &[note("b", "clean-up failed: x; retried", false)]
        ));
        assert!(apply_notes(&mut t, &[note("b", "gone", true)]));
        // Said already: a clean-up run again (recovery) adds nothing.
        assert!(!apply_notes(&mut t, &[note("b", "gone", true)]));
        let errors: Vec<&str> = t.stages[0].jobs.iter().map(|j| j.error.as_str()).collect();
        assert_eq!(
            errors,
            ["boom; clean-up succeeded", "new error; clean-up succeeded"]
        );
    }
}
