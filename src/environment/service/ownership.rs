//! Who owns an object (spec/environments.md §1.5, apply step 6): before a service's objects
//! are applied into an environment, no *other* environment may have recorded an object of the
//! same Kind and name — in the same namespace for namespaced kinds, anywhere in the same
//! cluster for cluster-scoped ones. Else the whole call is refused (409) with Zadig's text,
//! before anything is applied.
//!
//! The owners are found in our records (each environment's services' `resources`, on either
//! backend), not in labels on the live objects: production environments' objects carry no
//! `s-product`/`s-service` labels, and a label says nothing of an object another environment
//! created and then lost to a manual change. The records are read by cluster and namespace
//! (index `cluster_namespace`); by cluster alone (index `cluster`) only when a call applies a
//! cluster-scoped object, which only system admins may (docs/security.md "Cluster-scoped
//! objects").
//!
//! Races. Every change of an environment and every creation holds the lease of its namespace
//! ([`super::Held`]) from its first check to its record's save (or insert), so of two
//! environments sharing a namespace only one checks, applies and records at a time: the
//! second sees the first's record. A call that applies a cluster-scoped object also holds the
//! lease of the cluster's cluster-scoped objects ([`Namespace::hold_cluster_scoped`]), taken
//! here before the cluster's records are read and kept with the namespace's to the save: of
//! two environments in *different* namespaces applying the same new cluster-scoped object at
//! once, the second to check sees the first's record. Calls that apply only namespaced
//! objects do not take it (they record no cluster-scoped object), so a cluster's namespaces
//! still change in parallel.

use super::super::model::{EnvService, Environment, ResourceRef};
use super::placement::envs_at;
use super::{CREATE_ENV, Namespace, UPDATE_ENV};
use crate::error::{ApiError, ApiResult, ErrorKind};
use crate::state::AppState;

/// Refuse when an environment other than `env` has recorded one of `refs` (see the module
/// doc); the first such object found is named. `held` is the lease of `env`'s namespace,
/// held by the caller until `env`'s record is saved.
pub(super) async fn check_owners<'a>(
    state: &AppState,
    held: &Namespace,
    env: &Environment,
    refs: impl IntoIterator<Item = &'a ResourceRef>,
) -> ApiResult<()> {
    let refs: Vec<&ResourceRef> = refs.into_iter().collect();
    if refs.is_empty() {
        return Ok(());
    }
    let whole_cluster = refs.iter().any(|r| !r.namespaced);
    if whole_cluster {
        held.hold_cluster_scoped(state).await?;
    }
    let ns = (!whole_cluster).then_some(env.namespace.as_str());
    let others: Vec<Environment> = envs_at(state, &env.cluster_id, ns)
        .await?
        .into_iter()
        .filter(|o| o.id != env.id)
        .collect();
    for r in refs {
        if let Some((o, s)) = owner(&others, &env.namespace, r) {
            return Err(ApiError::code(
                ErrorKind::Conflict,
                UPDATE_ENV,
                format!(
                    "resource \"{}/{}\" is already applied by service \"{}\" in environment \"{}\" of project \"{}\"",
                    r.kind, r.name, s.service_name, o.env_key, o.project_key
                ),
            ));
        }
    }
    Ok(())
}

/// The environment of `others` (all of one cluster) and its service that recorded object `r`
/// to be applied in namespace `ns`: a namespaced object only in `ns`.
fn owner<'e>(
    others: &'e [Environment],
    ns: &str,
    r: &ResourceRef,
) -> Option<(&'e Environment, &'e EnvService)> {
    others
        .iter()
        .filter(|o| !r.namespaced || o.namespace == ns)
        .find_map(|o| {
            o.services
                .iter()
                .find(|s| {
                    s.resources.iter().any(|x| {
                        x.namespaced == r.namespaced && x.kind == r.kind && x.name == r.name
                    })
                })
                .map(|s| (o, s))
        })
}

/// An environment creation's refusal: an ownership conflict under Zadig's creation code.
pub(super) fn as_creation(e: ApiError) -> ApiError {
    if e.kind == ErrorKind::Conflict && e.code == UPDATE_ENV.0 {
        ApiError::code(ErrorKind::Conflict, CREATE_ENV, e.description)
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::owner;
    use crate::environment::model::{EnvService, Environment, ResourceRef};

    fn env(key: &str, ns: &str, resources: Vec<ResourceRef>) -> Environment {
        let doc = serde_json::json!({"id": key, "project_key": "p", "env_key": key, "alias": "",
            "production": false, "cluster_id": "c", "namespace": ns, "namespace_created": false,
            "registry_id": "", "source": "spock", "status": "success", "error": "",
            "services": [], "global_variables": [], "owner_uid": "", "create_time": 0,
            "update_time": 0, "update_by": "", "version": 1});
        let mut e: Environment = serde_json::from_value(doc).unwrap();
        e.services.push(EnvService {
            service_name: format!("{key}-svc"),
            revision: 1,
            variable_kvs: Vec::new(),
            containers: Vec::new(),
            manifests: "[]".into(),
            resources,
            overrides: Vec::new(),
            update_time: 0,
        });
        e
    }

    fn cluster_role(name: &str) -> ResourceRef {
        ResourceRef {
            namespaced: false,
            ..ResourceRef::namespaced(
                "rbac.authorization.k8s.io/v1",
                "ClusterRole",
                "clusterroles",
                name,
            )
        }
    }

    #[test]
    fn namespaced_objects_are_owned_per_namespace_and_cluster_scoped_ones_per_cluster() {
        let web = ResourceRef::namespaced("apps/v1", "Deployment", "deployments", "web");
        let others = [
            env("a", "ns-a", vec![web.clone(), cluster_role("reader")]),
            env("b", "ns-b", vec![]),
        ];
        let found = |ns: &str, r: &ResourceRef| {
            owner(&others, ns, r).map(|(e, s)| (e.env_key.clone(), s.service_name.clone()))
        };
        assert_eq!(found("ns-a", &web), Some(("a".into(), "a-svc".into())));
        assert_eq!(found("ns-b", &web), None);
        assert_eq!(
            found("ns-b", &cluster_role("reader")),
            Some(("a".into(), "a-svc".into()))
        );
        assert_eq!(found("ns-a", &cluster_role("writer")), None);
        // Same name, other kind: not the same object.
        let svc = ResourceRef::namespaced("v1", "Service", "services", "web");
        assert_eq!(found("ns-a", &svc), None);
    }
}
