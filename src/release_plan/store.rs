//! Storage of release plans, their operation records and the hook setting, plus the wake-up
//! signals the scheduler loops wait on.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Notify;

use super::hooks::{HookSetting, SETTING_ID};
use super::model::ReleasePlan;
use crate::store::{Backend, Dir, Filter, FindOptions, StoreResult, Typed};

/// One operation record (spec §9).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    pub id: String,
    pub plan_id: String,
    pub username: String,
    pub account: String,
    pub verb: String,
    pub target_name: String,
    pub target_type: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub before: Value,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub after: Value,
    #[serde(default)]
    pub detail: String,
    /// The plan's version after the change (records are ordered by it, then by `seq`).
    #[serde(default)]
    pub version: i64,
    pub created_at: i64,
    /// Position within one change.
    #[serde(default)]
    pub seq: i64,
}

/// Wake-ups for the scheduler loops, so that work made due by this process starts at once
/// (other replicas find it by polling).
#[derive(Default)]
pub struct Wakers {
    pub schedule: Notify,
    pub timeouts: Notify,
    pub hooks: Notify,
}

/// The release-plan collections.
pub struct PlanStore {
    pub plans: Typed<ReleasePlan>,
    pub logs: Typed<LogRecord>,
    pub settings: Typed<HookSetting>,
    pub wake: Wakers,
}

impl PlanStore {
    pub fn new(backend: &dyn Backend) -> Self {
        Self {
            plans: Typed::new(backend, "release_plans"),
            logs: Typed::new(backend, "release_plan_logs"),
            settings: Typed::new(backend, "settings"),
            wake: Wakers::default(),
        }
    }

    pub async fn get(&self, id: &str) -> StoreResult<Option<ReleasePlan>> {
        self.plans.get(id).await
    }

    /// Write `plan` if its stored version is still `expected`.
    pub async fn save(&self, plan: &ReleasePlan, expected: i64) -> StoreResult<bool> {
        self.plans
            .replace(
                &Filter::id(&plan.id).and(Filter::eq("version", expected)),
                plan,
            )
            .await
    }

    /// The hook setting (the default, disabled one when never set).
    pub async fn hook_setting(&self) -> StoreResult<HookSetting> {
        Ok(self
            .settings
            .get(SETTING_ID)
            .await?
            .unwrap_or_else(|| HookSetting {
                id: SETTING_ID.to_string(),
                ..HookSetting::default()
            }))
    }

    /// A plan's operation records, newest first.
    pub async fn logs_of(&self, plan_id: &str) -> StoreResult<Vec<LogRecord>> {
        self.logs
            .find(
                &Filter::eq("plan_id", plan_id),
                &FindOptions::sort("version", Dir::Desc).then("seq", Dir::Desc),
            )
            .await
    }
}
