//! `zadig-distribute-image`: copy images between registries. Running it needs image
//! registries to copy between (this server's delivery pipeline copies images for delivery
//! versions, not for workflow jobs yet).

use serde_json::{Value, json};

use super::{JobKind, Runs};
use crate::workflow::task::JobTask;
use crate::workflow::task_view;

/// The `zadig-distribute-image` job type.
pub struct DistributeImage;

#[async_trait::async_trait]
impl JobKind for DistributeImage {
    fn view(&self, job: &JobTask) -> Value {
        let s = &job.spec;
        let mut m = task_view::pick(s, &["source_registry_id", "target_registry_id"]);
        m.insert(
            "distribute_target".into(),
            s.get("targets").cloned().unwrap_or(json!([])),
        );
        Value::Object(m)
    }

    fn runs(&self) -> Runs {
        Runs::Needs("image-registry")
    }
}
