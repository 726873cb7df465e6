//! Request bodies of the build and build-template routes, and their conversion into the
//! stored model with every check (spec/build.md §4.1, §4.3, §6.2; DESIGN.md §5).
//!
//! Both the seed's shapes and Zadig's code's are accepted where they differ (spec/build.md
//! §11): `installs` as a list of `{name, version}` or a plain string, `docker_build_step` and
//! `advanced_settings` as an object or a one-element array, `enable_buildkit` as a bool or a
//! string. Every failure is a 400 naming the field as sent (`parameters[1].type`).

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;

use super::model::{
    BUILTIN_OUTPUTS, BuildDef, DockerBuild, FileArchive, INFRASTRUCTURES, Install, KeyVal, Output,
    Pair, PostBuild, PreBuild, Repository, ResourceSpec, SCRIPT_TYPES, Storages, lenient_string,
    nullable, var_type,
};
use crate::error::{ApiError, ApiResult};
use crate::validate;

// ---------------------------------------------------------------------------------------------
// Flexible shapes

/// An object, or an array of at most one object (the seed's tables say `[]DockerBuildStep`, its
/// examples and Zadig's code use an object). `null` and `[]` mean absent.
#[derive(Debug, Clone)]
pub struct OneOrArray<T>(pub Option<T>);

impl<T> Default for OneOrArray<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrArray<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = OneOrArray<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object or an array of one object")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(OneOrArray(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(OneOrArray(None))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|v| OneOrArray(Some(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let first = seq.next_element::<T>()?;
                if first.is_some() && seq.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::custom(
                        "expected one object (or an array of one object), got several",
                    ));
                }
                Ok(OneOrArray(first))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// `installs`: a list of `{name, version}` (Zadig's code) or of `"name:version"` strings, or
/// one string (the seed's type) such as `"go 1.20.7, node:18"`.
#[derive(Debug, Clone, Default)]
pub struct Installs(pub Vec<Install>);

/// One `installs` entry: `go`, `go 1.20`, `go:1.20`, `go@1.20` or `go=1.20`.
fn parse_install(entry: &str) -> Install {
    let entry = entry.trim();
    match entry.find([':', '@', '=', ' ', '\t']) {
        Some(i) => Install {
            name: entry[..i].trim().to_string(),
            version: entry[i + 1..].trim().to_string(),
        },
        None => Install {
            name: entry.to_string(),
            version: String::new(),
        },
    }
}

fn parse_installs(s: &str) -> Vec<Install> {
    s.split([',', ';', '\n'])
        .filter(|e| !e.trim().is_empty())
        .map(parse_install)
        .collect()
}

struct InstallItem(Install);

impl<'de> Deserialize<'de> for InstallItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = InstallItem;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("{\"name\", \"version\"} or \"name:version\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(InstallItem(parse_install(s)))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                Install::deserialize(de::value::MapAccessDeserializer::new(map)).map(InstallItem)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Installs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Installs;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of {\"name\", \"version\"} or a string")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Installs::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Installs::default())
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Installs(parse_installs(s)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(InstallItem(i)) = seq.next_element()? {
                    out.push(i);
                }
                Ok(Installs(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A bool that may be sent as `"true"`/`"false"` (the seed's table types `enable_buildkit` as a
/// string, its example and Zadig's code as a bool).
fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(false),
        Some(serde_json::Value::Bool(b)) => Ok(b),
        Some(serde_json::Value::String(s)) => match s.trim() {
            "true" | "1" => Ok(true),
            "false" | "0" | "" => Ok(false),
            other => Err(de::Error::custom(format!(
                "expected true or false, got {other:?}"
            ))),
        },
        Some(other) => Err(de::Error::custom(format!(
            "expected a boolean, got {other}"
        ))),
    }
}

/// An output name, or `{name, description}`.
#[derive(Debug, Clone)]
pub struct OutputInput(pub Output);

impl<'de> Deserialize<'de> for OutputInput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OutputInput;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an output name or {\"name\", \"description\"}")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(OutputInput(Output {
                    name: s.to_string(),
                    description: String::new(),
                }))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                Output::deserialize(de::value::MapAccessDeserializer::new(map)).map(OutputInput)
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------------
// Request bodies

/// A service a build is bound to.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct ServiceWithModule {
    #[serde(default)]
    pub service_name: String,
    #[serde(default)]
    pub service_module: String,
}

/// A repository as the client names it (seed RepoInfo, plus Zadig's optional extras).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
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
    #[serde(default, deserialize_with = "nullable")]
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
    pub submodules: bool,
    /// Code host type (`gitlab`, `github`, …); our extension, Zadig reads it from the code host.
    #[serde(default)]
    pub source: String,
    /// Clone URL or code host base URL; our extension (there is no code host registry).
    #[serde(default)]
    pub address: String,
}

/// A build parameter (seed Parameter).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct ParameterInput {
    #[serde(default)]
    pub key: String,
    /// `string` (default), `choice` or `multi-select`.
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub is_credential: bool,
    #[serde(default)]
    pub description: String,
    #[serde(default, alias = "value", deserialize_with = "lenient_string")]
    pub default_value: String,
    #[serde(default, deserialize_with = "nullable")]
    pub choice_value: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub choice_option: Vec<String>,
}

/// The image build step (seed DockerBuildStep).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct DockerBuildStepInput {
    /// `local` or `template`.
    #[serde(default)]
    pub dockerfile_source: String,
    #[serde(default)]
    pub build_context_dir: String,
    #[serde(default)]
    pub dockerfile_directory: String,
    #[serde(default)]
    pub build_args: String,
    #[serde(default)]
    pub template_name: String,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub enable_buildkit: bool,
    #[serde(default)]
    pub platforms: String,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct CacheSetting {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub cache_dir: String,
}

/// Advanced settings (seed AdvancedSettings).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct AdvancedSettingsInput {
    #[serde(default)]
    pub cluster_name: String,
    #[serde(default)]
    pub strategy_name: String,
    /// Minutes; absent or 0: 60.
    #[serde(default)]
    pub timeout: Option<i64>,
    #[serde(default)]
    pub resource_spec: Option<ResourceSpec>,
    #[serde(default)]
    pub use_host_docker_daemon: bool,
    #[serde(default)]
    pub privileged_mode: bool,
    #[serde(default)]
    pub cache_setting: Option<CacheSetting>,
    #[serde(default)]
    pub storages: Option<Storages>,
    #[serde(default, deserialize_with = "nullable")]
    pub custom_annotations: Vec<Pair>,
    #[serde(default, deserialize_with = "nullable")]
    pub custom_labels: Vec<Pair>,
    /// Output variable names.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Vec<String>)]
    pub outputs: Vec<OutputInput>,
}

/// `POST`/`PUT /openapi/build` body (seed 004 "Create Build").
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct BuildRequest {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub project_key: String,
    /// `kubernetes` (default) or `vm`.
    #[serde(default)]
    pub infrastructure: String,
    #[serde(default, deserialize_with = "nullable")]
    pub vm_labels: Vec<String>,
    #[serde(default)]
    pub build_os: String,
    /// A list of `{name, version}`, or a string such as `"go 1.20.7, node:18"`.
    #[schema(value_type = Object)]
    #[serde(default)]
    pub installs: Installs,
    /// `shell` (default), `batch_file` or `powershell`.
    #[serde(default)]
    pub script_type: String,
    #[serde(default)]
    pub build_script: String,
    #[serde(default, deserialize_with = "nullable")]
    pub repo_info: Vec<RepoInput>,
    #[serde(default, deserialize_with = "nullable")]
    pub parameters: Vec<ParameterInput>,
    #[serde(default)]
    pub services: Option<Vec<ServiceWithModule>>,
    /// An object (or an array of one).
    #[schema(value_type = Option<DockerBuildStepInput>)]
    #[serde(default)]
    pub docker_build_step: OneOrArray<DockerBuildStepInput>,
    /// An object (or an array of one).
    #[schema(value_type = Option<AdvancedSettingsInput>)]
    #[serde(default)]
    pub advanced_settings: OneOrArray<AdvancedSettingsInput>,
}

/// A variable value of a service in a template build (seed Input, plus Zadig's optional
/// `type` and `is_credential`).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct InputKv {
    #[serde(default)]
    pub key: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub value: String,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub is_credential: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    pub choice_value: Vec<String>,
}

/// A service of a template build with its repositories and variable values.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct TargetServiceInput {
    #[serde(default)]
    pub service_name: String,
    #[serde(default)]
    pub service_module: String,
    #[serde(default, deserialize_with = "nullable")]
    pub repo_info: Vec<RepoInput>,
    #[serde(default, deserialize_with = "nullable")]
    pub inputs: Vec<InputKv>,
}

/// `POST /openapi/build?source=template` and `PUT /openapi/build/{name}/template` body.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct TemplateBuildRequest {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub project_key: String,
    #[serde(default)]
    pub template_name: String,
    #[serde(default)]
    pub target_services: Option<Vec<TargetServiceInput>>,
}

/// `pre_build` of a template document as sent.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct PreBuildInput {
    #[serde(default)]
    pub clean_workspace: bool,
    #[serde(default)]
    pub res_req: String,
    #[serde(default)]
    pub res_req_spec: Option<ResourceSpec>,
    #[serde(default)]
    pub build_os: String,
    #[serde(default)]
    pub image_from: String,
    #[serde(default)]
    pub image_id: String,
    #[schema(value_type = Object)]
    #[serde(default)]
    pub installs: Installs,
    /// The template's variables with their defaults (`value` or `default_value`).
    #[serde(default, deserialize_with = "nullable")]
    pub envs: Vec<ParameterInput>,
    #[serde(default)]
    pub enable_proxy: bool,
    #[serde(default)]
    pub upload_pkg: bool,
    #[serde(default)]
    pub cluster_id: String,
    #[serde(default)]
    pub cluster_name: String,
    #[serde(default)]
    pub cluster_source: String,
    #[serde(default)]
    pub strategy_id: String,
    #[serde(default)]
    pub strategy_name: String,
    #[serde(default)]
    pub use_host_docker_daemon: bool,
    #[serde(default)]
    pub storages: Option<Storages>,
    #[serde(default, deserialize_with = "nullable")]
    pub custom_annotations: Vec<Pair>,
    #[serde(default, deserialize_with = "nullable")]
    pub custom_labels: Vec<Pair>,
    #[serde(default)]
    pub namespace: String,
}

/// A build template: Zadig's template document (spec/build.md §3.7). The seed-style build
/// fields (`build_script`, `build_os`, `installs`, `parameters`, `docker_build_step`,
/// `advanced_settings`) are accepted as well and override their document counterparts.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct TemplateRequest {
    #[serde(default)]
    pub name: String,
    /// `kubernetes` (default) or `vm`.
    #[serde(default)]
    pub infrastructure: String,
    #[serde(default, deserialize_with = "nullable")]
    pub vm_labels: Vec<String>,
    /// `shell` (default), `batch_file` or `powershell`.
    #[serde(default)]
    pub script_type: String,
    /// The build script (also accepted as `build_script`).
    #[serde(default, alias = "build_script")]
    pub scripts: String,
    /// Minutes; absent or 0: 60.
    #[serde(default)]
    pub timeout: i64,
    #[serde(default)]
    pub pre_build: Option<PreBuildInput>,
    #[serde(default)]
    pub post_build: Option<PostBuild>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Vec<Output>)]
    pub outputs: Vec<OutputInput>,
    #[serde(default)]
    pub cache_enable: bool,
    #[serde(default)]
    pub cache_dir_type: String,
    #[serde(default)]
    pub cache_user_dir: String,
    #[serde(default)]
    pub advanced_setting_modified: bool,
    #[serde(default)]
    pub enable_privileged_mode: bool,
    // Seed-style fields.
    #[serde(default)]
    pub build_os: Option<String>,
    #[schema(value_type = Option<Object>)]
    #[serde(default)]
    pub installs: Option<Installs>,
    #[serde(default)]
    pub parameters: Option<Vec<ParameterInput>>,
    /// Same as `pre_build.envs`.
    #[serde(default)]
    pub envs: Option<Vec<ParameterInput>>,
    #[schema(value_type = Option<DockerBuildStepInput>)]
    #[serde(default)]
    pub docker_build_step: OneOrArray<DockerBuildStepInput>,
    #[schema(value_type = Option<AdvancedSettingsInput>)]
    #[serde(default)]
    pub advanced_settings: OneOrArray<AdvancedSettingsInput>,
}

// ---------------------------------------------------------------------------------------------
// Checks

fn bad(field: &str, what: impl fmt::Display) -> ApiError {
    ApiError::bad_request(format!("`{field}` {what}"))
}

/// A name a script can use as an environment variable.
fn check_env_name(field: &str, v: &str) -> ApiResult<()> {
    let mut chars = v.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
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

/// Parameters → variables, checking keys, types and choices.
fn vars_of(field: &str, params: &[ParameterInput]) -> ApiResult<Vec<KeyVal>> {
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
                &f("default_value"),
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
        if p.key.trim().is_empty() {
            return Err(bad(&format!("{field}[{i}].key"), "is required"));
        }
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
                submodules: r.submodules,
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
    def.pre_build.envs = vars_of("parameters", &req.parameters)?;
    if let Some(step) = &req.docker_build_step.0 {
        apply_docker(&mut def, "docker_build_step", step)?;
    }
    if let Some(adv) = &req.advanced_settings.0 {
        apply_advanced(&mut def, "advanced_settings", adv)?;
    }
    Ok(def)
}

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
        let spec = pre
            .res_req_spec
            .clone()
            .unwrap_or(def.pre_build.res_req_spec.clone());
        check_resources("pre_build.res_req_spec", &spec)?;
        if let Some(s) = &pre.storages {
            check_storages("pre_build.storages", s)?;
        }
        check_pairs("pre_build.custom_annotations", &pre.custom_annotations)?;
        check_pairs("pre_build.custom_labels", &pre.custom_labels)?;
        validate::max_len("pre_build.build_os", &pre.build_os)?;
        def.pre_build = PreBuild {
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
            envs: vars_of("pre_build.envs", &pre.envs)?,
            enable_proxy: pre.enable_proxy,
            upload_pkg: pre.upload_pkg,
            cluster_id: pre.cluster_id.clone(),
            cluster_name: pre.cluster_name.clone(),
            cluster_source: pre.cluster_source.clone(),
            strategy_id: pre.strategy_id.clone(),
            strategy_name: pre.strategy_name.clone(),
            use_host_docker_daemon: pre.use_host_docker_daemon,
            storages: pre.storages.clone().or(def.pre_build.storages.take()),
            custom_annotations: pre.custom_annotations.clone(),
            custom_labels: pre.custom_labels.clone(),
            namespace: pre.namespace.clone(),
        };
    }
    if let Some(post) = &req.post_build {
        if let Some(d) = &post.docker_build {
            check_docker("post_build.docker_build", d)?;
        }
        def.post_build = PostBuild {
            file_archive: post
                .file_archive
                .clone()
                .filter(|f: &FileArchive| !f.file_location.is_empty()),
            ..post.clone()
        };
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

    // Seed-style fields override their document counterparts.
    if let Some(os) = &req.build_os {
        validate::max_len("build_os", os)?;
        def.pre_build.build_os = os.clone();
    }
    if let Some(i) = &req.installs {
        def.pre_build.installs = installs_of("installs", i)?;
    }
    if let Some(envs) = &req.envs {
        def.pre_build.envs = vars_of("envs", envs)?;
    }
    if let Some(p) = &req.parameters {
        def.pre_build.envs = vars_of("parameters", p)?;
    }
    if let Some(step) = &req.docker_build_step.0 {
        apply_docker(&mut def, "docker_build_step", step)?;
    }
    if let Some(adv) = &req.advanced_settings.0 {
        let declared = std::mem::take(&mut def.outputs);
        apply_advanced(&mut def, "advanced_settings", adv)?;
        // Outputs declared at the top level stay declared.
        def.outputs = with_builtin_outputs(declared.into_iter().chain(def.outputs.clone()));
    }
    if def.scripts.trim().is_empty() {
        return Err(bad(
            "scripts",
            "(the build script, also accepted as `build_script`) is required",
        ));
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
pub fn targets_of(
    list: &[TargetServiceInput],
    template_vars: &[KeyVal],
) -> ApiResult<Vec<super::model::Target>> {
    let mut out: Vec<super::model::Target> = Vec::with_capacity(list.len());
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
        let envs = super::model::merge_vars(template_vars, &inputs);
        for (j, kv) in t.inputs.iter().enumerate() {
            let Some(m) = envs.iter().find(|e| e.key == kv.key) else {
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
        out.push(super::model::Target {
            service_name: t.service_name.clone(),
            service_module: t.service_module.clone(),
            repos: repos_of(&f("repo_info"), &t.repo_info)?,
            envs,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, String> {
        serde_path_to_error::deserialize(v).map_err(|e| format!("{}: {}", e.path(), e.inner()))
    }

    #[test]
    fn installs_accept_list_and_string() {
        let a: Installs =
            decode(serde_json::json!([{"name": "go", "version": "1.20.7"}, "node:18"])).unwrap();
        assert_eq!(a.0.len(), 2);
        assert_eq!(
            a.0[1],
            Install {
                name: "node".into(),
                version: "18".into()
            }
        );
        let b: Installs = decode(serde_json::json!("go 1.20.7, maven@3.9; jdk")).unwrap();
        let names: Vec<_> =
            b.0.iter()
                .map(|i| (i.name.as_str(), i.version.as_str()))
                .collect();
        assert_eq!(names, vec![("go", "1.20.7"), ("maven", "3.9"), ("jdk", "")]);
        let c: Installs = decode(serde_json::Value::Null).unwrap();
        assert!(c.0.is_empty());
    }

    #[test]
    fn one_or_array_and_paths() {
        let r: BuildRequest = decode(serde_json::json!({
            "docker_build_step": [{"dockerfile_source": "local", "enable_buildkit": "true"}],
            "advanced_settings": []
        }))
        .unwrap();
        assert!(r.docker_build_step.0.unwrap().enable_buildkit);
        assert!(r.advanced_settings.0.is_none());
        let err = decode::<BuildRequest>(serde_json::json!({
            "docker_build_step": {"enable_buildkit": "maybe"}
        }))
        .unwrap_err();
        assert!(err.contains("docker_build_step.enable_buildkit"), "{err}");
        let err = decode::<BuildRequest>(serde_json::json!({
            "advanced_settings": [{}, {}]
        }))
        .unwrap_err();
        assert!(err.contains("advanced_settings"), "{err}");
    }
}
