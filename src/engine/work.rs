//! What a job task runs: [`prepare`] hands a job task to its job type's module
//! (`workflow::jobs`, which translates its spec into a [`PreparedJob`], spec/workflow.md §5.9);
//! this file is the toolkit those modules share — variables, tools, repositories and clone
//! URLs, scripts, the job's environment ([`assemble`]) — and the list of integrations a job
//! type may need ([`INTEGRATIONS`], [`missing_integration`]): a job that needs one fails naming
//! it and the config key (`engine_integrations`) that would enable it. Never a silent pass.
//!
//! Spec lists (repositories, variables, tools) are read entry by entry into typed structs:
//! an entry of the wrong shape fails the job naming its field, and lint runs the same check
//! when a workflow is saved ([`check_entries`]).

use std::path::{Component, Path};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::executor::{GitRepo, JobContext, PreparedJob, ScriptKind, Step, Tool};
use super::logs::LogKey;
use super::render;
use crate::state::AppState;
use crate::validate::nullable;
use crate::workflow::inputs::read_at;
use crate::workflow::jobs::JobType;

/// Job timeout when none (or ≤ 0) is set, in minutes (Zadig's).
pub const DEFAULT_TIMEOUT_MINUTES: i64 = 600;

pub use crate::config::INTEGRATIONS;

/// The error of a job that needs `integration`.
pub fn missing_integration(job_type: &str, integration: &str) -> String {
    let what = INTEGRATIONS
        .iter()
        .find(|(n, _)| *n == integration)
        .map_or("an integration", |(_, w)| *w);
    format!(
        "job type {job_type} needs {what} (integration \"{integration}\"), which is not configured \
         on this server: enable it in the config key engine_integrations (no driver for it exists in \
         this version, so this job cannot run here)"
    )
}

/// Translate a job task into a [`PreparedJob`], or say why it cannot run: the job type's
/// module decides (`workflow::jobs`).
pub async fn prepare(state: &AppState, ctx: &JobContext) -> Result<PreparedJob, String> {
    let Some(ty) = JobType::parse(&ctx.job_type) else {
        return Err(format!(
            "job type {} is not supported by the engine",
            ctx.job_type
        ));
    };
    let spec = render::render_value(&ctx.spec, &ctx.context);
    ty.kind().prepare(ty, state, ctx, &spec).await
}

/// What a job spec's list holds, for [`check_entries`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Entries {
    /// Repositories ([`repos_of`]).
    Repos,
    /// Variables ([`vars_of`]).
    Vars,
}

/// At lint: whether every entry of list `field` decodes as the engine reads it, so a
/// definition the engine would fail on is refused when it is saved; `Err` is the failing
/// field's path and what is wrong with it.
pub(crate) fn check_entries(
    kind: Entries,
    field: &str,
    list: &[Value],
) -> Result<(), (String, String)> {
    for (i, v) in list.iter().enumerate() {
        let at = format!("{field}[{i}]");
        match kind {
            Entries::Repos => drop(read_at::<SpecRepo>(v, &at)?),
            Entries::Vars => drop(read_at::<KeyVal>(v, &at)?),
        }
    }
    Ok(())
}

/// The entries of list `field` of a job spec, each decoded as `T` and turned by `keep` into
/// what the job uses (`None`: the entry is skipped); `Err` names the first field that does
/// not decode (`repos[0].branch: invalid type: integer …`).
fn each_entry<T: DeserializeOwned, U>(
    field: &str,
    list: &[Value],
    keep: impl Fn(usize, &Value, T) -> Result<Option<U>, String>,
) -> Result<Vec<U>, String> {
    let mut out = Vec::new();
    for (i, v) in list.iter().enumerate() {
        let t = read_at(v, &format!("{field}[{i}]"))
            .map_err(|(path, what)| format!("{path}: {what}"))?;
        out.extend(keep(i, v, t)?);
    }
    Ok(out)
}

fn to_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(a) => a.iter().map(to_text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// A job variable (`{key, value, is_credential}` of a RuntimeKeyVal / KeyVal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Var {
    pub key: String,
    pub value: String,
    pub secret: bool,
}

/// An entry of a job's `envs`/`key_vals` (Zadig's KeyVal): a scalar value, shown as text.
#[derive(Deserialize, Default)]
#[serde(default)]
struct KeyVal {
    #[serde(deserialize_with = "nullable")]
    key: String,
    value: Value,
}

/// The variables of list `field` (entries without a key set nothing); the credential flag is
/// read as [`crate::masking::is_credential_var`] reads it.
pub(crate) fn vars_of(field: &str, list: &[Value]) -> Result<Vec<Var>, String> {
    each_entry(field, list, |_, v, kv: KeyVal| {
        Ok((!kv.key.is_empty()).then(|| Var {
            key: kv.key,
            value: to_text(&kv.value),
            secret: crate::masking::is_credential_var(v),
        }))
    })
}

/// `over` replaces same-key entries of `base` (keeping a credential flag set on either).
pub(crate) fn merge_vars(base: Vec<Var>, over: Vec<Var>) -> Vec<Var> {
    let mut out = base;
    for v in over {
        match out.iter_mut().find(|b| b.key == v.key) {
            Some(b) => {
                b.secret |= v.secret;
                b.value = v.value;
            }
            None => out.push(v),
        }
    }
    out
}

/// A tool a job needs on its PATH (`{name, version}`).
#[derive(Deserialize, Default)]
#[serde(default)]
struct Install {
    #[serde(deserialize_with = "nullable")]
    name: String,
    #[serde(deserialize_with = "nullable")]
    version: String,
}

/// The tools of list `field` (entries without a name are none).
pub(crate) fn installs_of(field: &str, list: &[Value]) -> Result<Vec<Tool>, String> {
    each_entry(field, list, |_, _, t: Install| {
        Ok((!t.name.is_empty()).then_some(Tool {
            name: t.name,
            version: t.version,
        }))
    })
}

pub(crate) fn timeout_of(minutes: Option<i64>) -> Duration {
    let m = minutes
        .filter(|m| *m > 0)
        .unwrap_or(DEFAULT_TIMEOUT_MINUTES);
    Duration::from_secs(u64::try_from(m).unwrap_or(600).saturating_mul(60))
}

pub(crate) fn output_names(list: &[Value]) -> Vec<String> {
    list.iter()
        .map(|o| match o {
            Value::String(s) => s.clone(),
            o => o
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        })
        .filter(|n| valid_var_name(n))
        .collect()
}

/// `^[a-zA-Z_][a-zA-Z0-9_]*$`, at most 64 characters (an output must be a shell variable).
pub fn valid_var_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && !n.starts_with(|c: char| c.is_ascii_digit())
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub(crate) fn script_step(script_type: &str, script: &str) -> Result<Step, String> {
    match script_type {
        "" | "shell" => Ok(Step::Script {
            kind: ScriptKind::Bash,
            script: script.to_string(),
        }),
        "powershell" => Ok(Step::Script {
            kind: ScriptKind::PowerShell,
            script: script.to_string(),
        }),
        "batch_file" => Err(missing_integration(
            "freestyle (batch_file script)",
            "windows",
        )),
        other => Err(format!(
            "script_type {other} is not supported (shell, powershell)"
        )),
    }
}

/// Put a job together: its environment (workflow params < job variables < built-ins).
pub(crate) fn assemble(
    ctx: &JobContext,
    steps: Vec<Step>,
    vars: Vec<Var>,
    service: (&str, &str),
    extra: Vec<(String, String)>,
    outputs: Vec<String>,
    timeout: Duration,
) -> PreparedJob {
    let mut env: Vec<(String, String)> = ctx.params.clone();
    let mut secrets: Vec<String> = ctx.secrets.clone();
    for v in vars {
        let value = if service.0.is_empty() {
            v.value
        } else {
            v.value
                .replace("<SERVICE>", service.0)
                .replace("<MODULE>", service.1)
        };
        if v.secret {
            secrets.push(value.clone());
        }
        env.push((v.key, value));
    }
    env.extend(
        [
            ("CI", "true"),
            ("ZADIG", "true"),
            ("GIT_SSL_NO_VERIFY", "true"),
            ("PROJECT", ctx.project.as_str()),
            ("WORKFLOW", ctx.workflow.as_str()),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    env.push(("TASK_ID".to_string(), ctx.task_id.to_string()));
    for step in &steps {
        if let Step::Git(repos) = step {
            for (i, r) in repos.iter().enumerate() {
                let var = repo_var(&r.name);
                env.push((format!("REPONAME_{i}"), r.name.clone()));
                env.push((format!("REPO_{i}"), var.clone()));
                env.push((format!("{var}_BRANCH"), r.branch.clone()));
                env.push((format!("{var}_TAG"), r.tag.clone()));
                env.push((
                    format!("{var}_PR"),
                    if r.pr > 0 {
                        r.pr.to_string()
                    } else {
                        String::new()
                    },
                ));
                env.push((format!("{var}_COMMIT_ID"), r.commit_id.clone()));
            }
        }
    }
    for step in &steps {
        if let Step::Git(repos) = step {
            secrets.extend(repos.iter().filter_map(|r| url_password(&r.url)));
        }
    }
    env.extend(extra);
    PreparedJob {
        key: LogKey {
            workflow: ctx.workflow.clone(),
            task_id: ctx.task_id,
            job: ctx.job_name.clone(),
        },
        job_type: ctx.job_type.clone(),
        env,
        steps,
        outputs,
        timeout,
        secrets,
        placement: super::kube::Placement::Local,
    }
}

/// A repo name as a variable-name prefix: `-`/`.` → `_`, a leading digit spelled A–J.
pub fn repo_var(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if let Some(d) = out.chars().next().and_then(|c| c.to_digit(10)) {
        let letter = char::from(b'A' + u8::try_from(d).unwrap_or(0));
        out.replace_range(0..1, &letter.to_string());
    }
    out
}

/// The password part of `scheme://user:password@host/…`, to mask it.
fn url_password(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let auth = rest.split('/').next()?.rsplit_once('@')?.0;
    auth.split_once(':')
        .map(|(_, p)| p.to_string())
        .filter(|p| !p.is_empty())
}

/// A repository of a job spec as the engine reads it: Zadig's Repository shape with the URL
/// fields a job task may carry. Fields it does not read are ignored; `null` is Go's zero.
#[derive(Deserialize, Default)]
#[serde(default)]
struct SpecRepo {
    #[serde(deserialize_with = "nullable")]
    repo_name: String,
    #[serde(deserialize_with = "nullable")]
    url: String,
    #[serde(deserialize_with = "nullable")]
    clone_url: String,
    #[serde(deserialize_with = "nullable")]
    http_url: String,
    /// The code host's base URL (or a local path).
    #[serde(deserialize_with = "nullable")]
    address: String,
    #[serde(deserialize_with = "nullable")]
    repo_namespace: String,
    #[serde(deserialize_with = "nullable")]
    repo_owner: String,
    #[serde(deserialize_with = "nullable")]
    oauth_token: String,
    #[serde(deserialize_with = "nullable")]
    checkout_path: String,
    #[serde(deserialize_with = "nullable")]
    branch: String,
    #[serde(deserialize_with = "nullable")]
    tag: String,
    #[serde(deserialize_with = "nullable")]
    commit_id: String,
    #[serde(deserialize_with = "nullable")]
    pr: i64,
    #[serde(deserialize_with = "nullable")]
    prs: Vec<i64>,
    #[serde(deserialize_with = "nullable")]
    submodules: bool,
    #[serde(deserialize_with = "nullable")]
    hidden: bool,
}

/// The repositories of list `field` a job clones (hidden ones are not cloned).
pub(crate) fn repos_of(field: &str, list: &[Value]) -> Result<Vec<GitRepo>, String> {
    each_entry(field, list, |i, _, r: SpecRepo| {
        if r.hidden {
            Ok(None)
        } else {
            repo_of(i, r).map(Some)
        }
    })
}

fn repo_of(i: usize, r: SpecRepo) -> Result<GitRepo, String> {
    let url_given = [&r.url, &r.clone_url, &r.http_url]
        .into_iter()
        .find(|u| !u.is_empty());
    let name = if r.repo_name.is_empty() {
        url_given
            .unwrap_or(&r.address)
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .map(|n| n.trim_end_matches(".git").to_string())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("repo-{i}"))
    } else {
        r.repo_name.clone()
    };
    let url = match url_given {
        Some(u) => u.clone(),
        None => clone_url(&r, &name)?,
    };
    let url = with_token(&url, &r.oauth_token);
    let checkout_path = if r.checkout_path.is_empty() {
        name.clone()
    } else {
        r.checkout_path.clone()
    };
    let cp = Path::new(&checkout_path);
    if cp.is_absolute()
        || cp
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!(
            "repo {name}: checkout_path {checkout_path:?} must be a relative path inside the workspace"
        ));
    }
    // `pr` when set, else the first of `prs`.
    let pr = Some(r.pr)
        .filter(|p| *p > 0)
        .or_else(|| r.prs.first().copied())
        .unwrap_or(0);
    Ok(GitRepo {
        name,
        url,
        branch: r.branch,
        tag: r.tag,
        commit_id: r.commit_id,
        pr,
        checkout_path,
        submodules: r.submodules,
    })
}

/// The clone URL of a repository given by its code host `address` (a URL or a local path)
/// and namespace/name.
fn clone_url(r: &SpecRepo, name: &str) -> Result<String, String> {
    let address = r.address.trim_end_matches('/');
    if address.is_empty() {
        return Err(format!(
            "repo {name} has no address to clone from (address, url or clone_url)"
        ));
    }
    let ns = if r.repo_namespace.is_empty() {
        r.repo_owner.as_str()
    } else {
        r.repo_namespace.as_str()
    };
    let local = address.strip_prefix("file://").unwrap_or(address);
    if local.starts_with('/') {
        // A local path: the repository itself, or a directory of <namespace>/<name>.
        let direct = Path::new(local);
        let is_repo = |p: &Path| p.join(".git").exists() || p.join("HEAD").is_file();
        if is_repo(direct) {
            return Ok(local.to_string());
        }
        let nested = if ns.is_empty() {
            direct.join(name)
        } else {
            direct.join(ns).join(name)
        };
        return Ok(nested.to_string_lossy().into_owned());
    }
    let tail = address.rsplit('/').next().unwrap_or("");
    if tail.trim_end_matches(".git") == name {
        return Ok(address.to_string());
    }
    Ok(if ns.is_empty() {
        format!("{address}/{name}")
    } else {
        format!("{address}/{ns}/{name}")
    })
}

/// Put an OAuth token into an https URL (`https://oauth2:<token>@host/…`).
fn with_token(url: &str, token: &str) -> String {
    if token.is_empty() {
        return url.to_string();
    }
    match url.strip_prefix("https://") {
        Some(rest) if !rest.split('/').next().unwrap_or("").contains('@') => {
            format!("https://oauth2:{token}@{rest}")
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_variable_flagged_other_than_false_is_a_secret() {
        let vars = vars_of(
            "key_vals",
            &[
                json!({"key": "A", "value": "a", "is_credential": true}),
                json!({"key": "B", "value": "b", "is_credential": "true"}),
                json!({"key": "C", "value": "c", "is_credential": false}),
                json!({"key": "D", "value": "d", "is_credential": null}),
                json!({"key": "E", "value": "e"}),
            ],
        )
        .unwrap();
        let secret: Vec<bool> = vars.iter().map(|v| v.secret).collect();
        assert_eq!(secret, [true, true, false, false, false]);
    }

    #[test]
    fn malformed_entries_fail_naming_the_field() {
        let err = vars_of("spec.envs", &[json!({"key": "A"}), json!({"key": 5})]).unwrap_err();
        assert!(err.contains("spec.envs[1].key"), "{err}");
        let err = installs_of("spec.runtime.installs", &[json!({"name": ["go"]})]).unwrap_err();
        assert!(err.contains("spec.runtime.installs[0].name"), "{err}");
        let err = repos_of("spec.repos", &[json!({"address": "/tmp", "branch": 1})]).unwrap_err();
        assert!(err.contains("spec.repos[0].branch"), "{err}");
        // Go's zero values: null is empty, a hidden repository is not cloned.
        let repos = repos_of(
            "spec.repos",
            &[
                json!({"address": "/srv/git", "repo_name": "a", "branch": null, "prs": null}),
                json!({"address": "/srv/git", "repo_name": "b", "hidden": true}),
            ],
        )
        .unwrap();
        assert_eq!(repos.len(), 1);
        assert_eq!((repos[0].branch.as_str(), repos[0].pr), ("", 0));
    }

    #[test]
    fn names_and_urls() {
        assert_eq!(repo_var("my-app.v2"), "my_app_v2");
        assert_eq!(repo_var("2fa"), "Cfa");
        let repo = |v: Value| repos_of("repos", &[v]).map(|mut r| r.remove(0));
        let g = repo(
            json!({"address": "https://gitee.com", "repo_owner": "o", "repo_name": "hello",
            "oauth_token": "tok"}),
        )
        .unwrap();
        assert_eq!(g.url, "https://oauth2:tok@gitee.com/o/hello");
        assert_eq!(url_password(&g.url).as_deref(), Some("tok"));
        let g = repo(json!({"address": "https://h", "repo_name": "x", "prs": [7, 8]})).unwrap();
        assert_eq!(g.pr, 7);
        let bad = json!({"address": "/tmp", "repo_name": "x", "checkout_path": "../up"});
        assert!(repo(bad).unwrap_err().contains("checkout_path"));
        assert!(missing_integration("sql", "database").contains("engine_integrations"));
    }
}
