//! K8s YAML services (`/openapi/service/yaml`, spec/environments.md §1.3, §4): a service is a
//! multi-document Kubernetes YAML written as a Go template with variables; its containers
//! (Zadig's service modules) come from the workloads it defines.
//!
//! [`gotemplate`] executes the template language, [`variables`] holds the variable rules,
//! [`manifest`] turns rendered YAML into objects and containers, [`service`] holds the rules of
//! the routes, [`store`] the queries. The environments module uses the functions below: they
//! are the stable interface of this module.

pub mod gotemplate;
pub mod manifest;
pub mod model;
pub mod service;
pub mod store;
pub mod variables;

use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub use manifest::Container;
pub use model::ServiceTemplate;
pub use variables::{GlobalVariableKV, RenderVariableKV, ServiceVariableKV};

use gotemplate::{Mode, Template, TemplateError};
use manifest::ManifestError;

/// Why a service could not be rendered. The text names the service, and the template line, the
/// variable or the document/line and field concerned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RenderError {
    #[error("service {service}: {message}")]
    Variables { service: String, message: String },
    #[error("service {service}: template error at {error}")]
    Template {
        service: String,
        error: TemplateError,
    },
    #[error("service {service}: rendered YAML: {error}")]
    Manifest {
        service: String,
        error: ManifestError,
    },
}

impl From<RenderError> for ApiError {
    fn from(e: RenderError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

/// The latest live revision of service `service_name` of `project_key` (test services when
/// `production` is false, production services otherwise); `None` when there is none or it was
/// deleted. Storage failures are `Err` (500). Does not check that the project exists.
pub async fn get(
    state: &AppState,
    project_key: &str,
    service_name: &str,
    production: bool,
) -> ApiResult<Option<ServiceTemplate>> {
    Ok(state
        .service_templates
        .latest(project_key, service_name, production)
        .await?)
}

/// One stored revision of a service, also of a deleted one (an environment keeps the revision
/// it deployed); `None` when that revision never existed.
pub async fn get_revision(
    state: &AppState,
    project_key: &str,
    service_name: &str,
    production: bool,
    revision: i64,
) -> ApiResult<Option<ServiceTemplate>> {
    Ok(state
        .service_templates
        .revision(project_key, service_name, production, revision)
        .await?)
}

/// The latest live revision of every service of `project_key` (test or production), ordered
/// by service name. An unknown project has none (empty list).
pub async fn list(
    state: &AppState,
    project_key: &str,
    production: bool,
) -> ApiResult<Vec<ServiceTemplate>> {
    Ok(state
        .service_templates
        .list_latest(project_key, production)
        .await?)
}

/// Render `tpl` into Kubernetes objects, one JSON object per non-empty YAML document in the
/// template's order, ready for server-side apply (no namespace or Zadig labels are added;
/// `$Namespace$`-style environment keys are left for the caller).
///
/// The data is the service's `service_variable_kvs` with `variable_overrides` applied by key
/// (an override replaces the value, and the type when it names one; unknown keys are added),
/// `$T-Project$`/`$T-Service$` replaced by the project key and service name. Rendering is
/// strict: a key the template reads that no variable defines is an error, never `<no value>`.
/// Every object has string `apiVersion`, `kind` and `metadata.name`; every workload's
/// containers have a `name` and an `image`. Pure: same input, same output.
pub fn render(
    tpl: &ServiceTemplate,
    variable_overrides: &[ServiceVariableKV],
) -> Result<Vec<Value>, RenderError> {
    let text = render_text(tpl, variable_overrides)?;
    let objects = objects_of(&tpl.service_name, &text)?;
    Ok(objects.into_iter().map(|o| o.value).collect())
}

/// [`render`]'s YAML text, before it is split into objects (what an environment shows as the
/// service's YAML).
pub fn render_text(
    tpl: &ServiceTemplate,
    variable_overrides: &[ServiceVariableKV],
) -> Result<String, RenderError> {
    let kvs = variables::overridden(tpl.service_variable_kvs.clone(), variable_overrides);
    execute(
        &tpl.product_name,
        &tpl.service_name,
        &tpl.yaml,
        &kvs,
        Mode::Strict,
    )
}

/// Parse and execute `yaml` with the variables `kvs`, then replace the template names.
pub(crate) fn execute(
    project: &str,
    service: &str,
    yaml: &str,
    kvs: &[ServiceVariableKV],
    mode: Mode,
) -> Result<String, RenderError> {
    let template = parse(service, yaml)?;
    let data =
        variables::data(kvs, project, service).map_err(|message| RenderError::Variables {
            service: service.to_string(),
            message,
        })?;
    let out = template
        .execute(&Value::Object(data), mode)
        .map_err(|error| RenderError::Template {
            service: service.to_string(),
            error,
        })?;
    Ok(variables::system_names(&out, project, service))
}

pub(crate) fn parse(service: &str, yaml: &str) -> Result<Template, RenderError> {
    Template::parse(yaml).map_err(|error| RenderError::Template {
        service: service.to_string(),
        error,
    })
}

pub(crate) fn objects_of(service: &str, text: &str) -> Result<Vec<manifest::Object>, RenderError> {
    manifest::parse_objects(text).map_err(|error| RenderError::Manifest {
        service: service.to_string(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template(yaml: &str, kvs: Value) -> ServiceTemplate {
        ServiceTemplate {
            id: "0".repeat(24),
            product_name: "shop".into(),
            service_name: "web".into(),
            production: false,
            kind: model::TYPE_K8S.into(),
            source: model::SOURCE_SPOCK.into(),
            revision: 1,
            create_time: 0,
            create_by: String::new(),
            created_by_id: String::new(),
            yaml: yaml.into(),
            hash256: String::new(),
            variable_yaml: String::new(),
            service_variable_kvs: serde_json::from_value(kvs).unwrap(),
            status: model::ServiceStatus::Active,
            containers: Vec::new(),
            is_latest: true,
            version: 0,
        }
    }

    const YAML: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: $T-Service$\n  labels:\n    project: {{.project}}\nspec:\n  replicas: {{.replicas}}\n{{- if .debug}}\n  paused: true\n{{- end}}\n";

    #[test]
    fn render_applies_variables_overrides_and_names() {
        let t = template(
            YAML,
            json!([{"key": "replicas", "value": "2"}, {"key": "project", "value": "$T-Project$"},
                {"key": "debug", "value": false, "type": "bool"}]),
        );
        let objs = render(&t, &[]).unwrap();
        assert_eq!(
            objs,
            vec![json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "labels": {"project": "shop"}}, "spec": {"replicas": 2}})]
        );
        let over: Vec<ServiceVariableKV> =
            serde_json::from_value(json!([{"key": "debug", "value": "true", "type": "bool"}]))
                .unwrap();
        let objs = render(&t, &over).unwrap();
        assert_eq!(objs[0]["spec"]["paused"], true);
    }

    #[test]
    fn render_is_strict() {
        let t = template(YAML, json!([{"key": "replicas", "value": "2"}]));
        let e = render(&t, &[]).unwrap_err();
        assert!(e.to_string().contains("missing keys [project]"), "{e}");
        let bad = template("kind: [\n", json!([]));
        assert!(matches!(
            render(&bad, &[]),
            Err(RenderError::Manifest { .. })
        ));
    }
}
