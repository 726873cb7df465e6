//! The rules of the service routes (spec/environments.md §4): checks, authorization,
//! revisions, answers. Test and production services follow the same rules; production
//! services are changed by admins only (docs/security.md).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::gotemplate::Mode;
use super::model::{SOURCE_SPOCK, ServiceStatus, ServiceTemplate, TYPE_K8S};
use super::variables::{self, ServiceVariableKV};
use super::{Container, execute, manifest, objects_of, parse};
use crate::auth::Identity;
use crate::error::{ApiError, ApiResult, ErrorKind};
use crate::project::{self, Project};
use crate::state::AppState;
use crate::store::StoreError;
use crate::validate;
use crate::validate::nullable;

/// Zadig's service-template error codes (spec §0.4).
pub const CREATE_TEMPLATE: (i64, &str) = (6040, "Create service template failed");
pub const UPDATE_TEMPLATE: (i64, &str) = (6041, "Update service template failed");
pub const GET_TEMPLATE: (i64, &str) = (6043, "Get service template failed");
pub const DELETE_TEMPLATE: (i64, &str) = (6044, "Delete service template failed");
pub const VALIDATE_TEMPLATE: (i64, &str) = (6045, "Validate service template failed");
pub const UPDATE_SERVICE: (i64, &str) = (6092, "Update service failed");

/// A service to create: S1's body, or one `service_list` item of `init/yaml`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[schema(as = NewServiceTemplate)]
pub struct NewService {
    /// `^[a-zA-Z0-9-_]+$`.
    #[serde(default)]
    pub service_name: String,
    /// Multi-document Kubernetes YAML, a Go template over the variables.
    #[serde(default)]
    pub yaml: String,
    /// The service's variables (a KV list, not YAML text); keys the YAML uses and this list
    /// lacks are added with an empty value.
    #[serde(default, deserialize_with = "nullable")]
    pub variable_yaml: Vec<ServiceVariableKV>,
}

/// The body of S4 `PUT …/{name}`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct UpdateYamlRequest {
    /// `k8s`.
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub yaml: String,
}

/// The body of S5 `PUT …/{name}/variable`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct UpdateVariablesRequest {
    /// Values for stored keys; unknown keys are ignored, stored keys not sent are kept.
    pub service_variable_kvs: Option<Vec<ServiceVariableKV>>,
}

/// A container in the service list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ContainerBrief {
    pub name: String,
    pub image: String,
    pub image_name: String,
}

/// One service of S2.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ServiceBrief {
    pub service_name: String,
    pub source: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub containers: Vec<ContainerBrief>,
}

/// S3's answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = ServiceTemplateDetail)]
pub struct ServiceDetail {
    pub service_name: String,
    pub source: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// Always empty (services from YAML templates are not supported).
    pub template_name: String,
    pub created_by: String,
    pub created_time: i64,
    pub yaml: String,
    pub containers: Vec<Container>,
    pub service_variable_kvs: Vec<ServiceVariableKV>,
    /// The revision shown (our addition).
    pub revision: i64,
    /// Whether it is a production service (our addition).
    pub production: bool,
}

/// What a checked YAML and variable list produce.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub yaml: String,
    pub kvs: Vec<ServiceVariableKV>,
    pub variable_yaml: String,
    pub containers: Vec<Container>,
    /// The well-known cluster-scoped objects the YAML renders.
    pub cluster_scoped: Vec<KindName>,
}

/// An object's `(kind, name)`.
type KindName = (String, String);

fn field(at: &str, name: &str) -> String {
    if at.is_empty() {
        name.to_string()
    } else {
        format!("{at}.{name}")
    }
}

fn invalid(desc: String) -> ApiError {
    ApiError::code(ErrorKind::BadRequest, VALIDATE_TEMPLATE, desc)
}

/// A service name: `^[a-zA-Z0-9-_]+$`, at most 256 characters.
pub fn check_name(field: &str, name: &str) -> ApiResult<()> {
    validate::name(field, name)?;
    if name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "`{field}` must match ^[a-zA-Z0-9-_]+$, got {name:?}"
        )))
    }
}

/// Check a new service (name, YAML, variables) without storing anything; errors name the field
/// under `at` (`service_list[0].yaml`).
pub fn prepare(project: &str, new: &NewService, at: &str) -> ApiResult<Prepared> {
    check_name(&field(at, "service_name"), &new.service_name)?;
    let mut kvs = new.variable_yaml.clone();
    variables::normalise(&field(at, "variable_yaml"), &mut kvs).map_err(ApiError::bad_request)?;
    build(
        project,
        &new.service_name,
        &new.yaml,
        kvs,
        &field(at, "yaml"),
    )
}

/// The YAML (line ends normalised) with its variables merged, rendered once with placeholders
/// for missing values: it must parse into Kubernetes objects whose workloads name their
/// containers and images.
fn build(
    project: &str,
    service: &str,
    yaml: &str,
    kvs: Vec<ServiceVariableKV>,
    yaml_field: &str,
) -> ApiResult<Prepared> {
    let yaml = yaml.replace("\r\n", "\n").replace('\r', "\n");
    if yaml.trim().is_empty() {
        return Err(ApiError::bad_request(format!("`{yaml_field}` is required")));
    }
    let template = parse(service, &yaml).map_err(|e| invalid(format!("`{yaml_field}`: {e}")))?;
    let kvs = variables::merged(&template, kvs);
    let variable_yaml = variables::variable_yaml(&kvs).map_err(ApiError::bad_request)?;
    let (containers, cluster_scoped) =
        containers_of(project, service, &yaml, &kvs, Mode::Placeholder)
            .map_err(|e| invalid(format!("`{yaml_field}`: {e}")))?;
    Ok(Prepared {
        yaml,
        kvs,
        variable_yaml,
        containers,
        cluster_scoped,
    })
}

/// The containers of the rendered YAML, and its well-known cluster-scoped objects.
fn containers_of(
    project: &str,
    service: &str,
    yaml: &str,
    kvs: &[ServiceVariableKV],
    mode: Mode,
) -> Result<(Vec<Container>, Vec<KindName>), super::RenderError> {
    let text = execute(project, service, yaml, kvs, mode)?;
    let objects = objects_of(service, &text)?;
    let containers =
        manifest::containers(&objects).map_err(|error| super::RenderError::Manifest {
            service: service.to_string(),
            error,
        })?;
    Ok((containers, manifest::cluster_scoped(&objects)))
}

/// A service whose YAML has cluster-scoped objects is saved by system admins only (the rule
/// environments apply it by, [`crate::environment::rules::may_apply_cluster_scoped`]); 403
/// naming `field`, the service and the object.
fn check_scope(
    caller: &Identity,
    service: &str,
    scoped: &[KindName],
    field: &str,
) -> ApiResult<()> {
    for (kind, name) in scoped {
        crate::environment::rules::may_apply_cluster_scoped(caller, service, kind, name)
            .map_err(|e| e.map_description(|d| format!("`{field}`: {d}")))?;
    }
    Ok(())
}

fn hash256(yaml: &str) -> String {
    hex::encode(Sha256::digest(format!("{yaml}\n").as_bytes()))
}

/// The project of a service route: it must exist (404) and hold K8s YAML services (400).
async fn k8s_project(state: &AppState, key: &str) -> ApiResult<Project> {
    let p = project::require(state, key).await?;
    if !p.is_k8s_yaml() {
        return Err(ApiError::bad_request(format!(
            "project `{key}` deploys with `{}`: only K8s YAML services are supported",
            p.deploy_type()
        )));
    }
    Ok(p)
}

fn what(name: &str, production: bool) -> String {
    if production {
        format!("production service {name}")
    } else {
        format!("service {name}")
    }
}

/// Who may create a service: anyone for test services, admins for production services.
fn may_create(caller: &Identity, production: bool) -> ApiResult<()> {
    if production {
        caller.require_admin()
    } else {
        Ok(())
    }
}

/// Who may change a service: its owner or an admin; production services: admins.
fn may_change(caller: &Identity, t: &ServiceTemplate) -> ApiResult<()> {
    if t.production {
        caller.require_admin()
    } else {
        caller.require_owner_or_admin(&t.created_by_id, &what(&t.service_name, false))
    }
}

fn counter(project: &str, name: &str, production: bool) -> String {
    let prefix = if production {
        "productionservice"
    } else {
        "service"
    };
    format!("{prefix}:{name}&project:{project}")
}

async fn latest(
    state: &AppState,
    project: &str,
    name: &str,
    production: bool,
    code: (i64, &str),
) -> ApiResult<ServiceTemplate> {
    state
        .service_templates
        .latest(project, name, production)
        .await?
        .ok_or_else(|| {
            ApiError::code(
                ErrorKind::NotFound,
                code,
                format!(
                    "{} not found in project `{project}`",
                    what(name, production)
                ),
            )
        })
}

/// Store revision `t` with the next revision number of its service. With `new_service`, the
/// service must not exist: when a concurrent create stored a live revision first, this one is
/// removed again and the answer is 409.
async fn insert_revision(
    state: &AppState,
    mut t: ServiceTemplate,
    new_service: bool,
) -> ApiResult<()> {
    t.revision = state
        .sequences
        .next(&counter(&t.product_name, &t.service_name, t.production))
        .await?;
    t.is_latest = true;
    match state.service_templates.insert(&t).await {
        Err(StoreError::Duplicate(_)) => {
            return Err(ApiError::code(
                ErrorKind::Conflict,
                CREATE_TEMPLATE,
                format!(
                    "{} changed concurrently; try again",
                    what(&t.service_name, t.production)
                ),
            ));
        }
        other => other?,
    }
    let store = &state.service_templates;
    if new_service
        && store
            .live_below(&t.product_name, &t.service_name, t.production, t.revision)
            .await?
    {
        store.delete_id(&t.id).await?;
        return Err(exists(&t.service_name, &t.product_name, t.production));
    }
    // Older revisions leave the lists only once this one is stored.
    state
        .service_templates
        .supersede(&t.product_name, &t.service_name, t.production, t.revision)
        .await?;
    Ok(())
}

fn exists(name: &str, project_key: &str, production: bool) -> ApiError {
    ApiError::code(
        ErrorKind::Conflict,
        CREATE_TEMPLATE,
        format!(
            "{} already exists in project `{project_key}`",
            what(name, production)
        ),
    )
}

/// S1: create a service (revision 1 of it, or the next after a deleted one).
pub async fn create(
    state: &AppState,
    caller: &Identity,
    project_key: &str,
    production: bool,
    new: &NewService,
) -> ApiResult<()> {
    may_create(caller, production)?;
    k8s_project(state, project_key).await?;
    let p = prepare(project_key, new, "")?;
    check_scope(caller, &new.service_name, &p.cluster_scoped, "yaml")?;
    if state
        .service_templates
        .latest(project_key, &new.service_name, production)
        .await?
        .is_some()
    {
        return Err(exists(&new.service_name, project_key, production));
    }
    let now = state.clock.now();
    let t = ServiceTemplate {
        id: validate::new_object_id(now),
        product_name: project_key.to_string(),
        service_name: new.service_name.clone(),
        production,
        kind: TYPE_K8S.into(),
        source: SOURCE_SPOCK.into(),
        revision: 0,
        create_time: now,
        create_by: caller.name.clone(),
        created_by_id: caller.uid.clone(),
        hash256: hash256(&p.yaml),
        yaml: p.yaml,
        variable_yaml: p.variable_yaml,
        service_variable_kvs: p.kvs,
        status: ServiceStatus::Active,
        containers: p.containers,
        is_latest: true,
        version: 0,
    };
    insert_revision(state, t, true).await?;
    project::service::orchestrate(state, project_key, &new.service_name, production, true).await
}

/// S4: a new revision with new YAML; the variables are kept, keys the new YAML adds appended.
pub async fn update_yaml(
    state: &AppState,
    caller: &Identity,
    project_key: &str,
    name: &str,
    production: bool,
    req: &UpdateYamlRequest,
) -> ApiResult<()> {
    validate::name("type", &req.kind)?;
    validate::one_of("type", &req.kind, &[TYPE_K8S])?;
    if req.yaml.trim().is_empty() {
        return Err(ApiError::bad_request("`yaml` is required"));
    }
    k8s_project(state, project_key).await?;
    let cur = latest(state, project_key, name, production, UPDATE_TEMPLATE).await?;
    may_change(caller, &cur)?;
    let p = build(
        project_key,
        name,
        &req.yaml,
        cur.service_variable_kvs.clone(),
        "yaml",
    )?;
    check_scope(caller, name, &p.cluster_scoped, "yaml")?;
    let now = state.clock.now();
    let t = ServiceTemplate {
        id: validate::new_object_id(now),
        revision: 0,
        create_time: now,
        create_by: caller.name.clone(),
        source: SOURCE_SPOCK.into(),
        hash256: hash256(&p.yaml),
        yaml: p.yaml,
        variable_yaml: p.variable_yaml,
        service_variable_kvs: p.kvs,
        containers: p.containers,
        version: 0,
        ..cur
    };
    insert_revision(state, t, false).await
}

/// S5: change the values of stored variables in place (no new revision); the YAML must render
/// with them in strict mode.
pub async fn update_variables(
    state: &AppState,
    caller: &Identity,
    project_key: &str,
    name: &str,
    production: bool,
    req: &UpdateVariablesRequest,
) -> ApiResult<()> {
    let Some(input) = &req.service_variable_kvs else {
        return Err(ApiError::bad_request("`service_variable_kvs` is required"));
    };
    let mut input = input.clone();
    variables::normalise("service_variable_kvs", &mut input).map_err(ApiError::bad_request)?;
    k8s_project(state, project_key).await?;
    let mut t = latest(state, project_key, name, production, UPDATE_SERVICE).await?;
    may_change(caller, &t)?;
    let kvs = variables::updated(t.service_variable_kvs.clone(), &input);
    let variable_yaml = variables::variable_yaml(&kvs).map_err(ApiError::bad_request)?;
    let (containers, scoped) = containers_of(project_key, name, &t.yaml, &kvs, Mode::Strict)
        .map_err(|e| invalid(format!("`service_variable_kvs`: {e}")))?;
    check_scope(caller, name, &scoped, "service_variable_kvs")?;
    t.service_variable_kvs = kvs;
    t.variable_yaml = variable_yaml;
    t.containers = containers;
    let expected = t.version;
    t.version += 1;
    if state.service_templates.replace(&t, expected).await? {
        Ok(())
    } else {
        Err(ApiError::code(
            ErrorKind::Conflict,
            UPDATE_SERVICE,
            format!("{} changed concurrently; try again", what(name, production)),
        ))
    }
}

/// S6: mark every revision deleted and take the service out of the project's orchestration.
/// Environments keep what they deployed.
pub async fn delete(
    state: &AppState,
    caller: &Identity,
    project_key: &str,
    name: &str,
    production: bool,
) -> ApiResult<()> {
    project::require(state, project_key).await?;
    let t = latest(state, project_key, name, production, DELETE_TEMPLATE).await?;
    may_change(caller, &t)?;
    state
        .service_templates
        .mark_deleting(project_key, name, production)
        .await?;
    project::service::orchestrate(state, project_key, name, production, false).await
}

/// S2: the project's services; unknown project → 404.
pub async fn list(
    state: &AppState,
    project_key: &str,
    production: bool,
) -> ApiResult<Vec<ServiceBrief>> {
    project::require(state, project_key).await?;
    Ok(super::list(state, project_key, production)
        .await?
        .into_iter()
        .map(|t| ServiceBrief {
            service_name: t.service_name,
            source: t.source,
            kind: t.kind,
            containers: t
                .containers
                .into_iter()
                .map(|c| ContainerBrief {
                    name: c.name,
                    image: c.image,
                    image_name: c.image_name,
                })
                .collect(),
        })
        .collect())
}

/// S3: a service's latest revision; unknown project or service → 404.
pub async fn detail(
    state: &AppState,
    project_key: &str,
    name: &str,
    production: bool,
) -> ApiResult<ServiceDetail> {
    project::require(state, project_key).await?;
    let t = latest(state, project_key, name, production, GET_TEMPLATE).await?;
    Ok(ServiceDetail {
        service_name: t.service_name,
        source: t.source,
        kind: t.kind,
        template_name: String::new(),
        created_by: t.create_by,
        created_time: t.create_time,
        yaml: t.yaml,
        containers: t.containers,
        service_variable_kvs: t.service_variable_kvs,
        revision: t.revision,
        production: t.production,
    })
}
