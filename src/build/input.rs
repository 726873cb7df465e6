//! Request bodies of the build and build-template routes (spec/build.md §4.1, §6.2, §3.7);
//! [`super::rules`] turns them into the stored model.
//!
//! Both the seed's shapes and Zadig's code's are accepted where they differ (spec/build.md
//! §11): `installs` as a list of `{name, version}` or a plain string, `docker_build_step` and
//! `advanced_settings` as an object or a one-element array, `enable_buildkit` as a bool or a
//! string. A body that does not decode is a 400 naming the field (`docker_build_step.enable_buildkit`).

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;

use super::model::{Install, Output, Pair, PostBuild, ResourceSpec, Storages, lenient_string};
pub use crate::repo::RepoInput;
use crate::validate::nullable;

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
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
pub(crate) fn parse_install(entry: &str) -> Install {
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
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
    pub timeout: Option<i64>,
    pub resource_spec: Option<ResourceSpec>,
    #[serde(default)]
    pub use_host_docker_daemon: bool,
    #[serde(default)]
    pub privileged_mode: bool,
    pub cache_setting: Option<CacheSetting>,
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
    #[serde(rename = "type")]
    pub kind: Option<String>,
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
    pub target_services: Option<Vec<TargetServiceInput>>,
}

/// `pre_build` of a template document as sent.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct PreBuildInput {
    #[serde(default)]
    pub clean_workspace: bool,
    #[serde(default)]
    pub res_req: String,
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
    pub pre_build: Option<PreBuildInput>,
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
    pub build_os: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub installs: Option<Installs>,
    pub parameters: Option<Vec<ParameterInput>>,
    /// Same as `pre_build.envs`.
    pub envs: Option<Vec<ParameterInput>>,
    #[schema(value_type = Option<DockerBuildStepInput>)]
    #[serde(default)]
    pub docker_build_step: OneOrArray<DockerBuildStepInput>,
    #[schema(value_type = Option<AdvancedSettingsInput>)]
    #[serde(default)]
    pub advanced_settings: OneOrArray<AdvancedSettingsInput>,
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
