//! `custom-deploy`: set images of workloads (`<WorkloadType>/<workload>/<container>`
//! targets), one job task per target. Running it needs a Kubernetes cluster.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{InputCx, JobKind, Runs, Spec};
use crate::error::ApiResult;
use crate::workflow::expand::{Expander, nothing_to_run};
use crate::workflow::inputs::decode;
use crate::workflow::model::{Job, arr_of, str_of};
use crate::workflow::task::JobTask;
use crate::workflow::{bad, task_view};

/// The `custom-deploy` job type.
pub struct CustomDeploy;

#[derive(Debug, Default, Deserialize)]
struct TargetInput {
    #[serde(default)]
    workload_type: String,
    #[serde(default)]
    workload_name: String,
    #[serde(default)]
    container_name: String,
    #[serde(default)]
    image_name: String,
}

#[derive(Debug, Default, Deserialize)]
struct CustomDeployInput {
    #[serde(default)]
    target_list: Option<Vec<TargetInput>>,
}

#[async_trait::async_trait]
impl JobKind for CustomDeploy {
    fn apply_input(&self, cx: &InputCx<'_>, spec: &mut Spec, params: &Value) -> ApiResult<()> {
        let field = cx.field;
        let input: CustomDeployInput = decode(params, field)?;
        let Some(list) = input.target_list else {
            return Ok(());
        };
        let mut targets = Vec::new();
        for (k, t) in list.iter().enumerate() {
            let f = format!("{field}.target_list[{k}]");
            for (key, v) in [
                ("workload_type", &t.workload_type),
                ("workload_name", &t.workload_name),
                ("container_name", &t.container_name),
            ] {
                if v.is_empty() {
                    return Err(bad(&format!("{f}.{key}"), "is required"));
                }
            }
            targets.push(json!({
                "target": format!("{}/{}/{}", t.workload_type, t.workload_name, t.container_name),
                "image": t.image_name,
            }));
        }
        spec.insert("targets".into(), Value::Array(targets));
        Ok(())
    }

    fn expand(&self, x: &mut Expander<'_>, job: &Job) -> ApiResult<Vec<JobTask>> {
        let items = arr_of(&job.spec, "targets");
        if items.is_empty() {
            return Err(nothing_to_run(
                &job.name,
                "no target to deploy: list targets in inputs[].parameters.target_list",
            ));
        }
        Ok(x.per_item(job, "targets", items, &|t: &Value| {
            // "<WorkloadType>/<workload>/<container>" → workload, container
            str_of(t, "target")
                .split('/')
                .skip(1)
                .map(str::to_string)
                .collect()
        }))
    }

    fn view(&self, job: &JobTask) -> Value {
        let s = &job.spec;
        let mut m = task_view::pick(
            s,
            &[
                "target",
                "image",
                "cluster_id",
                "namespace",
                "skip_check_run_status",
            ],
        );
        m.insert(
            "cluster_name".into(),
            s.get("cluster_id").cloned().unwrap_or(json!("")),
        );
        Value::Object(m)
    }

    fn runs(&self) -> Runs {
        Runs::Needs("kubernetes")
    }
}
