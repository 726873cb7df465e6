//! `zadig-distribute-image`: copy images between registries. Running it needs image
//! registries to copy between (this server's delivery pipeline copies images for delivery
//! versions, not for workflow jobs yet).

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{JobKind, Runs, nullable};
use crate::error::ApiResult;
use crate::workflow::inputs::decode;
use crate::workflow::task::JobTask;
use crate::workflow::task_view;

/// The `zadig-distribute-image` job type.
pub struct DistributeImage;

/// A `zadig-distribute-image` job's spec as lint checks it (spec/workflow.md §1.4); the spec
/// itself is stored verbatim.
#[derive(Debug, Default, Deserialize)]
#[expect(dead_code, reason = "decoded only to refuse a malformed spec")]
struct DistributeSpec {
    #[serde(default, deserialize_with = "nullable")]
    source_registry_id: String,
    #[serde(default, deserialize_with = "nullable")]
    target_registry_id: String,
    #[serde(default, deserialize_with = "nullable")]
    targets: Vec<Target>,
    /// Every other field, kept as sent.
    #[serde(flatten)]
    _extra: Map<String, Value>,
}

/// An image to copy.
#[derive(Debug, Default, Deserialize)]
#[expect(dead_code, reason = "decoded only to refuse a malformed spec")]
struct Target {
    #[serde(default, deserialize_with = "nullable")]
    service_name: String,
    #[serde(default, deserialize_with = "nullable")]
    service_module: String,
    #[serde(default, deserialize_with = "nullable")]
    source_image: String,
    #[serde(default, deserialize_with = "nullable")]
    target_image: String,
    #[serde(default, deserialize_with = "nullable")]
    update_tag: bool,
    #[serde(flatten)]
    _extra: Map<String, Value>,
}

/// The keys of a job task's spec task detail shows as they are.
const VIEW_KEYS: &[&str] = &["source_registry_id", "target_registry_id"];

#[async_trait::async_trait]
impl JobKind for DistributeImage {
    fn lint(&self, spec: &mut Value, field: &str) -> ApiResult<()> {
        decode::<DistributeSpec>(spec, field).map(drop)
    }

    fn view(&self, job: &JobTask) -> Value {
        let mut m = task_view::pick(&job.spec, VIEW_KEYS);
        m.insert(
            "distribute_target".into(),
            job.spec.get("targets").cloned().unwrap_or(json!([])),
        );
        Value::Object(m)
    }

    fn runs(&self) -> Runs {
        Runs::Needs("image-registry")
    }
}
