//! `zadig-vm-deploy`: deploy services to hosts, one job task per service. Running it needs
//! agents on the hosts, which this server does not have.

use std::collections::HashSet;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::deploy_common::{deploy_env, deploy_input, env_of, some_to_deploy};
use super::{InputCx, JobKind, Runs, Spec, nullable, spec_of, stored};
use crate::error::ApiResult;
use crate::workflow::bad;
use crate::workflow::expand::{Expander, narrowed};
use crate::workflow::inputs::decode;
use crate::workflow::model::Job;
use crate::workflow::task::JobTask;

/// The `zadig-vm-deploy` job type.
pub struct VmDeploy;

/// A `zadig-vm-deploy` job's spec: what is read; the spec itself is stored verbatim.
#[derive(Debug, Default, Deserialize)]
struct VmDeploySpec {
    #[serde(default, deserialize_with = "nullable")]
    env: String,
    #[serde(default, deserialize_with = "nullable")]
    service_and_vm_deploys: Vec<VmService>,
    /// Every other field, kept as sent.
    #[serde(flatten)]
    _extra: Map<String, Value>,
}

/// A service to deploy to its hosts.
#[derive(Debug, Default, Deserialize)]
struct VmService {
    #[serde(default, deserialize_with = "nullable")]
    service_name: String,
    #[serde(flatten)]
    _extra: Map<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
struct VmServiceInput {
    #[serde(default)]
    service_name: String,
    #[serde(default)]
    file_name: String,
}

#[async_trait::async_trait]
impl JobKind for VmDeploy {
    fn lint(&self, spec: &mut Value, field: &str) -> ApiResult<()> {
        decode::<VmDeploySpec>(spec, field).map(drop)
    }

    fn apply_input(&self, cx: &InputCx<'_>, spec: &mut Spec, params: &Value) -> ApiResult<()> {
        let field = cx.field;
        let Some(list) = deploy_input::<VmServiceInput>(spec, params, field)? else {
            return Ok(());
        };
        let before: VmDeploySpec = decode(cx.before, &format!("job {}.spec", cx.job))?;
        let configured: Vec<_> = stored(
            cx.before,
            "service_and_vm_deploys",
            &before.service_and_vm_deploys,
        )
        .collect();
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
            let mut item = configured
                .iter()
                .find(|(t, _)| t.service_name == s.service_name)
                .map_or_else(
                    || json!({"service_name": s.service_name}),
                    |(_, raw)| (*raw).clone(),
                );
            if let Some(m) = item.as_object_mut() {
                m.insert("file_name".into(), json!(s.file_name));
            }
            out.push(item);
        }
        spec.insert("service_and_vm_deploys".into(), Value::Array(out));
        Ok(())
    }

    fn expand(&self, x: &mut Expander<'_>, job: &Job) -> ApiResult<Vec<JobTask>> {
        let spec: VmDeploySpec = spec_of(job)?;
        let env = deploy_env(job, &spec.env)?;
        let mut tasks = Vec::new();
        for (item, raw) in stored(
            &job.spec,
            "service_and_vm_deploys",
            &spec.service_and_vm_deploys,
        ) {
            let t = narrowed(job, "service_and_vm_deploys", raw);
            tasks.push(x.task(job, &[&item.service_name], t));
        }
        some_to_deploy(env, job, tasks)
    }

    fn deploys_to(&self, job: &Job) -> ApiResult<Option<String>> {
        env_of(job).map(Some)
    }

    fn runs(&self) -> Runs {
        Runs::Needs("vm-agent")
    }
}
