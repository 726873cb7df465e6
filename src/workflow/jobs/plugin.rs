//! `plugin`: a plugin image run with the job's inputs. Running it needs a container runtime,
//! which this server does not have.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{InputCx, JobKind, Runs, Spec};
use crate::error::ApiResult;
use crate::workflow::inputs::{KvInput, decode, with_list};
use crate::workflow::model::str_of;
use crate::workflow::task::JobTask;
use crate::workflow::{bad, lint, text};

/// The `plugin` job type.
pub struct Plugin;

#[derive(Debug, Default, Deserialize)]
struct PluginInput {
    #[serde(default)]
    kv: Vec<KvInput>,
}

#[async_trait::async_trait]
impl JobKind for Plugin {
    fn lint(&self, spec: &mut Value, field: &str) -> ApiResult<()> {
        lint::check_outputs(
            spec["plugin"]["outputs"].as_array().into_iter().flatten(),
            &format!("{field}.plugin.outputs"),
        )
    }

    /// `kv` sets the values of the plugin's declared inputs.
    fn apply_input(&self, cx: &InputCx<'_>, spec: &mut Spec, params: &Value) -> ApiResult<()> {
        let (field, job) = (cx.field, cx.job);
        let input: PluginInput = decode(params, field)?;
        let plugin = spec.entry("plugin").or_insert_with(|| json!({}));
        let Some(plugin) = plugin.as_object_mut() else {
            return Err(bad(field, format!("job {job} has no plugin definition")));
        };
        with_list(plugin, "inputs", |inputs| {
            for (k, kv) in input.kv.iter().enumerate() {
                let Some(i) = inputs.iter_mut().find(|i| str_of(i, "name") == kv.key) else {
                    return Err(bad(
                        &format!("{field}.kv[{k}].key"),
                        format!("plugin input {} is not defined in job {job}", kv.key),
                    ));
                };
                if let Some(m) = i.as_object_mut() {
                    m.insert("value".into(), Value::String(text(&kv.value)));
                }
            }
            Ok(())
        })
    }

    fn view(&self, job: &JobTask) -> Value {
        job.spec.get("plugin").cloned().unwrap_or(json!({}))
    }

    fn runs(&self) -> Runs {
        Runs::Needs("container-runtime")
    }
}
