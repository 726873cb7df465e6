//! Reading job logs: SSE followers (live window or stored chunks) and the full log.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use futures::{Stream, StreamExt};

use super::{LiveLog, LogHub, LogKey};
use crate::state::AppState;
use crate::store::StoreResult;

/// Where a job stands, for readers that do not see its live log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobPhase {
    /// No such task or job task.
    Missing,
    NotStarted,
    Running,
    Ended,
}

/// Most lines put into one piece of a response body.
const BATCH_LINES: usize = 8_192;
/// An SSE comment sent after this much silence keeps proxies from closing the stream.
pub const KEEPALIVE: Duration = Duration::from_secs(15);
/// How often a reader without a live log polls the store.
const POLL: Duration = Duration::from_millis(300);

/// One SSE event per line: `event:message\ndata:<line>\n\n` (a `\r` in a line is written as
/// the two characters `\r`, spec/workflow.md §5.10).
pub fn sse_events<S: AsRef<str>>(lines: &[S]) -> String {
    let mut out = String::with_capacity(lines.iter().map(|l| l.as_ref().len() + 22).sum());
    for l in lines {
        out.push_str("event:message\ndata:");
        let l = l.as_ref();
        if l.contains('\r') {
            out.push_str(&l.replace('\r', "\\r"));
        } else {
            out.push_str(l);
        }
        out.push_str("\n\n");
    }
    out
}

fn plain<S: AsRef<str>>(lines: &[S]) -> String {
    let mut out = String::with_capacity(lines.iter().map(|l| l.as_ref().len() + 1).sum());
    for l in lines {
        out.push_str(l.as_ref());
        out.push('\n');
    }
    out
}

/// A reader of one job's log: the last `tail` lines, then every new line until the job ends.
pub struct Follow {
    key: LogKey,
    /// Next line to send; `None` until positioned.
    cur: Option<u64>,
    tail: u64,
    live: Option<Arc<LiveLog>>,
    done: bool,
    /// The hub's reader count, decremented when this reader is dropped (the client left).
    count: Arc<AtomicUsize>,
}

impl Drop for Follow {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Follow {
    pub fn new(hub: &LogHub, key: LogKey, tail: u64) -> Self {
        hub.followers.fetch_add(1, Ordering::SeqCst);
        Self {
            key,
            cur: None,
            tail,
            live: None,
            done: false,
            count: hub.followers.clone(),
        }
    }

    /// A reader that starts at line `line` (0-based) rather than `tail` lines before the end:
    /// a client that already has the lines before it (a page, a reconnecting stream).
    pub fn starting_at(hub: &LogHub, key: LogKey, line: u64) -> Self {
        let mut f = Self::new(hub, key, 0);
        f.cur = Some(line);
        f
    }

    /// The next line this reader sends (the number of lines sent so far, counted from line
    /// 0); `None` until it is positioned.
    pub fn position(&self) -> Option<u64> {
        self.cur
    }

    /// Stored lines from `cur`; a store failure is logged and reads as nothing yet (the
    /// stream goes on polling, or ends if the job ended).
    async fn stored(&self, hub: &LogHub, cur: u64) -> Vec<String> {
        hub.read_stored(&self.key, cur, BATCH_LINES)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(workflow = %self.key.workflow, task_id = self.key.task_id,
                    job = %self.key.job, "reading the job log failed: {e}");
                Vec::new()
            })
    }

    /// The next piece of the SSE body (events or a keep-alive comment); `None` at the end.
    /// `phase` tells where the job stands when its live log is not in this process.
    pub async fn next<F, Fut>(&mut self, hub: &LogHub, phase: F) -> Option<String>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = JobPhase>,
    {
        let mut quiet = Duration::ZERO;
        loop {
            if self.done {
                return None;
            }
            if quiet >= KEEPALIVE {
                return Some(":keep-alive\n\n".to_string());
            }
            if self.live.is_none() {
                self.live = hub.live(&self.key);
            }
            let step = match self.live.clone() {
                Some(live) => self.look_live(hub, &live).await,
                None => self.look_stored(hub, &phase).await,
            };
            match step {
                Step::Out(piece) => return piece,
                Step::Again(waited) => quiet += waited,
            }
        }
    }

    /// One look at the live window of a job running here (the store for lines it dropped).
    async fn look_live(&mut self, hub: &LogHub, live: &LiveLog) -> Step {
        let changed = live.changed();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let cur = *self
            .cur
            .get_or_insert_with(|| live.progress().0.saturating_sub(self.tail));
        let r = live.read(cur, BATCH_LINES);
        if r.behind.is_some() {
            let lines = self.stored(hub, cur).await;
            if !lines.is_empty() {
                self.cur = Some(cur + lines.len() as u64);
                return Step::Out(Some(sse_events(&lines)));
            }
            // Not readable (a store error): skip to what the window still has.
            self.cur = r.behind;
            return Step::Again(Duration::ZERO);
        }
        if !r.lines.is_empty() {
            self.cur = Some(cur + r.lines.len() as u64);
            return Step::Out(Some(sse_events(&r.lines)));
        }
        if r.ended {
            self.done = true;
            return Step::Out(None);
        }
        let waited = tokio::select! {
            () = &mut changed => Duration::ZERO,
            () = tokio::time::sleep(KEEPALIVE) => KEEPALIVE,
        };
        Step::Again(waited)
    }

    /// One look at the stored chunks of a job running elsewhere (or ended), asking `phase`
    /// whether more can come.
    async fn look_stored<F, Fut>(&mut self, hub: &LogHub, phase: &F) -> Step
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = JobPhase>,
    {
        let cur = match self.cur {
            Some(c) => c,
            None => {
                let total = hub.stored_len(&self.key).await.unwrap_or(0);
                *self.cur.insert(total.saturating_sub(self.tail))
            }
        };
        let lines = self.stored(hub, cur).await;
        if !lines.is_empty() {
            self.cur = Some(cur + lines.len() as u64);
            return Step::Out(Some(sse_events(&lines)));
        }
        match phase().await {
            JobPhase::Missing => {
                self.done = true;
                Step::Out(None)
            }
            JobPhase::Ended => {
                // Its last lines were stored before it was marked ended.
                let lines = self.stored(hub, cur).await;
                if lines.is_empty() {
                    self.done = true;
                    return Step::Out(None);
                }
                self.cur = Some(cur + lines.len() as u64);
                Step::Out(Some(sse_events(&lines)))
            }
            JobPhase::NotStarted | JobPhase::Running => {
                tokio::time::sleep(POLL).await;
                Step::Again(POLL)
            }
        }
    }
}

/// What one look at a log gave a [`Follow`].
enum Step {
    /// The next piece for the reader (`None`: the end).
    Out(Option<String>),
    /// Nothing yet; look again (after this much silence).
    Again(Duration),
}

/// The whole log as plain text, piece by piece (`Ok(None)` at the end): stored lines, then the
/// lines of a job running here that are not stored yet.
pub async fn full_piece(hub: &LogHub, key: &LogKey, cur: &mut u64) -> StoreResult<Option<String>> {
    let lines = hub.read_stored(key, *cur, BATCH_LINES * 4).await?;
    if !lines.is_empty() {
        *cur += lines.len() as u64;
        return Ok(Some(plain(&lines)));
    }
    let Some(live) = hub.live(key) else {
        return Ok(None);
    };
    let r = live.read(*cur, BATCH_LINES * 4);
    if r.lines.is_empty() {
        return Ok(None);
    }
    *cur += r.lines.len() as u64;
    Ok(Some(plain(&r.lines)))
}

/// The whole log as the pieces of a response body, read as they are sent (a log has no size
/// limit, so it is never held whole). The first piece is read before returning, so a store
/// failure is an error the caller answers honestly; a failure later ends the body early,
/// logged.
pub async fn full_stream(
    state: AppState,
    key: LogKey,
) -> StoreResult<impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static> {
    let mut cur = 0u64;
    let first = full_piece(&state.engine.logs, &key, &mut cur).await?;
    let more = first.is_some();
    let rest = futures::stream::unfold(
        (state, key, cur, more),
        |(state, key, mut cur, more)| async move {
            if !more {
                return None;
            }
            match full_piece(&state.engine.logs, &key, &mut cur).await {
                Ok(Some(piece)) => Some((Bytes::from(piece), (state, key, cur, true))),
                Ok(None) => None,
                Err(e) => {
                    tracing::error!(workflow = %key.workflow, task_id = key.task_id, job = %key.job,
                        "reading the job log failed mid-stream: {e}");
                    None
                }
            }
        },
    );
    Ok(futures::stream::iter(first.map(Bytes::from))
        .chain(rest)
        .map(Ok::<_, Infallible>))
}
