//! Clusters: the Kubernetes API servers environments live in (spec/environments.md §1.2, §3).
//!
//! A cluster is a name plus how to reach its API server: a kubeconfig (stored encrypted, never
//! shown) or, for Zadig's *local* cluster (id [`LOCAL_CLUSTER_ID`], or an empty id), the
//! service account of the pod the server runs in. [`client::Clients`] holds one `kube` client
//! per cluster, built on first use and rebuilt when the cluster's record changes; every call
//! through it is bounded by `kube_request_timeout_secs` and fails with an error naming the
//! cluster ([`client::kube_error`]).

pub mod client;
pub mod model;
pub mod service;
pub mod store;

pub use model::{Cluster, LOCAL_CLUSTER_ID};

use std::sync::Arc;
use std::time::Duration;

/// The clusters' store and client cache, held by the application state.
pub struct Clusters {
    pub store: store::ClusterStore,
    pub clients: client::Clients,
    timeout: Duration,
}

impl Clusters {
    pub fn new(
        backend: &dyn crate::store::Backend,
        secrets: &Arc<crate::secrets::SecretBox>,
        config: &crate::config::Config,
    ) -> Self {
        let timeout = Duration::from_secs(config.kube_request_timeout_secs);
        Self {
            store: store::ClusterStore::new(backend, secrets),
            clients: client::Clients::new(timeout),
            timeout,
        }
    }

    /// The bound of one call to a cluster.
    pub fn clients_timeout(&self) -> Duration {
        self.timeout
    }
}
