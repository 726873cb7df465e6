//! Job types this server cannot run: those that need an integration it does not have (hosts,
//! an external service) and those whose behaviour it does not implement (canary and
//! blue-green deployments, …). They lint, take inputs and expand like any job, and fail when
//! run with an error that names the integration and the `engine_integrations` config key, or
//! what is not implemented.

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

/// A job type whose behaviour this server does not implement; `what` names it in the plural
/// (`canary deployments`).
pub struct Missing {
    pub what: &'static str,
}

#[async_trait::async_trait]
impl JobKind for Missing {
    fn runs(&self) -> Runs {
        Runs::Missing(self.what)
    }
}
