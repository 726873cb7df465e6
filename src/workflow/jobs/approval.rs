//! `approval`: the job waits for approvers' votes (recorded on its spec by the approve API,
//! decided by `engine/approval.rs`). It takes no execute input and runs no process.

use serde_json::Value;

use super::{InputCx, JobKind, Runs, Spec};
use crate::error::ApiResult;
use crate::workflow::expand::{Expander, check_native_approval};
use crate::workflow::lint;
use crate::workflow::model::{Job, str_of};
use crate::workflow::task::JobTask;

/// The `approval` job type.
pub struct Approval;

#[async_trait::async_trait]
impl JobKind for Approval {
    fn lint(&self, spec: &mut Value, field: &str) -> ApiResult<()> {
        lint::normalize_approval(spec, field, false)
    }

    fn apply_input(&self, _cx: &InputCx<'_>, _spec: &mut Spec, _params: &Value) -> ApiResult<()> {
        Ok(())
    }

    fn expand(&self, x: &mut Expander<'_>, job: &Job) -> ApiResult<Vec<JobTask>> {
        if ["", "native"].contains(&str_of(&job.spec, "type")) {
            check_native_approval(
                job.spec.get("native_approval"),
                &format!("job {}", job.name),
            )?;
        }
        Ok(vec![x.single(job)])
    }

    fn runs(&self) -> Runs {
        Runs::Votes
    }
}
