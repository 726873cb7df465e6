//! Storage of release plans, their operation records and the hook setting.
//!
//! Every write to a plan goes through [`PlanStore`], which tells the detail cache
//! ([`super::details`], when one is attached) so that it stays coherent.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::details::DetailCache;
use super::hooks::{HookSetting, SETTING_ID};
use super::model::ReleasePlan;
use crate::secrets::SecretBox;
use crate::store::lease::Encoding;
use crate::store::{Backend, Dir, Doc, Filter, FindOptions, StoreResult, Typed, Update};

/// The scheduler's claim on a plan (see [`crate::scheduler`]).
pub const CLAIM: Encoding = Encoding::at("internal.claim_owner", "internal.claim_until_ms");

// The fields clients see: the `…/logs` route answers these as they are stored (the stored
// document is a [`LogRecord`], which adds the ordering key). The doc line below is the
// OpenAPI schema's description.
/// One operation record (spec §9).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = LogView)]
pub struct LogEntry {
    pub id: String,
    pub plan_id: String,
    pub username: String,
    pub account: String,
    pub verb: String,
    pub target_name: String,
    pub target_type: String,
    /// What the change replaced: a status string, or an object (a job, the plan's fields).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub before: Value,
    /// What the change put in place (as `before`).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub after: Value,
    #[serde(default)]
    #[schema(required = true)]
    pub detail: String,
    // The plan's version after the change (records are ordered by it, then by `seq`).
    #[serde(default)]
    #[schema(required = true)]
    pub version: i64,
    pub created_at: i64,
}

/// A stored operation record: the [`LogEntry`] and its position within one change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    #[serde(flatten)]
    pub entry: LogEntry,
    /// Position within one change.
    #[serde(default)]
    pub seq: i64,
}

/// The release-plan collections.
pub struct PlanStore {
    plans: Typed<ReleasePlan>,
    pub logs: Typed<LogRecord>,
    pub settings: Typed<HookSetting>,
    /// Told about every write of a plan (see [`Self::with_details`]).
    details: Option<Arc<DetailCache>>,
}

impl PlanStore {
    pub fn new(backend: &dyn Backend, secrets: &Arc<SecretBox>) -> Self {
        Self {
            // The workflow copies of workflow jobs carry credential variables, and execute
            // inputs that repeat them are marked as credentials (`mark_credentials`).
            plans: Typed::new(backend, "release_plans")
                .sealed_vars(secrets, Some(mark_credentials)),
            logs: Typed::new(backend, "release_plan_logs"),
            // `hook_secret` is encrypted at rest.
            settings: Typed::new(backend, "settings").sealed(secrets, &["hook_secret"]),
            details: None,
        }
    }

    /// Keep `details` coherent: every write of a plan invalidates its entry.
    pub fn with_details(mut self, details: Arc<DetailCache>) -> Self {
        self.details = Some(details);
        self
    }

    fn written(&self, id: &str) {
        if let Some(d) = &self.details {
            d.invalidate(id);
        }
    }

    /// The stored document of plan `id`, as it is (bookkeeping included; credentials
    /// decrypted).
    pub async fn raw(&self, id: &str) -> StoreResult<Option<Doc>> {
        let Some(mut doc) = self.plans.coll.find_one(&Filter::id(id)).await? else {
            return Ok(None);
        };
        self.plans.open_doc(&mut doc)?;
        Ok(Some(doc))
    }

    pub async fn get(&self, id: &str) -> StoreResult<Option<ReleasePlan>> {
        self.plans.get(id).await
    }

    pub async fn find(&self, filter: &Filter, opts: &FindOptions) -> StoreResult<Vec<ReleasePlan>> {
        self.plans.find(filter, opts).await
    }

    pub async fn count(&self, filter: &Filter) -> StoreResult<u64> {
        self.plans.count(filter).await
    }

    /// The earliest value of the integer at `path` among plans matching `filter`.
    pub async fn earliest(&self, filter: &Filter, path: &str) -> StoreResult<Option<i64>> {
        let opts = FindOptions::sort(path, Dir::Asc).limit(1);
        let docs = self.plans.coll.find(filter, &opts).await?;
        Ok(docs.into_iter().next().and_then(|d| {
            path.split('.')
                .try_fold(&Value::Object(d), |v, k| v.get(k))
                .and_then(Value::as_i64)
        }))
    }

    pub async fn insert(&self, plan: &ReleasePlan) -> StoreResult<()> {
        self.written(&plan.id);
        self.plans.insert(plan).await
    }

    /// Write `plan` if its stored version is still `expected`.
    pub async fn save(&self, plan: &ReleasePlan, expected: i64) -> StoreResult<bool> {
        let ok = self.plans.replace_version(&plan.id, expected, plan).await;
        self.written(&plan.id);
        ok
    }

    /// A partial update of plan `id` (`filter` narrows it further).
    pub async fn update(&self, id: &str, filter: Filter, update: &Update) -> StoreResult<bool> {
        let ok = self
            .plans
            .update_one(&Filter::id(id).and(filter), update)
            .await;
        self.written(id);
        ok
    }

    /// Atomically update the first plan matching `filter` in `sort` order; returns it updated.
    pub async fn claim(
        &self,
        filter: &Filter,
        sort: &str,
        update: &Update,
    ) -> StoreResult<Option<ReleasePlan>> {
        let got = self
            .plans
            .find_one_and_update(filter, &[(sort.to_string(), Dir::Asc)], update)
            .await?;
        if let Some(p) = &got {
            self.written(&p.id);
        }
        Ok(got)
    }

    /// Delete plan `id`; false when it did not exist.
    pub async fn delete(&self, id: &str) -> StoreResult<bool> {
        let n = self.plans.delete(&Filter::id(id)).await;
        self.written(id);
        Ok(n? > 0)
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
    pub async fn logs_of(&self, plan_id: &str) -> StoreResult<Vec<LogEntry>> {
        let records: Vec<LogRecord> = self
            .logs
            .find(
                &Filter::eq("plan_id", plan_id),
                &FindOptions::sort("version", Dir::Desc).then("seq", Dir::Desc),
            )
            .await?;
        Ok(records.into_iter().map(|r| r.entry).collect())
    }
}

/// In a stored plan (the store's [`crate::secrets::MarkFn`]): mark each object of a workflow
/// job's execute inputs (`parameters`, `inputs`) whose `value` repeats a credential of the job's
/// workflow copy (a credential parameter's value, a credential variable's override) as a
/// credential, so it is masked in answers and encrypted at rest like the credential itself.
/// Every write marks, and so does the start-up migration for plans stored before.
fn mark_credentials(plan: &mut Doc) {
    let Some(Value::Array(jobs)) = plan.get_mut("jobs") else {
        return;
    };
    for spec in jobs.iter_mut().filter_map(|j| j.get_mut("spec")) {
        let secrets = spec
            .get("workflow")
            .map(crate::masking::secret_values)
            .unwrap_or_default();
        if secrets.is_empty() {
            continue;
        }
        for input in ["parameters", "inputs"] {
            if let Some(v) = spec.get_mut(input) {
                crate::masking::mark_values(v, &secrets);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn inputs_repeating_a_workflow_credential_are_marked() {
        let workflow = json!({"params": [{"name": "TOKEN", "value": "s3cret", "is_credential": true},
            {"name": "PLAIN", "value": "shown"}]});
        let mut plan = json!({"jobs": [
            {"spec": {"content": "text job"}},
            {"spec": {"workflow": workflow,
                "parameters": [{"name": "TOKEN", "value": "s3cret"}, {"name": "PLAIN", "value": "shown"}],
                "inputs": [{"job_name": "j", "spec": {"envs": [{"key": "K", "value": "s3cret"}]}}]}}]});
        let Value::Object(doc) = &mut plan else {
            unreachable!()
        };
        mark_credentials(doc);
        let spec = &plan["jobs"][1]["spec"];
        assert_eq!(spec["parameters"][0]["is_credential"], true);
        assert!(spec["parameters"][1].get("is_credential").is_none());
        assert_eq!(spec["inputs"][0]["spec"]["envs"][0]["is_credential"], true);
        assert_eq!(plan["jobs"][0], json!({"spec": {"content": "text job"}}));
    }
}
