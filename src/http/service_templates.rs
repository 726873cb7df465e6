//! `/openapi/service/yaml`: K8s YAML services and their `production/` variants
//! (spec/environments.md §4). Thin handlers; the rules are in
//! `crate::service_template::service`. Each test/production pair is written from one body and one OpenAPI
//! description by `both_groups!`.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Identity;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::groups::both_groups;
use crate::http::projects::{KeyQuery, project_key};
use crate::http::{Json, Path, Query, Success};
use crate::service_template::ServiceVariableKV;
use crate::service_template::service::{
    self, NewService, ServiceBrief, ServiceDetail, UpdateVariablesRequest, UpdateYamlRequest,
    check_name,
};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_service))
        .routes(routes!(create_production_service))
        .routes(routes!(list_services))
        .routes(routes!(list_production_services))
        .routes(routes!(service_detail, update_yaml, delete_service))
        .routes(routes!(
            production_service_detail,
            update_production_yaml,
            delete_production_service
        ))
        .routes(routes!(update_variables))
        .routes(routes!(update_production_variables))
}

/// The body of S1; `production` is ignored (the route decides).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CreateServiceRequest {
    /// `^[a-zA-Z0-9-_]+$`.
    #[serde(default)]
    pub service_name: String,
    /// Multi-document Kubernetes YAML, a Go template over the variables.
    #[serde(default)]
    pub yaml: String,
    /// The service's variables (a KV list, not YAML text); keys the YAML uses and this list
    /// lacks are added with an empty value.
    #[serde(default, deserialize_with = "crate::validate::nullable")]
    pub variable_yaml: Vec<ServiceVariableKV>,
    /// Ignored: the route decides.
    #[serde(default)]
    pub production: bool,
}

/// The service a route names: `{name}` in the path and `projectKey` in the query (its
/// OpenAPI parameters and its extractor). [`ServiceAt::check`] checks both, in the handler,
/// after the body is decoded.
pub struct ServiceAt {
    project_key: Option<String>,
    name: String,
}

impl ServiceAt {
    /// The project key and the service name, or a 400 naming the parameter.
    fn check(&self) -> ApiResult<(&str, &str)> {
        let project = project_key(&self.project_key)?;
        check_name("name", &self.name)?;
        Ok((project, &self.name))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ServiceAt {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(name) = Path::<String>::from_request_parts(parts, state).await?;
        let Query(q) = Query::<KeyQuery>::from_request_parts(parts, state).await?;
        Ok(Self {
            project_key: q.project_key,
            name,
        })
    }
}

/// `{name}`, as the OpenAPI document states it.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[expect(dead_code, reason = "read by the OpenAPI derive only")]
struct ServiceName {
    /// service name
    name: String,
}

impl IntoParams for ServiceAt {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let mut params = ServiceName::into_params(|| Some(ParameterIn::Path));
        params.extend(KeyQuery::into_params(|| Some(ParameterIn::Query)));
        params
    }
}

both_groups! {
    /// Create a service from raw YAML (spec §4.1, S1).
    create_service = "/openapi/service/yaml/raw"
        + ((status = 403, body = ErrorBody, description = "a cluster-scoped object in the YAML (system admins only)"));
    /// Create a production service from raw YAML (spec §4.1, S1). Admins only.
    create_production_service = "/openapi/service/yaml/production/raw"
        + ((status = 403, body = ErrorBody, description = "not a system admin"));
    post(tag = "services", params(KeyQuery), request_body = CreateServiceRequest),
    responses((status = 200, body = Success),
        (status = 400, body = ErrorBody, description = "a missing or invalid field; YAML that does not render or parse (code 6045) names the document and line"),
        (status = 404, body = ErrorBody, description = "unknown project"),
        (status = 409, body = ErrorBody, description = "the service exists (code 6040)")),
    |production| (
        State(state): State<AppState>,
        caller: Identity,
        Query(q): Query<KeyQuery>,
        Json(req): Json<CreateServiceRequest>,
    ) -> ApiResult<Json<Success>> {
        let project = project_key(&q.project_key)?;
        let new = NewService {
            service_name: req.service_name,
            yaml: req.yaml,
            variable_yaml: req.variable_yaml,
        };
        service::create(&state, &caller, project, production, &new).await?;
        Ok(Success::new())
    }
}

both_groups! {
    /// A project's services with their containers (spec §4.2, S2).
    list_services = "/openapi/service/yaml/services";
    /// A project's production services (spec §4.2, S2).
    list_production_services = "/openapi/service/yaml/production/services";
    get(tag = "services", params(KeyQuery)),
    responses((status = 200, body = Vec<ServiceBrief>),
        (status = 404, body = ErrorBody, description = "unknown project")),
    |production| (
        State(state): State<AppState>,
        _caller: Identity,
        Query(q): Query<KeyQuery>,
    ) -> ApiResult<Json<Vec<ServiceBrief>>> {
        Ok(Json(
            service::list(&state, project_key(&q.project_key)?, production).await?,
        ))
    }
}

both_groups! {
    /// A service's YAML, variables and containers (spec §4.3, S3).
    service_detail = "/openapi/service/yaml/{name}";
    /// A production service's detail (spec §4.3, S3).
    production_service_detail = "/openapi/service/yaml/production/{name}";
    get(tag = "services", params(ServiceAt)),
    responses((status = 200, body = ServiceDetail),
        (status = 404, body = ErrorBody, description = "unknown project or service (code 6043)")),
    |production| (
        State(state): State<AppState>,
        _caller: Identity,
        at: ServiceAt,
    ) -> ApiResult<Json<ServiceDetail>> {
        let (project, name) = at.check()?;
        Ok(Json(
            service::detail(&state, project, name, production).await?,
        ))
    }
}

both_groups! {
    /// Replace a service's YAML: a new revision; variables kept, new keys added (spec §4.4, S4).
    /// The service's creator or an admin.
    update_yaml = "/openapi/service/yaml/{name}"
        + ((status = 403, body = ErrorBody, description = "not the service's creator or an admin; a cluster-scoped object in the YAML (system admins only)"));
    /// Replace a production service's YAML (spec §4.4, S4). Admins only.
    update_production_yaml = "/openapi/service/yaml/production/{name}"
        + ((status = 403, body = ErrorBody, description = "not a system admin"));
    put(tag = "services", params(ServiceAt), request_body = UpdateYamlRequest),
    responses((status = 200, body = Success),
        (status = 400, body = ErrorBody, description = "a missing field; YAML that does not render or parse (code 6045)"),
        (status = 404, body = ErrorBody, description = "unknown project or service (code 6041)")),
    |production| (
        State(state): State<AppState>,
        caller: Identity,
        at: ServiceAt,
        Json(req): Json<UpdateYamlRequest>,
    ) -> ApiResult<Json<Success>> {
        let (project, name) = at.check()?;
        service::update_yaml(&state, &caller, project, name, production, &req).await?;
        Ok(Success::new())
    }
}

both_groups! {
    /// Change the values of a service's variables in place (spec §4.5, S5). The service's
    /// creator or an admin.
    update_variables = "/openapi/service/yaml/{name}/variable"
        + ((status = 403, body = ErrorBody, description = "not the service's creator or an admin; a cluster-scoped object in the YAML (system admins only)"));
    /// Change a production service's variables (spec §4.5, S5). Admins only.
    update_production_variables = "/openapi/service/yaml/production/{name}/variable"
        + ((status = 403, body = ErrorBody, description = "not a system admin"));
    put(tag = "services", params(ServiceAt), request_body = UpdateVariablesRequest),
    responses((status = 200, body = Success),
        (status = 400, body = ErrorBody, description = "a missing or invalid variable; the YAML does not render with the new values (code 6045)"),
        (status = 404, body = ErrorBody, description = "unknown project or service (code 6092)"),
        (status = 409, body = ErrorBody, description = "changed concurrently (code 6092)")),
    |production| (
        State(state): State<AppState>,
        caller: Identity,
        at: ServiceAt,
        Json(req): Json<UpdateVariablesRequest>,
    ) -> ApiResult<Json<Success>> {
        let (project, name) = at.check()?;
        service::update_variables(&state, &caller, project, name, production, &req).await?;
        Ok(Success::new())
    }
}

both_groups! {
    /// Delete a service (every revision; environments keep their copies) (spec §4.6, S6). The
    /// service's creator or an admin.
    delete_service = "/openapi/service/yaml/{name}"
        + ((status = 403, body = ErrorBody, description = "not the service's creator or an admin"));
    /// Delete a production service (spec §4.6, S6). Admins only.
    delete_production_service = "/openapi/service/yaml/production/{name}"
        + ((status = 403, body = ErrorBody, description = "not a system admin"));
    delete(tag = "services", params(ServiceAt)),
    responses((status = 200, body = Success),
        (status = 404, body = ErrorBody, description = "unknown project or service (code 6044)")),
    |production| (
        State(state): State<AppState>,
        caller: Identity,
        at: ServiceAt,
    ) -> ApiResult<Json<Success>> {
        let (project, name) = at.check()?;
        service::delete(&state, &caller, project, name, production).await?;
        Ok(Success::new())
    }
}
