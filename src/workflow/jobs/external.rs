//! Job types that need an integration this server does not have (a cluster, hosts, an
//! external service): they lint, take inputs and expand like any job, and fail when run with
//! the error that names the integration and the `engine_integrations` config key.

use super::{JobKind, Runs};

/// A job type that needs `integration` (one of `engine::work::INTEGRATIONS`).
pub struct Needs {
    pub integration: &'static str,
}

#[async_trait::async_trait]
impl JobKind for Needs {
    fn runs(&self) -> Runs {
        Runs::Needs(self.integration)
    }
}
