//! What a job task runs: [`prepare`] hands a job task to its job type's module
//! (`workflow::jobs`, which translates its spec into a [`PreparedJob`], spec/workflow.md §5.9);
//! this file is the toolkit those modules share — variables, tools, repositories and clone
//! URLs, scripts, the job's environment ([`assemble`]) — and the list of integrations a job
//! type may need ([`INTEGRATIONS`], [`missing_integration`]): a job that needs one fails naming
//! it and the config key (`engine_integrations`) that would enable it. Never a silent pass.

use std::path::{Component, Path};
use std::time::Duration;

use serde_json::Value;

use super::executor::{GitRepo, JobContext, PreparedJob, ScriptKind, Step, Tool};
use super::logs::LogKey;
use super::render;
use crate::state::AppState;
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

pub(crate) fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
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

pub(crate) fn vars_of(list: &[Value]) -> Vec<Var> {
    list.iter()
        .filter_map(|kv| {
            let key = s(kv, "key");
            (!key.is_empty()).then(|| Var {
                key: key.to_string(),
                value: kv.get("value").map(to_text).unwrap_or_default(),
                secret: crate::masking::is_credential_var(kv),
            })
        })
        .collect()
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

pub(crate) fn installs_of(list: &[Value]) -> Vec<Tool> {
    list.iter()
        .filter_map(|i| {
            let name = s(i, "name");
            (!name.is_empty()).then(|| Tool {
                name: name.to_string(),
                version: s(i, "version").to_string(),
            })
        })
        .collect()
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
            o => s(o, "name").to_string(),
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

/// Repositories of a spec in Zadig's Repository shape.
pub(crate) fn repos_of(list: &[Value]) -> Result<Vec<GitRepo>, String> {
    list.iter()
        .enumerate()
        .filter(|(_, r)| !r.get("hidden").and_then(Value::as_bool).unwrap_or(false))
        .map(|(i, r)| repo_of(i, r))
        .collect()
}

fn repo_of(i: usize, r: &Value) -> Result<GitRepo, String> {
    let repo_name = s(r, "repo_name");
    let url_given = [s(r, "url"), s(r, "clone_url"), s(r, "http_url")]
        .into_iter()
        .find(|u| !u.is_empty());
    let name = if repo_name.is_empty() {
        url_given
            .or(Some(s(r, "address")))
            .and_then(|u| u.trim_end_matches('/').rsplit('/').next())
            .map(|n| n.trim_end_matches(".git").to_string())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("repo-{i}"))
    } else {
        repo_name.to_string()
    };
    let url = match url_given {
        Some(u) => u.to_string(),
        None => clone_url(r, &name)?,
    };
    let url = with_token(&url, s(r, "oauth_token"));
    let checkout_path = match s(r, "checkout_path") {
        "" => name.clone(),
        p => p.to_string(),
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
    let enable_commit = r
        .get("enable_commit")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let commit_id = s(r, "commit_id");
    let pr = r
        .get("pr")
        .and_then(Value::as_i64)
        .filter(|p| *p > 0)
        .or_else(|| {
            r.get("prs")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .and_then(Value::as_i64)
        })
        .unwrap_or(0);
    Ok(GitRepo {
        name,
        url,
        branch: s(r, "branch").to_string(),
        tag: s(r, "tag").to_string(),
        commit_id: if enable_commit || !commit_id.is_empty() {
            commit_id.to_string()
        } else {
            String::new()
        },
        pr,
        checkout_path,
        submodules: r
            .get("submodules")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

/// The clone URL of a repository given by its code host `address` (a URL or a local path)
/// and namespace/name.
fn clone_url(r: &Value, name: &str) -> Result<String, String> {
    let address = s(r, "address").trim_end_matches('/');
    if address.is_empty() {
        return Err(format!(
            "repo {name} has no address to clone from (address, url or clone_url)"
        ));
    }
    let ns = [s(r, "repo_namespace"), s(r, "repo_owner")]
        .into_iter()
        .find(|n| !n.is_empty())
        .unwrap_or("");
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
    use super::*;

    #[test]
    fn a_variable_flagged_other_than_false_is_a_secret() {
        let vars = vars_of(&[
            serde_json::json!({"key": "A", "value": "a", "is_credential": true}),
            serde_json::json!({"key": "B", "value": "b", "is_credential": "true"}),
            serde_json::json!({"key": "C", "value": "c", "is_credential": false}),
            serde_json::json!({"key": "D", "value": "d", "is_credential": null}),
            serde_json::json!({"key": "E", "value": "e"}),
        ]);
        let secret: Vec<bool> = vars.iter().map(|v| v.secret).collect();
        assert_eq!(secret, [true, true, false, false, false]);
    }

    #[test]
    fn names_and_urls() {
        assert_eq!(repo_var("my-app.v2"), "my_app_v2");
        assert_eq!(repo_var("2fa"), "Cfa");
        let r = serde_json::json!({"address": "https://gitee.com", "repo_owner": "o", "repo_name": "hello", "oauth_token": "tok"});
        let g = repo_of(0, &r).unwrap();
        assert_eq!(g.url, "https://oauth2:tok@gitee.com/o/hello");
        assert_eq!(url_password(&g.url).as_deref(), Some("tok"));
        let bad =
            serde_json::json!({"address": "/tmp", "repo_name": "x", "checkout_path": "../up"});
        assert!(repo_of(0, &bad).unwrap_err().contains("checkout_path"));
        assert!(missing_integration("sql", "database").contains("engine_integrations"));
    }
}
