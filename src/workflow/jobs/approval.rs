//! `approval`: the job waits for approvers' votes (recorded on its spec by the approve API,
//! decided by `engine/approval.rs`). It takes no execute input and runs no process. Its spec
//! is read as [`ApprovalSettings`] (`workflow::approval`).

use serde_json::Value;

use super::{InputCx, JobKind, Runs, Spec, spec_of};
use crate::error::ApiResult;
use crate::workflow::approval::{self, ApprovalSettings};
use crate::workflow::expand::Expander;
use crate::workflow::model::Job;
use crate::workflow::task::JobTask;

/// The `approval` job type.
pub struct Approval;

#[async_trait::async_trait]
impl JobKind for Approval {
    fn lint(&self, spec: &mut Value, field: &str) -> ApiResult<()> {
        approval::normalize(spec, field, false)
    }

    fn apply_input(&self, _cx: &InputCx<'_>, _spec: &mut Spec, _params: &Value) -> ApiResult<()> {
        Ok(())
    }

    fn expand(&self, x: &mut Expander<'_>, job: &Job) -> ApiResult<Vec<JobTask>> {
        let spec: ApprovalSettings = spec_of(job)?;
        if ["", "native"].contains(&spec.kind.as_str()) {
            spec.check_native(&format!("job {}", job.name))?;
        }
        Ok(vec![x.single(job)])
    }

    fn runs(&self) -> Runs {
        Runs::Votes
    }
}
