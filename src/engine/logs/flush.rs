//! Storing a live log: the window's new lines become chunk documents.

use std::sync::Arc;

use super::{CHUNK_BYTES, CHUNK_LINES, FLUSH_INTERVAL, LiveLog, LogChunk, LogKey, WINDOW_KEEP};
use crate::store::{StoreResult, Typed};

/// Store the window's new lines every [`FLUSH_INTERVAL`] (or when asked) until the log ended
/// and everything is stored.
pub(super) async fn flush_loop(chunks: Typed<LogChunk>, key: LogKey, live: Arc<LiveLog>) {
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
