//! The rules of the project routes (spec/environments.md §2): who may call them, what is
//! checked, what is stored, what is answered.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::model::{ProductFeature, Project};
use super::{InitEnv, environments_blocking_delete};
use crate::auth::Identity;
use crate::error::{ApiError, ApiResult, ErrorKind};
use crate::limits::Paging;
use crate::service_template::ServiceVariableKV;
use crate::service_template::service::{self as services, NewService};
use crate::state::AppState;
use crate::store::StoreError;
use crate::validate;
use crate::validate::nullable;

/// Zadig's project error codes (spec §0.4).
pub const CREATE_PROJECT: (i64, &str) = (6060, "Create project failed");
pub const DELETE_PROJECT: (i64, &str) = (6063, "Delete project failed");

/// The project types of P1 and the one this server supports.
pub const PROJECT_TYPES: &[&str] = &["yaml", "helm", "loaded", "vm"];

/// The body of P1 `POST /openapi/projects/project`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct CreateProjectRequest {
    /// The display name.
    #[serde(default)]
    pub project_name: String,
    /// The key, `^[a-z-\d]+$`.
    #[serde(default)]
    pub project_key: String,
    #[serde(default)]
    pub is_public: bool,
    #[serde(default)]
    pub description: String,
    /// `yaml` (K8s YAML); Zadig's `helm`, `loaded` and `vm` are refused (400).
    #[serde(default)]
    pub project_type: String,
}

/// One service of P2 `init/yaml`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct InitService {
    /// `yaml`; Zadig's `template` (from a YAML template) is refused (400).
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub service_name: String,
    #[serde(default)]
    pub yaml: String,
    #[serde(default)]
    pub template_name: String,
    /// The service's variables (a KV list).
    #[serde(default, deserialize_with = "nullable")]
    pub variable_yaml: Vec<ServiceVariableKV>,
    #[serde(default)]
    pub auto_sync: bool,
    #[serde(default)]
    pub values_yaml: String,
}

/// The body of P2 `POST /openapi/projects/project/init/yaml`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct InitYamlRequest {
    #[serde(default)]
    pub project_name: String,
    #[serde(default)]
    pub project_key: String,
    #[serde(default)]
    pub is_public: bool,
    #[serde(default)]
    pub description: String,
    #[serde(default, deserialize_with = "nullable")]
    pub service_list: Vec<InitService>,
    #[serde(default, deserialize_with = "nullable")]
    pub env_list: Vec<InitEnv>,
}

/// One project of P3.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProjectBrief {
    /// The display name.
    pub project_name: String,
    pub project_key: String,
    pub description: String,
    /// `k8s`, `helm`, `external` or `cloud_host`.
    pub deploy_type: String,
}

/// P3's answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProjectList {
    pub total: u64,
    pub projects: Vec<ProjectBrief>,
}

/// P4's answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProjectDetail {
    pub project_name: String,
    pub project_key: String,
    pub is_public: bool,
    pub desc: String,
    pub deploy_type: String,
    pub create_time: i64,
    /// The last writer's name (Zadig reports `update_by` under this key).
    pub created_by: String,
}

/// P6's answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GlobalVariables {
    pub variables: Vec<ServiceVariableKV>,
    pub production_variables: Vec<ServiceVariableKV>,
}

/// A project key: `^[a-z-\d]+$`, at most 256 characters.
pub fn check_key(field: &str, key: &str) -> ApiResult<()> {
    validate::name(field, key)?;
    if key
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "`{field}` must match ^[a-z-\\d]+$ (lowercase letters, digits and '-'), got {key:?}"
        )))
    }
}

/// The feature of a project type; only `yaml` is supported (spec §1.1 mapping).
fn feature_of(project_type: &str) -> ApiResult<ProductFeature> {
    validate::one_of("project_type", project_type, PROJECT_TYPES)?;
    if project_type != "yaml" {
        return Err(ApiError::bad_request(format!(
            "`project_type` {project_type:?} is not supported by this server: only `yaml` \
             (K8s YAML) projects are (Helm-chart, host-adopted and VM projects are not)"
        )));
    }
    Ok(ProductFeature {
        basic_facility: "kubernetes".into(),
        deploy_type: "k8s".into(),
        create_env_type: "system".into(),
        app_type: String::new(),
    })
}

/// A new project record, checked in this order: display name, key, project type.
fn new_project(
    state: &AppState,
    caller: &Identity,
    name: &str,
    key: &str,
    description: &str,
    public: bool,
    project_type: &str,
) -> ApiResult<Project> {
    validate::name("project_name", name)?;
    check_key("project_key", key)?;
    let feature = feature_of(project_type)?;
    let now = state.clock.now();
    Ok(Project {
        id: validate::new_object_id(now),
        product_name: key.to_string(),
        project_name: name.trim().to_string(),
        description: description.to_string(),
        product_feature: feature,
        public,
        revision: 1,
        services: Vec::new(),
        production_services: Vec::new(),
        global_variables: Vec::new(),
        production_global_variables: Vec::new(),
        timeout: 0,
        release_max_history: 10,
        create_time: now,
        update_time: now,
        update_by: caller.name.clone(),
        created_by_id: caller.uid.clone(),
        admins: vec![caller.uid.clone()],
        enabled: true,
        version: 0,
    })
}

/// Store `p`; a taken key or display name → 409 (6060).
async fn insert(state: &AppState, p: &Project) -> ApiResult<()> {
    if state.projects.get(&p.product_name).await?.is_some() {
        return Err(duplicate_key(&p.product_name));
    }
    if state
        .projects
        .by_display_name(&p.project_name)
        .await?
        .is_some()
    {
        return Err(duplicate_name(&p.project_name));
    }
    match state.projects.insert(p).await {
        Ok(()) => Ok(()),
        Err(StoreError::Duplicate(index)) if index.contains("project_name") => {
            Err(duplicate_name(&p.project_name))
        }
        Err(StoreError::Duplicate(_)) => Err(duplicate_key(&p.product_name)),
        Err(e) => Err(e.into()),
    }
}

fn duplicate_key(key: &str) -> ApiError {
    ApiError::code(
        ErrorKind::Conflict,
        CREATE_PROJECT,
        format!("a project with key `project_key` {key:?} already exists"),
    )
}

fn duplicate_name(name: &str) -> ApiError {
    ApiError::code(
        ErrorKind::Conflict,
        CREATE_PROJECT,
        format!("a project named `project_name` {name:?} already exists"),
    )
}

/// P1: create a project. Admins only.
pub async fn create(
    state: &AppState,
    caller: &Identity,
    req: &CreateProjectRequest,
) -> ApiResult<()> {
    caller.require_admin()?;
    let p = new_project(
        state,
        caller,
        &req.project_name,
        &req.project_key,
        &req.description,
        req.is_public,
        &req.project_type,
    )?;
    insert(state, &p).await
}

/// P2: create a K8s YAML project with its services (and, through the environments hook, its
/// environments). Admins only. Everything is checked before anything is stored.
pub async fn init_yaml(
    state: &AppState,
    caller: &Identity,
    req: &InitYamlRequest,
) -> ApiResult<()> {
    caller.require_admin()?;
    let p = new_project(
        state,
        caller,
        &req.project_name,
        &req.project_key,
        &req.description,
        req.is_public,
        "yaml",
    )?;
    if req.service_list.is_empty() {
        return Err(ApiError::bad_request(
            "`service_list`: initializing a project with no services is not allowed",
        ));
    }
    let mut prepared = Vec::with_capacity(req.service_list.len());
    for (i, s) in req.service_list.iter().enumerate() {
        let at = format!("service_list[{i}]");
        match s.source.as_str() {
            "yaml" => {}
            "template" => {
                return Err(ApiError::bad_request(format!(
                    "`{at}.source`: services from YAML templates (`template`) are not supported \
                     by this server; send the YAML with source `yaml`"
                )));
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "`{at}.source` must be `yaml` or `template`, got {other:?}"
                )));
            }
        }
        if prepared
            .iter()
            .any(|n: &NewService| n.service_name == s.service_name)
        {
            return Err(ApiError::bad_request(format!(
                "`{at}.service_name`: service {:?} is listed twice",
                s.service_name
            )));
        }
        let new = NewService {
            service_name: s.service_name.clone(),
            yaml: s.yaml.clone(),
            variable_yaml: s.variable_yaml.clone(),
        };
        services::prepare(&p.product_name, &new, &at)?;
        prepared.push(new);
    }
    super::check_initial_environments(state, caller, &p.product_name, &req.env_list).await?;
    insert(state, &p).await?;
    for new in &prepared {
        services::create(state, caller, &p.product_name, false, new).await?;
    }
    let stored = super::require(state, &p.product_name).await?;
    super::create_initial_environments(state, caller, &stored, &req.env_list).await
}

/// P3: one page of projects, most recently updated first. Every user sees every project
/// (there are no project members here, docs/security.md).
pub async fn list(state: &AppState, p: Paging) -> ApiResult<ProjectList> {
    let (list, total) = state.projects.page(p).await?;
    Ok(ProjectList {
        total,
        projects: list
            .iter()
            .map(|p| ProjectBrief {
                project_name: p.project_name.clone(),
                project_key: p.product_name.clone(),
                description: p.description.clone(),
                deploy_type: p.deploy_type().to_string(),
            })
            .collect(),
    })
}

/// P4: a project's detail; unknown → 404.
pub async fn detail(state: &AppState, key: &str) -> ApiResult<ProjectDetail> {
    let p = super::require(state, key).await?;
    Ok(ProjectDetail {
        project_name: p.project_name.clone(),
        project_key: p.product_name.clone(),
        is_public: p.public,
        desc: p.description.clone(),
        deploy_type: p.deploy_type().to_string(),
        create_time: p.create_time,
        created_by: p.update_by.clone(),
    })
}

/// Go's `strconv.ParseBool` forms of `isDelete`; absent → false.
pub fn parse_is_delete(v: Option<&str>) -> ApiResult<bool> {
    match v {
        None | Some("") => Ok(false),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
        Some(other) => Err(ApiError::bad_request(format!(
            "`isDelete` must be true or false, got {other:?}"
        ))),
    }
}

/// P5: delete a project and its services (test and production). Admins only; unknown → 404;
/// a project that still has environments → 409 naming them (nothing is deleted).
pub async fn delete(state: &AppState, caller: &Identity, key: &str) -> ApiResult<()> {
    caller.require_admin()?;
    let p = super::require(state, key).await?;
    let envs = environments_blocking_delete(state, key).await?;
    if !envs.is_empty() {
        return Err(ApiError::code(
            ErrorKind::Conflict,
            DELETE_PROJECT,
            format!(
                "project `{key}` still has environments [{}]: delete them first",
                envs.join(", ")
            ),
        ));
    }
    state.service_templates.delete_project(key).await?;
    state.projects.delete(p.key()).await?;
    Ok(())
}

/// P6: the project's global variables; unknown → 404.
pub async fn global_variables(state: &AppState, key: &str) -> ApiResult<GlobalVariables> {
    let p = super::require(state, key).await?;
    Ok(GlobalVariables {
        variables: p.global_variables,
        production_variables: p.production_global_variables,
    })
}

/// Add service `name` to the first orchestration group of `key` (test or production) unless
/// it is in one already; remove it from every group with `add = false`. Retries a conflicting
/// write; an unknown project is left alone.
pub async fn orchestrate(
    state: &AppState,
    key: &str,
    name: &str,
    production: bool,
    add: bool,
) -> ApiResult<()> {
    for _ in 0..10 {
        let Some(mut p) = state.projects.get(key).await? else {
            return Ok(());
        };
        let groups = p.groups_mut(production);
        let present = groups.iter().any(|g| g.iter().any(|s| s == name));
        match (add, present) {
            (true, true) | (false, false) => return Ok(()),
            (true, false) => match groups.first_mut() {
                Some(g) => g.push(name.to_string()),
                None => groups.push(vec![name.to_string()]),
            },
            (false, true) => {
                for g in groups.iter_mut() {
                    g.retain(|s| s != name);
                }
                groups.retain(|g| !g.is_empty());
            }
        }
        let expected = p.version;
        p.version += 1;
        if state.projects.replace(&p, expected).await? {
            return Ok(());
        }
    }
    Err(ApiError::conflict(format!(
        "project `{key}` changed concurrently; try again"
    )))
}
