//! The Kubernetes executor: a freestyle or build job placed on a cluster runs as a Kubernetes
//! Job there (spec/environments.md §7), behind the same [`Executor`] trait as the local one.
//!
//! - [`placement`] decides where a job runs (the job's cluster field, `engine_kube_cluster`)
//!   and in which image (`engine_kube_images` by `build_os`, or the job's custom image);
//! - [`spec`] builds the Job and the Secret that carries the job (steps, environment,
//!   credentials) to the pod — pure functions;
//! - [`agent`] is what runs in the pod (`zadig-server job-agent`): the same steps as a local
//!   run (shared with [`super::local`]), its log on stdout, its result on a last line marked
//!   with a per-job nonce;
//! - [`run`] is the [`KubeExecutor`]: creates the objects, follows the container log into the
//!   job log, judges the end from the Job and Pod status ([`status`]), deletes the Job on
//!   cancel, timeout and end;
//! - [`records`] remembers each Job created in the store, so that the recovery of tasks left
//!   by a dead server also deletes their Jobs.

pub mod agent;
pub mod placement;
pub mod records;
pub mod run;
pub mod spec;
pub mod status;

use std::sync::Arc;

pub use placement::{KubeTarget, Placement};
pub use run::KubeExecutor;

use super::executor::Executor;
use crate::state::AppState;

/// The executor that runs a job placed at `placement`.
pub fn executor_for(state: &AppState, placement: &Placement) -> Arc<dyn Executor> {
    match placement {
        Placement::Local => state.engine.executor.clone(),
        Placement::Kube(target) => Arc::new(KubeExecutor::new(state.clone(), target.clone())),
    }
}
