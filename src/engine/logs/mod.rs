//! Job logs: every line of every job task, stored in chunks on the configured backend
//! (collection `job_logs`, both backends) and fanned out live to SSE subscribers.
//!
//! A running job writes through a [`JobLog`]: each line is masked (credential values →
//! `********`), numbered (0, 1, 2 … per job task) and appended to an in-memory window that
//! live readers follow; a flusher stores the window's new lines as one chunk document every
//! [`FLUSH_INTERVAL`] (or sooner when many lines are waiting). Readers that fall behind the
//! window, readers on another replica and readers after the job ended read the chunks.
//!
//! This file holds the hub, the live window and the writing end; [`flush`] stores the window
//! in chunks, [`read`] serves readers (SSE and the full log).

mod flush;
mod read;

pub use read::{Follow, JobPhase, KEEPALIVE, full_piece, full_stream, sse_events};

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
pub use crate::masking::MASK;

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
        let flusher = tokio::spawn(flush::flush_loop(
            self.chunks.clone(),
            key.clone(),
            live.clone(),
        ));
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
