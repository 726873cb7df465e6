//! `approval`: the job waits for approvers' votes (recorded on its spec by the approve API,
//! decided by `engine/approval.rs`). It takes no execute input and runs no process.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{InputCx, JobKind, Runs, Spec, nullable};
use crate::error::ApiResult;
use crate::workflow::expand::{Expander, check_native_approval};
use crate::workflow::inputs::decode;
use crate::workflow::lint;
use crate::workflow::model::Job;
use crate::workflow::task::JobTask;

/// The `approval` job type.
pub struct Approval;

/// An `approval` job's spec: what expansion checks. The definition itself is stored verbatim.
#[derive(Debug, Default, Deserialize)]
struct ApprovalSpec {
    /// `native` (or empty), or an IM approval (`lark`, `dingtalk`, `workwx`).
    #[serde(rename = "type", default, deserialize_with = "nullable")]
    kind: String,
    native_approval: Option<Value>,
    /// Every other field, kept as sent.
    #[serde(flatten)]
    _extra: Map<String, Value>,
}

#[async_trait::async_trait]
impl JobKind for Approval {
    fn lint(&self, spec: &mut Value, field: &str) -> ApiResult<()> {
        lint::normalize_approval(spec, field, false)
    }

    fn apply_input(&self, _cx: &InputCx<'_>, _spec: &mut Spec, _params: &Value) -> ApiResult<()> {
        Ok(())
    }

    fn expand(&self, x: &mut Expander<'_>, job: &Job) -> ApiResult<Vec<JobTask>> {
        let what = format!("job {}", job.name);
        let spec: ApprovalSpec = decode(&job.spec, &format!("{what}.spec"))?;
        if ["", "native"].contains(&spec.kind.as_str()) {
            check_native_approval(spec.native_approval.as_ref(), &what)?;
        }
        Ok(vec![x.single(job)])
    }

    fn runs(&self) -> Runs {
        Runs::Votes
    }
}
