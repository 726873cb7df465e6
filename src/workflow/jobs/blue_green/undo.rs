//! Undoing a blue-green deploy: the green Service pointed at all its Deployment's pods again,
//! the blue copies deleted, the pods' version labels removed.
//!
//! A deploy's clean-up may run late (retried in the background, [`crate::engine::clean_ups`])
//! when a newer deploy of the same service has made its own blue copies under the same names
//! and points the green Service at the pods it labelled. So a deploy records what is its own:
//! the uid of each blue copy it made (deleted with Kubernetes' uid precondition: another object
//! of that name is left alone) and a mark on the green Service while it holds it
//! ([`OWNER_NOTE`]; the Service's selector and the pods' labels are restored only while the
//! mark is this deploy's, written only if the Service has not changed since it was read).
//! [`undo`] does that; [`restore`] undoes unconditionally (the release, within its own task,
//! and records from before the marks, whose retries wait until no task of the project runs).

use serde_json::{Value, json};

use super::switch::{label_pods, merge, route, service_ref};
use super::{DELETE_WITHIN, ORIGIN, Placed, VERSION_LABEL};
use crate::cluster::client::ClusterClient;
use crate::environment::kube::{self as k, Guarded};
use crate::workflow::jobs::canary::deployment_ref;

/// The annotation on the green Service naming the deploy that holds it
/// (`Placed::green_service_mark`), from the deploy until it is undone; the environment's
/// rollouts are refused while it is there.
pub(super) const OWNER_NOTE: &str = crate::environment::service::BLUE_GREEN_OWNER;

/// How often a write to the green Service is tried again when the Service changed between
/// its read and the write.
const TRIES: usize = 3;

/// Who holds the green Service.
#[derive(Debug, PartialEq, Eq)]
enum Held {
    /// The deploy being undone.
    Ours,
    /// Another deploy (its mark).
    Other(String),
    /// No deploy (no mark, or no Service).
    Free,
}

/// Undo a deploy: the green Service selects all the green Deployment's pods again, the blue
/// copies are deleted, the pods' version labels removed. Each step is skipped when done.
pub(super) async fn restore(
    cc: &ClusterClient,
    p: &Placed,
    say: &(dyn Fn(&str) + Sync),
) -> Result<(), String> {
    let ns = p.namespace.as_str();
    let green = k::get(cc, ns, &service_ref(&p.green_service_name))
        .await
        .map_err(|e| cannot_read(p, &e.description))?;
    if green.as_ref().is_some_and(routed) {
        route(cc, ns, &p.green_service_name, None).await?;
        say(&format!(
            "service {} selects all pods of deployment {} again",
            p.green_service_name, p.green_deployment_name
        ));
    }
    k::delete_and_wait(
        cc,
        ns,
        &deployment_ref(&p.blue_deployment_name),
        DELETE_WITHIN,
    )
    .await
    .map_err(|e| {
        format!(
            "delete blue deployment {} error: {}",
            p.blue_deployment_name, e.description
        )
    })?;
    k::delete(cc, ns, &service_ref(&p.blue_service_name))
        .await
        .map_err(|e| {
            format!(
                "delete blue service {} error: {}",
                p.blue_service_name, e.description
            )
        })?;
    say(&format!(
        "blue deployment {} and blue service {} deleted",
        p.blue_deployment_name, p.blue_service_name
    ));
    unlabel(cc, p, say).await?;
    if green.is_some_and(|g| owner_of(&g).is_some()) {
        let body = json!({"metadata": {"annotations": {OWNER_NOTE: null}}});
        let what = format!("unmark service {}", p.green_service_name);
        merge(cc, ns, &service_ref(&p.green_service_name), body, &what).await?;
    }
    Ok(())
}

/// Undo a deploy that recorded what is its own (see the module doc): as [`restore`], touching
/// only that. The blue copies go last: a newer deploy of the service starts only once their
/// names are free, so it cannot take the Service over while its selector and pods are restored
/// (unless they were deleted by hand meanwhile). Answers what was left to others, for the job
/// task's error.
pub(super) async fn undo(
    cc: &ClusterClient,
    p: &Placed,
    say: &(dyn Fn(&str) + Sync),
) -> Result<Option<String>, String> {
    let select_all =
        |g: &Value| routed(g).then(|| json!({"spec": {"selector": {VERSION_LABEL: null}}}));
    let mut left = Vec::new();
    match while_held(cc, p, select_all).await? {
        (Held::Ours, changed) => {
            if changed {
                say(&format!(
                    "service {} selects all pods of deployment {} again",
                    p.green_service_name, p.green_deployment_name
                ));
            }
            unlabel(cc, p, say).await?;
            let unmark = |_: &Value| Some(json!({"metadata": {"annotations": {OWNER_NOTE: null}}}));
            while_held(cc, p, unmark).await?;
        }
        (Held::Other(owner), _) => {
            say(&format!(
                "service {} is held by blue-green deploy {owner}: its selector and the pods' labels are left to it",
                p.green_service_name
            ));
            left.push(format!(
                "service {} and its pods' labels to blue-green deploy {owner}, which holds it now",
                p.green_service_name
            ));
        }
        (Held::Free, _) => {}
    }
    let copies = [
        (
            deployment_ref(&p.blue_deployment_name),
            &p.blue_deployment_uid,
        ),
        (service_ref(&p.blue_service_name), &p.blue_service_uid),
    ];
    for (r, uid) in copies.iter().filter(|(_, uid)| !uid.is_empty()) {
        let what = format!("blue {} {}", r.kind.to_lowercase(), r.name);
        let deleted = k::delete_if_uid(cc, &p.namespace, r, uid).await;
        match deleted.map_err(|e| format!("delete {what} error: {}", e.description))? {
            Guarded::Done => {
                k::wait_gone(cc, &p.namespace, r, Some(uid), DELETE_WITHIN)
                    .await
                    .map_err(|e| format!("delete {what} error: {}", e.description))?;
                say(&format!("{what} deleted"));
            }
            Guarded::Absent => say(&format!("{what} is gone already")),
            Guarded::Stale(why) => {
                say(&format!("{what} is another object now, left alone: {why}"));
                left.push(format!(
                    "{what} alone (another object of that name now: a newer task's)"
                ));
            }
        }
    }
    Ok((!left.is_empty()).then(|| format!("clean-up left {}", left.join(", "))))
}

/// Remove the version label the deploy put on the green pods.
async fn unlabel(
    cc: &ClusterClient,
    p: &Placed,
    say: &(dyn Fn(&str) + Sync),
) -> Result<(), String> {
    let n = label_pods(cc, &p.namespace, &p.green_selector, (Some(ORIGIN), None)).await?;
    if n > 0 {
        say(&format!("remove origin label from {n} pods"));
    }
    Ok(())
}

/// Whether Service `g` selects pods by their version label.
fn routed(g: &Value) -> bool {
    g.pointer("/spec/selector")
        .and_then(|s| s.get(VERSION_LABEL))
        .is_some()
}

/// The deploy marked as holding Service `g`.
fn owner_of(g: &Value) -> Option<&str> {
    g.pointer("/metadata/annotations")
        .and_then(|a| a.get(OWNER_NOTE))
        .and_then(Value::as_str)
}

fn cannot_read(p: &Placed, why: &str) -> String {
    format!("can't read service {}: {why}", p.green_service_name)
}

/// Who holds the green Service; while it is `p`'s deploy, merge-patch into it what `change`
/// answers for it (nothing: `None`), provided it has not changed since it was read — else it
/// is read again. Whether it was changed.
async fn while_held(
    cc: &ClusterClient,
    p: &Placed,
    change: impl Fn(&Value) -> Option<Value>,
) -> Result<(Held, bool), String> {
    let (ns, r) = (p.namespace.as_str(), service_ref(&p.green_service_name));
    for _ in 0..TRIES {
        let green = k::get(cc, ns, &r)
            .await
            .map_err(|e| cannot_read(p, &e.description))?;
        let Some(g) = green else {
            return Ok((Held::Free, false));
        };
        match owner_of(&g) {
            Some(o) if o == p.green_service_mark => {}
            Some(o) => return Ok((Held::Other(o.to_string()), false)),
            None => return Ok((Held::Free, false)),
        }
        let Some(body) = change(&g) else {
            return Ok((Held::Ours, false));
        };
        let version = g
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let written = k::merge_if_unchanged(cc, ns, &r, version, body)
            .await
            .map_err(|e| {
                format!(
                    "update service {} error: {}",
                    p.green_service_name, e.description
                )
            })?;
        match written {
            Guarded::Done => return Ok((Held::Ours, true)),
            Guarded::Absent => return Ok((Held::Free, false)),
            Guarded::Stale(_) => {}
        }
    }
    Err(format!(
        "service {} kept changing while it was restored ({TRIES} tries)",
        p.green_service_name
    ))
}
