//! Reads: the plan list, a plan's detail and its operation records.

use axum::body::Bytes;
use serde::Serialize;
use utoipa::ToSchema;

use super::check_id;
use crate::error::{ApiError, ApiResult};
use crate::limits::Paging;
use crate::release_plan::store::LogEntry;
use crate::state::AppState;
use crate::store::{Dir, Filter, FindOptions};

/// One item of the list (exactly the seven keys of seed 001).
#[derive(Debug, Serialize, ToSchema)]
pub struct ListItem {
    pub id: String,
    pub index: i64,
    pub name: String,
    pub manager: String,
    pub description: String,
    pub created_by: String,
    pub create_time: i64,
}

/// A page of plans, newest index first, and the total.
pub async fn list(state: &AppState, p: Paging) -> ApiResult<(Vec<ListItem>, u64)> {
    let plans = &state.release_plans;
    let opts = FindOptions::sort("index", Dir::Desc).page(p.num, p.size);
    let list = plans
        .find(&Filter::All, &opts)
        .await?
        .into_iter()
        .map(|p| ListItem {
            id: p.id,
            index: p.index,
            name: p.name,
            manager: p.manager,
            description: p.description,
            created_by: p.created_by,
            create_time: p.create_time,
        })
        .collect();
    Ok((list, plans.count(&Filter::All).await?))
}

/// The stored plan without our bookkeeping, as JSON (spec §2.2: the raw document).
pub async fn detail(state: &AppState, id: &str) -> ApiResult<Bytes> {
    check_id(id)?;
    state
        .plan_details
        .detail(&state.release_plans, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("release plan {id} not found")))
}

/// The operation records of a plan, newest first (spec §9).
pub async fn logs(state: &AppState, id: &str) -> ApiResult<Vec<LogEntry>> {
    check_id(id)?;
    let logs = state.release_plans.logs_of(id).await?;
    if logs.is_empty() && state.release_plans.get(id).await?.is_none() {
        return Err(ApiError::not_found(format!("release plan {id} not found")));
    }
    Ok(logs)
}
