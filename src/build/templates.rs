//! The rules of the build template routes (`/openapi/templates/build`, spec/build.md §9):
//! create, replace, get, list, and delete — refused while a build uses the template (see
//! [`super::service`] for how a template build and a DELETE cannot both succeed).

use super::input::TemplateRequest;
use super::model::BuildTemplate;
use super::rules::def_of_template;
use super::service::{DELETE_MARK_MS, busy, restore_secrets};
use super::view::{TemplateList, TemplateView};
use crate::auth::Identity;
use crate::error::{ApiError, ApiResult};
use crate::limits::Paging;
use crate::state::AppState;
use crate::store::StoreError;
use crate::store::retry::Attempts;
use crate::validate;

fn template_not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("build template {name} not found"))
}

fn template_exists(name: &str) -> ApiError {
    ApiError::conflict(format!(
        "a build template named {name:?} already exists (`name`)"
    ))
}

/// `POST /openapi/templates/build`.
pub async fn create_template(
    state: &AppState,
    caller: &Identity,
    req: &TemplateRequest,
) -> ApiResult<()> {
    caller.require_admin()?;
    let by = caller.name.as_str();
    validate::name("name", &req.name)?;
    let def = def_of_template(req)?;
    let now = state.clock.now();
    let t = BuildTemplate {
        id: validate::new_object_id(now),
        name: req.name.trim().to_string(),
        def,
        created_at: now,
        update_time: now,
        update_by: by.to_string(),
        version: 1,
        deleting_until_ms: 0,
    };
    match state.build_templates.insert(&t).await {
        Ok(()) => {}
        Err(StoreError::Duplicate(_)) => return Err(template_exists(&t.name)),
        Err(e) => return Err(e.into()),
    }
    tracing::info!(template = %t.name, "build template {} created by {by}", t.name);
    Ok(())
}

/// `PUT /openapi/templates/build/{name}`: the whole document is replaced (a different `name`
/// renames it); credentials sent back as `********` keep their stored values.
pub async fn update_template(
    state: &AppState,
    caller: &Identity,
    name: &str,
    req: &TemplateRequest,
) -> ApiResult<()> {
    caller.require_admin()?;
    let by = caller.name.as_str();
    let new_name = if req.name.trim().is_empty() {
        name
    } else {
        req.name.trim()
    };
    validate::name("name", new_name)?;
    let def = def_of_template(&TemplateRequest {
        name: new_name.to_string(),
        ..req.clone()
    })?;
    let mut attempts = Attempts::new();
    while attempts.next().await {
        let old = state
            .build_templates
            .by_name(name)
            .await?
            .ok_or_else(|| template_not_found(name))?;
        let mut def = def.clone();
        restore_secrets(&mut def.pre_build.envs, &old.def.pre_build.envs);
        let new = BuildTemplate {
            name: new_name.to_string(),
            def,
            update_time: state.clock.now(),
            update_by: by.to_string(),
            version: old.version + 1,
            ..old.clone()
        };
        match state.build_templates.replace(&new, old.version).await {
            Ok(true) => {
                tracing::info!(template = %new_name, "build template {name} updated by {by}");
                return Ok(());
            }
            Ok(false) => {}
            Err(StoreError::Duplicate(_)) => return Err(template_exists(new_name)),
            Err(e) => return Err(e.into()),
        }
    }
    Err(busy(&format!("build template {name}")))
}

pub async fn get_template(state: &AppState, name: &str) -> ApiResult<TemplateView> {
    let t = state
        .build_templates
        .by_name(name)
        .await?
        .ok_or_else(|| template_not_found(name))?;
    Ok((&t).into())
}

pub async fn list_templates(state: &AppState, p: Paging) -> ApiResult<TemplateList> {
    let (list, total) = state.build_templates.page(p).await?;
    Ok(TemplateList {
        total,
        build_templates: list.iter().map(Into::into).collect(),
    })
}

/// `DELETE /openapi/templates/build/{name}`: refused (409) while a build uses the template.
pub async fn delete_template(state: &AppState, caller: &Identity, name: &str) -> ApiResult<()> {
    caller.require_admin()?;
    let by = caller.name.as_str();
    let mut attempts = Attempts::new();
    while attempts.next().await {
        let t = state
            .build_templates
            .by_name(name)
            .await?
            .ok_or_else(|| template_not_found(name))?;
        let until = state.clock.now_ms() + DELETE_MARK_MS;
        if !state
            .build_templates
            .mark_deleting(&t.id, t.version, until)
            .await?
        {
            continue;
        }
        let users = state.builds.using_template(&t.id, 20).await?;
        if !users.is_empty() {
            state.build_templates.clear_deleting(&t.id).await?;
            return Err(ApiError::conflict(format!(
                "build template {name} is used by builds [{}]; change or delete them first",
                users.join(",")
            )));
        }
        state.build_templates.delete_id(&t.id).await?;
        tracing::info!(template = %name, "build template {name} deleted by {by}");
        return Ok(());
    }
    Err(busy(&format!("build template {name}")))
}
