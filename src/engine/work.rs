//! What a job task runs: the translation of a job type's spec into a [`PreparedJob`]
//! (spec/workflow.md §5.9).
//!
//! - `freestyle`: its steps in order — tools (checked on the PATH), git (repositories cloned),
//!   the script (bash) — in the legacy `properties`/`steps` format or the current one
//!   (`runtime.installs`, `repos`, `script`, `envs`, `advanced_setting`);
//! - `zadig-build`: the build named by `build_name` (its repos, tools, `build_script`,
//!   variables merged with the job's `key_vals`) with `SERVICE`, `SERVICE_NAME`,
//!   `SERVICE_MODULE`, `IMAGE`, `PKG_FILE`; outputs `IMAGE`, `IMAGETAG`, `PKG_FILE`;
//! - every other type needs an integration this server does not have (a cluster, hosts, a
//!   container runtime, an external service): the job fails naming the integration and the
//!   config key (`engine_integrations`) that would enable it. Never a silent pass.

use std::path::{Component, Path};
use std::time::Duration;

use serde_json::Value;

use super::executor::{GitRepo, JobContext, PreparedJob, ScriptKind, Step, Tool};
use super::logs::LogKey;
use super::render;
use crate::state::AppState;

/// Job timeout when none (or ≤ 0) is set, in minutes (Zadig's).
pub const DEFAULT_TIMEOUT_MINUTES: i64 = 600;

pub use crate::config::INTEGRATIONS;

/// The integration a job type needs, when it cannot run as a local process.
pub fn integration_for(job_type: &str) -> &'static str {
    match job_type {
        "zadig-deploy"
        | "zadig-helm-chart-deploy"
        | "custom-deploy"
        | "zadig-restart"
        | "k8s-blue-green-deploy"
        | "k8s-blue-green-release"
        | "k8s-canary-deploy"
        | "k8s-canary-release"
        | "k8s-gray-release"
        | "k8s-gray-rollback"
        | "k8s-resource-patch"
        | "istio-release"
        | "istio-rollback"
        | "update-env-istio-config"
        | "offline-service"
        | "mse-gray-release"
        | "mse-gray-offline" => "kubernetes",
        "zadig-vm-deploy" => "vm-agent",
        "plugin" => "container-runtime",
        "sql" | "dms" => "database",
        "nacos" => "nacos",
        "apollo" => "apollo",
        "tapd" => "tapd",
        "jira" => "jira",
        "pingcode" => "pingcode",
        "meego-transition" => "meego",
        "jenkins" => "jenkins",
        "grafana" => "grafana",
        "guanceyun-check" => "guanceyun",
        "blueking" => "blueking",
        "apisix" => "apisix",
        "sae-deploy" => "sae",
        "notification" => "im",
        "ai-release-specialist" | "ai-task" => "ai",
        "zadig-distribute-image" => "image-registry",
        "zadig-test" => "testing",
        "zadig-scanning" => "scanning",
        "workflow-trigger" => "workflow-trigger",
        _ => "",
    }
}

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

/// Translate a job task into a [`PreparedJob`], or say why it cannot run.
pub async fn prepare(state: &AppState, ctx: &JobContext) -> Result<PreparedJob, String> {
    let spec = render::render_value(&ctx.spec, &ctx.context);
    match ctx.job_type.as_str() {
        "freestyle" => freestyle(ctx, &spec),
        "zadig-build" => build(state, ctx, &spec).await,
        other => match integration_for(other) {
            "" => Err(format!("job type {other} is not supported by the engine")),
            integration => Err(missing_integration(other, integration)),
        },
    }
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn arr<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
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
struct Var {
    key: String,
    value: String,
    secret: bool,
}

fn vars_of(list: &[Value]) -> Vec<Var> {
    list.iter()
        .filter_map(|kv| {
            let key = s(kv, "key");
            (!key.is_empty()).then(|| Var {
                key: key.to_string(),
                value: kv.get("value").map(to_text).unwrap_or_default(),
                secret: kv
                    .get("is_credential")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            })
        })
        .collect()
}

/// `over` replaces same-key entries of `base` (keeping a credential flag set on either).
fn merge_vars(base: Vec<Var>, over: Vec<Var>) -> Vec<Var> {
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

fn installs_of(list: &[Value]) -> Vec<Tool> {
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

fn timeout_of(minutes: Option<i64>) -> Duration {
    let m = minutes
        .filter(|m| *m > 0)
        .unwrap_or(DEFAULT_TIMEOUT_MINUTES);
    Duration::from_secs(u64::try_from(m).unwrap_or(600).saturating_mul(60))
}

fn output_names(list: &[Value]) -> Vec<String> {
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

/// A freestyle job: legacy `properties` + `steps`, or the current format.
fn freestyle(ctx: &JobContext, spec: &Value) -> Result<PreparedJob, String> {
    let props = spec.get("properties").unwrap_or(&Value::Null);
    let adv = spec.get("advanced_setting").unwrap_or(&Value::Null);
    let mut steps = Vec::new();
    let legacy_steps = arr(spec, "steps");
    if legacy_steps.is_empty() {
        let installs = installs_of(arr(spec.get("runtime").unwrap_or(&Value::Null), "installs"));
        if !installs.is_empty() {
            steps.push(Step::Tools(installs));
        }
        let repos = repos_of(arr(spec, "repos"))?;
        if !repos.is_empty() {
            steps.push(Step::Git(repos));
        }
        let script = s(spec, "script");
        steps.push(script_step(s(spec, "script_type"), script)?);
        if spec
            .get("object_storage_upload")
            .and_then(|o| o.get("enabled"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            return Err(missing_integration(
                "freestyle (object_storage_upload)",
                "object-storage",
            ));
        }
    } else {
        for step in legacy_steps {
            let sspec = step.get("spec").unwrap_or(&Value::Null);
            match s(step, "type") {
                "tools" => steps.push(Step::Tools(installs_of(arr(sspec, "installs")))),
                "git" => steps.push(Step::Git(repos_of(arr(sspec, "repos"))?)),
                t @ ("shell" | "batch_file" | "powershell") => {
                    steps.push(script_step(t, s(sspec, "script"))?);
                }
                "archive" | "object_storage_upload" => {
                    return Err(missing_integration(
                        "freestyle (archive step)",
                        "object-storage",
                    ));
                }
                "perforce" => {
                    return Err(missing_integration("freestyle (perforce step)", "perforce"));
                }
                "debug_before" | "debug_after" | "" => {}
                other => return Err(format!("freestyle step type {other} is not supported")),
            }
        }
    }
    let vars = merge_vars(
        merge_vars(vars_of(arr(props, "envs")), vars_of(arr(spec, "envs"))),
        vars_of(arr(spec, "key_vals")),
    );
    let timeout = props
        .get("timeout")
        .or_else(|| adv.get("timeout"))
        .or_else(|| spec.get("timeout"))
        .and_then(Value::as_i64);
    let mut outputs = output_names(arr(adv, "outputs"));
    outputs.extend(output_names(arr(spec, "outputs")));
    outputs.dedup();
    let service = (s(spec, "service_name"), s(spec, "service_module"));
    let mut extra = Vec::new();
    if !service.0.is_empty() {
        extra.push(("SERVICE_NAME".to_string(), service.0.to_string()));
        extra.push(("SERVICE_MODULE".to_string(), service.1.to_string()));
    }
    Ok(assemble(
        ctx,
        steps,
        vars,
        service,
        extra,
        outputs,
        timeout_of(timeout),
    ))
}

fn script_step(script_type: &str, script: &str) -> Result<Step, String> {
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

/// A zadig-build job task: the build's recipe with the job's inputs.
async fn build(state: &AppState, ctx: &JobContext, spec: &Value) -> Result<PreparedJob, String> {
    let service = s(spec, "service_name");
    let module = s(spec, "service_module");
    let build_name = s(spec, "build_name");
    if build_name.is_empty() {
        return Err(format!(
            "zadig-build job task {} names no build (build_name is empty)",
            ctx.job_name
        ));
    }
    let recipe = crate::build::resolve_for_job(state, &ctx.project, build_name, service, module)
        .await
        .map_err(|e| format!("build {build_name}: {}", e.description))?;
    let job_repos = arr(spec, "repos");
    let repos = if job_repos.is_empty() {
        repos_of(&recipe.repos)?
    } else {
        repos_of(job_repos)?
    };
    let base: Vec<Var> = recipe
        .vars
        .iter()
        .map(|v| Var {
            key: v.key.clone(),
            value: v.value.clone(),
            secret: v.is_credential,
        })
        .collect();
    let mut vars = merge_vars(base, vars_of(arr(spec, "key_vals")));
    // The registry images are named for (and pushed to by the image step), when set.
    let registry = match s(spec, "docker_registry_id") {
        "" => None,
        id => Some(
            state
                .delivery
                .registries
                .registry(id)
                .await
                .map_err(|e| format!("cannot read image registry {id}: {e}"))?
                .ok_or_else(|| {
                    format!("image registry {id} (docker_registry_id) is not configured")
                })?,
        ),
    };
    if let Some(r) = &registry {
        // An ECR registry's AWS keys are exchanged for a docker login.
        let (user, password) = state
            .delivery
            .login(r, state.clock.now_ms())
            .await
            .map_err(|e| format!("image registry {} (docker_registry_id): {e}", r.id))?;
        for (key, value, secret) in [
            ("DOCKER_REGISTRY_HOST", r.address.clone(), false),
            ("DOCKER_REGISTRY_NAMESPACE", r.namespace.clone(), false),
            ("DOCKER_REGISTRY_AK", user, false),
            ("DOCKER_REGISTRY_SK", password, true),
        ] {
            vars.push(Var {
                key: key.to_string(),
                value,
                secret,
            });
        }
    }
    let mut steps = Vec::new();
    let installs: Vec<Tool> = recipe
        .installs
        .iter()
        .map(|(n, v)| Tool {
            name: n.clone(),
            version: v.clone(),
        })
        .collect();
    if !installs.is_empty() {
        steps.push(Step::Tools(installs));
    }
    if !repos.is_empty() {
        steps.push(Step::Git(repos.clone()));
    }
    steps.push(script_step(&recipe.script_type, &recipe.script)?);
    if let Some(d) = &recipe.docker_build {
        steps.extend(image_build_steps(d, registry.as_ref())?);
    }
    let registry_key = registry
        .as_ref()
        .map(crate::delivery::registry::Registry::key);
    let (image, pkg) = image_and_package(
        state,
        ctx,
        spec,
        (service, module),
        &repos,
        registry_key.as_deref(),
    );
    let mut outputs = vec!["IMAGE".to_string(), "PKG_FILE".to_string()];
    for o in &recipe.outputs {
        if valid_var_name(o) && !outputs.contains(o) {
            outputs.push(o.clone());
        }
    }
    let extra = vec![
        ("SERVICE".to_string(), service.to_string()),
        ("SERVICE_NAME".to_string(), service.to_string()),
        ("SERVICE_MODULE".to_string(), module.to_string()),
        ("IMAGE".to_string(), image),
        ("PKG_FILE".to_string(), pkg),
    ];
    let timeout = timeout_of(Some(recipe.timeout_minutes));
    Ok(assemble(
        ctx,
        steps,
        vars,
        (service, module),
        extra,
        outputs,
        timeout,
    ))
}

/// The build's image step (`post_build.docker_build`): `docker build -t $IMAGE` of the
/// Dockerfile in the workspace (then `docker login` + `docker push` when the job has a
/// registry), after checking docker is on the PATH. A Dockerfile template needs the template
/// store, which this server does not have.
fn image_build_steps(
    d: &crate::build::DockerBuild,
    registry: Option<&crate::delivery::registry::Registry>,
) -> Result<Vec<Step>, String> {
    if d.source == "template" {
        return Err(format!(
            "the image build uses the Dockerfile template {:?}, but this server has no Dockerfile templates",
            d.template_name
        ));
    }
    let q = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let dir = if d.work_dir.is_empty() {
        "."
    } else {
        d.work_dir.as_str()
    };
    let file = if d.docker_file.is_empty() {
        "Dockerfile"
    } else {
        d.docker_file.as_str()
    };
    let mut cmd = String::from("set -e\n");
    if d.enable_buildkit {
        cmd.push_str("export DOCKER_BUILDKIT=1\n");
    }
    cmd.push_str("docker build --rm=true");
    if !d.platform.is_empty() {
        cmd.push_str(&format!(" --platform {}", q(&d.platform)));
    }
    // build_args is a command-line fragment in Zadig (e.g. `--build-arg A=1`).
    if !d.build_args.trim().is_empty() {
        cmd.push(' ');
        cmd.push_str(d.build_args.trim());
    }
    cmd.push_str(&format!(" -t \"$IMAGE\" -f {} {}\n", q(file), q(dir)));
    if let Some(r) = registry {
        cmd.push_str(&format!(
            "printf '%s' \"$DOCKER_REGISTRY_SK\" | docker login -u \"$DOCKER_REGISTRY_AK\" --password-stdin {}\n\
             docker push \"$IMAGE\"\n",
            q(&r.host())
        ));
    }
    Ok(vec![
        Step::Tools(vec![Tool {
            name: "docker".into(),
            version: String::new(),
        }]),
        Step::Script {
            kind: ScriptKind::Bash,
            script: cmd,
        },
    ])
}

/// IMAGE and PKG_FILE of a build: the job's `image` when set, else
/// `[<registry host>/<namespace>/]<image_name>:<YYYYMMDDHHMMSS>-<task id>[-<branch|tag|pr>]`;
/// the package `<module>-<YYYYMMDDHHMMSS>-<task id>[-<ref>].tar.gz` (Zadig's naming).
fn image_and_package(
    state: &AppState,
    ctx: &JobContext,
    spec: &Value,
    (service, module): (&str, &str),
    repos: &[GitRepo],
    registry: Option<&str>,
) -> (String, String) {
    let stamp = chrono::DateTime::from_timestamp_millis(state.clock.now_ms())
        .map(|t| t.format("%Y%m%d%H%M%S").to_string())
        .unwrap_or_default();
    let reference = repos.first().map(|r| {
        if r.pr > 0 {
            format!("pr-{}", r.pr)
        } else if !r.tag.is_empty() {
            r.tag.clone()
        } else {
            r.branch.clone()
        }
    });
    let mut tag = format!("{stamp}-{}", ctx.task_id);
    if let Some(r) = reference.filter(|r| !r.is_empty()) {
        tag.push('-');
        tag.push_str(&r.replace('/', "-"));
    }
    let image = match s(spec, "image") {
        "" => {
            let name = [s(spec, "image_name"), module, service]
                .into_iter()
                .find(|n| !n.is_empty())
                .unwrap_or("image");
            match registry {
                Some(r) if !r.is_empty() => format!("{}/{name}:{tag}", r.trim_end_matches('/')),
                _ => format!("{name}:{tag}"),
            }
        }
        given => given.to_string(),
    };
    let pkg_name = if module.is_empty() { service } else { module };
    (image, format!("{pkg_name}-{tag}.tar.gz"))
}

/// The tag of an image reference (after the last `:` of its last path segment).
pub fn image_tag(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    let no_digest = last.split('@').next().unwrap_or(last);
    no_digest
        .split_once(':')
        .map(|(_, t)| t.to_string())
        .unwrap_or_default()
}

/// Put a job together: its environment (workflow params < job variables < built-ins).
fn assemble(
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
fn repos_of(list: &[Value]) -> Result<Vec<GitRepo>, String> {
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
    fn names_and_urls() {
        assert_eq!(repo_var("my-app.v2"), "my_app_v2");
        assert_eq!(repo_var("2fa"), "Cfa");
        assert_eq!(
            image_tag("reg.io:5000/ns/app:20240101-1-main"),
            "20240101-1-main"
        );
        assert_eq!(image_tag("app"), "");
        let r = serde_json::json!({"address": "https://gitee.com", "repo_owner": "o", "repo_name": "hello", "oauth_token": "tok"});
        let g = repo_of(0, &r).unwrap();
        assert_eq!(g.url, "https://oauth2:tok@gitee.com/o/hello");
        assert_eq!(url_password(&g.url).as_deref(), Some("tok"));
        let bad =
            serde_json::json!({"address": "/tmp", "repo_name": "x", "checkout_path": "../up"});
        assert!(repo_of(0, &bad).unwrap_err().contains("checkout_path"));
        assert!(
            missing_integration("zadig-deploy", integration_for("zadig-deploy"))
                .contains("engine_integrations")
        );
    }
}
