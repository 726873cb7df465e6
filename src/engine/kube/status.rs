//! Judging a Kubernetes job run from its Job and Pod status (spec/environments.md §7.4):
//! pure functions over what the executor last read.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

/// Where a run stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not started yet; with why, when Kubernetes says (unschedulable, a config error).
    Pending(Option<String>),
    /// The main container runs (its log can be followed).
    Running,
    /// The main container ended with exit code 0.
    Succeeded,
    /// It failed; the reason.
    Failed(String),
    /// Kubernetes stopped it at its active deadline.
    Timeout(String),
}

/// Image pull failures (the image will not come).
const PULL_ERRORS: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
];

/// The verdict on Job `name` (`None`: it is gone) with its pods, `container` being the main
/// container.
pub fn judge(name: &str, job: Option<&Job>, pods: &[Pod], container: &str) -> Verdict {
    let Some(job) = job else {
        return Verdict::Failed(format!(
            "the Kubernetes Job {name} is gone (deleted outside zadig-server)"
        ));
    };
    // The newest pod speaks for the run (backoffLimit 0: there is one).
    let pod = pods
        .iter()
        .max_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
    if let Some(pod) = pod
        && let Some(v) = judge_pod(pod, container)
    {
        return v;
    }
    let conds = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let true_cond = |t: &str| conds.iter().find(|c| c.type_ == t && c.status == "True");
    if let Some(c) = true_cond("Failed") {
        let reason = c.reason.clone().unwrap_or_default();
        let message = c.message.clone().unwrap_or_default();
        if reason == "DeadlineExceeded" {
            return Verdict::Timeout(format!(
                "the Kubernetes Job {name} exceeded its active deadline: {message}"
            ));
        }
        return Verdict::Failed(format!(
            "the Kubernetes Job {name} failed: {reason}: {message}"
        ));
    }
    if true_cond("Complete").is_some() {
        return Verdict::Succeeded;
    }
    Verdict::Pending(None)
}

fn judge_pod(pod: &Pod, container: &str) -> Option<Verdict> {
    let status = pod.status.as_ref()?;
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let cs: Option<&ContainerStatus> = status
        .container_statuses
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|c| c.name == container);
    if let Some(cs) = cs
        && let Some(state) = &cs.state
    {
        if let Some(t) = &state.terminated {
            let reason = t.reason.as_deref().unwrap_or("");
            if reason == "OOMKilled" {
                return Some(Verdict::Failed(format!(
                    "the job's container was killed for lack of memory (OOMKilled, exit code {})",
                    t.exit_code
                )));
            }
            if t.exit_code != 0 {
                let msg = t.message.as_deref().unwrap_or("").trim();
                let mut why = format!("the job's container exited with code {}", t.exit_code);
                if !reason.is_empty() && reason != "Error" {
                    why.push_str(&format!(" ({reason})"));
                }
                if !msg.is_empty() && reason == "StartError" {
                    why.push_str(&format!(": {msg}"));
                }
                return Some(Verdict::Failed(why));
            }
            return Some(Verdict::Succeeded);
        }
        if let Some(w) = &state.waiting {
            let reason = w.reason.as_deref().unwrap_or("");
            let message = w.message.as_deref().unwrap_or("");
            if PULL_ERRORS.contains(&reason) {
                return Some(Verdict::Failed(format!(
                    "the job's image {} cannot be pulled ({reason}): {message}",
                    cs.image
                )));
            }
            if !reason.is_empty() && reason != "ContainerCreating" && reason != "PodInitializing" {
                return Some(Verdict::Pending(Some(format!(
                    "pod {name}: {reason}: {message}"
                ))));
            }
        }
        if state.running.is_some() {
            return Some(Verdict::Running);
        }
    }
    match status.phase.as_deref() {
        Some("Failed") => {
            let reason = status.reason.as_deref().unwrap_or("");
            let message = status.message.as_deref().unwrap_or("");
            Some(Verdict::Failed(format!(
                "the job's pod {name} failed: {reason} {message}"
            )))
        }
        Some("Succeeded") => Some(Verdict::Succeeded),
        _ => {
            let unschedulable = status
                .conditions
                .as_deref()
                .unwrap_or_default()
                .iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "False");
            unschedulable.map(|c| {
                Verdict::Pending(Some(format!(
                    "pod {name} cannot be scheduled ({}): {}",
                    c.reason.as_deref().unwrap_or(""),
                    c.message.as_deref().unwrap_or("")
                )))
            })
        }
    }
}

/// Whether the main container started (its log exists).
pub fn container_started(pods: &[Pod], container: &str) -> Option<String> {
    pods.iter().find_map(|p| {
        let cs = p
            .status
            .as_ref()?
            .container_statuses
            .as_deref()?
            .iter()
            .find(|c| c.name == container)?;
        let st = cs.state.as_ref()?;
        (st.running.is_some() || st.terminated.is_some())
            .then(|| p.metadata.name.clone())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(state: serde_json::Value, phase: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p1", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"phase": phase, "containerStatuses": [{
                "name": "main", "image": "reg/badimage:1", "imageID": "", "ready": false,
                "restartCount": 0, "state": state}]}
        }))
        .unwrap()
    }

    fn job(conds: serde_json::Value) -> Job {
        serde_json::from_value(json!({"metadata": {"name": "j"}, "status": {"conditions": conds}}))
            .unwrap()
    }

    #[test]
    fn verdicts() {
        let j = job(json!([]));
        let pull = pod(
            json!({"waiting": {"reason": "ImagePullBackOff", "message": "back-off"}}),
            "Pending",
        );
        let Verdict::Failed(e) = judge("j", Some(&j), &[pull], "main") else {
            panic!("pull")
        };
        assert!(
            e.contains("reg/badimage:1") && e.contains("ImagePullBackOff"),
            "{e}"
        );
        let oom = pod(
            json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}),
            "Failed",
        );
        let Verdict::Failed(e) = judge("j", Some(&j), &[oom], "main") else {
            panic!("oom")
        };
        assert!(e.contains("OOMKilled"), "{e}");
        let exit = pod(
            json!({"terminated": {"exitCode": 3, "reason": "Error"}}),
            "Failed",
        );
        assert_eq!(
            judge("j", Some(&j), &[exit], "main"),
            Verdict::Failed("the job's container exited with code 3".into())
        );
        let ok = pod(
            json!({"terminated": {"exitCode": 0, "reason": "Completed"}}),
            "Succeeded",
        );
        assert_eq!(
            judge("j", Some(&j), std::slice::from_ref(&ok), "main"),
            Verdict::Succeeded
        );
        assert_eq!(container_started(&[ok], "main").as_deref(), Some("p1"));
        let run = pod(json!({"running": {}}), "Running");
        assert_eq!(judge("j", Some(&j), &[run], "main"), Verdict::Running);
        let cfg = pod(
            json!({"waiting": {"reason": "CreateContainerConfigError", "message": "secret not found"}}),
            "Pending",
        );
        assert!(matches!(
            judge("j", Some(&j), &[cfg], "main"),
            Verdict::Pending(Some(_))
        ));
        assert!(matches!(judge("j", None, &[], "main"), Verdict::Failed(_)));
        let dl = job(
            json!([{"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "too long"}]),
        );
        assert!(matches!(
            judge("j", Some(&dl), &[], "main"),
            Verdict::Timeout(_)
        ));
        assert_eq!(judge("j", Some(&j), &[], "main"), Verdict::Pending(None));
    }

    #[test]
    fn unschedulable() {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p1"},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                "reason": "Unschedulable", "message": "0/1 nodes are available"}]}
        }))
        .unwrap();
        let Verdict::Pending(Some(why)) = judge("j", Some(&job(json!([]))), &[p], "main") else {
            panic!("unschedulable")
        };
        assert!(why.contains("0/1 nodes"), "{why}");
    }
}
