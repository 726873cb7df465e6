//! `plugin`: a plugin image run with the job's inputs. Running it needs a container runtime,
//! which this server does not have.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{InputCx, JobKind, Runs, Spec, nullable};
use crate::error::ApiResult;
use crate::masking::MASK;
use crate::workflow::inputs::{KvInput, decode, with_list};
use crate::workflow::task::JobTask;
use crate::workflow::{bad, lint, text};

/// The `plugin` job type.
pub struct Plugin;

/// A `plugin` job's spec: what lint and input merging read; the spec itself is stored
/// verbatim.
#[derive(Debug, Default, Deserialize)]
struct PluginSpec {
    #[serde(default, deserialize_with = "nullable")]
    plugin: PluginDef,
    /// Every other field, kept as sent.
    #[serde(flatten)]
    _extra: Map<String, Value>,
}

/// The plugin: its declared inputs and outputs.
#[derive(Debug, Default, Deserialize)]
struct PluginDef {
    #[serde(default, deserialize_with = "nullable")]
    inputs: Vec<Declared>,
    #[serde(default, deserialize_with = "nullable")]
    outputs: Vec<Value>,
    #[serde(flatten)]
    _extra: Map<String, Value>,
}

/// A declared input (a Param): its name.
#[derive(Debug, Default, Deserialize)]
struct Declared {
    #[serde(default, deserialize_with = "nullable")]
    name: String,
    #[serde(flatten)]
    _extra: Map<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
struct PluginInput {
    #[serde(default)]
    kv: Vec<KvInput>,
}

#[async_trait::async_trait]
impl JobKind for Plugin {
    fn lint(&self, spec: &mut Value, field: &str) -> ApiResult<()> {
        let typed: PluginSpec = decode(spec, field)?;
        lint::check_outputs(
            typed.plugin.outputs.iter(),
            &format!("{field}.plugin.outputs"),
        )
    }

    /// `kv` sets the values of the plugin's declared inputs.
    fn apply_input(&self, cx: &InputCx<'_>, spec: &mut Spec, params: &Value) -> ApiResult<()> {
        let (field, job) = (cx.field, cx.job);
        let input: PluginInput = decode(params, field)?;
        let before: PluginSpec = decode(cx.before, &format!("job {job}.spec"))?;
        let plugin = spec.entry("plugin").or_insert_with(|| json!({}));
        let Some(plugin) = plugin.as_object_mut() else {
            return Err(bad(field, format!("job {job} has no plugin definition")));
        };
        // The stored list, in the order of its typed reading (`null` reads as none).
        with_list(plugin, "inputs", |inputs| {
            for (k, kv) in input.kv.iter().enumerate() {
                let at = before.plugin.inputs.iter().position(|i| i.name == kv.key);
                let Some(i) = at.and_then(|at| inputs.get_mut(at)) else {
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

    /// The plugin after input rendering, as Zadig's task detail shows it (spec/workflow.md
    /// §2.4).
    fn view(&self, job: &JobTask) -> Value {
        let mut plugin = job.spec.get("plugin").cloned().unwrap_or(json!({}));
        if let Some(p) = plugin.as_object_mut() {
            render(p);
        }
        plugin
    }

    fn runs(&self) -> Runs {
        Runs::Needs("container-runtime")
    }
}

/// Zadig's rendering of a plugin: each `$(inputs.<name>)` in `envs[].value`, `args` and `cmds`
/// becomes the input's value. Zadig renders when the task is created; we render when it is
/// shown, so a credential input's value is replaced by the mask rather than copied into
/// fields the detail's masking does not know are secret (plugin jobs do not run here, see
/// [`Plugin::runs`]).
fn render(plugin: &mut Map<String, Value>) {
    let values: Vec<(String, String)> = plugin
        .get("inputs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|i| {
            let name = i.get("name")?.as_str()?;
            let value = if crate::masking::is_credential_var(i) {
                MASK.to_string()
            } else {
                text(i.get("value").unwrap_or(&Value::Null))
            };
            Some((format!("$(inputs.{name})"), value))
        })
        .collect();
    let fill = |v: &mut Value| {
        if let Value::String(s) = v {
            for (placeholder, value) in &values {
                *s = s.replace(placeholder, value);
            }
        }
    };
    for key in ["args", "cmds"] {
        if let Some(list) = plugin.get_mut(key).and_then(Value::as_array_mut) {
            list.iter_mut().for_each(fill);
        }
    }
    if let Some(envs) = plugin.get_mut("envs").and_then(Value::as_array_mut) {
        envs.iter_mut()
            .filter_map(|e| e.get_mut("value"))
            .for_each(fill);
    }
}
