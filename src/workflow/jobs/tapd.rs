//! `tapd`: move TAPD iterations to a status. Running it needs a TAPD account, which this
//! server does not have.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{InputCx, JobKind, Runs, Spec, nullable};
use crate::error::ApiResult;
use crate::workflow::bad;
use crate::workflow::inputs::decode;

/// The `tapd` job type.
pub struct Tapd;

#[derive(Debug, Default, Deserialize)]
struct TapdInput {
    project_id: Option<String>,
    project_name: Option<String>,
    status: Option<String>,
    iteration_ids: Option<Vec<String>>,
    iterations: Option<Vec<Iteration>>,
}

/// An iteration to move: its id, and whatever else the client sent, kept as sent.
#[derive(Debug, Default, Deserialize, Serialize)]
struct Iteration {
    #[serde(default, deserialize_with = "nullable")]
    iteration_id: String,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

#[async_trait::async_trait]
impl JobKind for Tapd {
    fn apply_input(&self, cx: &InputCx<'_>, spec: &mut Spec, params: &Value) -> ApiResult<()> {
        let field = cx.field;
        let input: TapdInput = decode(params, field)?;
        for (k, v) in [
            ("project_id", input.project_id),
            ("project_name", input.project_name),
            ("status", input.status),
        ] {
            if let Some(v) = v {
                spec.insert(k.into(), Value::String(v));
            }
        }
        // Both documented shapes: `iteration_ids` (strings) and `iterations` (objects).
        let mut iterations = input.iterations.unwrap_or_default();
        for (k, it) in iterations.iter().enumerate() {
            if it.iteration_id.is_empty() {
                return Err(bad(
                    &format!("{field}.iterations[{k}].iteration_id"),
                    "is required",
                ));
            }
        }
        for id in input.iteration_ids.unwrap_or_default() {
            if !iterations.iter().any(|i| i.iteration_id == id) {
                iterations.push(Iteration {
                    iteration_id: id,
                    extra: Map::new(),
                });
            }
        }
        if !iterations.is_empty() {
            let list = serde_json::to_value(&iterations)
                .map_err(|e| bad(&format!("{field}.iterations"), e))?;
            spec.insert("iterations".into(), list);
        }
        Ok(())
    }

    fn runs(&self) -> Runs {
        Runs::Needs("tapd")
    }
}
