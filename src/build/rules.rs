//! The checks and conversions from request bodies to the stored model (spec/build.md §4.3,
//! §6.1–6.2; DESIGN.md §5). Every failure is a 400 whose description names the field as the
//! client sent it (`parameters[1].type`, `pre_build.envs[0].value`).

use std::fmt;

use super::input::{
    AdvancedSettingsInput, BuildRequest, DockerBuildStepInput, Installs, ParameterInput, RepoInput,
    ServiceWithModule, TargetServiceInput, TemplateBuildRequest,
};
use super::model::{
    BUILTIN_OUTPUTS, BuildDef, DockerBuild, INFRASTRUCTURES, Install, KeyVal, MASK, Output, Pair,
    PreBuild, Repository, ResourceSpec, SCRIPT_TYPES, Storages, Target, merge_vars, var_type,
};
use crate::error::{ApiError, ApiResult};
use crate::validate;

mod template;

pub use template::def_of_template;

// ---------------------------------------------------------------------------------------------
// Checks

fn bad(field: &str, what: impl fmt::Display) -> ApiError {
    ApiError::bad_request(format!("`{field}` {what}"))
}

/// A name a script can use as an environment variable.
fn check_env_name(field: &str, v: &str) -> ApiResult<()> {
    if crate::limits::is_env_name(v) {
        validate::max_len(field, v)
    } else {
        Err(bad(
            field,
            format!(
                "must be a variable name (letters, digits, `_`, not starting with a digit), got {v:?}"
            ),
        ))
    }
}

/// The project of a build request: the body's `project_key`, else the `projectKey` query; they
/// may not disagree.
pub fn project_of(body: &str, query: Option<&str>) -> ApiResult<String> {
    let query = query.map(str::trim).filter(|q| !q.is_empty());
    let body = body.trim();
    match (body.is_empty(), query) {
        (true, None) => Err(bad("project_key", "is required")),
        (true, Some(q)) => {
            validate::name("projectKey", q)?;
            Ok(q.to_string())
        }
        (false, Some(q)) if q != body => Err(bad(
            "projectKey",
            format!("({q:?}) does not match the body's `project_key` ({body:?})"),
        )),
        (false, _) => {
            validate::name("project_key", body)?;
            Ok(body.to_string())
        }
    }
}

/// Parameters → variables, checking keys, types and choices. `value_field` is what the client
/// calls the value (`default_value` in build parameters, `value` in template `envs`).
fn vars_of(field: &str, value_field: &str, params: &[ParameterInput]) -> ApiResult<Vec<KeyVal>> {
    let mut out: Vec<KeyVal> = Vec::with_capacity(params.len());
    for (i, p) in params.iter().enumerate() {
        let f = |k: &str| format!("{field}[{i}].{k}");
        check_env_name(&f("key"), &p.key)?;
        if out.iter().any(|o| o.key == p.key) {
            return Err(bad(&f("key"), format!("{:?} is defined twice", p.key)));
        }
        let kind = if p.kind.is_empty() {
            var_type::STRING
        } else {
            p.kind.as_str()
        };
        validate::one_of(&f("type"), kind, var_type::ALL)?;
        if kind == var_type::CHOICE && !p.choice_option.contains(&p.default_value) {
            return Err(bad(
                &f(value_field),
                format!(
                    "{:?} is not one of `choice_option` {:?}",
                    p.default_value, p.choice_option
                ),
            ));
        }
        if kind == var_type::MULTI_SELECT
            && let Some(v) = p.choice_value.iter().find(|v| !p.choice_option.contains(v))
        {
            return Err(bad(
                &f("choice_value"),
                format!("{v:?} is not one of `choice_option` {:?}", p.choice_option),
            ));
        }
        out.push(KeyVal {
            key: p.key.clone(),
            value: p.default_value.clone(),
            kind: kind.to_string(),
            choice_option: p.choice_option.clone(),
            choice_value: p.choice_value.clone(),
            is_credential: p.is_credential,
            description: p.description.clone(),
        });
    }
    Ok(out)
}

fn installs_of(field: &str, installs: &Installs) -> ApiResult<Vec<Install>> {
    for (i, inst) in installs.0.iter().enumerate() {
        if inst.name.trim().is_empty() {
            return Err(bad(&format!("{field}[{i}].name"), "is required"));
        }
    }
    Ok(installs.0.clone())
}

fn check_resources(field: &str, spec: &ResourceSpec) -> ApiResult<()> {
    for (k, v) in [
        ("cpu_limit", spec.cpu_limit),
        ("memory_limit", spec.memory_limit),
        ("cpu_req", spec.cpu_req),
        ("memory_req", spec.memory_req),
    ] {
        if v < 0 {
            return Err(bad(
                &format!("{field}.{k}"),
                format!("must not be negative, got {v}"),
            ));
        }
    }
    let gpu: String = spec
        .gpu_limit
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    if !gpu.is_empty() {
        let ok = gpu.split_once(':').is_some_and(|(res, qty)| {
            !res.is_empty() && qty.parse::<f64>().is_ok_and(|q| q >= 0.0)
        });
        if !ok {
            return Err(bad(
                &format!("{field}.gpu_limit"),
                format!(
                    "must be `<resource>:<quantity>` such as `nvidia.com/gpu: 1`, got {:?}",
                    spec.gpu_limit
                ),
            ));
        }
    }
    Ok(())
}

fn check_storages(field: &str, s: &Storages) -> ApiResult<()> {
    const MODES: &[&str] = &[
        "ReadWriteOnce",
        "ReadOnlyMany",
        "ReadWriteMany",
        "ReadWriteOncePod",
    ];
    for (i, p) in s.storages_properties.iter().enumerate() {
        let f = |k: &str| format!("{field}.storages_properties[{i}].{k}");
        validate::one_of(
            &f("provision_type"),
            &p.provision_type,
            &["dynamic", "static"],
        )?;
        if !p.access_mode.is_empty() {
            validate::one_of(&f("access_mode"), &p.access_mode, MODES)?;
        }
        if s.enabled && p.mount_path.trim().is_empty() {
            return Err(bad(&f("mount_path"), "is required"));
        }
        if p.storage_size_in_gib < 0 {
            return Err(bad(&f("storage_size_in_gib"), "must not be negative"));
        }
    }
    Ok(())
}

fn check_pairs(field: &str, pairs: &[Pair]) -> ApiResult<()> {
    for (i, p) in pairs.iter().enumerate() {
        let at = format!("{field}[{i}].key");
        if p.key.trim().is_empty() {
            return Err(bad(&at, "is required"));
        }
        validate::max_len(&at, &p.key)?;
    }
    Ok(())
}

fn check_outputs(field: &str, outputs: &[Output]) -> ApiResult<()> {
    for (i, o) in outputs.iter().enumerate() {
        check_env_name(&format!("{field}[{i}]"), &o.name)?;
    }
    Ok(())
}

/// IMAGE and PKG_FILE first, then the declared outputs (each once).
fn with_builtin_outputs(declared: impl IntoIterator<Item = Output>) -> Vec<Output> {
    let mut out: Vec<Output> = BUILTIN_OUTPUTS
        .iter()
        .map(|n| Output {
            name: (*n).to_string(),
            description: String::new(),
        })
        .collect();
    for o in declared {
        match out.iter_mut().find(|e| e.name == o.name) {
            Some(e) if e.description.is_empty() => e.description = o.description,
            Some(_) => {}
            None => out.push(o),
        }
    }
    out
}

fn script_type_of(field: &str, v: &str) -> ApiResult<String> {
    let v = if v.is_empty() { "shell" } else { v };
    validate::one_of(field, v, SCRIPT_TYPES)?;
    Ok(v.to_string())
}

fn infrastructure_of(field: &str, v: &str) -> ApiResult<String> {
    let v = if v.is_empty() { "kubernetes" } else { v };
    validate::one_of(field, v, INFRASTRUCTURES)?;
    Ok(v.to_string())
}

fn check_docker(field: &str, d: &DockerBuild) -> ApiResult<()> {
    validate::one_of(
        &format!("{field}.source"),
        &d.source,
        &["local", "template"],
    )?;
    if d.source == "template" && d.template_name.trim().is_empty() {
        return Err(bad(
            &format!("{field}.template_name"),
            "is required when the Dockerfile source is `template`",
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Conversions

/// The definition Zadig gives a build created without `advanced_settings` (spec/build.md §4.3).
fn default_def() -> BuildDef {
    BuildDef {
        timeout: 60,
        pre_build: PreBuild {
            res_req: "low".into(),
            res_req_spec: ResourceSpec {
                cpu_limit: 1000,
                memory_limit: 512,
                ..ResourceSpec::default()
            },
            storages: Some(Storages::default()),
            ..PreBuild::default()
        },
        cache_dir_type: "workspace".into(),
        outputs: with_builtin_outputs([]),
        ..BuildDef::default()
    }
}

fn apply_docker(def: &mut BuildDef, field: &str, step: &DockerBuildStepInput) -> ApiResult<()> {
    let src = step.dockerfile_source.trim();
    validate::one_of(
        &format!("{field}.dockerfile_source"),
        src,
        &["local", "template"],
    )?;
    if src == "template" && step.template_name.trim().is_empty() {
        return Err(bad(
            &format!("{field}.template_name"),
            "is required when `dockerfile_source` is `template`",
        ));
    }
    def.post_build.docker_build = Some(DockerBuild {
        work_dir: step.build_context_dir.trim().to_string(),
        docker_file: if src == "local" {
            step.dockerfile_directory.trim().to_string()
        } else {
            String::new()
        },
        build_args: step.build_args.clone(),
        source: src.to_string(),
        template_id: String::new(),
        template_name: if src == "template" {
            step.template_name.clone()
        } else {
            String::new()
        },
        enable_buildkit: step.enable_buildkit,
        platform: step.platforms.clone(),
    });
    Ok(())
}

fn apply_advanced(def: &mut BuildDef, field: &str, adv: &AdvancedSettingsInput) -> ApiResult<()> {
    let timeout = adv.timeout.unwrap_or(0);
    if timeout < 0 {
        return Err(bad(
            &format!("{field}.timeout"),
            format!("must not be negative, got {timeout}"),
        ));
    }
    validate::max_len(&format!("{field}.cluster_name"), &adv.cluster_name)?;
    validate::max_len(&format!("{field}.strategy_name"), &adv.strategy_name)?;
    let spec = adv.resource_spec.clone().unwrap_or_default();
    check_resources(&format!("{field}.resource_spec"), &spec)?;
    if let Some(s) = &adv.storages {
        check_storages(&format!("{field}.storages"), s)?;
    }
    check_pairs(
        &format!("{field}.custom_annotations"),
        &adv.custom_annotations,
    )?;
    check_pairs(&format!("{field}.custom_labels"), &adv.custom_labels)?;
    let declared: Vec<Output> = adv.outputs.iter().map(|o| o.0.clone()).collect();
    check_outputs(&format!("{field}.outputs"), &declared)?;
    let cache = adv.cache_setting.clone().unwrap_or_default();
    if cache.enabled && cache.cache_dir.trim().is_empty() {
        return Err(bad(
            &format!("{field}.cache_setting.cache_dir"),
            "is required when the cache is enabled",
        ));
    }

    def.advanced_setting_modified = true;
    def.timeout = if timeout == 0 { 60 } else { timeout };
    let pre = &mut def.pre_build;
    pre.cluster_name = adv.cluster_name.clone();
    pre.strategy_name = adv.strategy_name.clone();
    pre.res_req = spec.preset().to_string();
    pre.res_req_spec = spec;
    pre.use_host_docker_daemon = adv.use_host_docker_daemon;
    if adv.storages.is_some() {
        pre.storages = adv.storages.clone();
    }
    pre.custom_annotations = adv.custom_annotations.clone();
    pre.custom_labels = adv.custom_labels.clone();
    def.cache_enable = cache.enabled;
    if cache.enabled {
        def.cache_dir_type = "user_defined".into();
        def.cache_user_dir = cache.cache_dir;
    } else {
        def.cache_dir_type = String::new();
        def.cache_user_dir = String::new();
    }
    def.enable_privileged_mode = adv.privileged_mode;
    def.outputs = with_builtin_outputs(declared);
    Ok(())
}

/// Repositories as stored (spec/build.md §4.3 "Repositories").
pub fn repos_of(field: &str, repos: &[RepoInput]) -> ApiResult<Vec<Repository>> {
    repos
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if r.repo_name.trim().is_empty() {
                return Err(bad(&format!("{field}[{i}].repo_name"), "is required"));
            }
            let owner = r.repo_namespace.trim().to_string();
            Ok(Repository {
                source: r.source.clone(),
                codehost_name: r.codehost_name.clone(),
                address: r.address.clone(),
                repo_owner: owner.clone(),
                repo_namespace: owner,
                repo_name: r.repo_name.trim().to_string(),
                branch: r.branch.clone(),
                tag: r.tag.clone(),
                pr: r.pr,
                prs: r.prs.clone(),
                enable_commit: r.enable_commit,
                commit_id: r.commit_id.clone(),
                remote_name: r.remote_name.clone(),
                submodules: r.submodules.unwrap_or(false),
                checkout_path: r.checkout_path.clone(),
                hidden: false,
            })
        })
        .collect()
}

/// The services of a build: at least one, each with a name and a module.
pub fn services_of(services: Option<&[ServiceWithModule]>) -> ApiResult<Vec<(String, String)>> {
    let list = services.unwrap_or_default();
    if list.is_empty() {
        return Err(bad("services", "must name at least one service"));
    }
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            validate::name(&format!("services[{i}].service_name"), &s.service_name)?;
            validate::name(&format!("services[{i}].service_module"), &s.service_module)?;
            Ok((s.service_name.clone(), s.service_module.clone()))
        })
        .collect()
}

/// The definition of a full build request (spec/build.md §4.3).
pub fn def_of_build(req: &BuildRequest) -> ApiResult<BuildDef> {
    if req.build_script.trim().is_empty() {
        return Err(bad("build_script", "is required"));
    }
    let mut def = default_def();
    def.infrastructure = infrastructure_of("infrastructure", &req.infrastructure)?;
    def.vm_labels = req.vm_labels.clone();
    def.script_type = script_type_of("script_type", &req.script_type)?;
    def.scripts = req.build_script.clone();
    validate::max_len("build_os", &req.build_os)?;
    def.pre_build.build_os = req.build_os.clone();
    def.pre_build.installs = installs_of("installs", &req.installs)?;
    def.pre_build.envs = vars_of("parameters", "default_value", &req.parameters)?;
    if let Some(step) = &req.docker_build_step.0 {
        apply_docker(&mut def, "docker_build_step", step)?;
    }
    if let Some(adv) = &req.advanced_settings.0 {
        apply_advanced(&mut def, "advanced_settings", adv)?;
    }
    Ok(def)
}

/// The `target_services` of a template build request: at least one.
pub fn target_list(req: &TemplateBuildRequest) -> ApiResult<&[TargetServiceInput]> {
    match req.target_services.as_deref() {
        Some(list) if !list.is_empty() => Ok(list),
        _ => Err(bad(
            "target_services",
            "must have at least one item in it (target_service must have at least one item in it)",
        )),
    }
}

/// A template build's services: each with a name and a module; inputs checked
/// against the template's variables and merged over them (spec/build.md §6.1).
pub fn targets_of(list: &[TargetServiceInput], template_vars: &[KeyVal]) -> ApiResult<Vec<Target>> {
    let mut out: Vec<Target> = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        let f = |k: &str| format!("target_services[{i}].{k}");
        validate::name(&f("service_name"), &t.service_name)?;
        validate::name(&f("service_module"), &t.service_module)?;
        if out
            .iter()
            .any(|o| o.service_name == t.service_name && o.service_module == t.service_module)
        {
            return Err(bad(
                &f("service_module"),
                format!("{}/{} is listed twice", t.service_name, t.service_module),
            ));
        }
        let mut inputs = Vec::with_capacity(t.inputs.len());
        for (j, kv) in t.inputs.iter().enumerate() {
            let field = format!("target_services[{i}].inputs[{j}]");
            if kv.key.trim().is_empty() {
                return Err(bad(&format!("{field}.key"), "is required"));
            }
            check_env_name(&format!("{field}.key"), &kv.key)?;
            if let Some(kind) = kv.kind.as_deref().filter(|k| !k.is_empty()) {
                validate::one_of(&format!("{field}.type"), kind, var_type::ALL)?;
            }
            inputs.push(KeyVal {
                key: kv.key.clone(),
                value: kv.value.clone(),
                kind: kv.kind.clone().unwrap_or_default(),
                choice_value: kv.choice_value.clone(),
                is_credential: kv.is_credential.unwrap_or(false),
                ..KeyVal::default()
            });
        }
        let merged = merge_vars(template_vars, &inputs);
        for (j, kv) in t.inputs.iter().enumerate() {
            let Some(m) = merged.iter().find(|e| e.key == kv.key && e.value != MASK) else {
                continue;
            };
            if m.kind == var_type::CHOICE
                && !m.choice_option.is_empty()
                && !m.choice_option.contains(&m.value)
            {
                return Err(bad(
                    &format!("target_services[{i}].inputs[{j}].value"),
                    format!(
                        "{:?} is not one of the template's choices {:?}",
                        m.value, m.choice_option
                    ),
                ));
            }
        }
        // Only the inputs are kept (of variables the template defines; Zadig drops the others):
        // they are merged over the template's current variables whenever the build is read or
        // run, so later template changes (types, options, new variables) apply.
        inputs.retain(|kv| template_vars.iter().any(|t| t.key == kv.key));
        out.push(Target {
            service_name: t.service_name.clone(),
            service_module: t.service_module.clone(),
            repos: repos_of(&f("repo_info"), &t.repo_info)?,
            envs: inputs,
        });
    }
    Ok(out)
}
