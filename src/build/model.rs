//! The stored build model: one [`BuildDef`] ("how to build": script, OS, tools, variables,
//! resources, image step, outputs) shared by builds and build templates, in the layout of
//! Zadig's `module_build` / `build_template` documents (spec/build.md §3), so the API, the
//! template document and the engine's recipe all read the same structure.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::validate::nullable;

/// `type` of a variable.
pub mod var_type {
    pub const STRING: &str = "string";
    pub const CHOICE: &str = "choice";
    pub const MULTI_SELECT: &str = "multi-select";
    pub const ALL: &[&str] = &[STRING, CHOICE, MULTI_SELECT];
}

pub use crate::masking::MASK;

/// Outputs every build has (spec/build.md §4.3), declared first.
pub const BUILTIN_OUTPUTS: &[&str] = &["IMAGE", "PKG_FILE"];

/// Accepted `script_type` values.
pub const SCRIPT_TYPES: &[&str] = &["shell", "batch_file", "powershell"];
/// Accepted `infrastructure` values.
pub const INFRASTRUCTURES: &[&str] = &["kubernetes", "vm"];

/// A string that may arrive as a JSON number or bool (Zadig stores variable values as text).
pub fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s,
        Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
        Some(other) => {
            return Err(serde::de::Error::custom(format!(
                "expected a string, got {other}"
            )));
        }
    })
}

/// A variable: a build parameter, a template `envs` item, or a service's input.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct KeyVal {
    pub key: String,
    /// The value (the default for a template or build parameter).
    #[serde(default, deserialize_with = "lenient_string")]
    pub value: String,
    /// `string`, `choice` or `multi-select`.
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default, deserialize_with = "nullable")]
    pub choice_option: Vec<String>,
    /// The selected values of a `multi-select`.
    #[serde(default, deserialize_with = "nullable")]
    pub choice_value: Vec<String>,
    #[serde(default)]
    pub is_credential: bool,
    #[serde(default)]
    pub description: String,
}

impl KeyVal {
    /// The value the script sees: a multi-select's selection joined with `,`.
    pub fn effective_value(&self) -> String {
        if self.kind == var_type::MULTI_SELECT && !self.choice_value.is_empty() {
            self.choice_value.join(",")
        } else {
            self.value.clone()
        }
    }
}

/// A tool to install (`pre_build.installs`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Install {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub version: String,
}

crate::repo::repository_struct! {
    /// A code repository, in Zadig's Repository shape (spec/build.md §3.5).
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
    pub struct Repository {
        #[serde(default)]
        pub repo_owner: String,
        #[serde(default)]
        pub submodules: bool,
        #[serde(default)]
        pub hidden: bool,
    }
}

/// CPU (millicores), memory (MiB) and GPU (`nvidia.com/gpu: 1`) of a build pod.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResourceSpec {
    #[serde(default)]
    pub cpu_limit: i64,
    #[serde(default)]
    pub memory_limit: i64,
    #[serde(default)]
    pub cpu_req: i64,
    #[serde(default)]
    pub memory_req: i64,
    #[serde(default)]
    pub gpu_limit: String,
}

impl ResourceSpec {
    /// Zadig's preset name for this spec (`res_req`, spec/build.md §4.3).
    pub fn preset(&self) -> &'static str {
        if !self.gpu_limit.is_empty() {
            return "define";
        }
        match (
            self.cpu_limit,
            self.memory_limit,
            self.cpu_req,
            self.memory_req,
        ) {
            (16000, 32768, 4000, 4096) => "high",
            (8000, 16384, 2000, 2048) => "medium",
            (4000, 8192, 1000, 1024) => "low",
            (2000, 2048, 500, 512) => "min",
            _ => "define",
        }
    }
}

/// One volume of `storages` (Zadig's NFSProperties).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StorageProperty {
    /// `dynamic` or `static`.
    #[serde(default)]
    pub provision_type: String,
    #[serde(default)]
    pub storage_class: String,
    #[serde(default)]
    pub storage_size_in_gib: i64,
    #[serde(default)]
    pub pvc: String,
    /// `ReadWriteOnce`, `ReadOnlyMany`, `ReadWriteMany` (default) or `ReadWriteOncePod`.
    #[serde(default)]
    pub access_mode: String,
    #[serde(default)]
    pub subpath: String,
    #[serde(default)]
    pub mount_path: String,
    #[serde(default)]
    pub is_temporary: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Storages {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub storages_properties: Vec<StorageProperty>,
}

/// A custom annotation or label.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Pair {
    pub key: String,
    /// Usually a string (the seed's); any JSON is kept as sent, as in Zadig.
    #[serde(default)]
    pub value: Value,
}

/// Environment and resources of the build (`pre_build`, spec/build.md §3.3).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct PreBuild {
    pub clean_workspace: bool,
    /// `high`, `medium`, `low`, `min`, `default` or `define`.
    pub res_req: String,
    pub res_req_spec: ResourceSpec,
    /// The build OS label (`ubuntu 20.04`).
    pub build_os: String,
    pub image_from: String,
    pub image_id: String,
    #[serde(deserialize_with = "nullable")]
    pub installs: Vec<Install>,
    /// The variables with their defaults.
    #[serde(deserialize_with = "nullable")]
    pub envs: Vec<KeyVal>,
    pub enable_proxy: bool,
    pub upload_pkg: bool,
    pub cluster_id: String,
    /// The cluster named in `advanced_settings.cluster_name` (we keep the name: there is no
    /// cluster registry to resolve it to an id).
    pub cluster_name: String,
    pub cluster_source: String,
    pub strategy_id: String,
    pub strategy_name: String,
    pub use_host_docker_daemon: bool,
    pub storages: Option<Storages>,
    #[serde(deserialize_with = "nullable")]
    pub custom_annotations: Vec<Pair>,
    #[serde(deserialize_with = "nullable")]
    pub custom_labels: Vec<Pair>,
    pub namespace: String,
}

/// The image build step (`post_build.docker_build`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct DockerBuild {
    /// Build context directory.
    pub work_dir: String,
    /// Dockerfile path (`source = local`).
    pub docker_file: String,
    pub build_args: String,
    /// `local` (Dockerfile in the repository) or `template` (a Dockerfile template).
    pub source: String,
    pub template_id: String,
    pub template_name: String,
    pub enable_buildkit: bool,
    pub platform: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FileArchive {
    #[serde(default)]
    pub file_location: String,
}

/// Steps after the script (`post_build`, spec/build.md §3.4).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct PostBuild {
    pub docker_build: Option<DockerBuild>,
    #[schema(value_type = Option<Object>)]
    pub object_storage_upload: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_archive: Option<FileArchive>,
    pub scripts: String,
}

/// A declared output variable.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Output {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

/// How to build: everything a build and a build template have in common (Zadig's field names).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct BuildDef {
    /// Minutes.
    pub timeout: i64,
    /// `kubernetes` or `vm`.
    pub infrastructure: String,
    #[serde(deserialize_with = "nullable")]
    pub vm_labels: Vec<String>,
    /// `shell`, `batch_file` or `powershell`.
    pub script_type: String,
    /// The build script.
    pub scripts: String,
    pub pre_build: PreBuild,
    pub post_build: PostBuild,
    #[serde(deserialize_with = "nullable")]
    pub outputs: Vec<Output>,
    pub cache_enable: bool,
    /// `workspace`, `user_defined` or `""`.
    pub cache_dir_type: String,
    pub cache_user_dir: String,
    pub advanced_setting_modified: bool,
    pub enable_privileged_mode: bool,
}

/// A service a build is bound to; for a template build also its repositories and variable
/// values (merged over the template's variables).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub service_name: String,
    pub service_module: String,
    #[serde(default)]
    pub repos: Vec<Repository>,
    #[serde(default)]
    pub envs: Vec<KeyVal>,
}

/// A stored build (collection `builds`; names are unique across projects, as in Zadig).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Build {
    pub id: String,
    pub name: String,
    pub project_key: String,
    /// `zadig`.
    pub source: String,
    /// Id of the build template for a template build, else empty.
    #[serde(default)]
    pub template_id: String,
    #[serde(default)]
    pub targets: Vec<Target>,
    #[serde(default)]
    pub repos: Vec<Repository>,
    /// For a template build the template's definition applies; this one is kept as stored.
    #[serde(flatten)]
    pub def: BuildDef,
    /// Insertion order (lists follow it, as Zadig's natural order does).
    pub seq: i64,
    pub created_at: i64,
    pub update_time: i64,
    pub update_by: String,
    /// The creator's uid: the owner who, beside admins, may change or delete the build.
    #[serde(default)]
    pub created_by_id: String,
    /// Bumped by every write; writes are conditional on it.
    pub version: i64,
}

/// A stored build template (collection `build_templates`, unique on `name`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BuildTemplate {
    pub id: String,
    pub name: String,
    #[serde(flatten)]
    pub def: BuildDef,
    pub created_at: i64,
    pub update_time: i64,
    pub update_by: String,
    pub version: i64,
    /// While a DELETE checks for builds using the template (business ms), builds may not start
    /// using it; expires by itself so a crashed delete leaves nothing stuck.
    #[serde(default)]
    pub deleting_until_ms: i64,
}

/// Zadig's variable merge (spec/build.md §6.1): the template's variables in order; a service
/// value for the same key replaces the value (and type/credential flag when it carries them),
/// while choice options and description stay the template's. Keys the template does not
/// define are dropped.
pub fn merge_vars(template: &[KeyVal], service: &[KeyVal]) -> Vec<KeyVal> {
    template
        .iter()
        .map(|t| match service.iter().find(|s| s.key == t.key) {
            Some(s) => KeyVal {
                key: t.key.clone(),
                value: s.value.clone(),
                kind: if s.kind.is_empty() {
                    t.kind.clone()
                } else {
                    s.kind.clone()
                },
                choice_option: t.choice_option.clone(),
                choice_value: if s.choice_value.is_empty() {
                    t.choice_value.clone()
                } else {
                    s.choice_value.clone()
                },
                is_credential: s.is_credential || t.is_credential,
                description: t.description.clone(),
            },
            None => t.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str) -> KeyVal {
        KeyVal {
            key: key.into(),
            value: value.into(),
            kind: var_type::STRING.into(),
            ..KeyVal::default()
        }
    }

    #[test]
    fn merge_keeps_template_order_and_drops_unknown_keys() {
        let mut t_secret = kv("password", "x");
        t_secret.is_credential = true;
        let template = vec![kv("name", "dflt"), t_secret, kv("other", "o")];
        let service = vec![
            KeyVal {
                kind: String::new(),
                ..kv("password", "zadigx")
            },
            kv("name", "admin"),
            kv("unknown", "u"),
        ];
        let merged = merge_vars(&template, &service);
        let pairs: Vec<_> = merged
            .iter()
            .map(|k| (k.key.as_str(), k.value.as_str(), k.is_credential))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("name", "admin", false),
                ("password", "zadigx", true),
                ("other", "o", false)
            ]
        );
        assert_eq!(
            merged[1].kind, "string",
            "an omitted type keeps the template's"
        );
    }

    #[test]
    fn presets_follow_zadig() {
        let spec = |a, b, c, d| ResourceSpec {
            cpu_limit: a,
            memory_limit: b,
            cpu_req: c,
            memory_req: d,
            gpu_limit: String::new(),
        };
        assert_eq!(spec(4000, 8192, 1000, 1024).preset(), "low");
        assert_eq!(spec(1000, 2000, 100, 200).preset(), "define");
    }
}
