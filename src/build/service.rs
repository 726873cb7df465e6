//! The rules of the build and template routes (spec/build.md §4–9, DESIGN.md §5): create,
//! replace, template builds, list, detail, delete; the template CRUD is [`super::templates`].
//!
//! Writes after an insert are conditional on `version` and retried a few times when another
//! write came first. A template build and a template DELETE cannot both succeed: the DELETE
//! marks the template (`deleting_until_ms`) before it looks for builds using it, and a build
//! that starts using a template checks after its own write that the template is still there
//! and not marked, undoing that write otherwise.

use super::input::{BuildRequest, TemplateBuildRequest};
use super::model::{Build, BuildDef, BuildTemplate, KeyVal, MASK, Repository, Target, merge_vars};
use super::rules::{def_of_build, project_of, repos_of, services_of, target_list, targets_of};
use super::view::{self, BuildDetail, BuildList};
use crate::auth::Identity;
use crate::error::{ApiError, ApiResult, ErrorKind, codes};
use crate::limits::Paging;
use crate::state::AppState;
use crate::store::StoreError;
use crate::store::retry::Attempts;
use crate::validate;

/// How long a template DELETE keeps new builds from using the template (ms).
pub(super) const DELETE_MARK_MS: i64 = 60_000;

/// An unknown build, with the Zadig code of the route (6521 update, 6523 get).
fn build_not_found(code: (i64, &str), name: &str, project: &str) -> ApiError {
    ApiError::code(
        ErrorKind::NotFound,
        code,
        format!(
            "failed to find build module, buildName: {name}, projectName: {project}: no such build"
        ),
    )
}

/// Stored build `name` of `project` for a change by `caller`: its creator or an admin.
async fn build_to_change(
    state: &AppState,
    caller: &Identity,
    project: &str,
    name: &str,
    code: (i64, &str),
) -> ApiResult<Build> {
    let old = state
        .builds
        .get(project, name)
        .await?
        .ok_or_else(|| build_not_found(code, name, project))?;
    caller.require_owner_or_admin(&old.created_by_id, &format!("build {name}"))?;
    Ok(old)
}

pub(super) fn busy(what: &str) -> ApiError {
    ApiError::conflict(format!("{what} was changed by concurrent requests; retry"))
}

fn template_missing(name: &str) -> ApiError {
    ApiError::not_found(format!(
        "`template_name`: failed to find the build template specified by the user, template name: [{name}]"
    ))
}

fn template_deleting(name: &str) -> ApiError {
    ApiError::conflict(format!(
        "build template {name} is being deleted (`template_name`)"
    ))
}

/// Store a new build; a name taken in any project is 409 with Zadig's code 6520.
async fn insert_new(state: &AppState, b: &Build) -> ApiResult<()> {
    match state.builds.insert(b).await {
        Ok(()) => Ok(()),
        Err(StoreError::Duplicate(_)) => {
            let owner = state
                .builds
                .by_name(&b.name)
                .await?
                .map_or_else(|| b.project_key.clone(), |o| o.project_key);
            Err(ApiError::code(
                ErrorKind::Conflict,
                codes::CREATE_BUILD,
                format!(
                    "{owner}项目中有相同的构建名称存在,请检查! (a build named {:?} already exists in project {owner:?}; `name` must be unique across projects)",
                    b.name
                ),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// Keep the stored value of each credential the client sent back masked.
pub(super) fn restore_secrets(new: &mut [KeyVal], old: &[KeyVal]) {
    for kv in new.iter_mut().filter(|kv| kv.value == MASK) {
        if let Some(o) = old.iter().find(|o| o.key == kv.key && o.is_credential) {
            kv.value = o.value.clone();
        }
    }
}

/// A template build's credential inputs sent back as `********` keep the stored input; without
/// one the template's default applies.
fn restore_inputs(new: &mut Vec<KeyVal>, old: &[KeyVal], template: &[KeyVal]) {
    new.retain_mut(|kv| {
        let credential =
            kv.is_credential || template.iter().any(|t| t.key == kv.key && t.is_credential);
        if kv.value != MASK || !credential {
            return true;
        }
        match old.iter().find(|o| o.key == kv.key) {
            Some(o) => {
                kv.value = o.value.clone();
                true
            }
            None => false,
        }
    });
}

/// A full build request, checked.
struct Checked {
    project: String,
    def: BuildDef,
    targets: Vec<Target>,
    repos: Vec<Repository>,
}

fn check_build(req: &BuildRequest, query_project: Option<&str>) -> ApiResult<Checked> {
    validate::name("name", &req.name)?;
    let project = project_of(&req.project_key, query_project)?;
    let def = def_of_build(req)?;
    let targets = services_of(req.services.as_deref())?
        .into_iter()
        .map(|(service_name, service_module)| Target {
            service_name,
            service_module,
            ..Target::default()
        })
        .collect();
    let repos = repos_of("repo_info", &req.repo_info)?;
    Ok(Checked {
        project,
        def,
        targets,
        repos,
    })
}

/// A new, empty build `name` of `project` by `caller`: numbered, stamped now, version 1.
async fn new_build(
    state: &AppState,
    caller: &Identity,
    name: &str,
    project: String,
) -> ApiResult<Build> {
    let now = state.clock.now();
    Ok(Build {
        id: validate::new_object_id(now),
        name: name.trim().to_string(),
        project_key: project,
        source: "zadig".into(),
        template_id: String::new(),
        targets: Vec::new(),
        repos: Vec::new(),
        def: BuildDef::default(),
        seq: state.sequences.next("builds").await?,
        created_at: now,
        update_time: now,
        update_by: caller.name.clone(),
        created_by_id: caller.uid.clone(),
        version: 1,
    })
}

/// `POST /openapi/build` (spec/build.md §4).
pub async fn create(
    state: &AppState,
    caller: &Identity,
    req: &BuildRequest,
    query_project: Option<&str>,
) -> ApiResult<()> {
    let c = check_build(req, query_project)?;
    let build = Build {
        targets: c.targets,
        repos: c.repos,
        def: c.def,
        ..new_build(state, caller, &req.name, c.project).await?
    };
    insert_new(state, &build).await?;
    tracing::info!(build.name = %build.name, project = %build.project_key, "build {} created by {}", build.name, caller.name);
    Ok(())
}

/// `PUT /openapi/build` (spec/build.md §5): the whole definition is replaced (a template build
/// becomes a normal one); credentials sent back as `********` keep their stored values.
pub async fn update(
    state: &AppState,
    caller: &Identity,
    req: &BuildRequest,
    query_project: Option<&str>,
) -> ApiResult<()> {
    let by = caller.name.as_str();
    let Checked {
        project,
        def,
        targets,
        repos,
    } = check_build(req, query_project)?;
    let name = req.name.trim();
    let mut attempts = Attempts::new();
    while attempts.next().await {
        let old = build_to_change(state, caller, &project, name, codes::UPDATE_BUILD).await?;
        let mut def = def.clone();
        restore_secrets(&mut def.pre_build.envs, &old.def.pre_build.envs);
        let mut new = Build {
            template_id: String::new(),
            targets: targets.clone(),
            repos: repos.clone(),
            def,
            update_time: state.clock.now(),
            update_by: by.to_string(),
            version: old.version + 1,
            ..old.clone()
        };
        // Repository URLs sent back as the detail shows them (password masked) keep theirs.
        crate::masking::restore_typed(&mut new, &old).map_err(ApiError::internal)?;
        if state.builds.replace(&new, old.version).await? {
            tracing::info!(build.name = %name, project = %project, "build {name} updated by {by}");
            return Ok(());
        }
    }
    Err(busy(&format!("build {name}")))
}

/// A template-build request, checked: its project, its template (there and not being deleted)
/// and its services with their variables merged over the template's.
async fn check_template_build(
    state: &AppState,
    req: &TemplateBuildRequest,
    query_project: Option<&str>,
) -> ApiResult<(String, BuildTemplate, Vec<Target>)> {
    let project = project_of(&req.project_key, query_project)?;
    validate::name("template_name", &req.template_name)?;
    let list = target_list(req)?;
    let name = &req.template_name;
    let template = state
        .build_templates
        .by_name(name)
        .await?
        .ok_or_else(|| template_missing(name))?;
    if template.deleting_until_ms > state.clock.now_ms() {
        return Err(template_deleting(name));
    }
    let targets = targets_of(list, &template.def.pre_build.envs)?;
    Ok((project, template, targets))
}

/// Whether template `id` is still there and not being deleted (checked after a write that
/// makes a build use it).
async fn template_alive(state: &AppState, id: &str) -> ApiResult<bool> {
    Ok(state
        .build_templates
        .get(id)
        .await?
        .is_some_and(|t| t.deleting_until_ms <= state.clock.now_ms()))
}

/// `POST /openapi/build?source=template` (spec/build.md §6.2).
pub async fn create_from_template(
    state: &AppState,
    caller: &Identity,
    req: &TemplateBuildRequest,
    query_project: Option<&str>,
) -> ApiResult<()> {
    let by = caller.name.as_str();
    validate::name("name", &req.name)?;
    let (project, template, targets) = check_template_build(state, req, query_project).await?;
    let build = Build {
        template_id: template.id.clone(),
        targets,
        ..new_build(state, caller, &req.name, project).await?
    };
    insert_new(state, &build).await?;
    if !template_alive(state, &template.id).await? {
        state.builds.delete_id(&build.id).await?;
        return Err(template_deleting(&template.name));
    }
    tracing::info!(build.name = %build.name, project = %build.project_key, template = %template.name,
        "template build {} created by {by}", build.name);
    Ok(())
}

/// `PUT /openapi/build/{name}/template` and `PUT /openapi/build?source=template` (spec/build.md
/// §6.4): switch the build to the template and replace its services; the rest is kept.
pub async fn update_from_template(
    state: &AppState,
    caller: &Identity,
    path_name: Option<&str>,
    req: &TemplateBuildRequest,
    query_project: Option<&str>,
) -> ApiResult<()> {
    let by = caller.name.as_str();
    let name = match path_name {
        Some(p) => {
            if !req.name.trim().is_empty() && req.name.trim() != p {
                return Err(ApiError::bad_request(format!(
                    "`name` ({:?}) does not match the build named in the path ({p:?})",
                    req.name
                )));
            }
            p
        }
        None => req.name.trim(),
    };
    validate::name("name", name)?;
    let (project, template, targets) = check_template_build(state, req, query_project).await?;
    let mut attempts = Attempts::new();
    while attempts.next().await {
        let old = build_to_change(state, caller, &project, name, codes::GET_BUILD).await?;
        let mut targets = targets.clone();
        for t in &mut targets {
            if let Some(o) = old
                .targets
                .iter()
                .find(|o| o.service_name == t.service_name && o.service_module == t.service_module)
            {
                restore_inputs(&mut t.envs, &o.envs, &template.def.pre_build.envs);
            }
        }
        let mut new = Build {
            template_id: template.id.clone(),
            targets,
            update_time: state.clock.now(),
            update_by: by.to_string(),
            version: old.version + 1,
            ..old.clone()
        };
        crate::masking::restore_typed(&mut new, &old).map_err(ApiError::internal)?;
        if !state.builds.replace(&new, old.version).await? {
            continue;
        }
        if !template_alive(state, &template.id).await? {
            // Undo, unless someone else wrote since.
            let undo = Build {
                version: new.version + 1,
                ..old
            };
            state.builds.replace(&undo, new.version).await?;
            return Err(template_deleting(&template.name));
        }
        tracing::info!(build.name = %name, project = %project, template = %template.name,
            "template build {name} updated by {by}");
        return Ok(());
    }
    Err(busy(&format!("build {name}")))
}

/// `GET /openapi/build` (spec/build.md §7).
pub async fn list(state: &AppState, project: &str, p: Paging) -> ApiResult<BuildList> {
    let (builds, total) = state.builds.page(project, p).await?;
    Ok(BuildList {
        total,
        builds: builds.iter().map(Into::into).collect(),
    })
}

/// What a build is for one service: its definition (the template's for a template build),
/// repositories and variables (values in clear).
pub struct Resolved {
    pub build: Build,
    pub template_name: String,
    pub def: BuildDef,
    pub repos: Vec<Repository>,
    pub vars: Vec<KeyVal>,
}

/// Find build `name` of `project` and resolve it for `service`/`module` (both may be empty:
/// a template build then shows the template's variables and no repositories).
pub async fn resolve(
    state: &AppState,
    project: &str,
    name: &str,
    service: &str,
    module: &str,
) -> ApiResult<Resolved> {
    let build = state
        .builds
        .get(project, name)
        .await?
        .ok_or_else(|| build_not_found(codes::GET_BUILD, name, project))?;
    if build.template_id.is_empty() {
        return Ok(Resolved {
            template_name: String::new(),
            def: build.def.clone(),
            repos: build.repos.clone(),
            vars: build.def.pre_build.envs.clone(),
            build,
        });
    }
    let template = state
        .build_templates
        .get(&build.template_id)
        .await?
        .ok_or_else(|| {
            ApiError::code(
                ErrorKind::NotFound,
                codes::GET_BUILD,
                format!(
                    "the build template of build {name} (id {}) no longer exists",
                    build.template_id
                ),
            )
        })?;
    let target = build
        .targets
        .iter()
        .find(|t| t.service_name == service && t.service_module == module);
    let (repos, vars) = match target {
        Some(t) => (
            t.repos.clone(),
            merge_vars(&template.def.pre_build.envs, &t.envs),
        ),
        None => (Vec::new(), template.def.pre_build.envs.clone()),
    };
    Ok(Resolved {
        template_name: template.name,
        def: template.def,
        repos,
        vars,
        build,
    })
}

/// `GET /openapi/build/{name}/detail` (spec/build.md §8), credentials masked.
pub async fn detail(
    state: &AppState,
    project: &str,
    name: &str,
    service: &str,
    module: &str,
) -> ApiResult<BuildDetail> {
    let r = resolve(state, project, name, service, module).await?;
    Ok(view::detail(
        &r.build,
        &r.template_name,
        &r.def,
        &r.repos,
        &r.vars,
    ))
}

/// `DELETE /openapi/build` (spec/build.md §9); an unknown build is 404 (Zadig: success).
/// Without a project the build of that name is deleted wherever it is (names are global).
pub async fn delete(
    state: &AppState,
    caller: &Identity,
    name: &str,
    project: Option<&str>,
) -> ApiResult<()> {
    let by = caller.name.as_str();
    validate::name("name", name)?;
    let found = match project {
        Some(p) => state.builds.get(p, name).await?,
        None => state.builds.by_name(name).await?,
    };
    let b = found.ok_or_else(|| {
        ApiError::code(
            ErrorKind::NotFound,
            codes::DELETE_BUILD,
            format!(
                "build {name} not found in project {}",
                project.unwrap_or("(any)")
            ),
        )
    })?;
    caller.require_owner_or_admin(&b.created_by_id, &format!("build {name}"))?;
    state.builds.delete_id(&b.id).await?;
    tracing::info!(build.name = %name, project = %b.project_key, "build {name} deleted by {by}");
    Ok(())
}
