//! `/openapi/environments` and its production group `/openapi/environments/production`
//! (spec/environments.md §5). Thin handlers over `crate::environment::service`; the two
//! groups share every handler body and differ by the `production` flag: [`both_groups!`]
//! writes the pair of annotated handlers from one body and one OpenAPI description (the
//! production group adds what differs, e.g. its 403 for callers who are not admins).

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Identity;
use crate::environment::service::{
    self, AddServicesInput, BasicInput, CreateEnvInput, ImageInput, RemoveServicesInput,
    ScaleInput, UpdateServicesInput,
};
use crate::environment::view::{EnvBrief, EnvDetail, ServiceDetail, ServicePods};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::groups::both_groups;
use crate::http::{Json, Path, Query, Success};
use crate::service_template::GlobalVariableKV;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_envs, create_env))
        .routes(routes!(get_env, update_env, delete_env))
        .routes(routes!(
            env_get_service_yaml,
            env_add_services,
            env_remove_services
        ))
        .routes(routes!(env_service_detail))
        .routes(routes!(env_service_pods))
        .routes(routes!(env_restart_service))
        .routes(routes!(env_restart_pod))
        .routes(routes!(env_get_variables, env_set_variables))
        .routes(routes!(env_update_services))
        .routes(routes!(env_scale))
        .routes(routes!(image_deployment))
        .routes(routes!(image_statefulset))
        .routes(routes!(image_cronjob))
        .routes(routes!(image_job))
        .routes(routes!(prod_list_envs, prod_create_env))
        .routes(routes!(prod_get_env, prod_update_env, prod_delete_env))
        .routes(routes!(
            prod_get_service_yaml,
            prod_add_services,
            prod_remove_services
        ))
        .routes(routes!(prod_service_detail))
        .routes(routes!(prod_service_pods))
        .routes(routes!(prod_restart_service))
        .routes(routes!(prod_restart_pod))
        .routes(routes!(prod_get_variables, prod_set_variables))
        .routes(routes!(prod_update_services))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProjectQuery {
    /// The project (required).
    #[serde(rename = "projectKey")]
    pub project_key: Option<String>,
}

impl ProjectQuery {
    fn project(&self) -> ApiResult<&str> {
        project_of(&self.project_key)
    }
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct DeleteQuery {
    pub project_key: Option<String>,
    /// `true`: delete the services' objects and the namespace we created; `false`: keep
    /// them (only Zadig's namespace labels go). Required on the test group, as in Zadig;
    /// ignored on the production group (objects are never deleted there).
    pub is_delete: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct YamlQuery {
    pub project_key: Option<String>,
    pub env_name: Option<String>,
    pub service_name: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct DetailQuery {
    pub project_key: Option<String>,
    /// Only workloads of this kind (`Deployment`, `StatefulSet`, …).
    pub work_load_type: Option<String>,
}

/// E17's body.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct VariablesInput {
    #[serde(default, deserialize_with = "crate::validate::nullable")]
    pub global_variables: Vec<GlobalVariableKV>,
}

fn project_of(p: &Option<String>) -> ApiResult<&str> {
    let p = p.as_deref().unwrap_or_default();
    if p.trim().is_empty() {
        return Err(ApiError::bad_request("`projectKey` is required"));
    }
    Ok(p)
}

/// Go's `strconv.ParseBool`, which Zadig uses for `isDelete`.
fn parse_bool(field: &str, v: Option<&str>) -> ApiResult<bool> {
    match v {
        Some("1" | "t" | "T" | "TRUE" | "true" | "True") => Ok(true),
        Some("0" | "f" | "F" | "FALSE" | "false" | "False") => Ok(false),
        None | Some("") => Err(ApiError::bad_request(format!(
            "`{field}` is required: true deletes the environment's objects (and the namespace it created), false keeps them"
        ))),
        Some(other) => Err(ApiError::bad_request(format!(
            "`{field}` must be true or false, got {other:?}"
        ))),
    }
}

fn text(body: String) -> axum::response::Response {
    ([(CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

// ---- shared bodies --------------------------------------------------------------------

async fn do_delete(
    state: &AppState,
    caller: &Identity,
    name: &str,
    q: &DeleteQuery,
    production: bool,
) -> ApiResult<Json<Success>> {
    let project = project_of(&q.project_key)?;
    let delete = if production {
        false
    } else {
        parse_bool("isDelete", q.is_delete.as_deref())?
    };
    service::delete(state, caller, project, name, production, delete).await?;
    Ok(Success::new())
}

async fn do_yaml(
    state: &AppState,
    q: &YamlQuery,
    production: bool,
) -> ApiResult<axum::response::Response> {
    let project = project_of(&q.project_key)?;
    let env = q.env_name.as_deref().unwrap_or_default();
    let svc = q.service_name.as_deref().unwrap_or_default();
    crate::validate::name("envName", env)?;
    Ok(text(
        service::service_yaml(state, project, env, svc, production).await?,
    ))
}

/// E14/E15 and the CronJob/Job routes: set a workload container's image.
async fn set_image(
    state: &AppState,
    caller: &Identity,
    kind: &str,
    env: &str,
    input: ImageInput,
) -> ApiResult<Json<Success>> {
    service::set_image(state, caller, kind, env, input)
        .await
        .map_err(|e| e.during(service::UPDATE_IMAGE))?;
    Ok(Success::new())
}

// ---- both groups (production ones: admins change them) -----------------------------

both_groups! {
    /// E1: the project's test environments.
    list_envs = "/openapi/environments";
    /// The project's production environments.
    prod_list_envs = "/openapi/environments/production";
    get(tag = "environments", params(ProjectQuery)),
    responses((status = 200, body = Vec<EnvBrief>)),
    |production| (
        State(state): State<AppState>,
        _caller: Identity,
        Query(q): Query<ProjectQuery>,
    ) -> ApiResult<Json<Vec<EnvBrief>>> {
        Ok(Json(service::list(&state, q.project()?, production).await?))
    }
}

both_groups! {
    /// E2: create a test environment: the namespace (or an existing one with
    /// `adopt_namespace`), then every listed service applied. Answers once the cluster holds it.
    create_env = "/openapi/environments"
        + ((status = 404, body = ErrorBody, description = "unknown project or service"),
            (status = 403, body = ErrorBody, description = "a non-admin: a cluster not offered to the project, a namespace of another project's environment or one the project does not use already (adopt_namespace); anyone but a system admin: a cluster-scoped object in a service"));
    /// Create an (empty) production environment (admins).
    prod_create_env = "/openapi/environments/production"
        + ((status = 404, body = ErrorBody, description = "unknown project"),
            (status = 403, body = ErrorBody, description = "not a system admin"));
    post(tag = "environments", params(ProjectQuery), request_body = CreateEnvInput),
    responses((status = 200, body = Success),
        (status = 409, body = ErrorBody, description = "environment or namespace exists, another environment already applied one of its objects (`resource \"<Kind>/<name>\" is already applied by service …`), or the cluster is unreachable (code 6074)"),
        (status = 422, body = ErrorBody, description = "the cluster refused an object")),
    code = service::CREATE_ENV,
    |production| (
        State(state): State<AppState>,
        caller: Identity,
        Query(q): Query<ProjectQuery>,
        Json(input): Json<CreateEnvInput>,
    ) -> ApiResult<Json<Success>> {
        service::create(&state, &caller, q.project()?, production, input).await?;
        Ok(Success::new())
    }
}

both_groups! {
    /// E3: a test environment with its services' live status.
    get_env = "/openapi/environments/{name}";
    /// A production environment with its services' live status.
    prod_get_env = "/openapi/environments/production/{name}";
    get(tag = "environments", params(("name" = String, Path), ProjectQuery)),
    responses((status = 200, body = EnvDetail),
        (status = 409, body = ErrorBody, description = "the cluster is unreachable (code 6078)")),
    code = service::GET_ENV,
    |production| (
        State(state): State<AppState>,
        _caller: Identity,
        Path(name): Path<String>,
        Query(q): Query<ProjectQuery>,
    ) -> ApiResult<Json<EnvDetail>> {
        Ok(Json(
            service::detail(&state, q.project()?, &name, production).await?,
        ))
    }
}

both_groups! {
    /// E4: change the environment's image registry (its creator, admins).
    update_env = "/openapi/environments/{name}";
    /// Change a production environment's registry and alias (admins).
    prod_update_env = "/openapi/environments/production/{name}";
    put(tag = "environments", params(("name" = String, Path), ProjectQuery),
        request_body = BasicInput),
    responses((status = 200, body = Success), (status = 403, body = ErrorBody)),
    |production| (
        State(state): State<AppState>,
        caller: Identity,
        Path(name): Path<String>,
        Query(q): Query<ProjectQuery>,
        Json(input): Json<BasicInput>,
    ) -> ApiResult<Json<Success>> {
        service::update_basic(&state, &caller, q.project()?, &name, production, input).await?;
        Ok(Success::new())
    }
}

both_groups! {
    /// E5: delete a test environment (its creator, admins).
    delete_env = "/openapi/environments/{name}"
        + ((status = 409, body = ErrorBody, description = "the cluster is unreachable (code 6077)"));
    /// Forget a production environment (admins); its objects stay in the cluster.
    prod_delete_env = "/openapi/environments/production/{name}";
    delete(tag = "environments", params(("name" = String, Path), DeleteQuery)),
    responses((status = 200, body = Success), (status = 403, body = ErrorBody)),
    code = service::DELETE_ENV,
    |production| (
        State(state): State<AppState>,
        caller: Identity,
        Path(name): Path<String>,
        Query(q): Query<DeleteQuery>,
    ) -> ApiResult<Json<Success>> {
        do_delete(&state, &caller, &name, &q, production).await
    }
}

both_groups! {
    /// E7: the YAML applied for a service (text/plain).
    env_get_service_yaml = "/openapi/environments/service/yaml";
    /// The YAML applied for a service of a production environment (text/plain).
    prod_get_service_yaml = "/openapi/environments/production/service/yaml";
    get(tag = "environments", params(YamlQuery)),
    responses((status = 200, body = String, content_type = "text/plain"),
        (status = 404, body = ErrorBody, description = "unknown environment or service")),
    |production| (
        State(state): State<AppState>,
        _caller: Identity,
        Query(q): Query<YamlQuery>,
    ) -> ApiResult<axum::response::Response> {
        do_yaml(&state, &q, production).await
    }
}

both_groups! {
    /// E6: render services' latest templates and apply them into the environment.
    env_add_services = "/openapi/environments/service/yaml";
    /// Apply production services into a production environment (admins).
    prod_add_services = "/openapi/environments/production/service/yaml";
    post(tag = "environments", params(ProjectQuery), request_body = AddServicesInput),
    responses((status = 200, body = Success),
        (status = 404, body = ErrorBody, description = "unknown project, environment or service"),
        (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "another environment already applied one of its objects (`resource \"<Kind>/<name>\" is already applied by service …`) or the cluster is unreachable (code 6076)"),
        (status = 422, body = ErrorBody, description = "the cluster refused an object")),
    code = service::UPDATE_ENV,
    |production| (
        State(state): State<AppState>,
        caller: Identity,
        Query(q): Query<ProjectQuery>,
        Json(input): Json<AddServicesInput>,
    ) -> ApiResult<Json<Success>> {
        service::add_services(&state, &caller, q.project()?, production, input).await?;
        Ok(Success::new())
    }
}

both_groups! {
    /// E8: remove services (and, unless `not_delete_resource`, their objects).
    env_remove_services = "/openapi/environments/service/yaml"
        + ((status = 409, body = ErrorBody, description = "the cluster is unreachable (code 6076)"));
    /// Remove services from a production environment (admins).
    prod_remove_services = "/openapi/environments/production/service/yaml";
    delete(tag = "environments", params(ProjectQuery), request_body = RemoveServicesInput),
    responses((status = 200, body = Success),
        (status = 404, body = ErrorBody, description = "unknown project, environment or service"),
        (status = 403, body = ErrorBody)),
    code = service::UPDATE_ENV,
    |production| (
        State(state): State<AppState>,
        caller: Identity,
        Query(q): Query<ProjectQuery>,
        Json(input): Json<RemoveServicesInput>,
    ) -> ApiResult<Json<Success>> {
        service::remove_services(&state, &caller, q.project()?, production, input).await?;
        Ok(Success::new())
    }
}

both_groups! {
    /// E9: a service's workloads and pods, live.
    env_service_detail = "/openapi/environments/{name}/services/{serviceName}";
    /// A production service's workloads and pods, live.
    prod_service_detail = "/openapi/environments/production/{name}/services/{serviceName}";
    get(tag = "environments",
        params(("name" = String, Path), ("serviceName" = String, Path), DetailQuery)),
    responses((status = 200, body = ServiceDetail),
        (status = 409, body = ErrorBody, description = "the cluster is unreachable (code 6083)")),
    code = service::GET_SERVICE,
    |production| (
        State(state): State<AppState>,
        _caller: Identity,
        Path((name, svc)): Path<(String, String)>,
        Query(q): Query<DetailQuery>,
    ) -> ApiResult<Json<ServiceDetail>> {
        Ok(Json(
            service::service_detail(
                &state,
                project_of(&q.project_key)?,
                &name,
                &svc,
                production,
                q.work_load_type.as_deref(),
            )
            .await?,
        ))
    }
}

both_groups! {
    /// E10: a service's pods, live.
    env_service_pods = "/openapi/environments/{name}/service/{serviceName}/pods";
    /// A production service's pods, live.
    prod_service_pods = "/openapi/environments/production/{name}/service/{serviceName}/pods";
    get(tag = "environments",
        params(("name" = String, Path), ("serviceName" = String, Path), ProjectQuery)),
    responses((status = 200, body = ServicePods),
        (status = 409, body = ErrorBody, description = "the cluster is unreachable (code 6083)")),
    code = service::GET_SERVICE,
    |production| (
        State(state): State<AppState>,
        _caller: Identity,
        Path((name, svc)): Path<(String, String)>,
        Query(q): Query<ProjectQuery>,
    ) -> ApiResult<Json<ServicePods>> {
        Ok(Json(
            service::service_pods(&state, q.project()?, &name, &svc, production).await?,
        ))
    }
}

both_groups! {
    /// E11: restart every workload of a service.
    env_restart_service = "/openapi/environments/{name}/service/{serviceName}/restart";
    /// Restart every workload of a production service (admins).
    prod_restart_service = "/openapi/environments/production/{name}/service/{serviceName}/restart";
    post(tag = "environments",
        params(("name" = String, Path), ("serviceName" = String, Path), ProjectQuery)),
    responses((status = 200, body = Success), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "another environment already applied one of its objects (`resource \"<Kind>/<name>\" is already applied by service …`) (code 6076); the cluster is unreachable, or a blue-green deploy holds the service's Service until its release (`service <s> is in the blue-green deploy of task <workflow>#<id> …`) (code 6080)")),
    code = service::RESTART_SERVICE,
    |production| (
        State(state): State<AppState>,
        caller: Identity,
        Path((name, svc)): Path<(String, String)>,
        Query(q): Query<ProjectQuery>,
    ) -> ApiResult<Json<Success>> {
        service::restart_service(&state, &caller, q.project()?, &name, &svc, production).await?;
        Ok(Success::new())
    }
}

both_groups! {
    /// E12: delete a pod so its controller makes a new one.
    env_restart_pod = "/openapi/environments/{name}/pod/{podName}/restart";
    /// Delete a pod of a production environment (admins).
    prod_restart_pod = "/openapi/environments/production/{name}/pod/{podName}/restart";
    post(tag = "environments",
        params(("name" = String, Path), ("podName" = String, Path), ProjectQuery)),
    responses((status = 200, body = Success), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the cluster is unreachable (code 6153)")),
    code = service::GET_POD,
    |production| (
        State(state): State<AppState>,
        caller: Identity,
        Path((name, pod)): Path<(String, String)>,
        Query(q): Query<ProjectQuery>,
    ) -> ApiResult<Json<Success>> {
        service::restart_pod(&state, &caller, q.project()?, &name, &pod, production).await?;
        Ok(Success::new())
    }
}

both_groups! {
    /// E16: the environment's global variable values.
    env_get_variables = "/openapi/environments/{name}/variable";
    /// A production environment's global variable values.
    prod_get_variables = "/openapi/environments/production/{name}/variable";
    get(tag = "environments", params(("name" = String, Path), ProjectQuery)),
    responses((status = 200, body = Vec<GlobalVariableKV>)),
    |production| (
        State(state): State<AppState>,
        _caller: Identity,
        Path(name): Path<String>,
        Query(q): Query<ProjectQuery>,
    ) -> ApiResult<Json<Vec<GlobalVariableKV>>> {
        Ok(Json(
            service::variables(&state, q.project()?, &name, production).await?,
        ))
    }
}

both_groups! {
    /// E17: replace the global variable values; services using a changed one are re-applied.
    env_set_variables = "/openapi/environments/{name}/variable";
    /// Replace a production environment's global variable values (admins).
    prod_set_variables = "/openapi/environments/production/{name}/variable";
    put(tag = "environments", params(("name" = String, Path), ProjectQuery),
        request_body = VariablesInput),
    responses((status = 200, body = Success), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "another environment already applied one of its objects (`resource \"<Kind>/<name>\" is already applied by service …`) or the cluster is unreachable (code 6076)")),
    code = service::UPDATE_ENV,
    |production| (
        State(state): State<AppState>,
        caller: Identity,
        Path(name): Path<String>,
        Query(q): Query<ProjectQuery>,
        Json(input): Json<VariablesInput>,
    ) -> ApiResult<Json<Success>> {
        service::set_variables(
            &state,
            &caller,
            q.project()?,
            &name,
            production,
            input.global_variables,
        )
        .await?;
        Ok(Success::new())
    }
}

both_groups! {
    /// E18: render services of the environment again at their latest revisions with new
    /// variable values (the others keep theirs), keeping images and overrides, and apply them.
    env_update_services = "/openapi/environments/{name}/services";
    /// Update services of a production environment (admins).
    prod_update_services = "/openapi/environments/production/{name}/services";
    put(tag = "environments", params(("name" = String, Path), ProjectQuery),
        request_body = UpdateServicesInput),
    responses((status = 200, body = Success),
        (status = 400, body = ErrorBody, description = "a missing or repeated service name; a variable without `key`; a template that does not render"),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "unknown project or environment; a service not in the environment (code 6076)"),
        (status = 409, body = ErrorBody, description = "another environment already applied one of its objects (`resource \"<Kind>/<name>\" is already applied by service …`) or the cluster is unreachable (code 6076); the environment changed meanwhile"),
        (status = 422, body = ErrorBody, description = "the cluster refused an object")),
    code = service::UPDATE_ENV,
    |production| (
        State(state): State<AppState>,
        caller: Identity,
        Path(name): Path<String>,
        Query(q): Query<ProjectQuery>,
        Json(input): Json<UpdateServicesInput>,
    ) -> ApiResult<Json<Success>> {
        service::update_services(&state, &caller, q.project()?, &name, production, input).await?;
        Ok(Success::new())
    }
}

/// E13: set a workload's replica count.
#[utoipa::path(post, path = "/openapi/environments/scale", tag = "environments", request_body = ScaleInput,
    responses((status = 200, body = Success), (status = 404, body = ErrorBody, description = "unknown project, environment or service"), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "another environment already applied one of its objects (`resource \"<Kind>/<name>\" is already applied by service …`) (code 6076); the cluster is unreachable (code 6081)")))]
async fn env_scale(
    State(state): State<AppState>,
    caller: Identity,
    Json(input): Json<ScaleInput>,
) -> ApiResult<Json<Success>> {
    let during = |e: ApiError| e.during(service::SCALE_SERVICE);
    service::scale(&state, &caller, input)
        .await
        .map_err(during)?;
    Ok(Success::new())
}

/// E14: set a Deployment container's image.
#[utoipa::path(post, path = "/openapi/environments/image/deployment/{envName}", tag = "environments",
    params(("envName" = String, Path)), request_body = ImageInput,
    responses((status = 200, body = Success), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "another environment already applied one of its objects (`resource \"<Kind>/<name>\" is already applied by service …`) (code 6076); the cluster is unreachable, or a blue-green deploy holds the service's Service until its release (`service <s> is in the blue-green deploy of task <workflow>#<id> …`) (code 6082)")))]
async fn image_deployment(
    State(state): State<AppState>,
    caller: Identity,
    Path(env): Path<String>,
    Json(input): Json<ImageInput>,
) -> ApiResult<Json<Success>> {
    set_image(&state, &caller, "Deployment", &env, input).await
}

/// E15: set a StatefulSet container's image.
#[utoipa::path(post, path = "/openapi/environments/image/statefulset/{envName}", tag = "environments",
    params(("envName" = String, Path)), request_body = ImageInput,
    responses((status = 200, body = Success), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "another environment already applied one of its objects (`resource \"<Kind>/<name>\" is already applied by service …`) (code 6076); the cluster is unreachable, or a Deployment of the service also runs that container and a blue-green deploy holds the service's Service until its release (`service <s> is in the blue-green deploy of task <workflow>#<id> …`) (code 6082)")))]
async fn image_statefulset(
    State(state): State<AppState>,
    caller: Identity,
    Path(env): Path<String>,
    Json(input): Json<ImageInput>,
) -> ApiResult<Json<Success>> {
    set_image(&state, &caller, "StatefulSet", &env, input).await
}

/// Set a CronJob container's image (Zadig's `/image/cronjob` route).
#[utoipa::path(post, path = "/openapi/environments/image/cronjob/{envName}", tag = "environments",
    params(("envName" = String, Path)), request_body = ImageInput,
    responses((status = 200, body = Success), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "another environment already applied one of its objects (`resource \"<Kind>/<name>\" is already applied by service …`) (code 6076); the cluster is unreachable, or a Deployment of the service also runs that container and a blue-green deploy holds the service's Service until its release (`service <s> is in the blue-green deploy of task <workflow>#<id> …`) (code 6082)"),
        (status = 404, body = ErrorBody, description = "unknown environment or service; no such CronJob or container in the service (code 6082)")))]
async fn image_cronjob(
    State(state): State<AppState>,
    caller: Identity,
    Path(env): Path<String>,
    Json(input): Json<ImageInput>,
) -> ApiResult<Json<Success>> {
    set_image(&state, &caller, "CronJob", &env, input).await
}

/// Set a Job container's image (Zadig's `/image/job` route): the Job is deleted and created
/// again with it (a Job's pod template cannot change in place), so it runs again.
#[utoipa::path(post, path = "/openapi/environments/image/job/{envName}", tag = "environments",
    params(("envName" = String, Path)), request_body = ImageInput,
    responses((status = 200, body = Success), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "another environment already applied one of its objects (`resource \"<Kind>/<name>\" is already applied by service …`) (code 6076); the cluster is unreachable, or a Deployment of the service also runs that container and a blue-green deploy holds the service's Service until its release (`service <s> is in the blue-green deploy of task <workflow>#<id> …`) (code 6082)"),
        (status = 404, body = ErrorBody, description = "unknown environment or service; no such Job or container in the service (code 6082)")))]
async fn image_job(
    State(state): State<AppState>,
    caller: Identity,
    Path(env): Path<String>,
    Json(input): Json<ImageInput>,
) -> ApiResult<Json<Success>> {
    set_image(&state, &caller, "Job", &env, input).await
}
