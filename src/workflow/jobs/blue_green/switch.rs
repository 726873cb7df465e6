//! The cluster steps of blue-green jobs: keeping the green Service on the green pods and
//! creating the blue copies (deploy), the traffic switch and the green Deployment's update
//! (release).

use std::collections::BTreeMap;

use kube::api::Patch;
use serde_json::{Value, json};

use super::plan::{Plan, made_for};
use super::undo::{OWNER_NOTE, restore};
use super::{At, BLUE, BlueGreenSpec, ORIGIN, Placed, VERSION_LABEL};
use crate::cluster::client::ClusterClient;
use crate::engine::executor::{JobEnd, JobStatus};
use crate::environment::kube as k;
use crate::environment::model::ResourceRef;
use crate::environment::service::{Window, deploy_images, deployer};
use crate::error::ErrorKind;
use crate::state::AppState;
use crate::workflow::jobs::canary::deployment_ref;
use crate::workflow::jobs::deploy_common::creator_uid;
use crate::workflow::jobs::rollout;

pub(super) fn service_ref(name: &str) -> ResourceRef {
    ResourceRef::namespaced("v1", "Service", "services", name)
}

fn pod_ref(name: &str) -> ResourceRef {
    ResourceRef::namespaced("v1", "Pod", "pods", name)
}

/// Merge-patch `body` into object `r`; `what` names the change in the error.
pub(super) async fn merge(
    cc: &ClusterClient,
    ns: &str,
    r: &ResourceRef,
    body: Value,
    what: &str,
) -> Result<(), String> {
    k::patch(cc, ns, r, &Patch::Merge(&body))
        .await
        .map_err(|e| format!("{what} error: {}", e.description))
}

/// Point Service `name`'s selector at the pods of `version` (`None`: at all the Deployment's
/// pods again).
pub(super) async fn route(
    cc: &ClusterClient,
    ns: &str,
    name: &str,
    version: Option<&str>,
) -> Result<(), String> {
    let body = json!({"spec": {"selector": {VERSION_LABEL: version}}});
    merge(
        cc,
        ns,
        &service_ref(name),
        body,
        &format!("update service {name} selector"),
    )
    .await
}

/// Move the version label of the pods selected by `selector` that have it at `from` to `to`
/// (`None`: no label); how many. Pods at another version are left alone: a blue pod that lost
/// its label would leave its ReplicaSet and outlive it.
pub(super) async fn label_pods(
    cc: &ClusterClient,
    ns: &str,
    selector: &BTreeMap<String, String>,
    (from, to): (Option<&str>, Option<&str>),
) -> Result<usize, String> {
    let pods = k::pods(cc, ns, selector)
        .await
        .map_err(|e| format!("list pods error: {}", e.description))?;
    let mut n = 0;
    for p in pods {
        let name = p.metadata.name.unwrap_or_default();
        let has = p
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(VERSION_LABEL))
            .map(String::as_str);
        if has != from {
            continue;
        }
        let body = json!({"metadata": {"labels": {VERSION_LABEL: to}}});
        // A pod gone meanwhile (replaced by a rollout) needs no label.
        match k::patch(cc, ns, &pod_ref(&name), &Patch::Merge(&body)).await {
            Ok(()) => n += 1,
            Err(e) if e.kind == ErrorKind::NotFound => {}
            Err(e) => return Err(format!("label pod {name} error: {}", e.description)),
        }
    }
    Ok(n)
}

/// Neither blue copy may exist yet (a Deployment or Service of that name is someone's).
pub(super) async fn still_free(at: &At<'_>, placed: &Placed) -> Result<(), String> {
    for r in [
        deployment_ref(&placed.blue_deployment_name),
        service_ref(&placed.blue_service_name),
    ] {
        let found = k::get(at.cc, at.ns, &r)
            .await
            .map_err(|e| format!("can't read {} {}: {}", r.kind, r.name, e.description))?;
        if found.is_some() {
            return Err(format!(
                "blue {} {} already exists in namespace {}: delete it, or let the task that made it end",
                r.kind.to_lowercase(),
                r.name,
                at.ns
            ));
        }
    }
    Ok(())
}

/// Deploy: keep the green Service on the green pods — marked as held by the deploy
/// (`plan.placed.green_service_mark`) — create the blue copies (their uids recorded in
/// `plan.placed` as they are made) and wait for them.
pub(super) async fn create_blue(
    state: &AppState,
    at: &At<'_>,
    plan: &mut Plan,
    deadline: (i64, i64),
) -> Result<JobEnd, String> {
    let (p, log) = (&mut plan.placed, at.job.log);
    let n = label_pods(at.cc, at.ns, &p.green_selector, (None, Some(ORIGIN))).await?;
    log.info(&format!("add origin label to {n} pods"));
    let body = json!({"metadata": {"annotations": {OWNER_NOTE: p.green_service_mark}},
        "spec": {"selector": {VERSION_LABEL: ORIGIN}}});
    let name = p.green_service_name.clone();
    let what = format!("update service {name} selector");
    merge(at.cc, at.ns, &service_ref(&name), body, &what).await?;
    log.info(&format!("add origin label selector to service: {name}"));
    for (r, o, uid) in [
        (
            service_ref(&p.blue_service_name),
            &plan.blue_service,
            &mut p.blue_service_uid,
        ),
        (
            deployment_ref(&p.blue_deployment_name),
            &plan.blue_deployment,
            &mut p.blue_deployment_uid,
        ),
    ] {
        let kind = r.kind.to_lowercase();
        *uid = k::apply_uid(at.cc, at.ns, &r, o)
            .await
            .map_err(|e| format!("create blue {kind}: {} error: {}", r.name, e.description))?;
        log.info(&format!("create blue {kind}: {} success", r.name));
    }
    let blue = [deployment_ref(&p.blue_deployment_name)];
    Ok(rollout::finish(state, at.job, false, (at.cc, at.ns), &blue, deadline).await)
}

/// Release: route the green Service to the blue pods, deploy the images to the green
/// Deployment and wait for it, then route back and delete the blue copies (with no blue copy
/// left, just the rollout).
pub(super) async fn release(
    state: &AppState,
    at: &At<'_>,
    spec: &BlueGreenSpec,
    p: &Placed,
    deadline: (i64, i64),
) -> Result<JobEnd, String> {
    let log = at.job.log;
    let blue = k::get(at.cc, at.ns, &deployment_ref(&p.blue_deployment_name))
        .await
        .map_err(|e| {
            format!(
                "can't read deployment {}: {}",
                p.blue_deployment_name, e.description
            )
        })?;
    let service = spec.service.service_name.as_str();
    // Without its blue copy (a retried release: the task's end undid the deploy) the images
    // roll out on the green Deployment alone.
    let switched = match blue {
        None => {
            log.info(&format!(
                "blue deployment {} is gone: the images roll out on deployment {} directly",
                p.blue_deployment_name, p.green_deployment_name
            ));
            false
        }
        // Someone's own Deployment of that name is neither routed to nor deleted.
        Some(b) if !made_for(&b, service) => {
            return Err(format!(
                "deployment {} was not made by a blue-green deploy of service {service}",
                p.blue_deployment_name
            ));
        }
        Some(_) => {
            route(at.cc, at.ns, &p.green_service_name, Some(BLUE)).await?;
            log.info(&format!(
                "service {} routes to the blue deployment {}",
                p.green_service_name, p.blue_deployment_name
            ));
            true
        }
    };
    let caller = deployer(state, creator_uid(at.job)).await?;
    let at_env = (at.job.ctx.project.as_str(), spec.env.as_str(), service);
    // The release ends the window: the Service routes to the blue pods (or the deploy was
    // undone) before the green Deployment rolls out.
    let images = spec.service.images();
    let deployed = deploy_images(state, at_env, (&images, None), &caller, Window::Release).await?;
    for c in &deployed.changes {
        log.info(&format!(
            "{} {} container {}: {} -> {}",
            c.kind, c.name, c.container, c.origin, c.image
        ));
    }
    let mut end = rollout::finish(
        state,
        at.job,
        false,
        (at.cc, at.ns),
        &deployed.workloads,
        deadline,
    )
    .await;
    end.record = rollout::record(&deployed.changes);
    if end.status == JobStatus::Passed && switched {
        // The images are deployed either way: a failure here keeps what was recorded.
        match restore(at.cc, p, &|m| log.info(m)).await {
            Ok(()) => log.info(&format!(
                "blue-green deployment: {} release successfully",
                p.green_deployment_name
            )),
            Err(e) => (end.status, end.error) = (JobStatus::Failed, e),
        }
    }
    Ok(end)
}
