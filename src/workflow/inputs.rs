//! Applying an execute request's per-job `inputs[].parameters` to a job's spec
//! (spec/workflow.md §3.3), one merge per job type.
//!
//! Unlike Zadig, which silently ignores input it cannot place, a variable, service, test or
//! repository that the job does not have is a 400 naming the input field — with two
//! exceptions: build/test/scan variables and repositories live in the build/test definitions,
//! not in the job, so those are recorded on the job for the executor to apply.

use std::collections::HashSet;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::error::ApiResult;
use crate::workflow::model::{Job, Workflow, arr_of, str_of};
use crate::workflow::{bad, text};

/// Decode `v` (absent/null: the type's default) naming the failing field under `field`.
pub fn decode<T: DeserializeOwned + Default>(v: &Value, field: &str) -> ApiResult<T> {
    if v.is_null() {
        return Ok(T::default());
    }
    serde_path_to_error::deserialize(v.clone()).map_err(|e| {
        let path = e.path().to_string();
        let full = match path.as_str() {
            "." => field.to_string(),
            p if p.starts_with('[') => format!("{field}{p}"),
            p => format!("{field}.{p}"),
        };
        bad(&full, e.inner())
    })
}

/// `{key, value}`: a job variable input.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct KvInput {
    pub key: String,
    #[serde(default)]
    pub value: Value,
}

/// A repository input (`repo_info[]`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RepoInput {
    #[serde(default)]
    pub codehost_name: String,
    #[serde(default)]
    pub repo_namespace: String,
    #[serde(default)]
    pub repo_name: String,
    #[serde(default)]
    pub branch: String,
    #[serde(default)]
    pub tag: String,
    #[serde(default)]
    pub pr: i64,
    #[serde(default)]
    pub prs: Vec<i64>,
    #[serde(default)]
    pub enable_commit: bool,
    #[serde(default)]
    pub commit_id: String,
    #[serde(default)]
    pub remote_name: String,
    #[serde(default)]
    pub checkout_path: String,
    #[serde(default)]
    pub submodules: Option<bool>,
}

impl RepoInput {
    /// Does the stored repository `r` denote this one (namespace/owner and name, and the code
    /// host when both sides name it)?
    pub fn matches(&self, r: &Value) -> bool {
        let ns = str_of(r, "repo_namespace");
        let ns = if ns.is_empty() {
            str_of(r, "repo_owner")
        } else {
            ns
        };
        let host = str_of(r, "codehost_name");
        ns == self.repo_namespace
            && str_of(r, "repo_name") == self.repo_name
            && (host.is_empty() || self.codehost_name.is_empty() || host == self.codehost_name)
    }

    /// Write the revision selection (branch, tag, PRs, commit) onto `r`.
    pub fn apply(&self, r: &mut Value) {
        let Some(m) = r.as_object_mut() else { return };
        if !self.branch.is_empty() {
            m.insert("branch".into(), json!(self.branch));
        }
        if !self.tag.is_empty() {
            m.insert("tag".into(), json!(self.tag));
        }
        m.insert("pr".into(), json!(self.pr));
        m.insert("prs".into(), json!(self.prs));
        m.insert("enable_commit".into(), json!(self.enable_commit));
        m.insert("commit_id".into(), json!(self.commit_id));
        if !self.remote_name.is_empty() {
            m.insert("remote_name".into(), json!(self.remote_name));
        }
        if !self.checkout_path.is_empty() {
            m.insert("checkout_path".into(), json!(self.checkout_path));
        }
        if let Some(s) = self.submodules {
            m.insert("submodules".into(), json!(s));
        }
    }

    /// A Repository object for a repository the job did not have.
    pub fn to_repo(&self) -> Value {
        let mut r = json!({
            "source": self.codehost_name,
            "codehost_name": self.codehost_name,
            "repo_owner": self.repo_namespace,
            "repo_namespace": self.repo_namespace,
            "repo_name": self.repo_name,
            "remote_name": "origin",
            "checkout_path": "",
            "submodules": false,
        });
        self.apply(&mut r);
        r
    }

    fn check(&self, field: &str) -> ApiResult<()> {
        if self.repo_name.is_empty() {
            return Err(bad(&format!("{field}.repo_name"), "is required"));
        }
        Ok(())
    }
}

/// How repository inputs combine with a job's repositories.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RepoMode {
    /// Update matching repos in place; unknown ones are added (build: the build holds them).
    UpdateOrAdd,
    /// Keep only the repos named (test/scan), updated; unknown ones are added.
    Select,
    /// The input is the repo list (freestyle); stored settings of matching repos are kept.
    Replace,
}

fn merge_repos(
    stored: &[Value],
    inputs: &[RepoInput],
    mode: RepoMode,
    field: &str,
) -> ApiResult<Vec<Value>> {
    if inputs.is_empty() {
        return Ok(stored.to_vec());
    }
    for (k, i) in inputs.iter().enumerate() {
        i.check(&format!("{field}[{k}]"))?;
    }
    let from_input = |i: &RepoInput| {
        stored.iter().find(|r| i.matches(r)).map_or_else(
            || i.to_repo(),
            |r| {
                let mut r = r.clone();
                i.apply(&mut r);
                r
            },
        )
    };
    Ok(match mode {
        RepoMode::UpdateOrAdd => {
            let mut out = stored.to_vec();
            for i in inputs {
                match out.iter_mut().find(|r| i.matches(r)) {
                    Some(r) => i.apply(r),
                    None => out.push(i.to_repo()),
                }
            }
            out
        }
        RepoMode::Select | RepoMode::Replace => inputs.iter().map(from_input).collect(),
    })
}

/// Set variables by key. `open`: keys the job does not define are added (the variables live
/// in a build/test definition); closed: they are a 400.
fn merge_kvs(
    stored: &mut Vec<Value>,
    inputs: &[KvInput],
    open: bool,
    field: &str,
    job: &str,
) -> ApiResult<()> {
    for (k, kv) in inputs.iter().enumerate() {
        if kv.key.is_empty() {
            return Err(bad(&format!("{field}[{k}].key"), "is required"));
        }
        // Every variable set here ends up in the job's environment.
        crate::limits::env_name(&format!("{field}[{k}].key"), &kv.key)?;
        let value = text(&kv.value);
        match stored.iter_mut().find(|v| str_of(v, "key") == kv.key) {
            Some(v) => {
                if let Some(m) = v.as_object_mut() {
                    if m.get("type").and_then(Value::as_str) == Some("multi-select") {
                        let choices: Vec<Value> = value
                            .split(',')
                            .filter(|s| !s.is_empty())
                            .map(|s| json!(s))
                            .collect();
                        m.insert("choice_value".into(), Value::Array(choices));
                    }
                    m.insert("value".into(), Value::String(value));
                }
            }
            None if open => stored.push(json!({
                "key": kv.key, "value": value, "type": "string", "is_credential": false,
            })),
            None => {
                return Err(bad(
                    &format!("{field}[{k}].key"),
                    format!("variable {} is not defined in job {job}", kv.key),
                ));
            }
        }
    }
    Ok(())
}

/// Run `f` on the list at `spec[key]` (created when absent or not a list).
fn with_list(
    spec: &mut Map<String, Value>,
    key: &str,
    f: impl FnOnce(&mut Vec<Value>) -> ApiResult<()>,
) -> ApiResult<()> {
    let mut list = match spec.remove(key) {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    };
    let r = f(&mut list);
    spec.insert(key.to_string(), Value::Array(list));
    r
}

fn take_list(v: &Value, key: &str) -> Vec<Value> {
    arr_of(v, key).to_vec()
}

/// A service entry (`service_list[]`, `services[]`) of build/test/scan/freestyle inputs.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServiceInput {
    #[serde(default)]
    pub service_name: String,
    #[serde(default)]
    pub service_module: String,
    #[serde(default)]
    pub repo_info: Vec<RepoInput>,
    #[serde(default)]
    pub inputs: Vec<KvInput>,
}

impl ServiceInput {
    fn pair(&self) -> (&str, &str) {
        (&self.service_name, &self.service_module)
    }
}

fn pair_of(v: &Value) -> (&str, &str) {
    (str_of(v, "service_name"), str_of(v, "service_module"))
}

/// Keep the candidates named in `list` (in candidate order), each updated by its input.
fn select_services(
    candidates: &[Value],
    list: &[ServiceInput],
    repo_mode: RepoMode,
    field: &str,
    job: &str,
) -> ApiResult<Vec<Value>> {
    let mut seen = HashSet::new();
    for (k, s) in list.iter().enumerate() {
        if s.service_name.is_empty() {
            return Err(bad(&format!("{field}[{k}].service_name"), "is required"));
        }
        if !seen.insert(s.pair()) {
            return Err(bad(
                &format!("{field}[{k}]"),
                format!(
                    "service {}/{} is listed twice",
                    s.service_name, s.service_module
                ),
            ));
        }
        if !candidates.iter().any(|c| pair_of(c) == s.pair()) {
            return Err(bad(
                &format!("{field}[{k}]"),
                format!(
                    "service {}/{} is not a target of job {job}",
                    s.service_name, s.service_module
                ),
            ));
        }
    }
    let mut out = Vec::new();
    for c in candidates {
        let Some((k, s)) = list
            .iter()
            .enumerate()
            .find(|(_, s)| s.pair() == pair_of(c))
        else {
            continue;
        };
        let mut item = c.clone();
        apply_service_input(&mut item, s, repo_mode, true, &format!("{field}[{k}]"), job)?;
        out.push(item);
    }
    Ok(out)
}

fn apply_service_input(
    item: &mut Value,
    s: &ServiceInput,
    repo_mode: RepoMode,
    open_vars: bool,
    field: &str,
    job: &str,
) -> ApiResult<()> {
    let repos = merge_repos(
        arr_of(item, "repos"),
        &s.repo_info,
        repo_mode,
        &format!("{field}.repo_info"),
    )?;
    let Some(m) = item.as_object_mut() else {
        return Ok(());
    };
    m.insert("repos".into(), Value::Array(repos));
    with_list(m, "key_vals", |l| {
        merge_kvs(l, &s.inputs, open_vars, &format!("{field}.inputs"), job)
    })
}

/// The (service, module) items a referenced job produces (for `source: fromjob`).
pub fn referenced_services(wf: &Workflow, job: &str) -> Option<Vec<Value>> {
    let r = wf.job(job)?;
    let list = match r.job_type.as_str() {
        "zadig-build" => "service_and_builds",
        "zadig-test" => "service_and_tests",
        "zadig-scanning" => "service_and_scannings",
        "freestyle" => "services",
        "zadig-deploy" => {
            let mut out = Vec::new();
            for s in arr_of(&r.spec, "services") {
                for m in arr_of(s, "modules") {
                    out.push(json!({"service_name": str_of(s, "service_name"),
                        "service_module": str_of(m, "service_module")}));
                }
            }
            return Some(out);
        }
        _ => return Some(Vec::new()),
    };
    Some(
        arr_of(&r.spec, list)
            .iter()
            .map(|s| json!({"service_name": str_of(s, "service_name"), "service_module": str_of(s, "service_module")}))
            .collect(),
    )
}

/// Apply one job's input `params` (at `field`) to `job` in the definition `wf` (which holds
/// the already-merged earlier jobs, for `fromjob` references). `registry` resolves a build
/// input's `registry` address to a registry id.
pub fn apply(
    wf: &Workflow,
    job: &mut Job,
    params: &Value,
    field: &str,
    registry: Option<String>,
) -> ApiResult<()> {
    let name = job.name.clone();
    let spec_before = job.spec.clone();
    let Some(spec) = job.spec.as_object_mut() else {
        return Ok(());
    };
    match job.job_type.as_str() {
        "zadig-build" => build(spec, &spec_before, params, field, &name, registry),
        "zadig-deploy" | "zadig-helm-chart-deploy" => deploy(spec, params, field),
        "custom-deploy" => custom_deploy(spec, params, field),
        "freestyle" => freestyle(wf, spec, &spec_before, params, field, &name),
        "zadig-test" => testing(wf, spec, &spec_before, params, field, &name, TEST),
        "zadig-scanning" => testing(wf, spec, &spec_before, params, field, &name, SCAN),
        "plugin" => plugin(spec, params, field, &name),
        "sql" => sql(spec, params, field),
        "tapd" => tapd(spec, params, field),
        "zadig-vm-deploy" => vm_deploy(spec, params, field),
        "approval" => Ok(()),
        _ => {
            // No documented input: keys given are recorded on the spec as they are.
            if let Some(p) = params.as_object() {
                for (k, v) in p {
                    spec.insert(k.clone(), v.clone());
                }
            } else if !params.is_null() {
                return Err(bad(field, "must be an object"));
            }
            Ok(())
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct BuildInput {
    /// Checked to be a string here; resolved to a registry id by `execute::prepare`.
    #[serde(default)]
    #[expect(dead_code, reason = "decoded only to reject a non-string value")]
    registry: String,
    #[serde(default)]
    service_list: Option<Vec<ServiceInput>>,
}

fn build(
    spec: &mut Map<String, Value>,
    before: &Value,
    params: &Value,
    field: &str,
    job: &str,
    registry: Option<String>,
) -> ApiResult<()> {
    let input: BuildInput = decode(params, field)?;
    if let Some(id) = registry {
        spec.insert("docker_registry_id".into(), Value::String(id));
    }
    let Some(list) = input.service_list else {
        return Ok(());
    };
    let options = take_list(before, "service_and_builds_options");
    let candidates = if options.is_empty() {
        take_list(before, "service_and_builds")
    } else {
        options
    };
    let selected = select_services(
        &candidates,
        &list,
        RepoMode::UpdateOrAdd,
        &format!("{field}.service_list"),
        job,
    )?;
    spec.insert("service_and_builds".into(), Value::Array(selected));
    Ok(())
}

#[derive(Debug, Default, Deserialize)]
struct DeployServiceInput {
    #[serde(default)]
    service_name: String,
    #[serde(default)]
    service_module: String,
    #[serde(default)]
    image_name: String,
    #[serde(default)]
    value_merge_strategy: String,
}

/// A deploy job's input (`zadig-deploy`, `zadig-vm-deploy`): the env and the services.
#[derive(Debug, Deserialize)]
#[serde(bound = "S: DeserializeOwned")]
struct DeployInput<S> {
    #[serde(default)]
    env_name: String,
    #[serde(default)]
    service_list: Option<Vec<S>>,
}

impl<S> Default for DeployInput<S> {
    fn default() -> Self {
        Self {
            env_name: String::new(),
            service_list: None,
        }
    }
}

/// Decode a deploy input and apply its `env_name` (an empty one keeps the configured env);
/// the service list when one was given.
fn deploy_input<S: DeserializeOwned>(
    spec: &mut Map<String, Value>,
    params: &Value,
    field: &str,
) -> ApiResult<Option<Vec<S>>> {
    let input: DeployInput<S> = decode(params, field)?;
    if !input.env_name.is_empty() {
        spec.insert("env".into(), Value::String(input.env_name));
    }
    Ok(input.service_list)
}

fn deploy(spec: &mut Map<String, Value>, params: &Value, field: &str) -> ApiResult<()> {
    let Some(list) = deploy_input::<DeployServiceInput>(spec, params, field)? else {
        return Ok(());
    };
    let stored = take_list(&Value::Object(spec.clone()), "services");
    let mut services: Vec<Value> = Vec::new();
    let mut flat = Vec::new();
    for (k, s) in list.iter().enumerate() {
        let f = format!("{field}.service_list[{k}]");
        if s.service_name.is_empty() {
            return Err(bad(&format!("{f}.service_name"), "is required"));
        }
        crate::validate::one_of(
            &format!("{f}.value_merge_strategy"),
            &s.value_merge_strategy,
            &["", "reuse-values", "override"],
        )?;
        let at = match services
            .iter()
            .position(|v| str_of(v, "service_name") == s.service_name)
        {
            Some(at) => at,
            None => {
                let mut base = stored
                    .iter()
                    .find(|v| str_of(v, "service_name") == s.service_name)
                    .cloned()
                    .unwrap_or_else(|| json!({"service_name": s.service_name}));
                if let Some(m) = base.as_object_mut() {
                    m.insert("modules".into(), json!([]));
                }
                services.push(base);
                services.len() - 1
            }
        };
        let Some(m) = services[at].as_object_mut() else {
            continue;
        };
        if !s.service_module.is_empty() {
            let module = json!({
                "service_module": s.service_module, "image": s.image_name, "image_name": image_base(&s.image_name),
            });
            with_list(m, "modules", |l| {
                l.push(module);
                Ok(())
            })?;
        }
        if !s.value_merge_strategy.is_empty() {
            m.insert("value_merge_strategy".into(), json!(s.value_merge_strategy));
        }
        flat.push(json!({"service_name": s.service_name, "service_module": s.service_module, "image": s.image_name}));
    }
    spec.insert("services".into(), Value::Array(services));
    spec.insert("service_and_images".into(), Value::Array(flat));
    Ok(())
}

/// `registry/ns/name:tag` → `name`.
fn image_base(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split(':').next().unwrap_or(last).to_string()
}

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

fn custom_deploy(spec: &mut Map<String, Value>, params: &Value, field: &str) -> ApiResult<()> {
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

#[derive(Debug, Default, Deserialize)]
struct FreestyleInput {
    #[serde(default)]
    kv: Vec<KvInput>,
    #[serde(default)]
    repo_info: Vec<RepoInput>,
    #[serde(default)]
    services: Option<Vec<ServiceInput>>,
}

fn freestyle(
    wf: &Workflow,
    spec: &mut Map<String, Value>,
    before: &Value,
    params: &Value,
    field: &str,
    job: &str,
) -> ApiResult<()> {
    let input: FreestyleInput = decode(params, field)?;
    with_list(spec, "envs", |l| {
        merge_kvs(l, &input.kv, false, &format!("{field}.kv"), job)
    })?;
    let repos = merge_repos(
        arr_of(before, "repos"),
        &input.repo_info,
        RepoMode::Replace,
        &format!("{field}.repo_info"),
    )?;
    spec.insert("repos".into(), Value::Array(repos.clone()));
    match str_of(before, "freestyle_type") {
        "" => Ok(()),
        "service_freestyle" => {
            let fromjob = str_of(before, "source") == "fromjob";
            let candidates = if fromjob {
                let r = str_of(before, "job_name");
                referenced_services(wf, r).ok_or_else(|| {
                    bad(
                        &format!("{field}.services"),
                        format!("FreeStyleJob: refered job {r} not found"),
                    )
                })?
            } else {
                take_list(before, "services")
            };
            let envs = take_list(&Value::Object(spec.clone()), "envs");
            let services = match input.services {
                Some(list) => {
                    let sfield = format!("{field}.services");
                    let mut out = Vec::new();
                    for (k, s) in list.iter().enumerate() {
                        if s.service_name.is_empty() {
                            return Err(bad(&format!("{sfield}[{k}].service_name"), "is required"));
                        }
                        let known = candidates.iter().find(|c| pair_of(c) == s.pair());
                        if fromjob && known.is_none() {
                            return Err(bad(
                                &format!("{sfield}[{k}]"),
                                format!(
                                    "service {}/{} is not produced by job {}",
                                    s.service_name,
                                    s.service_module,
                                    str_of(before, "job_name")
                                ),
                            ));
                        }
                        let mut item = known.cloned().unwrap_or_else(|| {
                            json!({"service_name": s.service_name, "service_module": s.service_module})
                        });
                        if let Some(m) = item.as_object_mut() {
                            if !m.contains_key("key_vals") {
                                m.insert("key_vals".into(), Value::Array(envs.clone()));
                            }
                            if !m.contains_key("repos") {
                                m.insert("repos".into(), Value::Array(repos.clone()));
                            }
                        }
                        apply_service_input(
                            &mut item,
                            s,
                            RepoMode::Replace,
                            false,
                            &format!("{sfield}[{k}]"),
                            job,
                        )?;
                        out.push(item);
                    }
                    out
                }
                None => candidates,
            };
            spec.insert("services".into(), Value::Array(services));
            Ok(())
        }
        other => Err(bad(
            field,
            format!("freestyle job type {other} not supported"),
        )),
    }
}

/// The field names of a test job or a scanning job (they merge the same way).
struct TestKind {
    type_key: &'static str,
    service_type: &'static str,
    services: &'static str,
    service_options: &'static str,
    modules: &'static str,
    module_options: &'static str,
    module_list: &'static str,
    module_name: &'static str,
    what: &'static str,
}

const TEST: TestKind = TestKind {
    type_key: "test_type",
    service_type: "service_test",
    services: "service_and_tests",
    service_options: "service_test_options",
    modules: "test_modules",
    module_options: "test_module_options",
    module_list: "testing_list",
    module_name: "testing_name",
    what: "ZadigTestingJob",
};

const SCAN: TestKind = TestKind {
    type_key: "scanning_type",
    service_type: "service_scanning",
    services: "service_and_scannings",
    service_options: "service_scanning_options",
    modules: "scannings",
    module_options: "scanning_options",
    module_list: "scanning_list",
    module_name: "scanning_name",
    what: "ZadigScanningJob",
};

#[derive(Debug, Default, Deserialize)]
struct ModuleInput {
    #[serde(default, alias = "testing_name", alias = "scanning_name")]
    name: String,
    #[serde(default)]
    repo_info: Vec<RepoInput>,
    #[serde(default)]
    inputs: Vec<KvInput>,
}

fn testing(
    wf: &Workflow,
    spec: &mut Map<String, Value>,
    before: &Value,
    params: &Value,
    field: &str,
    job: &str,
    kind: TestKind,
) -> ApiResult<()> {
    let p = if params.is_null() {
        json!({})
    } else {
        params.clone()
    };
    let Some(obj) = p.as_object() else {
        return Err(bad(field, "must be an object"));
    };
    let service_list: Option<Vec<ServiceInput>> = decode(
        obj.get("service_list").unwrap_or(&Value::Null),
        &format!("{field}.service_list"),
    )?;
    let module_list: Option<Vec<ModuleInput>> = decode(
        obj.get(kind.module_list).unwrap_or(&Value::Null),
        &format!("{field}.{}", kind.module_list),
    )?;

    if str_of(before, kind.type_key) == kind.service_type {
        let Some(list) = service_list else {
            return Ok(());
        };
        let options = take_list(before, kind.service_options);
        let configured = if options.is_empty() {
            take_list(before, kind.services)
        } else {
            options
        };
        let candidates = if str_of(before, "source") == "fromjob" {
            let r = str_of(before, "job_name");
            let produced = referenced_services(wf, r).ok_or_else(|| {
                bad(
                    &format!("{field}.service_list"),
                    format!("{}: refered job {r} not found", kind.what),
                )
            })?;
            configured
                .into_iter()
                .filter(|c| produced.iter().any(|p| pair_of(p) == pair_of(c)))
                .collect()
        } else {
            configured
        };
        let selected = select_services(
            &candidates,
            &list,
            RepoMode::Select,
            &format!("{field}.service_list"),
            job,
        )?;
        spec.insert(kind.services.into(), Value::Array(selected));
        return Ok(());
    }

    let Some(list) = module_list else {
        return Ok(());
    };
    let lfield = format!("{field}.{}", kind.module_list);
    let options = take_list(before, kind.module_options);
    let mut modules = if take_list(before, kind.modules).is_empty() {
        options
    } else {
        take_list(before, kind.modules)
    };
    for (k, input) in list.iter().enumerate() {
        let f = format!("{lfield}[{k}]");
        if input.name.is_empty() {
            return Err(bad(&format!("{f}.{}", kind.module_name), "is required"));
        }
        let Some(m) = modules.iter_mut().find(|m| str_of(m, "name") == input.name) else {
            return Err(bad(
                &format!("{f}.{}", kind.module_name),
                format!("{} is not configured in job {job}", input.name),
            ));
        };
        let repos = merge_repos(
            arr_of(m, "repos"),
            &input.repo_info,
            RepoMode::Select,
            &format!("{f}.repo_info"),
        )?;
        if let Some(obj) = m.as_object_mut() {
            obj.insert("repos".into(), Value::Array(repos));
            with_list(obj, "key_vals", |l| {
                merge_kvs(l, &input.inputs, true, &format!("{f}.inputs"), job)
            })?;
        }
    }
    spec.insert(kind.modules.into(), Value::Array(modules));
    Ok(())
}

#[derive(Debug, Default, Deserialize)]
struct PluginInput {
    #[serde(default)]
    kv: Vec<KvInput>,
}

fn plugin(spec: &mut Map<String, Value>, params: &Value, field: &str, job: &str) -> ApiResult<()> {
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

#[derive(Debug, Default, Deserialize)]
struct SqlInput {
    #[serde(default)]
    database_name: Option<String>,
    #[serde(default)]
    sql: Option<String>,
}

fn sql(spec: &mut Map<String, Value>, params: &Value, field: &str) -> ApiResult<()> {
    let input: SqlInput = decode(params, field)?;
    if let Some(db) = input.database_name {
        spec.insert("database_name".into(), Value::String(db));
    }
    if let Some(sql) = input.sql {
        spec.insert("sql".into(), Value::String(sql));
    }
    Ok(())
}

#[derive(Debug, Default, Deserialize)]
struct TapdInput {
    #[serde(default)]
    project_id: Option<String>,
    #[serde(default)]
    project_name: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    iteration_ids: Option<Vec<String>>,
    #[serde(default)]
    iterations: Option<Vec<Value>>,
}

fn tapd(spec: &mut Map<String, Value>, params: &Value, field: &str) -> ApiResult<()> {
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
    let mut iterations: Vec<Value> = input.iterations.unwrap_or_default();
    for (k, it) in iterations.iter().enumerate() {
        if str_of(it, "iteration_id").is_empty() {
            return Err(bad(
                &format!("{field}.iterations[{k}].iteration_id"),
                "is required",
            ));
        }
    }
    for id in input.iteration_ids.unwrap_or_default() {
        if !iterations.iter().any(|i| str_of(i, "iteration_id") == id) {
            iterations.push(json!({"iteration_id": id}));
        }
    }
    if !iterations.is_empty() {
        spec.insert("iterations".into(), Value::Array(iterations));
    }
    Ok(())
}

#[derive(Debug, Default, Deserialize)]
struct VmServiceInput {
    #[serde(default)]
    service_name: String,
    #[serde(default)]
    file_name: String,
}

fn vm_deploy(spec: &mut Map<String, Value>, params: &Value, field: &str) -> ApiResult<()> {
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
