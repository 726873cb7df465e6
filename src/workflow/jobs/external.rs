//! Job types that need an integration this server does not have (a cluster, hosts, an
//! external service): they lint, take inputs and expand like any job, and fail when run with
//! the error that names the integration and the `engine_integrations` config key.

use serde_json::Value;

use super::{JobKind, JobType};
use crate::engine::executor::{JobContext, PreparedJob};
use crate::engine::work::missing_integration;
use crate::state::AppState;

/// A job type that needs `integration` (one of `engine::work::INTEGRATIONS`).
pub struct Needs {
    pub integration: &'static str,
}

#[async_trait::async_trait]
impl JobKind for Needs {
    async fn prepare(
        &self,
        ty: JobType,
        _state: &AppState,
        _ctx: &JobContext,
        _spec: &Value,
    ) -> Result<PreparedJob, String> {
        Err(missing_integration(ty.as_str(), self.integration))
    }
}
