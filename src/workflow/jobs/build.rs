//! `zadig-build`: builds one image/package per service module (spec/workflow.md §1.4, §5.9).
//! Each job task runs the build named by `build_name` (its repos, tools, `build_script`,
//! variables merged with the job's `key_vals`) with `SERVICE`, `SERVICE_NAME`,
//! `SERVICE_MODULE`, `IMAGE`, `PKG_FILE` set, pushing the image when the job names a registry;
//! its outputs are `IMAGE`, `IMAGETAG`, `PKG_FILE` and the build's declared ones.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{
    InputCx, JobKind, JobType, Runs, ServiceItem, Spec, first_listed, nullable, spec_of, stored,
    typed,
};
use crate::engine::executor::{GitRepo, JobContext, PreparedJob, ScriptKind, Step, Tool};
use crate::engine::kube::placement::{self, PlacedSpec};
use crate::engine::work::{
    Entries, Var, assemble, merge_vars, repos_of, script_step, timeout_of, valid_var_name, vars_of,
};
use crate::error::ApiResult;
use crate::state::AppState;
use crate::workflow::expand::{Expander, nothing_to_run};
use crate::workflow::inputs::{RepoMode, ServiceInput, decode, select_services};
use crate::workflow::model::Job;
use crate::workflow::task::JobTask;
use crate::workflow::{bad, lint, task_view};

/// The `zadig-build` job type.
pub struct Build;

#[async_trait::async_trait]
impl JobKind for Build {
    fn lint(&self, spec: &mut Value, field: &str) -> ApiResult<()> {
        let typed: JobSpec = decode(spec, field)?;
        for (list, items) in [
            (
                "service_and_builds_options",
                &typed.service_and_builds_options,
            ),
            ("service_and_builds", &typed.service_and_builds),
        ] {
            let mut seen = HashSet::new();
            for (k, item) in items.iter().enumerate() {
                if !seen.insert((&item.service_name, &item.service_module)) {
                    return Err(bad(
                        &format!("{field}.{list}[{k}]"),
                        "duplicate service module in options field",
                    ));
                }
                let repos = format!("{field}.{list}[{k}].repos");
                lint::check_entries(Entries::Repos, &repos, &item.repos)?;
            }
        }
        Ok(())
    }

    fn exports_env(&self) -> bool {
        true
    }

    fn takes_registry(&self) -> bool {
        true
    }

    fn apply_input(&self, cx: &InputCx<'_>, spec: &mut Spec, params: &Value) -> ApiResult<()> {
        let input: BuildInput = decode(params, cx.field)?;
        if let Some(id) = cx.registry.clone() {
            spec.insert("docker_registry_id".into(), Value::String(id));
        }
        let Some(list) = input.service_list else {
            return Ok(());
        };
        let before: JobSpec = decode(cx.before, &format!("job {}.spec", cx.job))?;
        let candidates: Vec<Value> = first_listed(
            cx.before,
            (
                "service_and_builds_options",
                &before.service_and_builds_options,
            ),
            ("service_and_builds", &before.service_and_builds),
        )
        .into_iter()
        .map(|(_, v)| v.clone())
        .collect();
        let selected = select_services(
            &candidates,
            &list,
            RepoMode::UpdateOrAdd,
            &format!("{}.service_list", cx.field),
            cx.job,
        )?;
        spec.insert("service_and_builds".into(), Value::Array(selected));
        Ok(())
    }

    fn produced(&self, job: &Job) -> ApiResult<Vec<(String, String)>> {
        self.touched_services(job)
    }

    fn expand(&self, x: &mut Expander<'_>, job: &Job) -> ApiResult<Vec<JobTask>> {
        let spec: JobSpec = spec_of(job)?;
        if spec.service_and_builds.is_empty() {
            return Err(nothing_to_run(
                &job.name,
                "no service to build: list services in inputs[].parameters.service_list",
            ));
        }
        let items = stored(&job.spec, "service_and_builds", &spec.service_and_builds);
        Ok(x.per_item(
            job,
            "service_and_builds",
            items.map(|(t, raw)| (raw, t.names())),
        ))
    }

    fn touched_services(&self, job: &Job) -> ApiResult<Vec<(String, String)>> {
        let spec: JobSpec = spec_of(job)?;
        Ok(spec
            .service_and_builds
            .iter()
            .map(ServiceItem::pair)
            .collect())
    }

    fn view(&self, job: &JobTask) -> Value {
        task_view::built_view(job, "key_vals")
    }

    fn runs(&self) -> Runs {
        Runs::Process
    }

    async fn prepare(
        &self,
        _ty: JobType,
        state: &AppState,
        ctx: &JobContext,
        spec: &Value,
    ) -> Result<PreparedJob, String> {
        prepare_job(state, ctx, spec).await
    }

    fn finish_outputs(&self, outputs: &mut BTreeMap<String, String>) {
        if let Some(image) = outputs.get("IMAGE").cloned() {
            outputs.insert("IMAGETAG".into(), image_tag(&image));
        }
    }
}

/// A `zadig-build` job's spec as defined: the service modules it may build (each with its
/// build) and those it builds. What lint reads; the definition itself is stored verbatim.
#[derive(Debug, Default, Deserialize)]
struct JobSpec {
    #[serde(default, deserialize_with = "nullable")]
    service_and_builds: Vec<ServiceItem>,
    #[serde(default, deserialize_with = "nullable")]
    service_and_builds_options: Vec<ServiceItem>,
    /// Every other field, kept as sent.
    #[serde(flatten)]
    _extra: Map<String, Value>,
}

/// A `zadig-build` job task's spec (the job's spec narrowed to one service module): what the
/// engine reads. A field of the wrong type fails the job naming it.
#[derive(Debug, Default, Deserialize)]
struct TaskSpec {
    #[serde(default, deserialize_with = "nullable")]
    service_name: String,
    #[serde(default, deserialize_with = "nullable")]
    service_module: String,
    #[serde(default, deserialize_with = "nullable")]
    build_name: String,
    #[serde(default, deserialize_with = "nullable")]
    repos: Vec<Value>,
    #[serde(default, deserialize_with = "nullable")]
    key_vals: Vec<Value>,
    /// The image registry to push to (set from the execute input's `registry`).
    #[serde(default, deserialize_with = "nullable")]
    docker_registry_id: String,
    /// The image name given outright; else it is made from `image_name` and the tag.
    #[serde(default, deserialize_with = "nullable")]
    image: String,
    #[serde(default, deserialize_with = "nullable")]
    image_name: String,
    #[serde(flatten)]
    _extra: Map<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
struct BuildInput {
    /// Checked to be a string here; resolved to a registry id by `execute::prepare`.
    #[serde(default)]
    #[expect(dead_code, reason = "decoded only to reject a non-string value")]
    registry: String,
    service_list: Option<Vec<ServiceInput>>,
}

/// A zadig-build job task: the build's recipe with the job's inputs.
async fn prepare_job(
    state: &AppState,
    ctx: &JobContext,
    spec: &Value,
) -> Result<PreparedJob, String> {
    let at = |e| format!("zadig-build job task {}: {e}", ctx.job_name);
    let placed: PlacedSpec = typed(spec).map_err(at)?;
    let spec: TaskSpec = typed(spec).map_err(at)?;
    let spec = &spec;
    let service = spec.service_name.as_str();
    let module = spec.service_module.as_str();
    let build_name = spec.build_name.as_str();
    if build_name.is_empty() {
        return Err(format!(
            "zadig-build job task {} names no build (build_name is empty)",
            ctx.job_name
        ));
    }
    let recipe = crate::build::resolve_for_job(state, &ctx.project, build_name, service, module)
        .await
        .map_err(|e| format!("build {build_name}: {}", e.description))?;
    let job_repos = &spec.repos;
    let repos = if job_repos.is_empty() {
        repos_of("repos", &recipe.repos)?
    } else {
        repos_of("spec.repos", job_repos)?
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
    let mut vars = merge_vars(base, vars_of("spec.key_vals", &spec.key_vals)?);
    let registry = registry_login(state, spec, &mut vars).await?;
    let steps = build_steps(&recipe, &repos, registry.as_ref())?;
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
    let mut job = assemble(ctx, steps, vars, (service, module), extra, outputs, timeout);
    let cluster = placement::build_cluster(state, placed.cluster_id(), &recipe).await?;
    job.placement = placement::resolve(
        &state.config,
        &placement::Runtime {
            cluster_id: &cluster,
            build_os: &recipe.build_os,
            image_from: &recipe.image_from,
            image_id: &recipe.image_id,
        },
    )?;
    Ok(job)
}

/// The build's steps: its tools, the repositories, its script, then the image step.
fn build_steps(
    recipe: &crate::build::BuildRecipe,
    repos: &[GitRepo],
    registry: Option<&crate::delivery::registry::Registry>,
) -> Result<Vec<Step>, String> {
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
        steps.push(Step::Git(repos.to_vec()));
    }
    steps.push(script_step(&recipe.script_type, &recipe.script)?);
    if let Some(d) = &recipe.docker_build {
        steps.extend(image_build_steps(d, registry)?);
    }
    Ok(steps)
}

/// The registry images are named for (and pushed to by the image step), when the job names
/// one (`docker_registry_id`); its address and login are added to `vars`.
async fn registry_login(
    state: &AppState,
    spec: &TaskSpec,
    vars: &mut Vec<Var>,
) -> Result<Option<crate::delivery::registry::Registry>, String> {
    let registry = match spec.docker_registry_id.as_str() {
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
    Ok(registry)
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
    spec: &TaskSpec,
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
    let image = match spec.image.as_str() {
        "" => {
            let name = [spec.image_name.as_str(), module, service]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_tags() {
        assert_eq!(
            image_tag("reg.io:5000/ns/app:20240101-1-main"),
            "20240101-1-main"
        );
        assert_eq!(image_tag("app"), "");
    }
}
