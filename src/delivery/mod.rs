//! Delivery versions (seed 003, spec/delivery.md): versions of a project's services with their
//! K8s YAML or Helm charts, whose images are copied from where they were built to a release
//! registry and whose charts are packaged and pushed to a chart repository.
//!
//! - [`model`]: the stored aggregate and the create request;
//! - [`service`]: the rules behind the routes (validation, create, list, detail, retry, delete);
//! - [`pipeline`]: the background loop that claims versions in `creating`/`retrying` with a
//!   lease and runs their image copies and chart pushes;
//! - [`copier`] and [`chart`]: the image copier (OCI distribution API) and the chart
//!   packager/publisher, both behind traits;
//! - [`registry`]: image registries and Helm chart repositories; [`ecr`]: ECR logins;
//! - [`yaml`]: image references in K8s YAML and Helm values;
//! - [`store`]: the queries.

pub mod chart;
pub mod copier;
pub mod ecr;
pub mod model;
pub mod pipeline;
pub mod registry;
pub mod service;
pub mod store;
pub mod yaml;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::store::Backend;

/// The delivery area's stores, collaborators and the handle on its pipeline.
pub struct Delivery {
    pub versions: store::VersionStore,
    /// Image registries and chart repositories (also used by other areas).
    pub registries: registry::RegistryStore,
    pub copier: Arc<dyn copier::ImageCopier>,
    pub publisher: Arc<dyn chart::ChartPublisher>,
    pub ecr: ecr::EcrLogin,
    wake: Notify,
    /// Pipeline runs of this process, by version id, so a delete stops its run at once.
    running: Mutex<HashMap<String, CancellationToken>>,
}

impl Delivery {
    /// The stores on `backend` and the registry-API copier and publisher from `config`.
    pub fn new(
        backend: &dyn Backend,
        config: &Config,
        secrets: &Arc<crate::secrets::SecretBox>,
    ) -> anyhow::Result<Self> {
        let oci = Arc::new(copier::OciCopier::new(
            Duration::from_secs(config.registry_connect_timeout_secs),
            Duration::from_secs(config.registry_read_timeout_secs),
        ));
        let publisher = chart::RepoPublisher::new(
            oci.clone(),
            Duration::from_secs(config.delivery_copy_timeout_secs),
        )
        .map_err(|e| anyhow::anyhow!(e))?;
        Ok(Self {
            versions: store::VersionStore::new(backend),
            registries: registry::RegistryStore::new(backend, secrets),
            copier: oci,
            publisher: Arc::new(publisher),
            ecr: ecr::EcrLogin::new(
                &config.delivery_ecr_endpoint,
                Duration::from_secs(config.registry_read_timeout_secs),
            )
            .map_err(|e| anyhow::anyhow!(e))?,
            wake: Notify::new(),
            running: Mutex::new(HashMap::new()),
        })
    }

    /// The user and password to log in to registry `r` with: its keys, except for ECR, whose
    /// AWS keys are exchanged for a login.
    pub async fn login(
        &self,
        r: &registry::Registry,
        now_ms: i64,
    ) -> Result<(String, String), String> {
        if r.provider != "ecr" {
            return Ok((r.access_key.clone(), r.secret_key.clone()));
        }
        let password = self
            .ecr
            .password(&r.access_key, &r.secret_key, &r.region, now_ms)
            .await?;
        Ok((ecr::USER.to_string(), password))
    }

    /// Tell the pipeline there is new work (a create or a retry).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stop this process' run of a version, if any (the version was deleted).
    pub fn stop_run(&self, id: &str) {
        if let Some(t) = self.running_map().get(id) {
            t.cancel();
        }
    }

    /// Whether this process is running the pipeline of a version now.
    pub fn is_running(&self, id: &str) -> bool {
        self.running_map().contains_key(id)
    }

    fn running_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, CancellationToken>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
