//! Template rendering: the compiled-in minijinja templates, the filters they use, and the
//! status vocabulary (every status is shown as a word and a symbol, never by colour alone).

use std::sync::OnceLock;

use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use minijinja::{AutoEscape, Environment, Value as JValue};
use serde_json::{Value, json};

use super::session::Viewer;
use crate::delivery::model::{ItemStatus, VersionStatus};
use crate::release_plan::model::{
    ApprovalStatus, JobStatus as PlanJobStatus, Status as PlanStatus,
};
use crate::workflow::task::{ApproveOrReject, Status as TaskStatus};

/// The templates, by name (autoescaping is on for `.html`).
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("error.html", include_str!("templates/error.html")),
    ("login.html", include_str!("templates/login.html")),
    ("logout.html", include_str!("templates/logout.html")),
    ("plans.html", include_str!("templates/plans.html")),
    ("plan.html", include_str!("templates/plan.html")),
    ("workflows.html", include_str!("templates/workflows.html")),
    ("workflow.html", include_str!("templates/workflow.html")),
    ("task.html", include_str!("templates/task.html")),
    ("task_live.html", include_str!("templates/task_live.html")),
    ("versions.html", include_str!("templates/versions.html")),
    (
        "project_filter.html",
        include_str!("templates/project_filter.html"),
    ),
    ("version.html", include_str!("templates/version.html")),
    // The previous/next links of a list page (`page`, `has_next`, `project` when filtered).
    ("pager.html", include_str!("templates/pager.html")),
    // The approve/reject pair of a release plan's and a task stage's vote form.
    (
        "vote_buttons.html",
        include_str!("templates/vote_buttons.html"),
    ),
];

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, src) in TEMPLATES {
            // The templates are compiled in and rendered by the handler tests: a syntax error
            // is a build defect, reported at the first render.
            if let Err(e) = env.add_template(name, src) {
                tracing::error!("dashboard template {name} does not compile: {e}");
            }
        }
        // HTML escaping of the five significant characters only (minijinja's default also
        // escapes `/`, which makes every path unreadable); `none` renders as nothing.
        env.set_formatter(|out, state, value| {
            if value.is_undefined() || value.is_none() {
                return Ok(());
            }
            let text = value.to_string();
            if state.auto_escape() == AutoEscape::None || value.is_safe() {
                out.write_str(&text)
            } else {
                out.write_str(&escape(&text))
            }
            .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, e.to_string()))
        });
        env.add_filter("time", |v: i64| time(v));
        env.add_filter("duration", |v: i64| duration(v));
        env.add_filter("status_kind", |s: String| family(&s).class().to_string());
        env.add_filter("status_symbol", |s: String| family(&s).symbol().to_string());
        env.add_filter("status_label", |s: String| label(&s));
        env.add_filter("urlencode_path", |s: String| urlencode(&s));
        env.add_function("badge", |s: String| JValue::from_safe_string(badge(&s)));
        env
    })
}

/// Render `template` with `ctx` (a JSON object) plus the viewer; a render failure is a 500.
pub fn page(template: &str, viewer: Option<&Viewer>, mut ctx: Value) -> Response {
    if let (Some(v), Some(obj)) = (viewer, ctx.as_object_mut()) {
        obj.insert(
            "viewer".into(),
            json!({
                "account": v.identity.account,
                "name": v.identity.name,
                "is_admin": v.identity.is_admin,
            }),
        );
        obj.insert("csrf".into(), Value::String(v.csrf.clone()));
    }
    match render(template, &ctx) {
        Ok(html) => ([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response(),
        Err(e) => {
            tracing::error!("rendering dashboard page {template} failed: {e:#}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal server error; the server log has the details",
            )
                .into_response()
        }
    }
}

/// Render a template to a string.
pub fn render(template: &str, ctx: &Value) -> Result<String, minijinja::Error> {
    env()
        .get_template(template)?
        .render(JValue::from_serialize(ctx))
}

/// An error page with an honest status.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let mut resp = page(
        "error.html",
        None,
        json!({
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "message": message,
        }),
    );
    *resp.status_mut() = status;
    resp
}

/// `2026-12-06 04:33:12 UTC`; `—` for 0 (unset).
pub fn time(secs: i64) -> String {
    if secs <= 0 {
        return "—".into();
    }
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| secs.to_string())
}

/// `1h 02m`, `3m 05s`, `42s`.
pub fn duration(secs: i64) -> String {
    let s = secs.max(0);
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m {sec:02}s"),
        (h, m, _) => format!("{h}h {m:02}m"),
    }
}

/// How the dashboard shows a status: its CSS class and its symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Ok,
    Bad,
    Run,
    Wait,
    Idle,
    Muted,
}

impl Family {
    /// The CSS class (`badge ok`, `job bad`, …).
    pub fn class(self) -> &'static str {
        match self {
            Family::Ok => "ok",
            Family::Bad => "bad",
            Family::Run => "run",
            Family::Wait => "wait",
            Family::Idle => "idle",
            Family::Muted => "muted",
        }
    }

    /// The symbol shown next to a status word (for those who cannot tell the colours apart).
    pub fn symbol(self) -> &'static str {
        match self {
            Family::Ok => "✓",
            Family::Bad => "✗",
            Family::Run => "▶",
            Family::Wait => "⏸",
            Family::Muted => "↷",
            Family::Idle => "○",
        }
    }
}

/// The family of a status of any area the dashboard shows (tasks, stages, job tasks, votes,
/// plans, plan jobs and approvals, versions and their images): the string is read with each
/// area's status enum in turn; a string no enum knows is `Idle`. Each enum is matched
/// exhaustively below, so a status added to one does not build until it has a family.
pub fn family(status: &str) -> Family {
    TaskStatus::parse(status)
        .map(task_family)
        .or_else(|| PlanStatus::parse(status).map(plan_family))
        .or_else(|| PlanJobStatus::parse(status).map(plan_job_family))
        .or_else(|| ApprovalStatus::parse(status).map(approval_family))
        .or_else(|| ApproveOrReject::parse(status).map(vote_family))
        .or_else(|| VersionStatus::parse(status).map(version_family))
        .or_else(|| ItemStatus::parse(status).map(item_family))
        .unwrap_or(Family::Idle)
}

fn task_family(s: TaskStatus) -> Family {
    use TaskStatus::*;
    match s {
        Passed | Unstable => Family::Ok,
        Failed | Timeout | Cancelled | Reject => Family::Bad,
        Running | Prepare => Family::Run,
        Created | Waiting | Pause | WaitForApproval | WaitForManualErrorHandling => Family::Wait,
        Skipped => Family::Muted,
        NotRun => Family::Idle,
    }
}

fn plan_family(s: PlanStatus) -> Family {
    use PlanStatus::*;
    match s {
        Success => Family::Ok,
        Denied | Timeout | Cancel => Family::Bad,
        // A hook the external system answered `failed`: the plan stays blocked there.
        WaitForFinishPlanningExternalCheckFailed
        | WaitForExecuteExternalCheckFailed
        | WaitForAllDoneExternalCheckFailed => Family::Bad,
        Executing => Family::Run,
        WaitForApproval
        | WaitForFinishPlanningExternalCheck
        | WaitForExecuteExternalCheck
        | WaitForAllDoneExternalCheck => Family::Wait,
        Planning | FinishPlanning => Family::Idle,
    }
}

fn plan_job_family(s: PlanJobStatus) -> Family {
    use PlanJobStatus::*;
    match s {
        Done => Family::Ok,
        Failed => Family::Bad,
        Running => Family::Run,
        Skipped => Family::Muted,
        Unset | Todo => Family::Idle,
    }
}

fn approval_family(s: ApprovalStatus) -> Family {
    match s {
        ApprovalStatus::Passed => Family::Ok,
        ApprovalStatus::Reject | ApprovalStatus::Timeout => Family::Bad,
        ApprovalStatus::Undecided => Family::Idle,
    }
}

fn vote_family(s: ApproveOrReject) -> Family {
    match s {
        ApproveOrReject::Approve => Family::Ok,
        ApproveOrReject::Reject => Family::Bad,
        ApproveOrReject::None => Family::Idle,
    }
}

fn version_family(s: VersionStatus) -> Family {
    match s {
        VersionStatus::Success => Family::Ok,
        VersionStatus::Failed => Family::Bad,
        VersionStatus::Creating | VersionStatus::Retrying => Family::Run,
    }
}

fn item_family(s: ItemStatus) -> Family {
    match s {
        ItemStatus::Passed => Family::Ok,
        ItemStatus::Failed => Family::Bad,
        ItemStatus::Running => Family::Run,
        ItemStatus::NotRun => Family::Idle,
    }
}

/// A readable status word: `wait_for_approval` → `wait for approval`; `""` → `not started`.
pub fn label(status: &str) -> String {
    if status.is_empty() {
        "not started".into()
    } else {
        status.replace('_', " ")
    }
}

/// A status badge: symbol and word, coloured by family (the colour is never the only cue).
pub fn badge(status: &str) -> String {
    let f = family(status);
    let word = escape(&label(status));
    format!(
        "<span class=\"badge {}\"><span aria-hidden=\"true\">{}</span> {word}</span>",
        f.class(),
        f.symbol()
    )
}

/// Escape text for HTML content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encode a path segment or query value.
pub fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles() {
        for (name, _) in TEMPLATES {
            assert!(env().get_template(name).is_ok(), "{name}");
        }
    }

    /// A string several areas use (`failed`, `timeout`, `reject`, `""`, …) has one family,
    /// whichever enum [`family`] reads it with first.
    #[test]
    fn a_status_has_one_family_in_every_area() {
        fn check<T: Copy + std::fmt::Display>(all: &[T], of: fn(T) -> Family) {
            for &v in all {
                assert_eq!(family(&v.to_string()), of(v), "{v}");
            }
        }
        check(TaskStatus::ALL, task_family);
        check(PlanStatus::ALL, plan_family);
        check(PlanJobStatus::ALL, plan_job_family);
        check(ApprovalStatus::ALL, approval_family);
        check(ApproveOrReject::ALL, vote_family);
        check(VersionStatus::ALL, version_family);
        check(ItemStatus::ALL, item_family);
    }

    #[test]
    fn words_for_times_and_statuses() {
        assert_eq!(time(0), "—");
        assert_eq!(time(86_400), "1970-01-02 00:00:00 UTC");
        assert_eq!(duration(65), "1m 05s");
        assert_eq!(duration(3_720), "1h 02m");
        assert_eq!(family("wait_for_approval"), Family::Wait);
        assert_eq!(family("passed"), Family::Ok);
        assert_eq!(family("success"), Family::Ok);
        assert_eq!(family("no such status"), Family::Idle);
        assert_eq!(label(""), "not started");
        assert_eq!(urlencode("a b/c"), "a%20b%2Fc");
        assert_eq!(
            escape("<a href=\"/x\">'&'</a>"),
            "&lt;a href=&quot;/x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        let html = render(
            "error.html",
            &json!({"title": "T", "status": 400, "message": "<b>/p</b>"}),
        );
        assert!(html.is_ok_and(|h| h.contains("&lt;b&gt;/p&lt;/b&gt;") && !h.contains("none")));
    }
}
