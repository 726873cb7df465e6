//! Who may do what: plan editors (admin, release manager, creator), manager hand-over on
//! edit and job owners.

use super::*;

/// Whether `who` may edit `plan`, delete it or change its status: a system admin, the
/// release manager (`manager_id`) or the plan's creator (`internal.creator_id`).
pub fn may_edit(plan: &ReleasePlan, who: &Actor) -> bool {
    let is = |uid: &str| !uid.is_empty() && who.uid == uid;
    who.is_admin || is(&plan.manager_id) || is(&plan.internal.creator_id)
}

/// 403 unless `who` [`may_edit`] `plan`; `what` is the refused action ("delete", …).
pub fn require_editor(plan: &ReleasePlan, who: &Actor, what: &str) -> Result<(), Rejection> {
    if may_edit(plan, who) {
        Ok(())
    } else {
        Err(Rejection::forbidden(format!(
            "only the release manager {}, the plan's creator {} or a system admin may {what} release plan {}; user {} is none of them",
            plan.manager, plan.created_by, plan.name, who.account
        )))
    }
}

impl Step<'_> {
    pub(super) fn plan_owner(&self) -> bool {
        self.who.is_admin || (!self.p.manager_id.is_empty() && self.who.uid == self.p.manager_id)
    }

    /// docs/security.md: an admin, the release manager or the plan's creator may edit the
    /// plan, delete it and change its status.
    pub(super) fn require_plan_editor(&self, what: &str) -> Result<(), Rejection> {
        require_editor(&self.p, &self.who, what)
    }

    /// An edit: the caller may edit the plan, and only an admin or the current manager may
    /// hand it to another manager (a creator who is not the manager may not take it over).
    pub(super) fn authorize_edit(&self, c: &Content) -> Result<(), Rejection> {
        self.require_plan_editor("edit")?;
        if c.manager_id != self.p.manager_id && !self.plan_owner() {
            return Err(Rejection::forbidden(format!(
                "only the release manager {} or a system admin may hand release plan {} to another manager; user {} may not change `manager`",
                self.p.manager, self.p.name, self.who.account
            )));
        }
        Ok(())
    }

    /// spec §5.2: a job owner, the plan owner or an admin.
    pub(super) fn require_job_owner(&self, job: &ReleaseJob) -> Result<(), Rejection> {
        if self.plan_owner() || (!job.manager_id.is_empty() && self.who.uid == job.manager_id) {
            return Ok(());
        }
        let owners = if job.manager.is_empty() {
            format!("the release manager {}", self.p.manager)
        } else {
            format!(
                "the job owner {} or the release manager {}",
                job.manager, self.p.manager
            )
        };
        Err(Rejection::forbidden(format!(
            "user {} is not the manager of the job {}: only {owners} or a system admin may act on it",
            self.who.account, job.name
        )))
    }
}
