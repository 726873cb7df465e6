//! What deploy jobs share (spec/environments.md §6.4, §6.5): Zadig's deploy banners around a
//! run, the `replace_resources` record, and the rollout wait — every second each workload is
//! read back until it has rolled out (Deployment and StatefulSet: observed generation caught
//! up, updated/ready/available replicas equal to the desired count; DaemonSet likewise; Jobs
//! and CronJobs are not waited for). A pod of the new template waiting with
//! `ImagePullBackOff`, `ErrImagePull`, `ErrImageNeverPull` or `CrashLoopBackOff` fails the job
//! at once, naming the pod and the workload, and so does a workload deleted (or being deleted)
//! during the wait — the job applied or found it just before; the deadline fails it naming
//! the workload and what it lacked; cancel ends it `cancelled` within a poll.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::cluster::client::ClusterClient;
use crate::engine::executor::{JobEnd, JobStatus, ServerJob};
use crate::engine::logs::JobLog;
use crate::environment::kube as k;
use crate::environment::model::ResourceRef;
use crate::environment::service::ImageChange;
use crate::state::AppState;

/// Pause between two reads of the workloads.
const POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Waiting reasons that fail a rollout at once (Zadig's list).
const FATAL_REASONS: &[&str] = &[
    "ImagePullBackOff",
    "ErrImagePull",
    "CrashLoopBackOff",
    "ErrImageNeverPull",
];

/// The rollout timeout when none is set (Zadig's 10 minutes).
pub const DEFAULT_TIMEOUT_SECS: i64 = 600;

/// Run `body` between Zadig's deploy banners; a failure is logged as `Deploy job failed`.
pub async fn with_banners(log: &JobLog, body: impl Future<Output = JobEnd>) -> JobEnd {
    let started = Instant::now();
    log.raw("====================== Deploy Job Start ======================");
    let end = body.await;
    if end.status == JobStatus::Failed {
        log.info(&format!("Deploy job failed: {}", end.error));
    }
    log.raw(&format!(
        "====================== Deploy Job End. Duration: {:.2} seconds ======================",
        started.elapsed().as_secs_f64()
    ));
    end
}

/// A job's end with `status` and `error`.
pub fn end(status: JobStatus, error: impl Into<String>) -> JobEnd {
    let mut e = JobEnd::failed(error);
    e.status = status;
    e
}

/// The `replace_resources` record of the changes: each workload container's previous
/// (`origin`) and new image.
pub fn record(changes: &[ImageChange]) -> Map<String, Value> {
    let list: Vec<Value> = changes
        .iter()
        .map(|c| {
            json!({"kind": c.kind, "name": c.name, "container": c.container,
                "origin": c.origin, "image": c.image})
        })
        .collect();
    let mut m = Map::new();
    m.insert("replace_resources".into(), Value::Array(list));
    m
}

/// How a rollout wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollout {
    Ready,
    Failed(String),
    TimedOut(String),
    Cancelled,
}

impl Rollout {
    /// The job end of this outcome.
    pub fn into_end(self) -> JobEnd {
        match self {
            Rollout::Ready => end(JobStatus::Passed, ""),
            Rollout::Failed(e) => end(JobStatus::Failed, e),
            Rollout::TimedOut(e) => end(JobStatus::Timeout, e),
            Rollout::Cancelled => JobEnd::cancelled(),
        }
    }
}

/// Where a workload's rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub ready: bool,
    /// Ready pods and the desired count, for the log.
    pub ready_pods: i64,
    pub desired: i64,
    /// What it still lacks, for the timeout error.
    pub lacks: String,
    /// Its deletion has begun (`metadata.deletionTimestamp`).
    pub deleting: bool,
}

fn num(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

/// Judge a live workload of `kind`.
pub fn progress(kind: &str, live: &Value) -> Progress {
    let generation = num(live, "/metadata/generation");
    let observed = num(live, "/status/observedGeneration");
    let mut lacks = Vec::new();
    if observed < generation {
        lacks.push(format!(
            "observed generation {observed} of {generation} (the new spec is not picked up yet)"
        ));
    }
    let (desired, counts): (i64, Vec<(&str, i64)>) = match kind {
        "Deployment" | "StatefulSet" => {
            let desired = live
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let mut counts = vec![
                ("updated", num(live, "/status/updatedReplicas")),
                ("ready", num(live, "/status/readyReplicas")),
                ("available", num(live, "/status/availableReplicas")),
            ];
            if kind == "Deployment" {
                // Old pods still running count in status.replicas.
                counts.push(("total", num(live, "/status/replicas")));
            }
            (desired, counts)
        }
        "DaemonSet" => (
            num(live, "/status/desiredNumberScheduled"),
            vec![
                ("updated", num(live, "/status/updatedNumberScheduled")),
                ("ready", num(live, "/status/numberReady")),
                ("available", num(live, "/status/numberAvailable")),
            ],
        ),
        _ => {
            return Progress {
                ready: true,
                ready_pods: 0,
                desired: 0,
                lacks: String::new(),
                deleting: false,
            };
        }
    };
    for (what, n) in &counts {
        if *n != desired {
            lacks.push(format!("{n}/{desired} replicas {what}"));
        }
    }
    if kind == "StatefulSet" {
        let cur = live
            .pointer("/status/currentRevision")
            .and_then(Value::as_str);
        let upd = live
            .pointer("/status/updateRevision")
            .and_then(Value::as_str);
        if let (Some(c), Some(u)) = (cur, upd)
            && c != u
        {
            lacks.push(format!(
                "current revision {c} is not the update revision {u}"
            ));
        }
    }
    let ready_pods = counts
        .iter()
        .find(|(w, _)| *w == "ready")
        .map_or(0, |(_, n)| *n);
    Progress {
        ready: lacks.is_empty(),
        ready_pods,
        desired,
        lacks: lacks.join(", "),
        deleting: live.pointer("/metadata/deletionTimestamp").is_some(),
    }
}

/// The images of a pod spec's containers (init and main), by container name.
fn images_of(pod_spec: Option<&Value>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for key in ["initContainers", "containers"] {
        for c in pod_spec
            .and_then(|s| s.get(key))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            out.insert(s("name"), s("image"));
        }
    }
    out
}

/// `(reason, message)` of every container of `pod` waiting or terminated for a reason.
fn container_reasons(pod: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for key in ["initContainerStatuses", "containerStatuses"] {
        for c in pod
            .pointer(&format!("/status/{key}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for state in ["waiting", "terminated"] {
                if let Some(st) = c.pointer(&format!("/state/{state}")) {
                    let reason = st.get("reason").and_then(Value::as_str).unwrap_or("");
                    let message = st.get("message").and_then(Value::as_str).unwrap_or("");
                    if !reason.is_empty() {
                        out.push((reason.to_string(), message.to_string()));
                    }
                }
            }
        }
    }
    out
}

/// The first pod of `pods` failing for a fatal reason: `pod: <name>, <reason>: <message>`.
pub fn fatal_pod(pods: &[Value]) -> Option<String> {
    pods.iter().find_map(|p| {
        let name = p.pointer("/metadata/name").and_then(Value::as_str)?;
        container_reasons(p)
            .into_iter()
            .find(|(r, _)| FATAL_REASONS.contains(&r.as_str()))
            .map(|(r, m)| format!("pod: {name}, {r}: {m}"))
    })
}

/// Why the pods of `pods` that are not running are not: `Status: …, Reason: …, Message: …`.
fn pod_troubles(pods: &[Value]) -> Vec<String> {
    pods.iter()
        .filter(|p| {
            !matches!(
                p.pointer("/status/phase").and_then(Value::as_str),
                Some("Running" | "Succeeded")
            )
        })
        .flat_map(|p| {
            let phase = p
                .pointer("/status/phase")
                .and_then(Value::as_str)
                .unwrap_or("Unknown")
                .to_string();
            container_reasons(p)
                .into_iter()
                .map(move |(r, m)| format!("Status: {phase}, Reason: {r}, Message: {m}"))
        })
        .collect()
}

/// One read of a workload: its progress and the pods of its current template.
async fn read(
    cc: &ClusterClient,
    ns: &str,
    r: &ResourceRef,
) -> Result<Option<(Progress, Vec<Value>)>, String> {
    let live = k::get(cc, ns, r)
        .await
        .map_err(|e| format!("can't read {} {}: {}", r.kind, r.name, e.description))?;
    let Some(live) = live else { return Ok(None) };
    let p = progress(&r.kind, &live);
    let selector: BTreeMap<String, String> = live
        .pointer("/spec/selector/matchLabels")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    if selector.is_empty() || !matches!(r.kind.as_str(), "Deployment" | "StatefulSet" | "DaemonSet")
    {
        return Ok(Some((p, Vec::new())));
    }
    let want = images_of(live.pointer("/spec/template/spec"));
    let pods = k::pods(cc, ns, &selector)
        .await
        .map_err(|e| {
            format!(
                "can't list the pods of {} {}: {}",
                r.kind, r.name, e.description
            )
        })?
        .into_iter()
        .filter_map(|p| serde_json::to_value(p).ok())
        // Only pods of the new template: an old pod's trouble is not this rollout's.
        .filter(|p| images_of(p.pointer("/spec")) == want)
        .collect();
    Ok(Some((p, pods)))
}

/// Wait until every workload of `targets` in `ns` has rolled out, a pod fails, the
/// deadline (`deadline_ms`, business clock) passes or `cancel` fires.
pub async fn wait(
    state: &AppState,
    cc: &ClusterClient,
    ns: &str,
    targets: &[ResourceRef],
    deadline_ms: i64,
    cancel: &CancellationToken,
    log: &JobLog,
) -> Rollout {
    let targets: Vec<&ResourceRef> = targets
        .iter()
        .filter(|r| matches!(r.kind.as_str(), "Deployment" | "StatefulSet" | "DaemonSet"))
        .collect();
    if targets.is_empty() {
        log.info("No native workload (Deployment, StatefulSet, DaemonSet) to check, skipping readiness check.");
        return Rollout::Ready;
    }
    log.info("Checking workloads' pod status ...");
    let mut last = String::new();
    loop {
        // The cluster moves in real time, so polls are paced by real time; the deadline is
        // the business clock's.
        let tick = tokio::select! {
            r = check(cc, ns, &targets, log) => Some(r),
            () = state.clock.sleep_until(deadline_ms) => None,
            () = cancel.cancelled() => Some(Err(None)),
        };
        match tick {
            Some(Ok(None)) => {
                log.info("All workloads are ready");
                return Rollout::Ready;
            }
            Some(Ok(Some(why))) => last = why,
            Some(Err(Some(fatal))) => return Rollout::Failed(fatal),
            Some(Err(None)) => {
                log.info("Check workloads' pod status cancelled");
                return Rollout::Cancelled;
            }
            None => {}
        }
        if state.clock.now_ms() >= deadline_ms {
            log.info("Check workloads' pod status timeout");
            if last.is_empty() {
                let names: Vec<String> = targets
                    .iter()
                    .map(|r| format!("{} {}", r.kind, r.name))
                    .collect();
                last = format!("{} not read back before the deadline", names.join(", "));
            }
            return Rollout::TimedOut(last);
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = state.clock.sleep_until(deadline_ms) => {}
            () = cancel.cancelled() => {
                log.info("Check workloads' pod status cancelled");
                return Rollout::Cancelled;
            }
        }
    }
}

/// The end of a deploy job that changed `workloads` in `ns`: passed at once when its spec
/// says `skip_check_run_status` (`skip`), else the rollout wait's end, a timeout naming the
/// `secs` waited (`deadline` is [`deadline`]'s pair).
pub async fn finish(
    state: &AppState,
    job: &ServerJob<'_>,
    skip: bool,
    (cc, ns): (&ClusterClient, &str),
    workloads: &[ResourceRef],
    (deadline_ms, secs): (i64, i64),
) -> JobEnd {
    if skip {
        return end(JobStatus::Passed, "");
    }
    match wait(state, cc, ns, workloads, deadline_ms, job.cancel, job.log).await {
        Rollout::TimedOut(why) => Rollout::TimedOut(format!(
            "the rollout did not finish within {secs}s (timeout): {why}"
        )),
        w => w,
    }
    .into_end()
}

/// One pass over the workloads: `Ok(None)` all ready, `Ok(Some(why))` not yet (why, for a
/// timeout), `Err(Some(e))` failed now.
async fn check(
    cc: &ClusterClient,
    ns: &str,
    targets: &[&ResourceRef],
    log: &JobLog,
) -> Result<Option<String>, Option<String>> {
    let mut waiting = Vec::new();
    for r in targets {
        // Every caller applied, patched or found the workload just before waiting, so one
        // that is not there (or is going) was deleted meanwhile: it will never roll out.
        let Some((p, pods)) = read(cc, ns, r).await.map_err(Some)? else {
            return Err(Some(format!(
                "{} {} was deleted during the rollout",
                r.kind, r.name
            )));
        };
        if p.deleting {
            return Err(Some(format!(
                "{} {} is being deleted during the rollout",
                r.kind, r.name
            )));
        }
        log.info(&format!(
            "Ready pods for {} {}: {}/{}",
            r.kind, r.name, p.ready_pods, p.desired
        ));
        if let Some(bad) = fatal_pod(&pods) {
            return Err(Some(format!("{} {}: {bad}", r.kind, r.name)));
        }
        if !p.ready {
            let mut why = format!("{} {} is not ready: {}", r.kind, r.name, p.lacks);
            let troubles = pod_troubles(&pods);
            if !troubles.is_empty() {
                why.push_str(&format!("; {}", troubles.join("; ")));
            }
            waiting.push(why);
        }
    }
    Ok((!waiting.is_empty()).then(|| waiting.join("\n")))
}

/// The rollout deadline of a job that starts now with a timeout of `secs` seconds (≤ 0: the
/// default).
pub fn deadline(state: &AppState, secs: i64) -> (i64, i64) {
    let secs = if secs > 0 { secs } else { DEFAULT_TIMEOUT_SECS };
    (
        state
            .clock
            .now_ms()
            .saturating_add(secs.saturating_mul(1000)),
        secs,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judges_deployments_and_statefulsets() {
        let d = json!({"metadata": {"generation": 2}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2}});
        assert!(progress("Deployment", &d).ready);
        let old = json!({"metadata": {"generation": 2}, "spec": {"replicas": 1},
            "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1}});
        let p = progress("Deployment", &old);
        assert!(
            !p.ready && p.lacks.contains("observed generation 1 of 2"),
            "{p:?}"
        );
        let rolling = json!({"metadata": {"generation": 3}, "spec": {"replicas": 1},
            "status": {"observedGeneration": 3, "replicas": 2, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1}});
        assert!(
            progress("Deployment", &rolling)
                .lacks
                .contains("2/1 replicas total")
        );
        let sts = json!({"metadata": {"generation": 1}, "spec": {"replicas": 1},
            "status": {"observedGeneration": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1,
                "currentRevision": "a", "updateRevision": "b"}});
        assert!(progress("StatefulSet", &sts).lacks.contains("revision"));
        assert!(progress("CronJob", &json!({})).ready);
    }

    #[test]
    fn finds_fatal_pods() {
        let pod = json!({"metadata": {"name": "web-1"}, "status": {"phase": "Pending", "containerStatuses": [
            {"name": "web", "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}]}});
        assert_eq!(
            fatal_pod(std::slice::from_ref(&pod)).as_deref(),
            Some("pod: web-1, ImagePullBackOff: Back-off pulling image")
        );
        let fine = json!({"metadata": {"name": "web-2"}, "status": {"phase": "Pending", "containerStatuses": [
            {"name": "web", "state": {"waiting": {"reason": "ContainerCreating"}}}]}});
        assert_eq!(fatal_pod(std::slice::from_ref(&fine)), None);
        assert_eq!(
            pod_troubles(&[fine]),
            vec!["Status: Pending, Reason: ContainerCreating, Message: ".to_string()]
        );
    }
}
