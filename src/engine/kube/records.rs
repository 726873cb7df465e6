//! The Kubernetes Jobs this server created and has not deleted yet (collection `kube_jobs`,
//! both backends), so that no Job outlives the task it ran for.
//!
//! The executor records a run before it creates its objects and forgets it once it deleted
//! them. [`sweep`] — run by the engine's recovery loop — deletes the objects of every run whose
//! owner process is gone (its liveness lease expired: the server died while the Job ran; the
//! recovery marks that task failed the same round) or whose task no longer runs in this
//! process (a cleanup that failed, e.g. while the cluster was unreachable).

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams};
use serde::{Deserialize, Serialize};

use crate::cluster::client::ClusterClient;
use crate::error::ApiResult;
use crate::state::AppState;
use crate::store::{Filter, FindOptions, StoreResult, Typed};

const COLLECTION: &str = "kube_jobs";

/// One Kubernetes Job run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KubeJobRecord {
    /// `<cluster>/<namespace>/<name>`.
    pub id: String,
    pub cluster_id: String,
    pub namespace: String,
    /// The Job's (and the Secret's) name.
    pub name: String,
    pub workflow: String,
    pub task_id: i64,
    pub job: String,
    /// The instance id of the server that runs it.
    pub owner: String,
    pub created_ms: i64,
}

fn records(state: &AppState) -> Typed<KubeJobRecord> {
    Typed::new(state.backend.as_ref(), COLLECTION)
}

pub async fn insert(state: &AppState, r: &KubeJobRecord) -> StoreResult<()> {
    records(state).insert(r).await
}

pub async fn forget(state: &AppState, id: &str) -> StoreResult<u64> {
    records(state).delete(&Filter::id(id)).await
}

/// Every recorded run.
pub async fn all(state: &AppState) -> StoreResult<Vec<KubeJobRecord>> {
    records(state)
        .find(&Filter::All, &FindOptions::default())
        .await
}

/// Delete the run's Job (its pods with it) and Secret; gone already is fine.
pub async fn delete_objects(cc: &ClusterClient, namespace: &str, name: &str) -> ApiResult<()> {
    let jobs: Api<Job> = Api::namespaced(cc.client.clone(), namespace);
    cc.call_opt(
        &format!("deleting Job {namespace}/{name}"),
        jobs.delete(name, &DeleteParams::background()),
    )
    .await?;
    let secrets: Api<Secret> = Api::namespaced(cc.client.clone(), namespace);
    cc.call_opt(
        &format!("deleting Secret {namespace}/{name}"),
        secrets.delete(name, &DeleteParams::background()),
    )
    .await?;
    Ok(())
}

/// Delete the objects of `r` and forget it; on failure it stays for the next sweep.
pub async fn clean(state: &AppState, r: &KubeJobRecord) {
    let cc = match crate::cluster::service::client_for(state, &r.cluster_id).await {
        Ok(cc) => cc,
        Err(e) => {
            tracing::warn!(workflow = %r.workflow, task_id = r.task_id, job = %r.job,
                "cannot delete Kubernetes Job {}/{}: {}", r.namespace, r.name, e.description);
            return;
        }
    };
    if let Err(e) = delete_objects(&cc, &r.namespace, &r.name).await {
        tracing::warn!(workflow = %r.workflow, task_id = r.task_id, job = %r.job,
            "cannot delete Kubernetes Job {}/{}: {}", r.namespace, r.name, e.description);
        return;
    }
    if let Err(e) = forget(state, &r.id).await {
        tracing::warn!("cannot forget Kubernetes Job {}: {e}", r.id);
    }
}

/// Delete the objects of runs nobody watches any more (see the module doc).
pub async fn sweep(state: &AppState) -> StoreResult<()> {
    let mut alive: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
    for r in all(state).await? {
        let watched = if r.owner == state.instance_id {
            state.engine.is_running_here(&r.workflow, r.task_id)
        } else {
            match alive.get(&r.owner) {
                Some(a) => *a,
                None => {
                    let held = state
                        .leases
                        .is_held(&crate::engine::dispatch::instance_lease(&r.owner))
                        .await?;
                    alive.insert(r.owner.clone(), held);
                    held
                }
            }
        };
        if !watched {
            tracing::warn!(workflow = %r.workflow, task_id = r.task_id, job = %r.job,
                "deleting Kubernetes Job {}/{} left by a run that ended or a server that is gone", r.namespace, r.name);
            clean(state, &r).await;
        }
    }
    Ok(())
}
