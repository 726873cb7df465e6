//! The blue-green window, seen from the environment. Between a `k8s-blue-green-deploy` and its
//! release (or the clean-up at its task's end) the green Service selects only the pods
//! labelled `zadig-blue-green-version: origin` — a label put on the running pods, not on the
//! pod template — so a rollout of the service's Deployment would replace every one of them
//! with pods the Service does not select, and the live Service would have no endpoint left.
//! The deploy marks the Service it holds ([`BLUE_GREEN_OWNER`]); while a Service of the
//! service carries that mark, rolling out one of its Deployments is refused ([`refuse_held`]):
//! E11 restart, the image routes, `zadig-deploy` and `zadig-restart`. Scaling (E13) only adds
//! or removes pods, the labelled ones stay, so it is not refused; the release itself deploys
//! through the same path and says so ([`Window::Release`]).

use super::super::kube as k;
use super::super::model::{EnvService, Environment, ResourceRef};
use crate::cluster::client::ClusterClient;
use crate::error::{ApiError, ApiResult, ErrorKind};

/// The annotation a blue-green deploy puts on the green Service it holds, naming itself
/// (`<workflow>#<task id>/<job task>/<random>`), until it is undone (ours; Zadig marks
/// nothing).
pub const BLUE_GREEN_OWNER: &str = "zadig-server/blue-green-owner";

/// Whether a rollout is refused while a blue-green deploy holds the service's Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Anything but the release: refused while held.
    Refuse,
    /// The blue-green release, which ends the window (it routes the Service to the blue pods
    /// before the green Deployment rolls out).
    Release,
}

/// Refuse (409 with `code`, naming the service and the task holding it) rolling out
/// `rolled` of `svc` in `env` while a Service of `svc` is marked by a blue-green deploy.
/// Nothing is read when `rolled` has no Deployment.
pub(super) async fn refuse_held(
    cc: &ClusterClient,
    env: &Environment,
    svc: &EnvService,
    rolled: &[ResourceRef],
    code: (i64, &str),
) -> ApiResult<()> {
    if !rolled.iter().any(|r| r.kind == "Deployment") {
        return Ok(());
    }
    for r in svc
        .resources
        .iter()
        .filter(|r| r.kind == "Service" && r.namespaced)
    {
        let Some(live) = k::get(cc, &env.namespace, r).await? else {
            continue;
        };
        let mark = live
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(BLUE_GREEN_OWNER))
            .and_then(serde_json::Value::as_str);
        if let Some(mark) = mark {
            return Err(ApiError::code(
                ErrorKind::Conflict,
                code,
                held_by(&svc.service_name, &r.name, mark),
            ));
        }
    }
    Ok(())
}

/// The refusal's text: the task (and job) a mark names.
fn held_by(service: &str, green: &str, mark: &str) -> String {
    let holder = match mark.split_once('/') {
        Some((task, rest)) => {
            let job = rest.rsplit_once('/').map_or(rest, |(job, _)| job);
            format!("task {task} (job {job})")
        }
        None => format!("task {mark}"),
    };
    format!(
        "service {service} is in the blue-green deploy of {holder}, which keeps Service {green} on the pods it labelled; release it or end that task first"
    )
}

#[cfg(test)]
mod tests {
    use super::held_by;

    #[test]
    fn names_the_task_and_job_of_a_mark() {
        assert_eq!(
            held_by("shop", "web", "bg#3/bg.shop/0f1e"),
            "service shop is in the blue-green deploy of task bg#3 (job bg.shop), which keeps Service web on the pods it labelled; release it or end that task first"
        );
        assert!(held_by("shop", "web", "odd").contains("of task odd,"));
    }
}
