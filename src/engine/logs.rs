//! Job logs: every line of every job task, stored in chunks on the configured backend
//! (collection `job_logs`, both backends) and fanned out live to SSE subscribers.
//!
//! A running job writes through a [`JobLog`]: each line is masked (credential values →
//! `********`), numbered (0, 1, 2 … per job task) and appended to an in-memory window that
//! live readers follow; a flusher stores the window's new lines as one chunk document every
//! [`FLUSH_INTERVAL`] (or sooner when many lines are waiting). Readers that fall behind the
//! window, readers on another replica and readers after the job ended read the chunks.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::store::{Backend, Dir, Filter, FindOptions, StoreResult, Typed};

/// How often new lines are stored.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Flush early when this many lines wait.
const FLUSH_EARLY_LINES: u64 = 4_000;
/// Most lines / bytes in one stored chunk.
const CHUNK_LINES: usize = 2_000;
const CHUNK_BYTES: usize = 1 << 20;
/// Lines already stored that the live window keeps for readers.
const WINDOW_KEEP: usize = 20_000;
/// What replaces a credential value.
pub const MASK: &str = "********";

/// Which job task a log belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LogKey {
    pub workflow: String,
    pub task_id: i64,
    pub job: String,
}

/// One stored run of consecutive lines: `lines[i]` is line `seq + i`; `end = seq + len`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogChunk {
    pub id: String,
    pub workflow: String,
    pub task_id: i64,
    pub job: String,
    pub seq: i64,
    pub end: i64,
    pub lines: Vec<String>,
}

fn key_filter(key: &LogKey) -> Filter {
    Filter::eq("workflow", key.workflow.as_str())
        .and(Filter::eq("task_id", key.task_id))
        .and(Filter::eq("job", key.job.as_str()))
}

/// Log storage plus the live logs of the jobs running in this process.
pub struct LogHub {
    chunks: Typed<LogChunk>,
    live: Mutex<HashMap<LogKey, Arc<LiveLog>>>,
    /// Open log readers (SSE streams); each [`Follow`] counts itself while it exists.
    followers: Arc<AtomicUsize>,
}

impl LogHub {
    pub fn new(backend: &dyn Backend) -> Self {
        Self {
            chunks: Typed::new(backend, "job_logs"),
            live: Mutex::new(HashMap::new()),
            followers: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn live_map(&self) -> std::sync::MutexGuard<'_, HashMap<LogKey, Arc<LiveLog>>> {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Start the log of a job run: the previous run's lines (a retry) are dropped.
    pub async fn open(
        &self,
        key: LogKey,
        secrets: &[String],
        clock: Arc<dyn Clock>,
    ) -> StoreResult<JobLog> {
        self.chunks.delete(&key_filter(&key)).await?;
        let live = Arc::new(LiveLog::default());
        self.live_map().insert(key.clone(), live.clone());
        let flusher = tokio::spawn(flush_loop(self.chunks.clone(), key.clone(), live.clone()));
        let log = JobLog {
            inner: Arc::new(JobLogInner {
                key,
                live,
                clock,
                secrets: Mutex::new(Vec::new()),
                flusher: Mutex::new(Some(flusher)),
                print: false,
            }),
        };
        log.add_secrets(secrets);
        Ok(log)
    }

    /// How many log readers are open.
    pub fn followers(&self) -> usize {
        self.followers.load(Ordering::SeqCst)
    }

    /// The live log of a job running in this process.
    pub fn live(&self, key: &LogKey) -> Option<Arc<LiveLog>> {
        self.live_map().get(key).cloned()
    }

    fn forget(&self, key: &LogKey, live: &Arc<LiveLog>) {
        let mut map = self.live_map();
        if map.get(key).is_some_and(|l| Arc::ptr_eq(l, live)) {
            map.remove(key);
        }
    }

    /// How many lines are stored for the job.
    pub async fn stored_len(&self, key: &LogKey) -> StoreResult<u64> {
        let last = self
            .chunks
            .find(
                &key_filter(key),
                &FindOptions::sort("end", Dir::Desc).limit(1),
            )
            .await?;
        Ok(last
            .first()
            .map_or(0, |c| u64::try_from(c.end).unwrap_or(0)))
    }

    /// Stored lines from line `from` on, at most about `max` (whole chunks).
    pub async fn read_stored(
        &self,
        key: &LogKey,
        from: u64,
        max: usize,
    ) -> StoreResult<Vec<String>> {
        let from_i = i64::try_from(from).unwrap_or(i64::MAX);
        let chunks = self
            .chunks
            .find(
                &key_filter(key).and(Filter::gt("end", from_i)),
                &FindOptions::sort("seq", Dir::Asc)
                    .limit(u64::try_from(max / CHUNK_LINES + 1).unwrap_or(1)),
            )
            .await?;
        let mut out = Vec::new();
        let mut expect = from_i;
        for c in chunks {
            if c.seq > expect {
                break; // a hole (a chunk still being written): stop at it
            }
            let skip = usize::try_from(expect - c.seq).unwrap_or(0);
            expect = c.end;
            out.extend(c.lines.into_iter().skip(skip));
        }
        Ok(out)
    }
}

/// The in-memory part of a running job's log, followed by live readers.
#[derive(Default)]
pub struct LiveLog {
    state: Mutex<LiveState>,
    /// Woken on every append and at the end.
    changed: Notify,
    flush_now: Notify,
}

#[derive(Default)]
struct LiveState {
    window: VecDeque<Arc<str>>,
    /// Line number of `window[0]`.
    first_seq: u64,
    /// Line number of the next line (= lines so far).
    next_seq: u64,
    /// Lines below this are stored.
    flushed_seq: u64,
    ended: bool,
    /// `[YYYY-MM-DD HH:MM:SS]` of the last second seen, reused within that second.
    stamp: (i64, String),
}

/// What a reader got from [`LiveLog::read`].
pub struct LiveRead {
    /// Lines from `from` on (possibly fewer than available: bounded by `max`).
    pub lines: Vec<Arc<str>>,
    /// When `from` already left the window: the first line number still in it (read the
    /// lines before it from the store).
    pub behind: Option<u64>,
    /// Lines so far.
    pub next_seq: u64,
    pub ended: bool,
}

impl LiveLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, LiveState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A future that resolves at the next change; create it before reading to miss nothing.
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    /// Lines from `from` on, at most `max`.
    pub fn read(&self, from: u64, max: usize) -> LiveRead {
        let st = self.lock();
        if from < st.first_seq {
            return LiveRead {
                lines: Vec::new(),
                behind: Some(st.first_seq),
                next_seq: st.next_seq,
                ended: st.ended,
            };
        }
        let skip = usize::try_from(from - st.first_seq).unwrap_or(usize::MAX);
        LiveRead {
            lines: st.window.iter().skip(skip).take(max).cloned().collect(),
            behind: None,
            next_seq: st.next_seq,
            ended: st.ended,
        }
    }

    /// Lines so far and whether the job ended.
    pub fn progress(&self) -> (u64, bool) {
        let st = self.lock();
        (st.next_seq, st.ended)
    }
}

struct JobLogInner {
    key: LogKey,
    live: Arc<LiveLog>,
    clock: Arc<dyn Clock>,
    /// Credential values, longest first.
    secrets: Mutex<Vec<String>>,
    flusher: Mutex<Option<JoinHandle<()>>>,
    /// Lines go to this process' stdout instead of the store (the job agent in a pod, whose
    /// stdout is the container log the server follows).
    print: bool,
}

/// The writing end of a running job's log (cheap to clone: stdout and stderr readers share
/// it).
#[derive(Clone)]
pub struct JobLog {
    inner: Arc<JobLogInner>,
}

/// How a line is prefixed (spec/workflow.md §5.10).
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// The executor's banner: as is.
    Raw,
    /// The executor's own message: `[time]\t…`.
    Info,
    /// A command's output: `[time]   …`.
    Output,
}

impl JobLog {
    /// A log whose lines (masked and prefixed as stored ones) are written to stdout: what the
    /// job agent writes in a pod.
    pub fn printing(key: LogKey, secrets: &[String], clock: Arc<dyn Clock>) -> Self {
        let log = JobLog {
            inner: Arc::new(JobLogInner {
                key,
                live: Arc::new(LiveLog::default()),
                clock,
                secrets: Mutex::new(Vec::new()),
                flusher: Mutex::new(None),
                print: true,
            }),
        };
        log.add_secrets(secrets);
        log
    }

    /// Mask these values from now on (empty values are ignored).
    pub fn add_secrets(&self, secrets: &[String]) {
        let mut s = self
            .inner
            .secrets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for v in secrets {
            if !v.is_empty() && !s.contains(v) {
                s.push(v.clone());
            }
        }
        s.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }

    /// Replace every credential value in `text` by [`MASK`].
    pub fn mask(&self, text: &str) -> String {
        let secrets = self
            .inner
            .secrets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        mask_with(&secrets, text)
    }

    pub fn raw(&self, text: &str) {
        self.push(Kind::Raw, &[text]);
    }

    pub fn info(&self, text: &str) {
        self.push(Kind::Info, &[text]);
    }

    /// Lines of a command's output.
    pub fn output(&self, lines: &[&str]) {
        self.push(Kind::Output, lines);
    }

    fn push(&self, kind: Kind, lines: &[&str]) {
        if lines.is_empty() {
            return;
        }
        let masked: Vec<String> = {
            let secrets = self
                .inner
                .secrets
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            lines.iter().map(|l| mask_with(&secrets, l)).collect()
        };
        let now_ms = self.inner.clock.now_ms();
        let live = &self.inner.live;
        let early = {
            let mut st = live.lock();
            let sec = now_ms.div_euclid(1000);
            if st.stamp.0 != sec || st.stamp.1.is_empty() {
                st.stamp = (sec, stamp(now_ms));
            }
            for l in masked {
                let line: Arc<str> = match kind {
                    Kind::Raw => l.into(),
                    Kind::Info => format!("{}\t{l}", st.stamp.1).into(),
                    Kind::Output => format!("{}   {l}", st.stamp.1).into(),
                };
                if self.inner.print {
                    print_line(&line);
                    continue;
                }
                st.window.push_back(line);
                st.next_seq += 1;
            }
            st.next_seq - st.flushed_seq >= FLUSH_EARLY_LINES
        };
        live.changed.notify_waiters();
        if early {
            live.flush_now.notify_one();
        }
    }

    /// End the log: the remaining lines are stored and readers see the end.
    pub async fn close(self, hub: &LogHub) {
        self.inner.live.lock().ended = true;
        self.inner.live.flush_now.notify_one();
        self.inner.live.changed.notify_waiters();
        let handle = self
            .inner
            .flusher
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(h) = handle {
            let _ = h.await;
        }
        hub.forget(&self.inner.key, &self.inner.live);
    }
}

/// One line to stdout, flushed (the container log is read while the job runs); a closed
/// stdout loses the line, it does not stop the job.
fn print_line(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn mask_with(secrets: &[String], text: &str) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), MASK);
        }
    }
    out
}

fn stamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("[%Y-%m-%d %H:%M:%S]").to_string())
        .unwrap_or_default()
}

/// Store the window's new lines every [`FLUSH_INTERVAL`] (or when asked) until the log ended
/// and everything is stored.
async fn flush_loop(chunks: Typed<LogChunk>, key: LogKey, live: Arc<LiveLog>) {
    let mut failures: u32 = 0;
    loop {
        tokio::select! {
            () = tokio::time::sleep(FLUSH_INTERVAL) => {}
            () = live.flush_now.notified() => {}
        }
        let (pending, from, ended) = {
            let st = live.lock();
            let skip = usize::try_from(st.flushed_seq - st.first_seq).unwrap_or(0);
            let pending: Vec<Arc<str>> = st.window.iter().skip(skip).cloned().collect();
            (pending, st.flushed_seq, st.ended)
        };
        if !pending.is_empty() {
            match store_lines(&chunks, &key, from, &pending).await {
                Ok(()) => {
                    failures = 0;
                    let mut st = live.lock();
                    st.flushed_seq = from + pending.len() as u64;
                    while st.window.len() > WINDOW_KEEP && st.first_seq < st.flushed_seq {
                        st.window.pop_front();
                        st.first_seq += 1;
                    }
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(workflow = %key.workflow, task_id = key.task_id, job = %key.job,
                        "storing log lines failed (attempt {failures}): {e}");
                    if ended && failures >= 50 {
                        tracing::error!(workflow = %key.workflow, task_id = key.task_id, job = %key.job,
                            "giving up storing the end of the job log");
                        return;
                    }
                    continue;
                }
            }
        }
        if ended {
            let st = live.lock();
            if st.flushed_seq == st.next_seq {
                return;
            }
        }
    }
}

async fn store_lines(
    chunks: &Typed<LogChunk>,
    key: &LogKey,
    from: u64,
    lines: &[Arc<str>],
) -> StoreResult<()> {
    let mut seq = from;
    let mut start = 0;
    while start < lines.len() {
        let mut bytes = 0;
        let mut end = start;
        while end < lines.len()
            && end - start < CHUNK_LINES
            && (bytes == 0 || bytes + lines[end].len() <= CHUNK_BYTES)
        {
            bytes += lines[end].len();
            end += 1;
        }
        let n = (end - start) as u64;
        let seq_i = i64::try_from(seq).unwrap_or(i64::MAX);
        let chunk = LogChunk {
            id: format!("{}:{}:{}:{seq:012}", key.workflow, key.task_id, key.job),
            workflow: key.workflow.clone(),
            task_id: key.task_id,
            job: key.job.clone(),
            seq: seq_i,
            end: seq_i + i64::try_from(n).unwrap_or(0),
            lines: lines[start..end].iter().map(|l| l.to_string()).collect(),
        };
        let stored = match chunks.insert(&chunk).await {
            Ok(()) => n,
            // A retried flush whose first attempt did land: continue after what is stored.
            Err(crate::store::StoreError::Duplicate(_)) => match chunks.get(&chunk.id).await? {
                Some(c) => u64::try_from(c.end - c.seq).unwrap_or(n).clamp(1, n),
                None => {
                    return Err(crate::store::StoreError::Conflict(
                        "log chunk vanished".into(),
                    ));
                }
            },
            Err(e) => return Err(e),
        };
        seq += stored;
        start += usize::try_from(stored).unwrap_or(end - start);
    }
    Ok(())
}

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
            if let Some(live) = self.live.clone() {
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
                        return Some(sse_events(&lines));
                    }
                    // Not readable (a store error): skip to what the window still has.
                    self.cur = r.behind;
                    continue;
                }
                if !r.lines.is_empty() {
                    self.cur = Some(cur + r.lines.len() as u64);
                    return Some(sse_events(&r.lines));
                }
                if r.ended {
                    self.done = true;
                    return None;
                }
                let waited = tokio::select! {
                    () = &mut changed => Duration::ZERO,
                    () = tokio::time::sleep(KEEPALIVE) => KEEPALIVE,
                };
                quiet += waited;
                continue;
            }
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
                return Some(sse_events(&lines));
            }
            match phase().await {
                JobPhase::Missing => {
                    self.done = true;
                    return None;
                }
                JobPhase::Ended => {
                    // Its last lines were stored before it was marked ended.
                    let lines = self.stored(hub, cur).await;
                    if lines.is_empty() {
                        self.done = true;
                        return None;
                    }
                    self.cur = Some(cur + lines.len() as u64);
                    return Some(sse_events(&lines));
                }
                JobPhase::NotStarted | JobPhase::Running => {
                    tokio::time::sleep(POLL).await;
                    quiet += POLL;
                }
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_longest_first() {
        let s = vec!["secret-long".to_string(), "secret".to_string()];
        assert_eq!(
            mask_with(&s, "a secret-long b secret"),
            "a ******** b ********"
        );
    }
}
