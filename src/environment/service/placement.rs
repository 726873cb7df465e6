//! Where an environment may be (docs/security.md "Where environments go"): the cluster offered
//! to the project and not a production one for test environments, no system namespace, no
//! namespace of a production environment or of another project's; checked when an
//! environment is made and, for non-admins, again at every change.

use super::super::model::Environment;
use super::super::rules;
use super::may_change;
use crate::auth::Identity;
use crate::cluster::model::{Cluster, LOCAL_CLUSTER_ID, is_local};
use crate::cluster::service::resolve;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// No environment in a system namespace: Zadig's rule for production environments (spec §5.2),
/// ours for test environments too.
pub(super) fn check_system_namespace(field: &str, ns: &str, production: bool) -> ApiResult<()> {
    if !rules::SYSTEM_NAMESPACES.contains(&ns) {
        return Ok(());
    }
    Err(ApiError::bad_request(if production {
        format!(
            "`{field}`: namespace {ns} is invalid, production environment namespace cannot be set to these three namespaces: kube-node-lease, kube-public, kube-system"
        )
    } else {
        format!(
            "`{field}`: namespace {ns} is invalid, an environment namespace cannot be set to these three namespaces: kube-node-lease, kube-public, kube-system"
        )
    }))
}

/// Whether `cluster` is offered to `project`: its `project_names` (Zadig's
/// `project_cluster_relation`) name the project or `<all_projects>`; an empty list offers it
/// to no project, as in Zadig.
fn offered(cluster: &Cluster, project: &str) -> bool {
    cluster
        .project_names
        .iter()
        .any(|n| n == project || n == "<all_projects>")
}

/// The environments (of any project) recorded in namespace `ns` of cluster `cluster_id`.
pub(super) async fn envs_in(
    state: &AppState,
    cluster_id: &str,
    ns: &str,
) -> ApiResult<Vec<Environment>> {
    envs_at(state, cluster_id, Some(ns)).await
}

/// The environments (of any project) recorded in cluster `cluster_id` — in namespace `ns`
/// if given —, the local cluster's two ids (empty and [`LOCAL_CLUSTER_ID`]) being one.
pub(super) async fn envs_at(
    state: &AppState,
    cluster_id: &str,
    ns: Option<&str>,
) -> ApiResult<Vec<Environment>> {
    let store = &state.environments.store;
    if !is_local(cluster_id) {
        return Ok(store.placed(cluster_id, ns).await?);
    }
    let mut out = store.placed(LOCAL_CLUSTER_ID, ns).await?;
    out.extend(store.placed("", ns).await?);
    Ok(out)
}

/// Where a new environment of `project` may go, checked before anything is changed
/// (docs/security.md "Where environments go"; `fields` name the cluster and namespace fields
/// of the request):
/// - a test environment not on a cluster marked `production` (400);
/// - a non-admin only on a cluster offered to the project ([`offered`]; 403);
/// - no environment in a system namespace (400);
/// - a test environment not in a namespace of a production environment (400);
/// - a non-admin not in a namespace of an environment of another project, nor of one they may
///   not change (403).
///
/// Whether `caller` may adopt the namespace should it exist already: system admins may; others
/// only a namespace environments of the project (which they may change) already use.
pub(super) async fn check_placement(
    state: &AppState,
    caller: &Identity,
    (project, production): (&str, bool),
    cluster: &Cluster,
    ns: &str,
    (cluster_field, ns_field): (&str, &str),
) -> ApiResult<bool> {
    if !production && cluster.production {
        return Err(ApiError::bad_request(format!(
            "`{cluster_field}`: {} is a production cluster: test environments may not be created on it",
            cluster.label()
        )));
    }
    if !caller.is_admin && !offered(cluster, project) {
        return Err(ApiError::forbidden(format!(
            "`{cluster_field}`: {} is not offered to project {project} (its `project_names`): only system admins may create environments of the project on it; user {} is not one",
            cluster.label(),
            caller.account
        )));
    }
    check_system_namespace(ns_field, ns, production)?;
    let others = envs_in(state, &cluster.id, ns).await?;
    if !production && let Some(p) = others.iter().find(|e| e.production) {
        return Err(ApiError::bad_request(format!(
            "`{ns_field}`: namespace {ns} of {} is used by the production {}: a test environment may not use it",
            cluster.label(),
            p.label()
        )));
    }
    if caller.is_admin {
        return Ok(true);
    }
    for e in &others {
        let theirs = e.project_key != project || may_change(state, caller, e).await.is_err();
        if theirs {
            return Err(ApiError::forbidden(format!(
                "`{ns_field}`: namespace {ns} of {} is used by {}, which user {} may not change: only system admins may put an environment there",
                cluster.label(),
                e.label(),
                caller.account
            )));
        }
    }
    Ok(!others.is_empty())
}

/// Whether test environment `env` is still where a non-admin could put it (see
/// [`check_placement`]): not in a system namespace, not on a cluster marked production, and
/// no production environment nor another project's environment in its namespace. 403 naming
/// what is in the way.
pub(super) async fn still_placed(
    state: &AppState,
    caller: &Identity,
    env: &Environment,
) -> ApiResult<()> {
    let refused = |why: String| {
        ApiError::forbidden(format!(
            "{} is in namespace {} where {why}: only system admins may change it; user {} is not one",
            env.label(),
            env.namespace,
            caller.account
        ))
    };
    if rules::SYSTEM_NAMESPACES.contains(&env.namespace.as_str()) {
        return Err(refused("no environment may be (a system namespace)".into()));
    }
    if let Some(c) = resolve(state, &env.cluster_id).await?
        && c.production
    {
        return Err(refused(format!("{} is a production cluster", c.label())));
    }
    let others = envs_in(state, &env.cluster_id, &env.namespace).await?;
    if let Some(o) = others
        .iter()
        .find(|o| o.production || o.project_key != env.project_key)
    {
        return Err(refused(format!("{} is", o.label())));
    }
    Ok(())
}
