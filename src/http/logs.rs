//! Job logs of workflow tasks (seed 002 "Workflow Logs", spec/workflow.md §5.10): the live
//! SSE stream and the full plain-text log. The lines come from the engine's log store
//! (`crate::engine::logs`).

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::engine::logs::{Follow, LogKey, full_stream};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::Path;
use crate::state::AppState;
use crate::validate;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sse_log))
        .routes(routes!(full_log))
}

/// Lines sent before following when `lines` is not an integer (Zadig's default).
const DEFAULT_TAIL: u64 = 10;

/// The `{workflowKey}/{taskID}/{jobName}` path of a job task's log: its OpenAPI parameters
/// and its extractor (`taskID` is read as text so that [`JobLogPath::key`] names it).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct JobLogPath {
    /// workflow key
    #[serde(rename = "workflowKey")]
    workflow: String,
    /// task id (an integer)
    #[serde(rename = "taskID")]
    task_id: String,
    /// job task name
    #[serde(rename = "jobName")]
    job: String,
}

impl JobLogPath {
    fn key(self) -> ApiResult<LogKey> {
        validate::name("workflowKey", &self.workflow)?;
        validate::name("jobName", &self.job)?;
        let task_id = self.task_id.trim().parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!(
                "invalid task id: `taskID` must be an integer, got {:?}",
                self.task_id
            ))
        })?;
        Ok(LogKey {
            workflow: self.workflow,
            task_id,
            job: self.job,
        })
    }
}

/// The `{lines}` segment of the live log's path.
#[derive(Deserialize)]
struct Lines {
    lines: String,
}

/// Follow a job task's log live (seed 002 "View Real-time Workflow Task Logs"): the last
/// `lines` lines, then each new line as `event:message` / `data:<line>` until the job ends;
/// an unknown task or job ends the stream at once.
#[utoipa::path(get, path = "/openapi/logs/sse/v4/workflow/{workflowKey}/{taskID}/{jobName}/{lines}",
    tag = "logs",
    params(JobLogPath,
        ("lines" = String, Path, description = "lines of history to send first (not an integer → 10)"),
    ),
    responses(
        (status = 200, description = "server-sent events, one per log line", content_type = "text/event-stream", body = String),
        (status = 400, body = ErrorBody),
    ))]
async fn sse_log(
    State(state): State<AppState>,
    Path(path): Path<JobLogPath>,
    Path(Lines { lines }): Path<Lines>,
) -> ApiResult<Response> {
    let key = path.key()?;
    let tail = lines.trim().parse::<u64>().unwrap_or(DEFAULT_TAIL);
    let follow = Follow::new(&state.engine.logs, key.clone(), tail);
    // Dropped with the response body when the client goes away: the reader stops there.
    let stream = futures::stream::unfold(
        (state, key, follow),
        |(state, key, mut follow)| async move {
            let piece = follow
                .next(&state.engine.logs, || {
                    crate::engine::job_phase(&state, &key)
                })
                .await?;
            Some((
                Ok::<_, Infallible>(Bytes::from(piece)),
                (state, key, follow),
            ))
        },
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// The full log of a job task as plain text (seed 002 "View Complete Workflow Task Logs");
/// empty when nothing was logged (yet).
#[utoipa::path(get, path = "/openapi/logs/log/v4/workflow/{workflowKey}/{taskID}/{jobName}",
    tag = "logs",
    params(JobLogPath),
    responses(
        (status = 200, description = "the log, one line per line", content_type = "text/plain", body = String),
        (status = 400, body = ErrorBody),
    ))]
async fn full_log(
    State(state): State<AppState>,
    Path(path): Path<JobLogPath>,
) -> ApiResult<Response> {
    let key = path.key()?;
    let body = full_stream(state, key).await.map_err(ApiError::from)?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(body),
    )
        .into_response())
}
