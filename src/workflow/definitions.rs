//! Creating, updating, listing and deleting workflow definitions (spec/workflow.md
//! §2.1, §2.2, §2.9–2.11).

use crate::auth::Identity;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{Filter, StoreError, Update};
use crate::validate;
use crate::workflow::error::{Kind, Op, refuse};
use crate::workflow::lint::lint;
use crate::workflow::model::Workflow;
use crate::workflow::task::Status;
use crate::workflow::{tasks, views};

fn unknown(op: Op, name: &str) -> ApiError {
    refuse(Kind::NotFound, op, format!("workflow {name} not found"))
}

/// The workflow `name` in any project; unknown → 404 with code 6542.
pub async fn find(state: &AppState, name: &str) -> ApiResult<Workflow> {
    state
        .workflows
        .get(name)
        .await?
        .ok_or_else(|| unknown(Op::FindWorkflow, name))
}

/// The workflow `name` of `project`; unknown there → 404 with `code`.
pub async fn find_in(state: &AppState, name: &str, project: &str, op: Op) -> ApiResult<Workflow> {
    match state.workflows.get(name).await? {
        Some(wf) if wf.project == project => Ok(wf),
        Some(_) => Err(refuse(
            Kind::NotFound,
            op,
            format!("workflow {name} not found in project {project}"),
        )),
        None => Err(unknown(op, name)),
    }
}

/// The notification hook addresses of a definition about to be stored, against the hook
/// egress policy (not at execute time: a definition stored before the policy changed still
/// runs, and its denied notifications fail when sent). A 400 with the lint code, as the
/// definition's other field errors.
fn check_hooks(state: &AppState, wf: &Workflow) -> ApiResult<()> {
    let policy = crate::release_plan::egress::EgressPolicy::of(&state.config);
    crate::workflow::notify::ctl::check_hooks(&wf.notify_ctls, &policy)
        .map_err(|e| refuse(Kind::BadRequest, Op::LintWorkflow, e.description))
}

fn duplicate(existing: &Workflow) -> ApiError {
    refuse(
        Kind::Conflict,
        Op::UpsertWorkflow,
        format!(
            "`name`: the identifier {} is already used by workflow [{}] in project [{}]",
            existing.name, existing.display_name, existing.project
        ),
    )
}

/// Create a workflow (`POST /api/aslan/workflow/v4`); with `view`, also list it in that view
/// of its project (a missing view is ignored, as in Zadig).
pub async fn create(
    state: &AppState,
    caller: &Identity,
    mut wf: Workflow,
    view: Option<&str>,
) -> ApiResult<()> {
    lint(&mut wf)?;
    check_hooks(state, &wf)?;
    if let Some(existing) = state.workflows.get(&wf.name).await? {
        return Err(duplicate(&existing));
    }
    let now = state.clock.now();
    wf.id = validate::new_object_id(now);
    wf.created_by = caller.name.clone();
    wf.created_by_id = caller.uid.clone();
    wf.updated_by = caller.name.clone();
    wf.create_time = now;
    wf.update_time = now;
    wf.custom_field = serde_json::Value::Null;
    wf.version = 0;
    match state.workflows.insert(&wf).await {
        Ok(()) => {}
        Err(StoreError::Duplicate(_)) => {
            // Created by someone else between our check and our insert.
            let existing = find(state, &wf.name).await?;
            return Err(duplicate(&existing));
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(workflow = %wf.name, project = %wf.project, "workflow {} created by {}", wf.name, caller.account);
    if let Some(view) = view.filter(|v| !v.is_empty()) {
        let entry = views::EntryInput {
            workflow_key: wf.name.clone(),
            workflow_type: "custom".into(),
            enabled: true,
        };
        if let Err(e) = views::edit(state, caller, &wf.project, view, &[entry]).await {
            tracing::warn!(workflow = %wf.name, view = %view, "workflow {} not added to view {view}: {}", wf.name, e.description);
        }
    }
    Ok(())
}

/// Replace the definition of workflow `name` (`PUT /api/aslan/workflow/v4/:name`). The key
/// stays the path's; `id`, creator and creation time are kept.
pub async fn update(
    state: &AppState,
    caller: &Identity,
    name: &str,
    project: Option<&str>,
    body: Workflow,
) -> ApiResult<()> {
    let mut attempts = crate::store::retry::Attempts::new();
    while attempts.next().await {
        let existing = match project.filter(|p| !p.is_empty()) {
            Some(p) => find_in(state, name, p, Op::FindWorkflow).await?,
            None => find(state, name).await?,
        };
        caller.require_owner_or_admin(&existing.created_by_id, &format!("workflow {name}"))?;
        let mut wf = body.clone();
        wf.name = existing.name.clone();
        if wf.project.is_empty() {
            wf.project = existing.project.clone();
        } else if wf.project != existing.project {
            return Err(ApiError::bad_request(format!(
                "`project`: workflow {name} belongs to project {}; it cannot move to {}",
                existing.project, wf.project
            )));
        }
        // Credentials sent back as the detail shows them keep the stored values.
        crate::masking::restore_typed(&mut wf, &existing).map_err(ApiError::internal)?;
        lint(&mut wf)?;
        check_hooks(state, &wf)?;
        if wf.display_name != existing.display_name
            && let Some(other) = state
                .workflows
                .by_display_name(&wf.project, &wf.display_name)
                .await?
            && other.name != wf.name
        {
            return Err(refuse(
                Kind::Conflict,
                Op::UpsertWorkflow,
                format!(
                    "`display_name`: workflow v4 [{}] display name is duplicated in the project",
                    wf.display_name
                ),
            ));
        }
        wf.id = existing.id.clone();
        wf.created_by = existing.created_by.clone();
        wf.created_by_id = existing.created_by_id.clone();
        wf.create_time = existing.create_time;
        wf.custom_field = existing.custom_field.clone();
        wf.updated_by = caller.name.clone();
        wf.update_time = state.clock.now();
        wf.version = existing.version;
        if state.workflows.save(&mut wf).await? {
            tracing::info!(workflow = %name, "workflow {name} updated by {}", caller.account);
            return Ok(());
        }
        // Another update won the race: apply this one over it.
    }
    Err(crate::store::retry::exhausted(&format!("workflow {name}")).into())
}

/// Delete a workflow: its unfinished tasks are cancelled, its tasks archived (hidden from
/// lists, still readable by id), and it leaves the views of its project. The task-id counter
/// is kept, so a re-created workflow continues the numbering.
pub async fn delete(
    state: &AppState,
    caller: &Identity,
    name: &str,
    project: &str,
) -> ApiResult<()> {
    validate::name("workflowKey", name)?;
    validate::name("projectKey", project)?;
    let wf = find_in(state, name, project, Op::DeleteWorkflow).await?;
    caller.require_owner_or_admin(&wf.created_by_id, &format!("workflow {name}"))?;
    let unfinished = state
        .tasks
        .tasks
        .find(
            &Filter::eq("workflow_name", name).and(Filter::is_in(
                "status",
                [
                    Status::Waiting.as_str(),
                    Status::Created.as_str(),
                    Status::Running.as_str(),
                    Status::WaitForApproval.as_str(),
                    Status::Pause.as_str(),
                ],
            )),
            &Default::default(),
        )
        .await?;
    for t in unfinished {
        if let Err(e) = tasks::cancel(state, caller, name, t.task_id).await {
            tracing::warn!(workflow = %name, task_id = t.task_id, "cancel on delete failed: {}", e.description);
        }
    }
    if !state.workflows.delete(&wf.id).await? {
        return Err(unknown(Op::DeleteWorkflow, name));
    }
    state
        .tasks
        .tasks
        .coll
        .update_many(
            &Filter::eq("workflow_name", name).and(Filter::eq("is_deleted", false)),
            &Update::new().set("is_deleted", true).inc("version", 1),
        )
        .await?;
    for view in views::list(state, project).await? {
        if view.workflows.iter().any(|e| e.workflow_name == name) {
            let entry = views::EntryInput {
                workflow_key: name.to_string(),
                workflow_type: "custom".into(),
                enabled: false,
            };
            views::edit(state, caller, project, &view.name, &[entry]).await?;
        }
    }
    tracing::info!(workflow = %name, project = %project, "workflow {name} deleted by {}", caller.account);
    Ok(())
}

/// The workflows of a project (creation order), only those of `view` when given.
pub async fn list(state: &AppState, project: &str, view: Option<&str>) -> ApiResult<Vec<Workflow>> {
    validate::name("projectKey", project)?;
    let only = match view.filter(|v| !v.is_empty()) {
        Some(v) => Some(views::members(state, project, v).await?),
        None => None,
    };
    Ok(state.workflows.list(project, only.as_deref()).await?)
}
