//! What a workflow notification says, per receiver (pure; sent by [`super::deliver`]).
//!
//! The facts are taken from the task when its status changes ([`Facts`]), so a message sent
//! later (a retry) still tells that change. Chat messages carry what Zadig's do — the workflow's
//! display name, the task id and status in the title; the executor, project, start time and
//! duration (and the remark and error when there are any) in the text; a link to the task's
//! page when `public_url` is configured — in English. The generic webhook gets Zadig's workflow
//! event (`object_kind`/`event` `workflow`, the task in `workflow`).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::ctl::Channel;
use crate::workflow::task::{Status, Task};

/// The task as it was when its status changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Facts {
    pub task_id: i64,
    pub project_name: String,
    pub workflow_name: String,
    pub workflow_display_name: String,
    pub status: Status,
    pub remark: String,
    pub error: String,
    pub create_time: i64,
    pub start_time: i64,
    pub end_time: i64,
    pub stages: Vec<StageFacts>,
    pub task_creator: String,
    pub task_creator_id: String,
}

/// A stage in [`Facts`] (Zadig's `WorkflowNotifyStage`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StageFacts {
    pub name: String,
    pub status: Status,
    pub start_time: i64,
    pub end_time: i64,
    pub jobs: Vec<JobFacts>,
    pub error: String,
}

/// A job task in [`StageFacts`] (Zadig's `WorkflowNotifyJobTask`, without the spec).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobFacts {
    pub name: String,
    pub display_name: String,
    #[serde(rename = "type")]
    pub job_type: String,
    pub status: Status,
    pub start_time: i64,
    pub end_time: i64,
    pub error: String,
}

impl Facts {
    /// `task` as it is now, telling `event` (which a stored status may not show yet, e.g.
    /// `created` for a task stored as `waiting`).
    pub fn of(task: &Task, event: Status) -> Self {
        let stages = task
            .stages
            .iter()
            .map(|s| StageFacts {
                name: s.name.clone(),
                status: s.status,
                start_time: s.start_time,
                end_time: s.end_time,
                error: s.error.clone(),
                jobs: s
                    .jobs
                    .iter()
                    .map(|j| JobFacts {
                        name: j.name.clone(),
                        display_name: j.display_name.clone(),
                        job_type: j.job_type.clone(),
                        status: j.status,
                        start_time: j.start_time,
                        end_time: j.end_time,
                        error: j.error.clone(),
                    })
                    .collect(),
            })
            .collect();
        Self {
            task_id: task.task_id,
            project_name: task.project_name.clone(),
            workflow_name: task.workflow_name.clone(),
            workflow_display_name: if task.workflow_display_name.is_empty() {
                task.workflow_name.clone()
            } else {
                task.workflow_display_name.clone()
            },
            status: event,
            remark: task.remark.clone(),
            error: task.error.clone(),
            create_time: task.create_time,
            start_time: task.start_time,
            end_time: task.end_time,
            stages,
            task_creator: task.task_creator.clone(),
            task_creator_id: task.task_creator_id.clone(),
        }
    }
}

/// One HTTP POST of a notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Post {
    /// The receiver (a secret: a chat bot's key is in its URL).
    pub url: String,
    pub body: Value,
    /// Extra headers (the webhook's `X-Zadig-*`).
    pub headers: Vec<(&'static str, String)>,
    /// How the receiver reports a refusal inside a 200 answer.
    pub reply: Reply,
}

/// How a receiver's 200 answer is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Any 2xx is a delivery.
    Status,
    /// DingTalk and WeCom: `errcode` other than 0 is a refusal.
    ErrCode,
    /// Lark: `code` (or the older `StatusCode`) other than 0 is a refusal.
    LarkCode,
}

/// What links and instance headers are built from.
pub struct Context<'a> {
    /// `public_url` without a trailing slash; empty = no link.
    pub base: &'a str,
    /// Now, Unix seconds (the duration of a task still running).
    pub now: i64,
}

impl Context<'_> {
    /// The task's page on this server's dashboard, when `public_url` is set.
    pub fn link(&self, f: &Facts) -> Option<String> {
        (!self.base.is_empty()).then(|| {
            format!(
                "{}/ui/workflows/{}/tasks/{}",
                self.base,
                urlencoding(&f.workflow_name),
                f.task_id
            )
        })
    }
}

/// Percent-encode a path segment (workflow keys are plain names, but stay safe).
fn urlencoding(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The status as a message tells it.
pub fn status_text(s: Status) -> &'static str {
    match s {
        Status::Created | Status::Waiting => "Created",
        Status::Running | Status::Prepare => "Running",
        Status::Passed => "Passed",
        Status::Failed => "Failed",
        Status::Timeout => "Timeout",
        Status::Cancelled => "Cancelled",
        Status::Reject => "Rejected",
        Status::Pause => "Waiting for manual execution",
        Status::WaitForApproval => "Waiting for approval",
        Status::WaitForManualErrorHandling => "Waiting for error handling",
        Status::Skipped => "Skipped",
        Status::Unstable => "Unstable",
        Status::NotRun => "Not run",
    }
}

/// Good news, bad news, or something to look at (Zadig's colours and icons).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tone {
    Good,
    Bad,
    Warn,
}

fn tone(s: Status) -> Tone {
    match s {
        Status::Passed | Status::Created | Status::Waiting | Status::Running | Status::Prepare => {
            Tone::Good
        }
        Status::Failed => Tone::Bad,
        _ => Tone::Warn,
    }
}

/// `Workflow <name> #<id> <status>` with Zadig's icon.
pub fn title(f: &Facts) -> String {
    let icon = match tone(f.status) {
        Tone::Good => "👍",
        Tone::Bad => "❌",
        Tone::Warn => "⚠️",
    };
    format!(
        "{icon} Workflow {} #{} {}",
        f.workflow_display_name,
        f.task_id,
        status_text(f.status)
    )
}

/// Go's duration text (`1h2m3s`), as Zadig shows it.
fn duration(secs: i64) -> String {
    let secs = secs.max(0);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

fn time_text(secs: i64) -> String {
    if secs <= 0 {
        return "-".to_string();
    }
    chrono::DateTime::from_timestamp(secs, 0).map_or_else(
        || "-".to_string(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

/// The text lines (`label`, value) every chat message carries.
fn lines(f: &Facts, now: i64) -> Vec<(&'static str, String)> {
    let end = if f.end_time > 0 { f.end_time } else { now };
    let took = if f.start_time > 0 {
        end - f.start_time
    } else {
        0
    };
    let mut l = vec![
        ("Executor", f.task_creator.clone()),
        ("Project", f.project_name.clone()),
        ("Start Time", time_text(f.start_time)),
        ("Duration", duration(took)),
    ];
    if !f.remark.is_empty() {
        l.push(("Remark", f.remark.clone()));
    }
    if !f.error.is_empty() {
        l.push(("Error", f.error.clone()));
    }
    l
}

/// The markdown text of a chat message: each line as `prefix**label**: value`, then the link.
fn markdown(f: &Facts, ctx: &Context<'_>, prefix: &str) -> String {
    let mut text: Vec<String> = lines(f, ctx.now)
        .into_iter()
        .map(|(k, v)| format!("{prefix}**{k}**: {v}"))
        .collect();
    if let Some(link) = ctx.link(f) {
        text.push(String::new());
        text.push(format!("[View the task]({link})"));
    }
    text.join("  \n")
}

/// The POSTs that tell `f` through `channel`: the message, then (Lark, WeCom) a text that
/// mentions the recipients when there are any — the bots mention people only in text messages.
pub fn posts(channel: &Channel, f: &Facts, ctx: &Context<'_>) -> Vec<Post> {
    let title = title(f);
    let post = |url: &str, body: Value, reply: Reply| Post {
        url: url.to_string(),
        body,
        headers: Vec::new(),
        reply,
    };
    match channel {
        Channel::DingDing {
            hook,
            at_mobiles,
            is_at_all,
        } => vec![post(
            hook,
            dingding_body(f, ctx, &title, at_mobiles, *is_at_all),
            Reply::ErrCode,
        )],
        Channel::Lark {
            hook,
            at_users,
            is_at_all,
        } => {
            let mut posts = vec![post(hook, lark_card(f, ctx, &title), Reply::LarkCode)];
            let mut at: Vec<String> = at_users
                .iter()
                .map(|u| format!("<at user_id=\"{u}\"></at>"))
                .collect();
            if *is_at_all {
                at.push("<at user_id=\"all\"></at>".to_string());
            }
            if !at.is_empty() {
                let body = json!({"msg_type": "text", "content": {"text": at.join(" ")}});
                posts.push(post(hook, body, Reply::LarkCode));
            }
            posts
        }
        Channel::WeCom {
            hook,
            at_users,
            is_at_all,
        } => {
            let content = format!("### {title}\n{}", markdown(f, ctx, ""));
            let body = json!({"msgtype": "markdown", "markdown": {"content": content}});
            let mut posts = vec![post(hook, body, Reply::ErrCode)];
            let mut at = at_users.clone();
            if *is_at_all {
                at.push("@all".to_string());
            }
            if !at.is_empty() {
                let body =
                    json!({"msgtype": "text", "text": {"content": title, "mentioned_list": at}});
                posts.push(post(hook, body, Reply::ErrCode));
            }
            posts
        }
        Channel::Teams { hook, at_emails } => vec![post(
            hook,
            teams_card(f, ctx, &title, at_emails),
            Reply::Status,
        )],
        Channel::Webhook { address, token } => {
            let mut p = post(address, webhook_body(f, ctx), Reply::Status);
            p.headers = vec![
                ("X-Zadig-Event", "workflow".to_string()),
                ("X-Zadig-Instance", ctx.base.to_string()),
                ("X-Zadig-Token", token.clone()),
            ];
            vec![p]
        }
    }
}

/// DingTalk's markdown message (the numbers to mention are named in the text as well: DingTalk
/// mentions a number only when the text names it).
fn dingding_body(
    f: &Facts,
    ctx: &Context<'_>,
    title: &str,
    at_mobiles: &[String],
    is_at_all: bool,
) -> Value {
    let color = match tone(f.status) {
        Tone::Good => "#00a13e",
        Tone::Bad => "#eb0823",
        Tone::Warn => "#ff8800",
    };
    let mut text = format!(
        "### <font color=\"{color}\">**{title}**</font>\n{}",
        markdown(f, ctx, "##### ")
    );
    if !at_mobiles.is_empty() {
        text.push_str(&format!(
            "\n\n##### **Mentions**: @{}",
            at_mobiles.join(" @")
        ));
    }
    json!({"msgtype": "markdown", "markdown": {"title": title, "text": text},
        "at": {"atMobiles": at_mobiles, "isAtAll": is_at_all}})
}

/// Zadig's workflow event for generic webhooks.
fn webhook_body(f: &Facts, ctx: &Context<'_>) -> Value {
    let mut workflow = serde_json::to_value(f).unwrap_or_default();
    if let Some(w) = workflow.as_object_mut() {
        w.insert("project_display_name".into(), json!(f.project_name));
        w.insert("detail_url".into(), json!(ctx.link(f).unwrap_or_default()));
        w.insert("task_creator_email".into(), json!(""));
        w.insert("task_type".into(), json!("workflow"));
    }
    json!({"object_kind": "workflow", "event": "workflow", "workflow": workflow, "release_plan": null})
}

fn lark_card(f: &Facts, ctx: &Context<'_>, title: &str) -> Value {
    let template = match tone(f.status) {
        Tone::Good => "green",
        Tone::Bad => "red",
        Tone::Warn => "orange",
    };
    let fields: Vec<Value> = lines(f, ctx.now)
        .into_iter()
        .map(|(k, v)| json!({"is_short": false, "text": {"tag": "lark_md", "content": format!("**{k}**: {v}")}}))
        .collect();
    let mut elements = vec![json!({"tag": "div", "fields": fields})];
    if let Some(link) = ctx.link(f) {
        elements.push(
            json!({"tag": "action", "actions": [{"tag": "button", "type": "primary",
            "text": {"tag": "plain_text", "content": "View the task"}, "url": link}]}),
        );
    }
    json!({"msg_type": "interactive", "card": {
        "config": {"wide_screen_mode": true},
        "header": {"template": template, "title": {"tag": "plain_text", "content": title}},
        "elements": elements}})
}

fn teams_card(f: &Facts, ctx: &Context<'_>, title: &str, at_emails: &[String]) -> Value {
    let color = match tone(f.status) {
        Tone::Good => "Good",
        Tone::Bad => "Attention",
        Tone::Warn => "Warning",
    };
    let mut body = vec![
        json!({"type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium", "color": color, "wrap": true}),
        json!({"type": "TextBlock", "text": markdown(f, &Context { base: "", now: ctx.now }, ""), "wrap": true}),
    ];
    let mentions: Vec<Value> = at_emails
        .iter()
        .map(|e| json!({"type": "mention", "text": format!("<at>{e}</at>"), "mentioned": {"id": e, "name": e}}))
        .collect();
    if !at_emails.is_empty() {
        let text: Vec<String> = at_emails.iter().map(|e| format!("<at>{e}</at>")).collect();
        body.push(json!({"type": "TextBlock", "text": text.join(" "), "wrap": true}));
    }
    let actions: Vec<Value> = ctx
        .link(f)
        .map(|l| json!({"type": "Action.OpenUrl", "title": "View the task", "url": l}))
        .into_iter()
        .collect();
    json!({"type": "message", "attachments": [{
        "contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": null,
        "content": {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard", "version": "1.4", "body": body, "actions": actions,
            "msteams": {"entities": mentions}}}]})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            task_id: 7,
            project_name: "p".into(),
            workflow_name: "wf x".into(),
            workflow_display_name: "Build".into(),
            status: Status::Failed,
            start_time: 1_700_000_000,
            end_time: 1_700_000_065,
            task_creator: "alice".into(),
            error: "boom".into(),
            ..Facts::default()
        }
    }

    #[test]
    fn texts() {
        let f = facts();
        assert_eq!(title(&f), "❌ Workflow Build #7 Failed");
        assert_eq!(duration(3723), "1h2m3s");
        assert_eq!(duration(65), "1m5s");
        let ctx = Context {
            base: "https://z.example",
            now: 0,
        };
        assert_eq!(
            ctx.link(&f).unwrap(),
            "https://z.example/ui/workflows/wf%20x/tasks/7"
        );
        let md = markdown(&f, &ctx, "");
        assert!(md.contains("**Executor**: alice"), "{md}");
        assert!(md.contains("**Duration**: 1m5s"), "{md}");
        assert!(md.contains("**Error**: boom"), "{md}");
        assert!(md.contains("2023-11-14 22:13:20 UTC"), "{md}");
        assert!(md.ends_with("[View the task](https://z.example/ui/workflows/wf%20x/tasks/7)"));
        let no_link = markdown(&f, &Context { base: "", now: 0 }, "");
        assert!(!no_link.contains("View the task"), "{no_link}");
    }

    #[test]
    fn mentions_go_in_a_second_text_where_bots_need_it() {
        let ctx = Context { base: "", now: 0 };
        let lark = Channel::Lark {
            hook: "h".into(),
            at_users: vec!["u1".into()],
            is_at_all: true,
        };
        let p = posts(&lark, &facts(), &ctx);
        assert_eq!(p.len(), 2);
        assert_eq!(
            p[1].body["content"]["text"],
            "<at user_id=\"u1\"></at> <at user_id=\"all\"></at>"
        );
        let quiet = Channel::WeCom {
            hook: "h".into(),
            at_users: vec![],
            is_at_all: false,
        };
        assert_eq!(posts(&quiet, &facts(), &ctx).len(), 1);
    }
}
