//! Outgoing release-plan hooks (seed 000 "Hook External Systems", spec §8, DESIGN.md §5):
//! the body, the system hook setting, and one delivery attempt.
//!
//! The body is built by the state machine at the transition ([`body`], pure); delivery happens
//! later from the scheduler's hook loop ([`crate::scheduler::hooks`]), never inside an API
//! request, with the address and secret of the setting current at delivery.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;

use super::egress::{EgressPolicy, PolicyResolver};
use super::model::{
    HookEvent, HookSnapshot, JobKind, PendingHook, ReleaseJob, ReleasePlan, TaskStatus,
};

/// The system-wide hook setting (spec §8.1), one document in `settings`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HookSetting {
    pub id: String,
    #[serde(default)]
    pub enable: bool,
    #[serde(default)]
    pub enable_call_back: bool,
    #[serde(default)]
    pub hook_address: String,
    /// Sent as `X-Zadig-Token` and used as the HMAC key of `X-Zadig-Signature`.
    #[serde(default)]
    pub hook_secret: String,
    #[serde(default)]
    pub hook_events: Vec<HookEvent>,
}

/// Id of the hook-setting document.
pub const SETTING_ID: &str = "release_plan_hook";

impl HookSetting {
    /// What a plan snapshots of it.
    pub fn snapshot(&self) -> HookSnapshot {
        HookSnapshot {
            enable: self.enable,
            enable_call_back: self.enable_call_back,
            hook_events: self.hook_events.clone(),
        }
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    object_kind: &'static str,
    event: &'static str,
    workflow: Option<()>,
    release_plan: HookPlan<'a>,
}

/// The plan as the hook shows it; key order as in seed 000's example.
#[derive(Serialize)]
struct HookPlan<'a> {
    id: &'a str,
    index: i64,
    name: &'a str,
    event_name: &'static str,
    manager: &'a str,
    manager_id: &'a str,
    start_time: i64,
    end_time: i64,
    schedule_execute_time: i64,
    description: &'a str,
    created_by: &'a str,
    create_time: i64,
    updated_by: &'a str,
    update_time: i64,
    instance_code: &'a str,
    jobs: Vec<HookJob<'a>>,
    status: &'static str,
    planning_time: i64,
    approval_time: i64,
    executing_time: i64,
    success_time: i64,
}

#[derive(Serialize)]
struct HookJob<'a> {
    id: &'a str,
    name: &'a str,
    manager: &'a str,
    manager_id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    spec: Value,
    status: &'static str,
    executed_by: &'a str,
    executed_time: i64,
}

fn hook_job(j: &ReleaseJob) -> HookJob<'_> {
    // Text: {content, remark}; workflow: {workflow, status, task_id} (spec §8.3).
    let spec = match j.kind {
        JobKind::Text => json!({"content": j.spec.content, "remark": j.spec.remark}),
        JobKind::Workflow => {
            // Receivers need the workflow, not its credentials.
            let mut s = json!({"workflow": crate::masking::masked(j.spec.workflow.clone())});
            if j.spec.status != TaskStatus::NotRun {
                s["status"] = json!(j.spec.status);
            }
            if j.spec.task_id != 0 {
                s["task_id"] = json!(j.spec.task_id);
            }
            s
        }
    };
    HookJob {
        id: &j.id,
        name: &j.name,
        manager: &j.manager,
        manager_id: &j.manager_id,
        kind: j.kind.as_str(),
        spec,
        status: j.status.as_str(),
        executed_by: &j.executed_by,
        executed_time: j.executed_time,
    }
}

/// The JSON body of the hook for `event`, showing `plan` as it is now.
pub fn body(plan: &ReleasePlan, event: HookEvent) -> String {
    let env = Envelope {
        object_kind: "release_plan",
        event: "release_plan",
        workflow: None,
        release_plan: HookPlan {
            id: &plan.id,
            index: plan.index,
            name: &plan.name,
            event_name: event.as_str(),
            manager: &plan.manager,
            manager_id: &plan.manager_id,
            start_time: plan.start_time,
            end_time: plan.end_time,
            schedule_execute_time: plan.schedule_execute_time,
            description: &plan.description,
            created_by: &plan.created_by,
            create_time: plan.create_time,
            updated_by: &plan.updated_by,
            update_time: plan.update_time,
            instance_code: &plan.instance_code,
            jobs: plan.jobs.iter().map(hook_job).collect(),
            status: plan.status.as_str(),
            planning_time: plan.planning_time,
            approval_time: plan.approval_time,
            executing_time: plan.executing_time,
            success_time: plan.success_time,
        },
    };
    // Serializing plain structs of strings and numbers cannot fail.
    serde_json::to_string(&env).unwrap_or_default()
}

/// `sha256=<hex HMAC-SHA256 of body keyed with secret>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The hook client and the egress policy it enforces (literal addresses are checked before
/// sending, by [`post`]; the client's resolver checks the rest). Release-plan hooks and
/// workflow notifications send through it.
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    policy: std::sync::Arc<EgressPolicy>,
}

impl Sender {
    /// A sender with `timeout` under the configured egress policy.
    pub fn new(config: &crate::config::Config, timeout: std::time::Duration) -> Self {
        let policy = std::sync::Arc::new(EgressPolicy::of(config));
        Self {
            client: client(timeout, policy.clone()),
            policy,
        }
    }

    /// [`post`] through this sender.
    pub async fn post(
        &self,
        address: &str,
        field: &str,
        headers: &[(&str, String)],
        body: String,
    ) -> Result<Vec<u8>, String> {
        post(&self.client, &self.policy, address, field, headers, body).await
    }
}

/// The HTTP client for hooks: no proxy, bounded time, no redirects (a 3xx is a failed
/// delivery: following it would send the body and `X-Zadig-Token` to wherever the receiver
/// points), and every resolved address checked against `policy` (see [`super::egress`]).
pub fn client(
    timeout: std::time::Duration,
    policy: std::sync::Arc<EgressPolicy>,
) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(PolicyResolver::new(policy))
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("Zadig zadig-server/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|e| {
            // Building only fails when the TLS backend cannot start; nothing can be sent then,
            // and a client without the policy must not be used instead.
            tracing::error!(error = %e, "cannot build the hook client: {e}");
            reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .dns_resolver(PolicyResolver::new(std::sync::Arc::new(
                    EgressPolicy::deny_all(),
                )))
                .build()
                .unwrap_or_default()
        })
}

/// One delivery attempt of `hook` to the setting's address. `Err` says why it failed.
pub async fn deliver(
    sender: &Sender,
    setting: &HookSetting,
    hook: &PendingHook,
    now_secs: i64,
) -> Result<(), String> {
    let mut headers = vec![
        ("X-Zadig-Event", "release_plan".to_string()),
        ("X-Zadig-Event-UUID", hook.id.clone()),
        ("X-Zadig-Webhook-UUID", uuid::Uuid::new_v4().to_string()),
    ];
    if !setting.hook_secret.is_empty() {
        headers.extend([
            ("X-Zadig-Token", setting.hook_secret.clone()),
            ("X-Zadig-Timestamp", now_secs.to_string()),
            (
                "X-Zadig-Signature",
                signature(&setting.hook_secret, hook.body.as_bytes()),
            ),
        ]);
    }
    sender
        .post(
            &setting.hook_address,
            "hook_address",
            &headers,
            hook.body.clone(),
        )
        .await
        .map(drop)
}

/// The most of a receiver's answer [`post`] reads.
const ANSWER_LIMIT: usize = 64 * 1024;

/// One JSON POST of `body` to `address` (named `field` in errors) through `client`, with
/// `headers`: the literal address is checked against `policy` first (reqwest connects to an IP
/// literal without asking the resolver), redirects are failures. `Ok` holds the start of a 2xx
/// answer's body (at most 64 KiB, what arrived); `Err` says why it failed, without the address (which may
/// carry credentials). Shared by release-plan hooks and workflow notifications.
pub async fn post(
    client: &reqwest::Client,
    policy: &EgressPolicy,
    address: &str,
    field: &str,
    headers: &[(&str, String)],
    body: String,
) -> Result<Vec<u8>, String> {
    let url = reqwest::Url::parse(address).map_err(|e| format!("{field} is not a URL: {e}"))?;
    policy
        .check_url(&url)
        .map_err(|why| format!("denied by the hook egress policy: {why}"))?;
    let mut req = client
        .post(url)
        .header("Content-Type", "application/json")
        .header("Accept", "application/json");
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    let mut resp = req
        .body(body)
        .send()
        .await
        .map_err(|e| format!("request failed: {}", without_url(&e)))?;
    let status = resp.status();
    if status.is_redirection() {
        return Err(format!(
            "receiver answered {status}: a redirect, not followed (hooks never follow redirects)"
        ));
    }
    if !status.is_success() {
        return Err(format!("receiver answered {status}"));
    }
    let mut answer = Vec::new();
    while answer.len() < ANSWER_LIMIT {
        match resp.chunk().await {
            Ok(Some(c)) => answer.extend_from_slice(&c),
            Ok(None) => break,
            // The receiver took the request (2xx): a broken answer does not undo that.
            Err(_) => break,
        }
    }
    answer.truncate(ANSWER_LIMIT);
    Ok(answer)
}

/// reqwest's error text without the URL (which may carry credentials).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "error"
    };
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = src {
        detail = s.to_string();
        src = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}
