//! Environments: a namespace in a registered cluster holding a project's K8s-YAML services
//! (spec/environments.md §1.4, §1.5, §5).
//!
//! - [`model`]: the stored environment and the services deployed in it;
//! - [`store`]: queries over `environments` (unique on project + env key);
//! - [`rules`]: input checks and the labels/images/overrides put on every object;
//! - [`kube`]: the cluster side — namespaces, server-side apply with one field manager,
//!   deletes, live reads;
//! - [`service`]: the routes' work, each answering only once the cluster holds the change;
//! - [`view`]: the JSON shapes Zadig's clients read.

pub mod catalog;
pub mod kube;
pub mod model;
pub mod rules;
pub mod service;
pub mod store;
pub mod view;

/// Environments' store and the per-environment locks of this process.
pub struct Environments {
    pub store: store::EnvStore,
    locks:
        std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>,
}

impl Environments {
    pub fn new(backend: &dyn crate::store::Backend) -> Self {
        Self {
            store: store::EnvStore::new(backend),
            locks: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// The lock that serialises changes of one environment in this process (another replica
    /// is caught by the record's `version`).
    pub fn lock(&self, project: &str, env: &str) -> std::sync::Arc<tokio::sync::Mutex<()>> {
        let mut m = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(format!("{project}/{env}")).or_default().clone()
    }
}
