//! Applying an execute request's per-job `inputs[].parameters` to a job's spec
//! (spec/workflow.md §3.3): [`apply`] hands the input to the job type's merge
//! (`workflow::jobs`); this file holds what those merges share — decoding with the failing
//! field named, variables, repositories and service selection.
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
use crate::workflow::jobs::InputCx;
use crate::workflow::model::{Job, Workflow, arr_of, str_of};
use crate::workflow::{bad, text};

/// Decode `v` (absent/null: the type's default) naming the failing field under `field`.
pub fn decode<T: DeserializeOwned + Default>(v: &Value, field: &str) -> ApiResult<T> {
    if v.is_null() {
        return Ok(T::default());
    }
    read_at(v, field).map_err(|(path, what)| bad(&path, what))
}

/// Decode `v` as found at `field`; on failure the failing field's full path
/// (`params[0].is_credential`) and what is wrong with it. For stored documents, where the
/// error is not a 400 (the engine fails the job with it).
pub(crate) fn read_at<T: DeserializeOwned>(v: &Value, field: &str) -> Result<T, (String, String)> {
    crate::null_as_zero::deserialize(v.clone()).map_err(|e| {
        let path = e.path().to_string();
        let full = match path.as_str() {
            "." => field.to_string(),
            p if p.starts_with('[') => format!("{field}{p}"),
            p => format!("{field}.{p}"),
        };
        (full, e.inner().to_string())
    })
}

/// `{key, value}`: a job variable input.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct KvInput {
    pub key: String,
    #[serde(default)]
    pub value: Value,
}

/// A repository input (`repo_info[]`): the shape builds take too ([`crate::repo`]); what
/// merging it into a job's stored repositories means is defined here.
pub use crate::repo::RepoInput;

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
pub(crate) enum RepoMode {
    /// Update matching repos in place; unknown ones are added (build: the build holds them).
    UpdateOrAdd,
    /// Keep only the repos named (test/scan), updated; unknown ones are added.
    Select,
    /// The input is the repo list (freestyle); stored settings of matching repos are kept.
    Replace,
}

pub(crate) fn merge_repos(
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
pub(crate) fn merge_kvs(
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
pub(crate) fn with_list(
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

/// A service entry (`service_list[]`, `services[]`) of build/test/scan/freestyle inputs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ServiceInput {
    pub service_name: String,
    pub service_module: String,
    pub repo_info: Vec<RepoInput>,
    pub inputs: Vec<KvInput>,
}

impl ServiceInput {
    pub(crate) fn pair(&self) -> (&str, &str) {
        (&self.service_name, &self.service_module)
    }
}

pub(crate) fn pair_of(v: &Value) -> (&str, &str) {
    (str_of(v, "service_name"), str_of(v, "service_module"))
}

/// Keep the candidates named in `list` (in candidate order), each updated by its input.
pub(crate) fn select_services(
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

pub(crate) fn apply_service_input(
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

/// The (service, module) pairs a referenced job produces (for `source: fromjob`); `None` when
/// the workflow has no job `job`, a 400 naming the field when its spec is malformed.
pub fn referenced_services(wf: &Workflow, job: &str) -> ApiResult<Option<Vec<(String, String)>>> {
    let Some(r) = wf.job(job) else {
        return Ok(None);
    };
    match r.kind() {
        Some(t) => t.kind().produced(r).map(Some),
        None => Ok(Some(Vec::new())),
    }
}

/// Apply one job's input `params` (at `field`) to `job` in the definition `wf` (which holds
/// the already-merged earlier jobs, for `fromjob` references), as its type merges inputs
/// (`workflow::jobs`). `registry` resolves a build input's `registry` address to a registry id.
pub fn apply(
    wf: &Workflow,
    job: &mut Job,
    params: &Value,
    field: &str,
    registry: Option<String>,
) -> ApiResult<()> {
    let name = job.name.clone();
    let before = job.spec.clone();
    let Some(ty) = job.kind() else {
        // Lint, which runs on the merged definition next, refuses the type naming the field.
        return record_as_is(&mut Map::new(), params, field);
    };
    let Some(spec) = job.spec.as_object_mut() else {
        return Ok(());
    };
    let cx = InputCx {
        wf,
        before: &before,
        field,
        job: &name,
        registry,
    };
    ty.kind().apply_input(&cx, spec, params)
}

/// A job type with no documented input: the keys given are recorded on the spec as they are.
pub(crate) fn record_as_is(
    spec: &mut Map<String, Value>,
    params: &Value,
    field: &str,
) -> ApiResult<()> {
    if let Some(p) = params.as_object() {
        for (k, v) in p {
            spec.insert(k.clone(), v.clone());
        }
    } else if !params.is_null() {
        return Err(bad(field, "must be an object"));
    }
    Ok(())
}
