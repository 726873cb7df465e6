//! The definition of a build template document (`/openapi/templates/build`): Zadig's field
//! names (`pre_build`, `post_build`, …), with the seed-style fields of a build request
//! overriding their counterparts.

use super::{
    apply_advanced, apply_docker, bad, check_docker, check_outputs, check_pairs, check_resources,
    check_storages, default_def, infrastructure_of, installs_of, script_type_of, vars_of,
    with_builtin_outputs,
};
use crate::build::input::{PreBuildInput, TemplateRequest};
use crate::build::model::{BuildDef, FileArchive, Output, PostBuild, PreBuild};
use crate::error::ApiResult;
use crate::validate;

/// The definition of a template document (Zadig's field names, seed-style fields overriding).
pub fn def_of_template(req: &TemplateRequest) -> ApiResult<BuildDef> {
    let mut def = default_def();
    def.infrastructure = infrastructure_of("infrastructure", &req.infrastructure)?;
    def.vm_labels = req.vm_labels.clone();
    def.script_type = script_type_of("script_type", &req.script_type)?;
    def.scripts = req.scripts.clone();
    if req.timeout < 0 {
        return Err(bad(
            "timeout",
            format!("must not be negative, got {}", req.timeout),
        ));
    }
    if req.timeout > 0 {
        def.timeout = req.timeout;
    }
    if let Some(pre) = &req.pre_build {
        def.pre_build = pre_build_of(pre, &mut def.pre_build)?;
    }
    if let Some(post) = &req.post_build {
        def.post_build = post_build_of(post)?;
    }
    let declared: Vec<Output> = req.outputs.iter().map(|o| o.0.clone()).collect();
    check_outputs("outputs", &declared)?;
    def.outputs = with_builtin_outputs(declared);
    def.cache_enable = req.cache_enable;
    if !req.cache_dir_type.is_empty() {
        validate::one_of(
            "cache_dir_type",
            &req.cache_dir_type,
            &["workspace", "user_defined"],
        )?;
        def.cache_dir_type = req.cache_dir_type.clone();
    }
    def.cache_user_dir = req.cache_user_dir.clone();
    def.advanced_setting_modified = req.advanced_setting_modified;
    def.enable_privileged_mode = req.enable_privileged_mode;

    apply_seed_fields(&mut def, req)?;
    if def.scripts.trim().is_empty() {
        return Err(bad(
            "scripts",
            "(the build script, also accepted as `build_script`) is required",
        ));
    }
    Ok(def)
}

/// A template's `pre_build` checked, over the default one (`default`'s storages are taken
/// when the template names none).
fn pre_build_of(pre: &PreBuildInput, default: &mut PreBuild) -> ApiResult<PreBuild> {
    let spec = pre
        .res_req_spec
        .clone()
        .unwrap_or(default.res_req_spec.clone());
    check_resources("pre_build.res_req_spec", &spec)?;
    if let Some(s) = &pre.storages {
        check_storages("pre_build.storages", s)?;
    }
    check_pairs("pre_build.custom_annotations", &pre.custom_annotations)?;
    check_pairs("pre_build.custom_labels", &pre.custom_labels)?;
    validate::max_len("pre_build.build_os", &pre.build_os)?;
    Ok(PreBuild {
        clean_workspace: pre.clean_workspace,
        res_req: if pre.res_req.is_empty() {
            spec.preset().to_string()
        } else {
            pre.res_req.clone()
        },
        res_req_spec: spec,
        build_os: pre.build_os.clone(),
        image_from: pre.image_from.clone(),
        image_id: pre.image_id.clone(),
        installs: installs_of("pre_build.installs", &pre.installs)?,
        envs: vars_of("pre_build.envs", "value", &pre.envs)?,
        enable_proxy: pre.enable_proxy,
        upload_pkg: pre.upload_pkg,
        cluster_id: pre.cluster_id.clone(),
        cluster_name: pre.cluster_name.clone(),
        cluster_source: pre.cluster_source.clone(),
        strategy_id: pre.strategy_id.clone(),
        strategy_name: pre.strategy_name.clone(),
        use_host_docker_daemon: pre.use_host_docker_daemon,
        storages: pre.storages.clone().or(default.storages.take()),
        custom_annotations: pre.custom_annotations.clone(),
        custom_labels: pre.custom_labels.clone(),
        namespace: pre.namespace.clone(),
    })
}

/// A template's `post_build` checked; an archive without a location is none.
fn post_build_of(post: &PostBuild) -> ApiResult<PostBuild> {
    if let Some(d) = &post.docker_build {
        check_docker("post_build.docker_build", d)?;
    }
    Ok(PostBuild {
        file_archive: post
            .file_archive
            .clone()
            .filter(|f: &FileArchive| !f.file_location.is_empty()),
        ..post.clone()
    })
}

/// The seed-style fields of a template request, which override their document counterparts.
fn apply_seed_fields(def: &mut BuildDef, req: &TemplateRequest) -> ApiResult<()> {
    if let Some(os) = &req.build_os {
        validate::max_len("build_os", os)?;
        def.pre_build.build_os = os.clone();
    }
    if let Some(i) = &req.installs {
        def.pre_build.installs = installs_of("installs", i)?;
    }
    if let Some(envs) = &req.envs {
        def.pre_build.envs = vars_of("envs", "value", envs)?;
    }
    if let Some(p) = &req.parameters {
        def.pre_build.envs = vars_of("parameters", "default_value", p)?;
    }
    if let Some(step) = &req.docker_build_step.0 {
        apply_docker(def, "docker_build_step", step)?;
    }
    if let Some(adv) = &req.advanced_settings.0 {
        let declared = std::mem::take(&mut def.outputs);
        apply_advanced(def, "advanced_settings", adv)?;
        // Outputs declared at the top level stay declared.
        def.outputs = with_builtin_outputs(declared.into_iter().chain(def.outputs.clone()));
    }
    Ok(())
}
