//! A job's log on the task page: the text so far, the live stream that follows it, and the
//! plain-text log.
//!
//! The stream goes on from the line the page (or the stream before a reconnect) got to: the
//! page passes `?from=<lines it shows>`, every piece of lines carries `id:<next line>`, and a
//! browser reconnecting sends that back as `Last-Event-ID`, so no line is shown twice. It
//! ends with an `end` event when the job ends, and without one when the session ends (the
//! browser's reconnect then meets the sign-in redirect and stops).

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use super::render::urlencode;
use super::session::{self, Viewer};
use super::tasks::load;
use super::{UiError, UiQuery, UiResult};
use crate::engine::logs::{Follow, LogKey, full_piece, full_stream};
use crate::state::AppState;
use crate::workflow::task::{JobTask, Status, Task};

/// Most log text put into a page; the plain-text link has the rest.
const LOG_PAGE_LIMIT: usize = 1 << 20;
/// How often (seconds of the business clock, which sessions expire by) an open stream checks
/// that its session still exists; a quiet stream sends a keep-alive every 15 s, so the check
/// runs at least that often after this.
const SESSION_RECHECK_SECS: i64 = 30;

fn ended(j: &JobTask) -> bool {
    j.status.is_final() || j.status == Status::Unstable
}

/// The text of a job's log so far (about [`LOG_PAGE_LIMIT`] at most), how many lines it
/// holds, and whether it was cut.
async fn text(state: &AppState, key: &LogKey) -> UiResult<(String, u64, bool)> {
    let mut lines = 0u64;
    let mut text = String::new();
    while let Some(piece) = full_piece(&state.engine.logs, key, &mut lines).await? {
        text.push_str(&piece);
        if text.len() > LOG_PAGE_LIMIT {
            return Ok((text, lines, true));
        }
    }
    Ok((text, lines, false))
}

/// The log section of task `t`'s page for job `j`, as template data.
pub async fn section(state: &AppState, t: &Task, j: &JobTask) -> UiResult<Value> {
    let key = LogKey {
        workflow: t.workflow_name.clone(),
        task_id: t.task_id,
        job: j.name.clone(),
    };
    let (text, lines, cut) = text(state, &key).await?;
    let path = format!(
        "/ui/workflows/{}/tasks/{}/jobs/{}",
        urlencode(&t.workflow_name),
        t.task_id,
        urlencode(&j.name)
    );
    Ok(json!({
        "job": j.name, "status": j.status, "ended": ended(j), "text": text, "cut": cut,
        "events": format!("{path}/events?from={lines}"), "full": format!("{path}/log"),
    }))
}

/// The job of a log route: the task must exist and have the job (an honest 404 page).
async fn job_key(state: &AppState, key: String, id: &str, job: String) -> UiResult<LogKey> {
    let t = load(state, &key, id).await?;
    if !t.stages.iter().flat_map(|s| &s.jobs).any(|j| j.name == job) {
        return Err(UiError::Status(
            StatusCode::NOT_FOUND,
            format!("task {key} #{} has no job {job:?}", t.task_id),
        ));
    }
    Ok(LogKey {
        workflow: key,
        task_id: t.task_id,
        job,
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct FromQuery {
    /// The first line to send (the lines before it are on the page).
    from: u64,
}

/// Where a stream starts: after the last line a reconnecting browser got (`Last-Event-ID`),
/// else at `from`.
fn start_line(headers: &HeaderMap, from: u64) -> u64 {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(from)
}

/// `piece` (SSE events) with `id:<line>` on its last event when it moved the reader on.
fn with_id(mut piece: String, line: Option<u64>, sent: &mut u64) -> String {
    if let Some(line) = line.filter(|l| *l != *sent)
        && piece.ends_with("\n\n")
    {
        piece.pop();
        piece.push_str(&format!("id:{line}\n\n"));
        *sent = line;
    }
    piece
}

/// What a log stream carries along between pieces.
struct Stream {
    state: AppState,
    key: LogKey,
    follow: Follow,
    /// The line of the last `id:` sent.
    sent: u64,
    cookie: String,
    /// When the session was last found (business clock).
    checked: i64,
}

impl Stream {
    /// The next piece of the body; `None` closes it.
    async fn next(&mut self) -> Option<Bytes> {
        let now = self.state.clock.now();
        if now.saturating_sub(self.checked) >= SESSION_RECHECK_SECS {
            self.checked = now;
            // Signed out, expired, token rotated: stop showing the log. A store hiccup keeps
            // the stream (the next check decides).
            if matches!(
                session::viewer_of(&self.state, &self.cookie).await,
                Ok(None)
            ) {
                return None;
            }
        }
        let (state, key) = (&self.state, &self.key);
        let piece = self
            .follow
            .next(&state.engine.logs, || crate::engine::job_phase(state, key))
            .await;
        Some(match piece {
            Some(p) => Bytes::from(with_id(p, self.follow.position(), &mut self.sent)),
            None => Bytes::from_static(b"event:end\ndata:end\n\n"),
        })
    }
}

/// `GET …/jobs/{job}/events[?from=]`: the job's log from line `from` (or `Last-Event-ID`) on,
/// then each new line, as server-sent events (the API's event format), closed by an `end`
/// event so the browser does not reconnect.
pub async fn events(
    State(state): State<AppState>,
    _viewer: Viewer,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Path((key, id, job)): Path<(String, String, String)>,
    UiQuery(q): UiQuery<FromQuery>,
) -> UiResult {
    let key = job_key(&state, key, &id, job).await?;
    let line = start_line(&headers, q.from);
    let checked = state.clock.now();
    // The extractor found the session by this cookie.
    let secure = session::secure_cookie(&state, &headers, &uri);
    let cookie = session::cookie_value(&headers, secure).unwrap_or_default();
    let stream = Stream {
        follow: Follow::starting_at(&state.engine.logs, key.clone(), line),
        state,
        key,
        sent: line,
        cookie,
        checked,
    };
    let body = futures::stream::unfold((stream, false), |(mut s, done)| async move {
        if done {
            return None;
        }
        let piece = s.next().await?;
        let end = piece.starts_with(b"event:end");
        Some((Ok::<_, Infallible>(piece), (s, end)))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// `GET …/jobs/{job}/log`: the full log as plain text, streamed as the API's.
pub async fn full(
    State(state): State<AppState>,
    _viewer: Viewer,
    Path((key, id, job)): Path<(String, String, String)>,
) -> UiResult {
    let key = job_key(&state, key, &id, job).await?;
    let body = full_stream(state, key).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(body),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_mark_the_line_reached() {
        let mut sent = 3;
        let p = with_id("event:message\ndata:a\n\n".into(), Some(4), &mut sent);
        assert_eq!(p, "event:message\ndata:a\nid:4\n\n");
        assert_eq!(sent, 4);
        // A keep-alive moves nothing: no id.
        assert_eq!(
            with_id(":keep-alive\n\n".into(), Some(4), &mut sent),
            ":keep-alive\n\n"
        );
        let mut h = HeaderMap::new();
        assert_eq!(start_line(&h, 7), 7);
        h.insert("last-event-id", "12".parse().unwrap());
        assert_eq!(start_line(&h, 7), 12);
        h.insert("last-event-id", "x".parse().unwrap());
        assert_eq!(start_line(&h, 7), 7);
    }
}
