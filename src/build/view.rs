//! What the build and template routes answer (seed 004 "Query Build List" and "Get Build
//! Details", spec/build.md §7–8; template documents per spec §3.7). Credential values never
//! leave the server: every `is_credential` value is shown as `********`.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::model::{
    Build, BuildDef, BuildTemplate, DockerBuild, FileArchive, Install, KeyVal, MASK, Output, Pair,
    Repository, ResourceSpec, Storages, Target,
};

/// A bound service (name and module only).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TargetService {
    pub service_name: String,
    pub service_module: String,
}

impl From<&Target> for TargetService {
    fn from(t: &Target) -> Self {
        Self {
            service_name: t.service_name.clone(),
            service_module: t.service_module.clone(),
        }
    }
}

/// One build in the list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BuildBrief {
    pub name: String,
    pub project_key: String,
    /// `zadig`.
    pub source: String,
    pub update_by: String,
    pub update_time: i64,
    pub target_services: Vec<TargetService>,
}

impl From<&Build> for BuildBrief {
    fn from(b: &Build) -> Self {
        Self {
            name: b.name.clone(),
            project_key: b.project_key.clone(),
            source: b.source.clone(),
            update_by: b.update_by.clone(),
            update_time: b.update_time,
            target_services: b.targets.iter().map(Into::into).collect(),
        }
    }
}

/// `GET /openapi/build` answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BuildList {
    pub total: u64,
    pub builds: Vec<BuildBrief>,
}

/// A repository of the build detail (seed keys, plus the code host and namespace).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RepoView {
    pub source: String,
    pub codehost_name: String,
    pub repo_owner: String,
    pub repo_namespace: String,
    pub repo_name: String,
    pub remote_name: String,
    pub branch: String,
    pub address: String,
    pub checkout_path: String,
    pub submodules: bool,
    pub hidden: bool,
}

impl From<&Repository> for RepoView {
    fn from(r: &Repository) -> Self {
        Self {
            source: r.source.clone(),
            codehost_name: r.codehost_name.clone(),
            repo_owner: r.repo_owner.clone(),
            repo_namespace: r.repo_namespace.clone(),
            repo_name: r.repo_name.clone(),
            remote_name: r.remote_name.clone(),
            branch: r.branch.clone(),
            address: crate::masking::masked_url(&r.address),
            checkout_path: r.checkout_path.clone(),
            submodules: r.submodules,
            hidden: r.hidden,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BuildEnv {
    pub basic_image_id: String,
    /// The build OS (`build_os`).
    pub basic_image_label: String,
    pub installs: Vec<Install>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CacheSettingView {
    pub enabled: bool,
    pub cache_dir: String,
}

/// `advanced_settings` of the detail: always all eleven keys (spec/build.md §8).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AdvancedSettingsView {
    pub timeout: i64,
    pub cache_setting: CacheSettingView,
    pub cluster_name: String,
    pub resource_spec: ResourceSpec,
    pub strategy_name: String,
    pub storages: Option<Storages>,
    pub use_host_docker_daemon: bool,
    pub privileged_mode: bool,
    pub custom_annotations: Vec<Pair>,
    pub custom_labels: Vec<Pair>,
    /// Declared outputs besides IMAGE and PKG_FILE.
    pub outputs: Vec<String>,
}

/// A variable of the detail; a credential's value is `********`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ParameterView {
    pub key: String,
    pub value: String,
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub choice_option: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub choice_value: Vec<String>,
    pub is_credential: bool,
    pub description: String,
}

impl From<&KeyVal> for ParameterView {
    fn from(k: &KeyVal) -> Self {
        Self {
            key: k.key.clone(),
            value: if k.is_credential {
                MASK.to_string()
            } else {
                k.value.clone()
            },
            kind: k.kind.clone(),
            choice_option: k.choice_option.clone(),
            choice_value: k.choice_value.clone(),
            is_credential: k.is_credential,
            description: k.description.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PostBuildView {
    pub docker_build: Option<DockerBuild>,
    #[schema(value_type = Option<Object>)]
    pub object_storage_upload: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_archive: Option<FileArchive>,
    pub scripts: String,
}

/// `GET /openapi/build/{buildName}/detail` answer (seed 004 "Get Build Details").
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BuildDetail {
    pub project_key: String,
    pub name: String,
    pub source: String,
    pub target_services: Vec<TargetService>,
    /// The template of a template build, else `""`.
    pub template_name: String,
    pub update_by: String,
    pub update_time: i64,
    pub repos: Vec<RepoView>,
    pub build_env: BuildEnv,
    pub advanced_settings: AdvancedSettingsView,
    pub build_script: String,
    pub parameters: Vec<ParameterView>,
    pub outputs: Vec<Output>,
    pub post_build: PostBuildView,
}

/// The detail of `build`, whose definition is `def` (the template's for a template build),
/// showing `repos` and `vars`.
pub fn detail(
    build: &Build,
    template_name: &str,
    def: &BuildDef,
    repos: &[Repository],
    vars: &[KeyVal],
) -> BuildDetail {
    let pre = &def.pre_build;
    BuildDetail {
        project_key: build.project_key.clone(),
        name: build.name.clone(),
        source: build.source.clone(),
        target_services: build.targets.iter().map(Into::into).collect(),
        template_name: template_name.to_string(),
        update_by: build.update_by.clone(),
        update_time: build.update_time,
        repos: repos.iter().map(Into::into).collect(),
        build_env: BuildEnv {
            basic_image_id: pre.image_id.clone(),
            basic_image_label: pre.build_os.clone(),
            installs: pre.installs.clone(),
        },
        advanced_settings: AdvancedSettingsView {
            timeout: def.timeout,
            cache_setting: CacheSettingView {
                enabled: def.cache_enable,
                cache_dir: def.cache_user_dir.clone(),
            },
            cluster_name: pre.cluster_name.clone(),
            resource_spec: pre.res_req_spec.clone(),
            strategy_name: pre.strategy_name.clone(),
            storages: pre.storages.clone(),
            use_host_docker_daemon: pre.use_host_docker_daemon,
            privileged_mode: def.enable_privileged_mode,
            custom_annotations: pre.custom_annotations.clone(),
            custom_labels: pre.custom_labels.clone(),
            outputs: declared_outputs(def),
        },
        build_script: def.scripts.clone(),
        parameters: vars.iter().map(Into::into).collect(),
        outputs: def.outputs.clone(),
        post_build: PostBuildView {
            docker_build: def.post_build.docker_build.clone(),
            object_storage_upload: def.post_build.object_storage_upload.clone(),
            file_archive: def.post_build.file_archive.clone(),
            scripts: def.post_build.scripts.clone(),
        },
    }
}

/// Outputs besides the built-in IMAGE, IMAGETAG and PKG_FILE.
pub fn declared_outputs(def: &BuildDef) -> Vec<String> {
    def.outputs
        .iter()
        .map(|o| o.name.clone())
        .filter(|n| !matches!(n.as_str(), "IMAGE" | "IMAGETAG" | "PKG_FILE"))
        .collect()
}

/// A build template in Zadig's document shape; credential defaults masked.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TemplateView {
    pub id: String,
    pub name: String,
    #[serde(flatten)]
    pub def: BuildDef,
    pub update_time: i64,
    pub update_by: String,
}

impl From<&BuildTemplate> for TemplateView {
    fn from(t: &BuildTemplate) -> Self {
        let mut def = t.def.clone();
        for kv in &mut def.pre_build.envs {
            if kv.is_credential {
                kv.value = MASK.to_string();
            }
        }
        Self {
            id: t.id.clone(),
            name: t.name.clone(),
            def,
            update_time: t.update_time,
            update_by: t.update_by.clone(),
        }
    }
}

/// One template in the list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TemplateBrief {
    pub id: String,
    pub name: String,
    pub infrastructure: String,
    pub update_time: i64,
    pub update_by: String,
}

/// `GET /openapi/templates/build` answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TemplateList {
    pub total: u64,
    pub build_templates: Vec<TemplateBrief>,
}

impl From<&BuildTemplate> for TemplateBrief {
    fn from(t: &BuildTemplate) -> Self {
        Self {
            id: t.id.clone(),
            name: t.name.clone(),
            infrastructure: t.def.infrastructure.clone(),
            update_time: t.update_time,
            update_by: t.update_by.clone(),
        }
    }
}
