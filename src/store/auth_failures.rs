//! Failed authentications shared by every replica on one store (the `auth_failures`
//! collection), so that the throttle of [`crate::auth::throttle`] counts a client's wrong
//! tokens across replicas.
//!
//! One document per client key, holding the client's current window: `{id: <client key>,
//! count, until_ms}`. A failure increments `count` while `until_ms` is ahead of now; once it
//! has passed, the next failure overwrites the document with a new window (`count` 1,
//! `until_ms` now + window), and a missing document is created with a plain insert (a racing
//! creator loses on the duplicate key and goes around again: no reliance on upserts, as in
//! [`super::sequence`]). Each step is one atomic conditional update, in a [`super::retry`]
//! loop. A failure that brings `count` to the limit or beyond moves `until_ms` to a full window
//! from now (never earlier), which is how long the client is then refused.
//!
//! Stale documents are overwritten by their client's next failure, and [`AuthFailures::sweep`]
//! deletes the others (`until_ms` passed; indexed) — the throttle calls it at most once a
//! window per replica — so the collection holds about the clients that failed recently.

use std::sync::Arc;

use serde_json::{Value, json};

use super::retry::{Attempts, exhausted};
use super::{Backend, Collection, Doc, Filter, StoreError, StoreResult, Update, to_doc};

/// A client's shared window after a failure was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Failures in the window, this one included.
    pub count: u32,
    /// When the window ends (ms); once `count` reached the limit, when the client's block ends.
    pub until_ms: i64,
}

/// The `auth_failures` collection.
#[derive(Clone)]
pub struct AuthFailures {
    coll: Arc<dyn Collection>,
}

impl AuthFailures {
    pub fn new(backend: &dyn Backend) -> Self {
        Self {
            coll: backend.collection("auth_failures"),
        }
    }

    /// Count a failure of `client` at `now_ms` in its window of `window_ms`; when the count
    /// reaches `limit`, the window is extended to `now_ms + window_ms`.
    pub async fn record(
        &self,
        client: &str,
        now_ms: i64,
        window_ms: i64,
        limit: u32,
    ) -> StoreResult<Window> {
        let end = now_ms.saturating_add(window_ms);
        let mut attempts = Attempts::new();
        while attempts.next().await {
            let current = Filter::id(client).and(Filter::gt("until_ms", now_ms));
            let inc = Update::new().inc("count", 1);
            let doc = match self.coll.find_one_and_update(&current, &[], &inc).await? {
                Some(doc) => doc,
                None => match self.start_window(client, now_ms, end).await? {
                    Some(doc) => doc,
                    None => continue,
                },
            };
            let mut window = window_of(client, &doc)?;
            if window.count >= limit && window.until_ms < end {
                // A block lasts a full window from the failure that reached (or passed) the
                // limit; the filter keeps a later end another replica may have set.
                let shorter = Filter::id(client).and(Filter::lt("until_ms", end));
                self.coll
                    .update_one(&shorter, &Update::new().set("until_ms", end))
                    .await?;
                window.until_ms = end;
            }
            return Ok(window);
        }
        Err(exhausted(&format!(
            "the failed authentications of {client}"
        )))
    }

    /// Begin a new window ending at `end` for `client`, whose document is missing or ended
    /// by `now_ms`: the document as written, or `None` when another replica changed it first.
    async fn start_window(&self, client: &str, now_ms: i64, end: i64) -> StoreResult<Option<Doc>> {
        let fresh = to_doc(&json!({"id": client, "count": 1, "until_ms": end}))?;
        match self.coll.insert(fresh.clone()).await {
            Ok(()) => return Ok(Some(fresh)),
            Err(StoreError::Duplicate(_)) => {}
            Err(e) => return Err(e),
        }
        let ended = Filter::id(client).and(Filter::lte("until_ms", now_ms));
        let restart = Update::new().set("count", 1).set("until_ms", end);
        self.coll.find_one_and_update(&ended, &[], &restart).await
    }

    /// Delete the windows that ended before `now_ms`.
    pub async fn sweep(&self, now_ms: i64) -> StoreResult<u64> {
        self.coll.delete_many(&Filter::lt("until_ms", now_ms)).await
    }
}

/// The count and end of a stored window.
fn window_of(client: &str, doc: &Doc) -> StoreResult<Window> {
    let count = doc
        .get("count")
        .and_then(Value::as_i64)
        .and_then(|c| u32::try_from(c).ok());
    let until_ms = doc.get("until_ms").and_then(Value::as_i64);
    match (count, until_ms) {
        (Some(count), Some(until_ms)) => Ok(Window { count, until_ms }),
        _ => Err(StoreError::Backend(format!(
            "the failed authentications of {client} are not a count and a window end"
        ))),
    }
}
