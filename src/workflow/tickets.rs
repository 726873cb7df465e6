//! Pre-approval tickets (spec/workflow.md §7): created by a third-party approval system
//! through `POST /openapi/ticket/approval`, stored in `approval_tickets` (unique on
//! `approval_id`), and checked when a workflow with `enable_approval_ticket` is executed.
//!
//! Zadig refuses such workflows on its OpenAPI; we run them when the execute request names a
//! ticket (`approval_ticket_id`: the ticket's `approval_id` or its internal id) and enforce
//! everything the ticket restricts: status, time window, users, environments and services.

use serde::{Deserialize, Serialize};

use crate::auth::Identity;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{Backend, Filter, StoreError, Typed};
use crate::validate;
use crate::workflow::error::{Kind, Op, refuse};
use crate::workflow::model::Workflow;

/// A service a ticket allows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketService {
    #[serde(default)]
    pub service_name: String,
    #[serde(default)]
    pub service_module: String,
}

/// A user a ticket allows (matched by `email` against the caller's account or name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketUser {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub email: String,
}

/// A stored ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    pub id: String,
    pub approval_id: String,
    /// 0 invalid, 1 in effect.
    pub status: i64,
    pub project_key: String,
    #[serde(default)]
    pub envs: Vec<String>,
    #[serde(default)]
    pub services: Vec<TicketService>,
    #[serde(default)]
    pub users: Vec<TicketUser>,
    /// Unix seconds; 0 unbounded.
    #[serde(default)]
    pub execution_window_start: i64,
    #[serde(default)]
    pub execution_window_end: i64,
    #[serde(default)]
    pub create_time: i64,
    #[serde(default)]
    pub created_by: String,
}

/// Queries over `approval_tickets`.
#[derive(Clone)]
pub struct TicketStore {
    docs: Typed<Ticket>,
}

impl TicketStore {
    pub fn new(backend: &dyn Backend) -> Self {
        Self {
            docs: Typed::new(backend, "approval_tickets"),
        }
    }

    /// A ticket by its `approval_id`, or by its internal id.
    pub async fn find(&self, reference: &str) -> ApiResult<Option<Ticket>> {
        if let Some(t) = self
            .docs
            .find_one(&Filter::eq("approval_id", reference))
            .await?
        {
            return Ok(Some(t));
        }
        Ok(self.docs.get(reference).await?)
    }
}

/// Store a new ticket. `ticket.id`/`create_time`/`created_by` are assigned here.
pub async fn create(state: &AppState, caller: &Identity, mut ticket: Ticket) -> ApiResult<()> {
    // A ticket is an approval: whoever may create one may let themselves run any
    // ticket-gated workflow, so only admins (the approval system's token) create them.
    caller.require_admin()?;
    validate::name("approval_id", &ticket.approval_id)?;
    validate::name("project_key", &ticket.project_key)?;
    if ![0, 1].contains(&ticket.status) {
        return Err(ApiError::bad_request(format!(
            "`status` must be 0 (invalid) or 1 (in effect), got {}",
            ticket.status
        )));
    }
    if ticket.execution_window_end != 0
        && ticket.execution_window_start > ticket.execution_window_end
    {
        return Err(ApiError::bad_request(
            "`execution_window_start`: invalid time window: start time greater than end time",
        ));
    }
    for (i, s) in ticket.services.iter().enumerate() {
        validate::name(&format!("services[{i}].service_name"), &s.service_name)?;
    }
    let now = state.clock.now();
    ticket.id = validate::new_object_id(now);
    ticket.create_time = now;
    ticket.created_by = caller.name.clone();
    match state.approval_tickets.docs.insert(&ticket).await {
        Ok(()) => {
            tracing::info!(approval_id = %ticket.approval_id, "approval ticket {} created", ticket.approval_id);
            Ok(())
        }
        Err(StoreError::Duplicate(_)) => Err(refuse(
            Kind::Conflict,
            Op::CreateTicket,
            format!(
                "an approval ticket with approval_id {:?} already exists",
                ticket.approval_id
            ),
        )),
        Err(e) => Err(e.into()),
    }
}

fn denied(what: impl Into<String>) -> ApiError {
    refuse(Kind::Forbidden, Op::CreateTask, what)
}

/// Check that `reference` names a ticket that allows `caller` to run `wf` (the definition with
/// the execute input applied, `runs` telling which jobs run) now. Returns the ticket.
pub async fn check(
    state: &AppState,
    reference: &str,
    wf: &Workflow,
    runs: &(dyn Fn(&str) -> bool + Sync),
    caller: &Identity,
) -> ApiResult<Ticket> {
    if reference.is_empty() {
        return Err(refuse(
            Kind::BadRequest,
            Op::CreateTask,
            format!(
                "`approval_ticket_id`: workflow {} needs an approval ticket to run; name one in approval_ticket_id",
                wf.name
            ),
        ));
    }
    let ticket = state
        .approval_tickets
        .find(reference)
        .await?
        .ok_or_else(|| {
            refuse(
                Kind::NotFound,
                Op::CreateTask,
                format!("`approval_ticket_id`: cannot find approval ticket of id: {reference}"),
            )
        })?;
    if ticket.project_key != wf.project {
        return Err(denied(
            "workflow task creation denied: project key mismatch.",
        ));
    }
    if ticket.status != 1 {
        return Err(denied(format!(
            "workflow task creation denied: approval ticket {} is not in effect (status {}).",
            ticket.approval_id, ticket.status
        )));
    }
    let now = state.clock.now();
    if (ticket.execution_window_start != 0 && now < ticket.execution_window_start)
        || (ticket.execution_window_end != 0 && now > ticket.execution_window_end)
    {
        return Err(denied(
            "workflow task creation denied: not in execution time window.",
        ));
    }
    if !ticket.users.is_empty() {
        let allowed = ticket.users.iter().any(|u| {
            !u.email.is_empty()
                && (u.email.eq_ignore_ascii_case(&caller.account)
                    || u.email.eq_ignore_ascii_case(&caller.name))
        });
        if !allowed {
            return Err(denied(format!(
                "workflow task creation denied: user {} is not allowed to create workflow task.",
                caller.name
            )));
        }
    }
    check_jobs(&ticket, wf, runs)?;
    Ok(ticket)
}

/// The environments and services the running jobs touch must be ones the ticket allows.
fn check_jobs(
    ticket: &Ticket,
    wf: &Workflow,
    runs: &(dyn Fn(&str) -> bool + Sync),
) -> ApiResult<()> {
    let deny = |what: String| {
        denied(format!(
            "update workflow spec is denied: approvalTicket: [{}] does not allow {what}",
            ticket.approval_id
        ))
    };
    for (_, job) in wf.jobs() {
        if !runs(&job.name) {
            continue;
        }
        let Some(kind) = job.kind().map(super::jobs::JobType::kind) else {
            continue;
        };
        if let Some(env) = kind.deploys_to(job)?
            && !ticket.envs.is_empty()
            && !ticket.envs.contains(&env)
        {
            return Err(deny(format!("deploying to env [{env}]")));
        }
        if ticket.services.is_empty() {
            continue;
        }
        for (svc, module) in kind.touched_services(job)? {
            let ok = ticket.services.iter().any(|s| {
                s.service_name == svc
                    && (s.service_module.is_empty()
                        || module.is_empty()
                        || s.service_module == module)
            });
            if !ok {
                return Err(deny(format!("service [{svc}/{module}]")));
            }
        }
    }
    Ok(())
}
