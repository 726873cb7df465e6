//! The Kubernetes objects of one job run, built by pure functions (spec/environments.md §7.3):
//! a Secret holding the job for the agent, and the Job whose pod runs the agent.
//!
//! Differences from Zadig's (docs/compatibility.md): the job context is a Secret read through
//! `valueFrom.secretKeyRef`, not a ConfigMap mounted as a file (it holds credentials); the pod
//! gets no service-account token; the active deadline is the job timeout plus a grace of
//! [`DEADLINE_GRACE_SECS`] (the server ends the job at its timeout itself, the deadline only
//! matters when no server watches it any more).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use serde_json::{Value, json};

/// Zadig's labels on the Job and its pod: the Job's name and the job type.
pub const LABEL_NAME: &str = "s-name";
pub const LABEL_TYPE: &str = "s-type";
/// Labels that identify the run (values made label-safe; the exact names are annotations).
pub const LABEL_WORKFLOW: &str = "zadig-server/workflow";
pub const LABEL_TASK: &str = "zadig-server/task-id";
pub const LABEL_JOB: &str = "zadig-server/job";
pub const LABEL_MANAGED: &str = "app.kubernetes.io/managed-by";
pub const MANAGER: &str = "zadig-server";
/// The env var of the agent container that holds the job ([`super::agent::AgentJob`] JSON).
pub const AGENT_ENV: &str = "ZADIG_AGENT_JOB";
/// The Secret's key holding the job.
pub const SECRET_KEY: &str = "job";
/// The agent's working directory in the pod (an emptyDir).
pub const WORK_DIR: &str = "/zadig";
/// Seconds past the job timeout before Kubernetes itself stops the Job.
pub const DEADLINE_GRACE_SECS: u64 = 300;

/// What one Job is made from.
#[derive(Debug, Clone)]
pub struct JobInput<'a> {
    /// The Kubernetes name of the Job and the Secret ([`k8s_job_name`]).
    pub name: &'a str,
    pub namespace: &'a str,
    /// The workflow job type (`freestyle`, `zadig-build`).
    pub job_type: &'a str,
    pub workflow: &'a str,
    pub task_id: i64,
    /// The job task's name.
    pub job: &'a str,
    pub image: &'a str,
    /// The init container's image (empty: none).
    pub agent_image: &'a str,
    /// Where the agent is in the main container.
    pub agent_path: &'a str,
    /// The job for the agent (JSON).
    pub payload: &'a str,
    pub timeout: Duration,
    pub ttl_secs: u64,
}

/// `lower("<workflow>-<taskID>-")` made a DNS label, at most 58 characters, plus `suffix`
/// (Zadig adds 5 random lower-case alphanumerics).
pub fn k8s_job_name(workflow: &str, task_id: i64, suffix: &str) -> String {
    let mut base = dns_label(&format!("{workflow}-{task_id}"), 57);
    base.push('-');
    base.push_str(suffix);
    base
}

/// The main container's name: the job task's name as a DNS label (≤ 63), `job` when nothing
/// of it is left.
pub fn container_name(job: &str) -> String {
    let n = dns_label(job, 63);
    if n.is_empty() { "job".to_string() } else { n }
}

/// Lower case, anything but `[a-z0-9-]` → `-`, no leading/trailing `-`, at most `max`.
fn dns_label(s: &str, max: usize) -> String {
    let mapped: String = s
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let mut out: String = mapped.trim_matches('-').chars().take(max).collect();
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// A label value naming `s`: `s` itself when it is a valid value, else a sanitized prefix
/// plus a hash of `s` (so two names never share a value).
pub fn label_value(s: &str) -> String {
    let valid = s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.chars().next().is_none_or(|c| c.is_ascii_alphanumeric())
        && s.chars().last().is_none_or(|c| c.is_ascii_alphanumeric());
    if valid {
        return s.to_string();
    }
    // FNV-1a: stable across runs and replicas.
    let h = s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let prefix = dns_label(s, 46);
    if prefix.is_empty() {
        format!("h{h:016x}")
    } else {
        format!("{prefix}-{h:016x}")
    }
}

/// The labels of a run's objects.
pub fn labels(input: &JobInput<'_>) -> BTreeMap<String, String> {
    [
        (LABEL_NAME, input.name.to_string()),
        (LABEL_TYPE, label_value(input.job_type)),
        (LABEL_WORKFLOW, label_value(input.workflow)),
        (LABEL_TASK, input.task_id.to_string()),
        (LABEL_JOB, label_value(input.job)),
        (LABEL_MANAGED, MANAGER.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The label selector of the run's objects (by the Job's name).
pub fn selector(name: &str) -> String {
    format!("{LABEL_NAME}={name}")
}

/// The Secret holding the job (its owner reference to the Job is added once the Job exists).
pub fn secret(input: &JobInput<'_>) -> Result<Secret, String> {
    let data = base64_encode(input.payload.as_bytes());
    let v = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": input.name,
            "namespace": input.namespace,
            "labels": labels(input),
        },
        "type": "Opaque",
        "data": { SECRET_KEY: data },
    });
    serde_json::from_value(v).map_err(|e| format!("cannot build the job Secret: {e}"))
}

/// The Job running the agent in `input.image`.
pub fn job(input: &JobInput<'_>) -> Result<Job, String> {
    let labels = labels(input);
    let agent_dir = std::path::Path::new(input.agent_path)
        .parent()
        .map_or_else(|| "/".to_string(), |p| p.to_string_lossy().into_owned());
    let with_init = !input.agent_image.is_empty();
    let mut mounts = vec![json!({"name": "zadig-context", "mountPath": WORK_DIR})];
    let mut volumes = vec![json!({"name": "zadig-context", "emptyDir": {}})];
    let mut init = Vec::new();
    if with_init {
        mounts.push(json!({"name": "zadig-agent", "mountPath": agent_dir}));
        volumes.push(json!({"name": "zadig-agent", "emptyDir": {}}));
        init.push(json!({
            "name": "zadig-agent-init",
            "image": input.agent_image,
            // The agent image's entrypoint is zadig-server: it copies itself.
            "args": ["job-agent", "--install", input.agent_path],
            "volumeMounts": [{"name": "zadig-agent", "mountPath": agent_dir}],
        }));
    }
    let mut pod_spec = json!({
        "restartPolicy": "Never",
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
        "containers": [{
            "name": container_name(input.job),
            "image": input.image,
            "command": [input.agent_path, "job-agent"],
            "workingDir": WORK_DIR,
            "env": [{
                "name": AGENT_ENV,
                "valueFrom": {"secretKeyRef": {"name": input.name, "key": SECRET_KEY}},
            }],
            "volumeMounts": mounts,
            "terminationMessagePolicy": "FallbackToLogsOnError",
        }],
        "volumes": volumes,
    });
    if with_init {
        pod_spec["initContainers"] = Value::Array(init);
    }
    let deadline = input.timeout.as_secs().saturating_add(DEADLINE_GRACE_SECS);
    let v = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": input.name,
            "namespace": input.namespace,
            "labels": labels,
            "annotations": {
                LABEL_WORKFLOW: input.workflow,
                LABEL_JOB: input.job,
            },
        },
        "spec": {
            "completions": 1,
            "parallelism": 1,
            "backoffLimit": 0,
            "activeDeadlineSeconds": deadline,
            "ttlSecondsAfterFinished": input.ttl_secs,
            "template": {
                "metadata": {"labels": labels},
                "spec": pod_spec,
            },
        },
    });
    serde_json::from_value(v).map_err(|e| format!("cannot build the Kubernetes Job: {e}"))
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(agent_image: &'a str) -> JobInput<'a> {
        JobInput {
            name: "my-wf-7-abcde",
            namespace: "koderover-agent",
            job_type: "freestyle",
            workflow: "My_WF",
            task_id: 7,
            job: "build 构建",
            image: "ubuntu:22.04",
            agent_image,
            agent_path: "/zadig-agent/zadig-server",
            payload: "{\"secret\":\"s3cr3t\"}",
            timeout: Duration::from_secs(600),
            ttl_secs: 3600,
        }
    }

    #[test]
    fn names() {
        assert_eq!(k8s_job_name("My_WF", 7, "abcde"), "my-wf-7-abcde");
        let long = k8s_job_name(&"x".repeat(100), 12345, "abcde");
        assert!(long.len() <= 63 && long.ends_with("-abcde"), "{long}");
        assert_eq!(container_name("构建"), "job");
        assert_eq!(container_name("Build_1"), "build-1");
        assert_eq!(label_value("wf-1"), "wf-1");
        assert_ne!(label_value("构建"), label_value("部署"));
        assert!(label_value(&"a".repeat(80)).len() <= 63);
    }

    #[test]
    fn job_spec() {
        let j = serde_json::to_value(job(&input("reg.io/zadig-server:1")).unwrap()).unwrap();
        let spec = &j["spec"];
        assert_eq!(spec["backoffLimit"], 0);
        assert_eq!(spec["completions"], 1);
        assert_eq!(spec["activeDeadlineSeconds"], 900);
        assert_eq!(spec["ttlSecondsAfterFinished"], 3600);
        let labels = &j["metadata"]["labels"];
        assert_eq!(labels["s-name"], "my-wf-7-abcde");
        assert_eq!(labels["s-type"], "freestyle");
        assert_eq!(labels[LABEL_TASK], "7");
        assert_eq!(j["metadata"]["annotations"][LABEL_WORKFLOW], "My_WF");
        let pod = &spec["template"]["spec"];
        assert_eq!(spec["template"]["metadata"]["labels"], *labels);
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(pod["automountServiceAccountToken"], false);
        let c = &pod["containers"][0];
        assert_eq!(c["image"], "ubuntu:22.04");
        assert_eq!(
            c["command"],
            json!(["/zadig-agent/zadig-server", "job-agent"])
        );
        assert_eq!(
            c["env"][0]["valueFrom"]["secretKeyRef"],
            json!({"name": "my-wf-7-abcde", "key": "job"})
        );
        // The job's credentials are only in the Secret.
        assert!(!j.to_string().contains("s3cr3t"));
        let init = &pod["initContainers"][0];
        assert_eq!(init["image"], "reg.io/zadig-server:1");
        assert_eq!(init["volumeMounts"][0]["mountPath"], "/zadig-agent");
        let none = serde_json::to_value(job(&input("")).unwrap()).unwrap();
        assert!(
            none["spec"]["template"]["spec"]
                .get("initContainers")
                .is_none()
        );
    }

    #[test]
    fn secret_spec() {
        let s = serde_json::to_value(secret(&input("")).unwrap()).unwrap();
        assert_eq!(s["metadata"]["name"], "my-wf-7-abcde");
        assert_eq!(s["metadata"]["labels"]["s-name"], "my-wf-7-abcde");
        assert_eq!(s["data"]["job"], base64_encode(b"{\"secret\":\"s3cr3t\"}"));
    }
}
