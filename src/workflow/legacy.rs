//! The two freestyle job formats (spec/workflow.md §1.4).
//!
//! Zadig's documentation creates freestyle jobs in the old `properties` + `steps` format;
//! Zadig ≥ 3.4 stores and expects the current one (`runtime`, `advanced_setting`, `script`,
//! `repos`, `envs`, …). We accept both and store the current format: [`to_current`] converts
//! with the mapping of spec §1.4 (keys already present in the current format win; unmapped
//! `properties` keys are kept under `advanced_setting`, unknown step types stay in `steps`).
//! [`task_steps`] goes the other way for job tasks, whose spec carries both forms so that the
//! executor can read either.

use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};

/// `properties` keys that move to `runtime`.
const RUNTIME_KEYS: &[&str] = &[
    "infrastructure",
    "build_os",
    "image_from",
    "image_id",
    "vm_labels",
];

/// Script step types and the `script_type` they become.
const SCRIPT_STEPS: &[(&str, &str)] = &[
    ("shell", "shell"),
    ("batch_file", "batch_file"),
    ("powershell", "powershell"),
];

/// Convert a legacy freestyle spec (at `field`, for error messages) to the current format in
/// place. A spec without `properties`/`steps` is left as it is.
pub fn to_current(spec: &mut Map<String, Value>, field: &str) -> ApiResult<()> {
    if !spec.contains_key("properties") && !spec.contains_key("steps") {
        return Ok(());
    }
    let props = match spec.remove("properties") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "`{field}.properties` must be an object"
            )));
        }
    };
    let steps = match spec.remove("steps") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "`{field}.steps` must be a list"
            )));
        }
    };
    let Properties {
        mut runtime,
        mut advanced,
        envs,
    } = Properties::split(props);
    let steps = Steps::read(steps, field)?;

    if let Some(outputs) = spec.remove("outputs") {
        advanced.entry("outputs").or_insert(outputs);
    }
    if !steps.installs.is_empty() {
        runtime.insert("installs".into(), Value::Array(steps.installs));
    }
    merge_missing(spec, "runtime", Value::Object(runtime));
    merge_missing(spec, "advanced_setting", Value::Object(advanced));
    spec.entry("envs").or_insert(Value::Array(envs));
    spec.entry("repos").or_insert(Value::Array(steps.repos));
    if !steps.scripts.is_empty() {
        spec.entry("script")
            .or_insert(Value::String(steps.scripts.join("\n")));
    }
    spec.entry("script_type").or_insert(Value::String(
        steps.script_type.unwrap_or("shell").to_string(),
    ));
    if let Some(up) = steps.upload {
        spec.entry("object_storage_upload").or_insert(up);
    }
    spec.entry("freestyle_type")
        .or_insert(Value::String(String::new()));
    if !steps.other.is_empty() {
        spec.insert("steps".into(), Value::Array(steps.other));
    }
    Ok(())
}

/// A legacy `properties` object, sorted into where its keys go.
struct Properties {
    runtime: Map<String, Value>,
    advanced: Map<String, Value>,
    envs: Vec<Value>,
}

impl Properties {
    fn split(props: Map<String, Value>) -> Self {
        let mut out = Self {
            runtime: Map::new(),
            advanced: Map::new(),
            envs: Vec::new(),
        };
        for (k, v) in props {
            if k == "envs" {
                out.envs = v
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(env_with_source)
                    .collect();
            } else if RUNTIME_KEYS.contains(&k.as_str()) {
                out.runtime.insert(k, v);
            } else {
                // timeout, cluster_id, res_req, res_req_spec, strategy_id, … and everything
                // unmapped (cache settings): kept under advanced_setting, never dropped.
                out.advanced.insert(k, v);
            }
        }
        out
    }
}

/// What legacy `steps` hold: tools, repositories, the scripts (one type), an archive upload,
/// and steps of other types (kept as they are).
#[derive(Default)]
struct Steps {
    installs: Vec<Value>,
    repos: Vec<Value>,
    scripts: Vec<String>,
    script_type: Option<&'static str>,
    upload: Option<Value>,
    other: Vec<Value>,
}

impl Steps {
    fn read(steps: Vec<Value>, field: &str) -> ApiResult<Self> {
        let mut out = Self::default();
        for (i, step) in steps.into_iter().enumerate() {
            let kind = step.get("type").and_then(Value::as_str).unwrap_or_default();
            let sspec = step.get("spec").cloned().unwrap_or(Value::Null);
            let list = |key: &str| sspec[key].as_array().cloned().unwrap_or_default();
            match kind {
                "tools" => out.installs.extend(list("installs")),
                "git" => out.repos.extend(list("repos")),
                "archive" => {
                    let mut up = sspec.as_object().cloned().unwrap_or_default();
                    up.insert("enabled".into(), Value::Bool(true));
                    out.upload = Some(Value::Object(up));
                }
                _ => match SCRIPT_STEPS.iter().find(|(s, _)| *s == kind) {
                    Some((_, st)) => {
                        let at = format!("{field}.steps[{i}]");
                        out.add_script(&at, kind, st, &sspec)?;
                    }
                    None => out.other.push(step),
                },
            }
        }
        Ok(out)
    }

    /// A script step (`at` names it in errors): every script of a job has one type.
    fn add_script(
        &mut self,
        at: &str,
        kind: &str,
        script_type: &'static str,
        sspec: &Value,
    ) -> ApiResult<()> {
        let script = sspec.get("script").and_then(Value::as_str).ok_or_else(|| {
            ApiError::bad_request(format!("`{at}.spec.script` is required for a {kind} step"))
        })?;
        if self.script_type.is_some_and(|t| t != script_type) {
            return Err(ApiError::bad_request(format!(
                "`{at}.type`: a job runs one script type, found {kind} after another"
            )));
        }
        self.script_type = Some(script_type);
        self.scripts.push(script.to_string());
        Ok(())
    }
}

/// Put `value`'s keys under `spec[key]` where that object lacks them.
fn merge_missing(spec: &mut Map<String, Value>, key: &str, value: Value) {
    let Value::Object(add) = value else { return };
    match spec.get_mut(key) {
        Some(Value::Object(existing)) => {
            for (k, v) in add {
                existing.entry(k).or_insert(v);
            }
        }
        _ => {
            spec.insert(key.to_string(), Value::Object(add));
        }
    }
}

/// A legacy `properties.envs` entry as a RuntimeKeyVal: `source` is `reference` when the
/// value refers to another variable (`{{.…}}`), else `runtime`.
fn env_with_source(mut env: Value) -> Value {
    if let Some(m) = env.as_object_mut()
        && !m.contains_key("source")
    {
        let reference = m
            .get("value")
            .and_then(Value::as_str)
            .is_some_and(|v| v.starts_with("{{."));
        m.insert(
            "source".into(),
            Value::String(if reference { "reference" } else { "runtime" }.into()),
        );
    }
    env
}

/// The executor view of a current-format freestyle spec (spec §5.9): `properties` (timeout,
/// envs, runtime settings) and ordered `steps` (tools, git, the script, archive).
pub fn task_steps(spec: &Value) -> (Value, Value) {
    let runtime = spec.get("runtime").cloned().unwrap_or(json!({}));
    let advanced = spec.get("advanced_setting").cloned().unwrap_or(json!({}));
    let mut props = Map::new();
    for src in [&runtime, &advanced] {
        if let Some(m) = src.as_object() {
            for (k, v) in m {
                if k != "installs" {
                    props.insert(k.clone(), v.clone());
                }
            }
        }
    }
    props.insert(
        "envs".into(),
        spec.get("envs").cloned().unwrap_or(json!([])),
    );
    let mut steps = Vec::new();
    if let Some(installs) = runtime.get("installs").filter(|v| !is_empty(v)) {
        steps.push(json!({"name": "tools", "type": "tools", "spec": {"installs": installs}}));
    }
    if let Some(repos) = spec.get("repos").filter(|v| !is_empty(v)) {
        steps.push(json!({"name": "git", "type": "git", "spec": {"repos": repos}}));
    }
    let script_type = spec
        .get("script_type")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("shell");
    if let Some(script) = spec.get("script") {
        steps.push(json!({"name": script_type, "type": script_type, "spec": {"script": script}}));
    }
    if let Some(up) = spec
        .get("object_storage_upload")
        .filter(|u| u.get("enabled").and_then(Value::as_bool).unwrap_or(false))
    {
        steps.push(json!({"name": "archive", "type": "archive", "spec": up}));
    }
    if let Some(extra) = spec.get("steps").and_then(Value::as_array) {
        steps.extend(extra.iter().cloned());
    }
    (Value::Object(props), Value::Array(steps))
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_legacy_freestyle_converts() {
        let mut spec = json!({
            "properties": {
                "timeout": 60, "res_req": "low", "res_req_spec": {"cpu_limit": 1000, "memory_limit": 512},
                "cluster_id": "", "build_os": "focal", "image_id": "630x", "image_from": "koderover",
                "envs": [{"key": "key1", "value": "val1", "type": "string", "is_credential": false},
                         {"key": "ref", "value": "{{.workflow.params.x}}", "type": "string"}],
                "cache_enable": true, "cache_dir_type": "workspace", "cache_user_dir": ""
            },
            "steps": [
                {"name": "tools", "type": "tools", "spec": {"installs": [{"name": "go", "version": "1.19.3", "id": "go1.19.3"}]}},
                {"name": "git", "type": "git", "spec": {"repos": [{"repo_owner": "owner1", "repo_name": "hello"}]}},
                {"name": "shell", "type": "shell", "spec": {"script": "#!/bin/bash\nset -e\necho hello"}}
            ]
        });
        let m = spec.as_object_mut().unwrap();
        to_current(m, "spec").unwrap();
        assert!(!m.contains_key("properties") && !m.contains_key("steps"));
        assert_eq!(m["script"], "#!/bin/bash\nset -e\necho hello");
        assert_eq!(m["script_type"], "shell");
        assert_eq!(m["runtime"]["build_os"], "focal");
        assert_eq!(m["runtime"]["installs"][0]["name"], "go");
        assert_eq!(m["advanced_setting"]["timeout"], 60);
        assert_eq!(m["advanced_setting"]["cache_enable"], true);
        assert_eq!(m["repos"][0]["repo_name"], "hello");
        assert_eq!(m["envs"][0]["source"], "runtime");
        assert_eq!(m["envs"][1]["source"], "reference");

        let (props, steps) = task_steps(&spec);
        assert_eq!(props["timeout"], 60);
        assert_eq!(props["envs"][0]["key"], "key1");
        let kinds: Vec<&str> = steps
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["tools", "git", "shell"]);
    }

    #[test]
    fn current_format_wins_and_is_untouched() {
        let mut spec = json!({"script": "echo new", "advanced_setting": {"timeout": 5}});
        let before = spec.clone();
        to_current(spec.as_object_mut().unwrap(), "spec").unwrap();
        assert_eq!(spec, before);
        let mut mixed = json!({"script": "echo new", "advanced_setting": {"timeout": 5},
            "properties": {"timeout": 60, "res_req": "low"},
            "steps": [{"type": "shell", "spec": {"script": "echo old"}}, {"type": "junit_report", "spec": {}}]});
        to_current(mixed.as_object_mut().unwrap(), "spec").unwrap();
        assert_eq!(mixed["script"], "echo new");
        assert_eq!(mixed["advanced_setting"]["timeout"], 5);
        assert_eq!(mixed["advanced_setting"]["res_req"], "low");
        assert_eq!(mixed["steps"][0]["type"], "junit_report");
    }

    #[test]
    fn bad_legacy_shapes_name_the_field() {
        let mut spec = json!({"properties": 5});
        let e = to_current(spec.as_object_mut().unwrap(), "stages[0].jobs[1].spec").unwrap_err();
        assert!(e.description.contains("stages[0].jobs[1].spec.properties"));
        let mut spec = json!({"steps": [{"type": "shell", "spec": {}}]});
        let e = to_current(spec.as_object_mut().unwrap(), "s").unwrap_err();
        assert!(e.description.contains("s.steps[0].spec.script"));
    }
}
