//! `zadig-vm-deploy`: deploy services to hosts, one job task per service. Running it needs
//! agents on the hosts, which this server does not have.

use std::collections::HashSet;

use serde::Deserialize;
use serde_json::{Value, json};

use super::deploy::{deploy_env, deploy_input, no_service};
use super::{InputCx, JobKind, Runs, Spec};
use crate::error::ApiResult;
use crate::workflow::bad;
use crate::workflow::expand::{Expander, narrowed};
use crate::workflow::inputs::take_list;
use crate::workflow::model::{Job, arr_of, str_of};
use crate::workflow::task::JobTask;

/// The `zadig-vm-deploy` job type.
pub struct VmDeploy;

#[derive(Debug, Default, Deserialize)]
struct VmServiceInput {
    #[serde(default)]
    service_name: String,
    #[serde(default)]
    file_name: String,
}

#[async_trait::async_trait]
impl JobKind for VmDeploy {
    fn apply_input(&self, cx: &InputCx<'_>, spec: &mut Spec, params: &Value) -> ApiResult<()> {
        let field = cx.field;
        let Some(list) = deploy_input::<VmServiceInput>(spec, params, field)? else {
            return Ok(());
        };
        let stored = take_list(&Value::Object(spec.clone()), "service_and_vm_deploys");
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (k, s) in list.iter().enumerate() {
            let f = format!("{field}.service_list[{k}]");
            if s.service_name.is_empty() {
                return Err(bad(&format!("{f}.service_name"), "is required"));
            }
            if !seen.insert(s.service_name.as_str()) {
                return Err(bad(&f, "cannot deploy 2 same service"));
            }
            let mut item = stored
                .iter()
                .find(|v| str_of(v, "service_name") == s.service_name)
                .cloned()
                .unwrap_or_else(|| json!({"service_name": s.service_name}));
            if let Some(m) = item.as_object_mut() {
                m.insert("file_name".into(), json!(s.file_name));
            }
            out.push(item);
        }
        spec.insert("service_and_vm_deploys".into(), Value::Array(out));
        Ok(())
    }

    fn expand(&self, x: &mut Expander<'_>, job: &Job) -> ApiResult<Vec<JobTask>> {
        let env = deploy_env(job)?;
        let mut tasks = Vec::new();
        for item in arr_of(&job.spec, "service_and_vm_deploys") {
            let name = str_of(item, "service_name").to_string();
            tasks.push(x.task(job, &[&name], narrowed(job, "service_and_vm_deploys", item)));
        }
        if tasks.is_empty() {
            return Err(no_service(env, job));
        }
        Ok(tasks)
    }

    fn deploys_to<'a>(&self, spec: &'a Value) -> Option<&'a str> {
        Some(str_of(spec, "env"))
    }

    fn runs(&self) -> Runs {
        Runs::Needs("vm-agent")
    }
}
