//! A job's live log on the task page, on both backends: the page names the line its stream
//! goes on from, every piece of lines carries the line reached as its event id, and a
//! reconnect (`Last-Event-ID`) goes on from there, so the page and the stream together show
//! every line exactly once; the stream ends with `end` when the job ends, and closes without
//! it once its session has ended; the log routes of an unknown task or job are 404 pages.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::backend_test;
use crate::harness::ADMIN_TOKEN;
use crate::ui::{Visitor, csrf_of, shell_job};

const WAIT: Duration = Duration::from_secs(60);

/// The events of an SSE body: `(data lines, last id, whether it ended with `end`)`.
fn parse_events(body: &str) -> (Vec<String>, Option<u64>, bool) {
    let (mut data, mut id, mut end) = (Vec::new(), None, false);
    for block in body.split("\n\n") {
        if block.starts_with("event:end") {
            end = true;
            continue;
        }
        for line in block.lines() {
            if let Some(d) = line.strip_prefix("data:") {
                data.push(d.to_string());
            } else if let Some(i) = line.strip_prefix("id:") {
                id = i.parse().ok();
            }
        }
    }
    (data, id, end)
}

/// The text of the page's `<pre id="log-text">`, unescaped, and the `from` of its stream.
fn shown_log(html: &str) -> (String, u64) {
    let at = html.find("id=\"log-text\"").expect("a log on the page");
    let tag_end = at + html[at..].find('>').expect("tag end");
    let tag = &html[at..tag_end];
    let from = tag
        .split("?from=")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no stream to follow in {tag}"));
    let text = &html[tag_end + 1..tag_end + html[tag_end..].find("</pre>").expect("</pre>")];
    let text = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    (text, from)
}

/// Read `resp`'s body until it closes (at most [`WAIT`]).
async fn read_to_close(mut resp: reqwest::Response) -> String {
    let mut body = Vec::new();
    let read = async {
        while let Some(chunk) = resp.chunk().await.expect("stream readable") {
            body.extend_from_slice(&chunk);
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("the stream closed in time");
    String::from_utf8(body).expect("utf-8")
}

backend_test! {
    async fn ui_log_stream_goes_on_where_the_page_left_off(app) {
        app.post("/api/aslan/workflow/v4", json!({"name": "ticker", "project": "demo", "concurrency_limit": -1,
            "stages": [{"name": "s", "jobs": [shell_job("tick",
                "for i in $(seq 1 60); do echo \"tick $i\"; sleep 0.25; done", 10)]}]})).await.expect(200);
        let id = app.post("/openapi/workflows/custom/task", json!({"project_key": "demo", "workflow_key": "ticker",
            "parameters": [], "inputs": [{"job_name": "tick", "job_type": "freestyle", "parameters": {}}]}))
            .await.expect(200)["task_id"].as_i64().unwrap();
        let api_log = format!("/openapi/logs/log/v4/workflow/ticker/{id}/tick");
        app.wait_for("tick 3", WAIT, || async { app.get(&api_log).await.text.contains("tick 3\n").then_some(()) }).await;

        let admin = Visitor::sign_in(&app, ADMIN_TOKEN).await;
        let url = format!("/ui/workflows/ticker/tasks/{id}");
        let page = admin.page(&format!("{url}?job=tick"), &["data-events=", "following"]).await;
        let (shown, from) = shown_log(&page.text);
        assert_eq!(from, shown.lines().count() as u64, "{shown}");
        let follow = admin.fetch(&format!("{url}/jobs/tick/events?from={from}")).await;
        assert_eq!(follow.status(), 200);
        assert!(follow.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));

        // Another session follows too, then signs out: its stream closes, without `end`,
        // at its next check (every 30 s of the business clock), while the job runs on.
        let other = Visitor::sign_in(&app, ADMIN_TOKEN).await;
        let mut theirs = other.fetch(&format!("{url}/jobs/tick/events?from=0")).await;
        assert!(theirs.chunk().await.unwrap().is_some_and(|c| c.starts_with(b"event:message")));
        let csrf = csrf_of(&other.page("/ui/plans", &[]).await.text);
        assert_eq!(other.post("/ui/logout", &csrf, &[]).await.status, StatusCode::SEE_OTHER);
        app.clock.advance(Duration::from_secs(31));
        let rest = read_to_close(theirs).await;
        assert!(!rest.contains("event:end"), "{rest}");
        let detail = format!("/openapi/workflows/custom/task?taskId={id}&workflowKey=ticker");
        assert_eq!(app.get(&detail).await.body["status"], "running", "the job outlived the signed-out stream");

        // The page's text and its stream make the whole log, each line once.
        let (streamed, last_id, ended) = parse_events(&read_to_close(follow).await);
        assert!(ended, "the stream ends with the job");
        let full = app.get(&api_log).await.text;
        let full: Vec<&str> = full.lines().collect();
        let mut seen: Vec<String> = shown.lines().map(str::to_string).collect();
        seen.extend(streamed);
        assert_eq!(seen, full, "page + stream = the log");
        assert!(full.iter().filter(|l| l.ends_with("tick 60")).count() == 1);
        assert_eq!(last_id, Some(full.len() as u64));

        // A browser reconnecting after line n sends it back: only what follows comes.
        let n = full.len() - 2;
        let events = format!("{}{url}/jobs/tick/events", admin.base);
        let again = admin.client.get(format!("{events}?from=0")).header("cookie", &admin.cookie)
            .header("last-event-id", n.to_string()).send().await.unwrap();
        let (data, _, ended) = parse_events(&read_to_close(again).await);
        assert_eq!(data, full[n..].to_vec());
        assert!(ended);

        // The page of an ended job follows nothing (the log ends just before the task does).
        app.wait_for("passed", WAIT, || async {
            (app.get(&detail).await.body["status"] == "passed").then_some(())
        }).await;
        let page = admin.page(&format!("{url}?job=tick"), &["ended", "tick 60"]).await;
        assert!(!page.text.contains("data-events="), "{}", page.text);
        // Unknown tasks and jobs: 404 pages, not an empty log.
        for path in ["/ui/workflows/ticker/tasks/99/jobs/tick/events".to_string(),
            format!("{url}/jobs/nope/events"), format!("{url}/jobs/nope/log"),
            "/ui/workflows/ticker/tasks/99/jobs/tick/log".to_string()] {
            let r = admin.get(&path).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.text);
            assert!(r.content_type.starts_with("text/html"), "{path}");
        }
        app.stop().await;
    }
}
