//! Template rendering: the compiled-in minijinja templates, the filters they use, and the
//! status vocabulary (every status is shown as a word and a symbol, never by colour alone).

use std::sync::OnceLock;

use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use minijinja::{AutoEscape, Environment, Value as JValue};
use serde_json::{Value, json};

use super::session::Viewer;

/// The templates, by name (autoescaping is on for `.html`).
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("error.html", include_str!("templates/error.html")),
    ("login.html", include_str!("templates/login.html")),
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
        env.add_filter("status_kind", |s: String| kind(&s).to_string());
        env.add_filter("status_symbol", |s: String| symbol(kind(&s)).to_string());
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

/// The family of a status string of any area (plans, jobs, tasks, images).
pub fn kind(status: &str) -> &'static str {
    match status {
        "passed" | "success" | "done" | "approve" | "unstable" => "ok",
        "failed" | "timeout" | "reject" | "denied" | "cancel" | "cancelled" => "bad",
        "running" | "executing" | "creating" | "retrying" | "prepare" => "run",
        "" | "todo" | "planning" | "finish_planning" => "idle",
        "skipped" => "muted",
        s if s.starts_with("wait") || s == "pause" || s == "waiting" || s == "created" => "wait",
        _ => "idle",
    }
}

/// The symbol shown next to a status word (for those who cannot tell the colours apart).
pub fn symbol(kind: &str) -> &'static str {
    match kind {
        "ok" => "✓",
        "bad" => "✗",
        "run" => "▶",
        "wait" => "⏸",
        "muted" => "↷",
        _ => "○",
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
    let k = kind(status);
    let word = escape(&label(status));
    format!(
        "<span class=\"badge {k}\"><span aria-hidden=\"true\">{}</span> {word}</span>",
        symbol(k)
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

    #[test]
    fn words_for_times_and_statuses() {
        assert_eq!(time(0), "—");
        assert_eq!(time(86_400), "1970-01-02 00:00:00 UTC");
        assert_eq!(duration(65), "1m 05s");
        assert_eq!(duration(3_720), "1h 02m");
        assert_eq!(kind("wait_for_approval"), "wait");
        assert_eq!(kind("passed"), "ok");
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
