//! The stored environment (Zadig's `product` document, reduced to what K8s-YAML envs use).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::service_template::{GlobalVariableKV, RenderVariableKV};
use crate::wire::wire_enum;

wire_enum! {
    /// An environment's `status`. Creation applies every object before the record is stored,
    /// so a stored environment is `success`; Zadig's other states (`creating`, `deleting`, …)
    /// belong to its asynchronous creation and deletion, which this server does not have.
    #[derive(Default)]
    pub enum EnvStatus as "EnvStatus" {
        #[default]
        Success = "success",
    }
}

/// One environment. `env_key` is Zadig's storage `env_name`; `alias` is the OpenAPI
/// `env_name` (display name).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Environment {
    pub id: String,
    pub project_key: String,
    pub env_key: String,
    pub alias: String,
    pub production: bool,
    pub cluster_id: String,
    pub namespace: String,
    /// We created the namespace (and delete it with the environment); false when adopted.
    pub namespace_created: bool,
    pub registry_id: String,
    /// `spock`: a K8s-YAML environment.
    pub source: String,
    pub status: EnvStatus,
    pub error: String,
    pub services: Vec<EnvService>,
    /// Values of the project's global variables.
    pub global_variables: Vec<GlobalVariableKV>,
    /// Entries of `global_variables` stored unchecked by a version before the type above
    /// that do not decode as one (e.g. no `key`): moved here verbatim by
    /// [`repair_legacy_globals`] at start-up, kept, never read or shown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub legacy_global_variables: Vec<Value>,
    /// The creator's uid: with admins, the only one who may change the environment.
    pub owner_uid: String,
    pub create_time: i64,
    pub update_time: i64,
    pub update_by: String,
    pub version: i64,
}

/// Move the `global_variables` entries of a stored environment document that do not decode
/// as a [`GlobalVariableKV`] to `legacy_global_variables`; how many moved. Earlier versions
/// stored E2's values without checking them, and one such entry would make the whole
/// document (and every list holding it) unreadable; nothing could have used it, since
/// rendering matches values by `key`.
pub fn repair_legacy_globals(doc: &mut serde_json::Map<String, Value>) -> usize {
    let Some(Value::Array(globals)) = doc.get_mut("global_variables") else {
        return 0;
    };
    let (kept, moved): (Vec<Value>, Vec<Value>) = std::mem::take(globals)
        .into_iter()
        .partition(|g| serde_json::from_value::<GlobalVariableKV>(g.clone()).is_ok());
    *globals = kept;
    let n = moved.len();
    if n > 0 {
        let legacy = doc
            .entry("legacy_global_variables")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(l) = legacy {
            l.extend(moved);
        } else {
            // Only this function writes the field, always an array; keep whatever is there.
            let before = legacy.take();
            *legacy = Value::Array(std::iter::once(before).chain(moved).collect());
        }
    }
    n
}

impl Environment {
    pub fn service(&self, name: &str) -> Option<&EnvService> {
        self.services.iter().find(|s| s.service_name == name)
    }
    pub fn service_mut(&mut self, name: &str) -> Option<&mut EnvService> {
        self.services.iter_mut().find(|s| s.service_name == name)
    }
    /// `environment "dev" of project "demo"`.
    pub fn label(&self) -> String {
        format!(
            "{}environment {:?} of project {:?}",
            if self.production { "production " } else { "" },
            self.env_key,
            self.project_key
        )
    }
}

/// A service deployed in an environment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnvService {
    pub service_name: String,
    /// The template revision deployed.
    pub revision: i64,
    /// `[RenderVariableKV]` the service was rendered with.
    pub variable_kvs: Vec<RenderVariableKV>,
    /// The images deployed per container (Zadig's service modules).
    pub containers: Vec<Container>,
    /// The rendered objects (JSON array text; stored as text so label keys with dots and
    /// `$` never reach MongoDB as field names) before the environment's own changes.
    pub manifests: String,
    /// What was applied, for deletes and live reads.
    pub resources: Vec<ResourceRef>,
    /// Replica counts and restarts asked through the API, re-applied with every apply.
    pub overrides: Vec<WorkloadOverride>,
    pub update_time: i64,
}

impl EnvService {
    pub fn objects(&self) -> Vec<Value> {
        serde_json::from_str(&self.manifests).unwrap_or_default()
    }
}

pub use crate::service_template::Container;

/// One object applied to the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRef {
    pub api_version: String,
    pub kind: String,
    pub plural: String,
    pub namespaced: bool,
    pub name: String,
}

impl ResourceRef {
    /// The namespaced object `name` of a kind given by its API version and plural.
    pub fn namespaced(api_version: &str, kind: &str, plural: &str, name: &str) -> Self {
        Self {
            api_version: api_version.into(),
            kind: kind.into(),
            plural: plural.into(),
            namespaced: true,
            name: name.into(),
        }
    }
}

/// What the API changed on one workload besides its image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadOverride {
    pub kind: String,
    pub name: String,
    pub replicas: Option<i64>,
    /// `kubectl.kubernetes.io/restartedAt` of the last restart (RFC 3339).
    pub restarted_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::repair_legacy_globals;

    fn doc(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn entries_that_do_not_decode_are_set_aside_once_and_the_rest_kept_in_order() {
        let good = json!({"key": "a", "value": "1"});
        let mut d = doc(json!({"global_variables": [7, good, {"value": "x"}]}));
        assert_eq!(repair_legacy_globals(&mut d), 2);
        assert_eq!(d["global_variables"], json!([good]));
        assert_eq!(d["legacy_global_variables"], json!([7, {"value": "x"}]));
        let before = d.clone();
        assert_eq!(repair_legacy_globals(&mut d), 0);
        assert_eq!(d, before);
    }

    #[test]
    fn a_document_without_globals_is_left_alone() {
        let mut d = doc(json!({"env_key": "dev"}));
        assert_eq!(repair_legacy_globals(&mut d), 0);
        assert!(!d.contains_key("legacy_global_variables"));
    }
}
