//! Planning: creating a plan, editing its content and the status API (`set_status`), with
//! the before/after summary an edit record shows.

use super::*;

impl Step<'_> {
    pub(super) fn edit(&mut self, c: &Content) -> Result<(), Rejection> {
        let st = self.p.status;
        if matches!(
            st,
            Status::Executing | Status::Success | Status::WaitForApproval | Status::Cancel
        ) {
            return Err(Rejection::conflict(format!(
                "release plan {} is {st}: a plan cannot be edited while executing, success, wait_for_approval or cancel",
                self.p.name
            )));
        }
        let before = summary(&self.p);
        // The jobs are replaced below: their tasks go first.
        self.cancel_running_tasks();
        let p = &mut self.p;
        p.name = c.name.clone();
        p.manager = c.manager.clone();
        p.manager_id = c.manager_id.clone();
        p.internal.manager_identity_type = c.manager_identity_type.clone();
        p.start_time = c.start_time;
        p.end_time = c.end_time;
        p.schedule_execute_time = c.schedule_execute_time;
        p.description = c.description.clone();
        p.approval = c.approval.clone();
        if let Some(a) = &mut p.approval {
            a.clear_runtime();
        }
        // spec §2.4 step 9: a job keeps its id when an old job has the same type and name.
        let mut old: Vec<Option<&ReleaseJob>> = self.p.jobs.iter().map(Some).collect();
        let jobs: Vec<ReleaseJob> = c
            .jobs
            .iter()
            .map(|n| {
                let reused = old
                    .iter_mut()
                    .find(|o| o.is_some_and(|o| o.kind == n.kind && o.name == n.name))
                    .and_then(Option::take)
                    .map(|o| o.id.clone());
                ReleaseJob {
                    id: reused.unwrap_or_else(|| n.fresh_id.clone()),
                    name: n.name.clone(),
                    manager: n.manager.clone(),
                    manager_id: n.manager_id.clone(),
                    kind: n.kind,
                    spec: n.spec.clone(),
                    status: JobStatus::Unset,
                    last_status: JobStatus::Unset,
                    updated: false,
                    executed_by: String::new(),
                    executed_time: 0,
                    error: String::new(),
                }
            })
            .collect();
        self.p.jobs = jobs;
        self.touch();
        let name = self.p.name.clone();
        self.log_with(
            "更新",
            "release_plan",
            &name,
            before,
            summary(&self.p),
            String::new(),
        );
        self.replan();
        // A PATCH leaves the jobs' runtime empty (spec §2.4), unlike a status-API re-plan.
        for j in &mut self.p.jobs {
            j.status = JobStatus::Unset;
            j.last_status = JobStatus::Unset;
        }
        Ok(())
    }

    pub(super) fn set_status(&mut self, target: Status) -> Result<(), Rejection> {
        self.require_plan_editor("change the status of")?;
        let from = self.p.status;
        if target == from {
            return Err(Rejection::conflict(format!(
                "release plan {} is already {from}",
                self.p.name
            )));
        }
        if !status_api_allows(from, target) {
            return Err(Rejection::conflict(format!(
                "cannot change the status of release plan {} from {from} to {target}",
                self.p.name
            )));
        }
        match target {
            Status::Planning => self.replan(),
            Status::Cancel => self.move_to(Status::Cancel),
            Status::Success => self.move_to(Status::Success),
            Status::FinishPlanning => {
                if self.p.jobs.is_empty() {
                    return Err(Rejection::conflict(format!(
                        "release plan {} has no jobs: add jobs (PATCH) before finishing planning",
                        self.p.name
                    )));
                }
                self.p.planning_time = self.now;
                if self.waits(HookEvent::FinishPlanning) {
                    self.move_to(Status::WaitForFinishPlanningExternalCheck);
                } else {
                    self.move_to(Status::FinishPlanning);
                }
                self.hook(HookEvent::FinishPlanning);
            }
            Status::WaitForApproval => {
                self.submit_approval()?;
                self.record_executor();
            }
            Status::Executing => {
                if !self.approval_passed() {
                    let st = self.p.approval.as_ref().map(|a| a.status.as_str());
                    return Err(Rejection::conflict(format!(
                        "approval status is {:?}: release plan {} cannot execute before its approval passed (submit it with status wait_for_approval)",
                        st.unwrap_or_default(),
                        self.p.name
                    )));
                }
                self.record_executor();
                self.enter_executing();
            }
            other => {
                return Err(Rejection::conflict(format!(
                    "cannot change the status of release plan {} from {from} to {other}",
                    self.p.name
                )));
            }
        }
        Ok(())
    }
}

impl Step<'_> {
    /// The plan's scheduled execution acts for who asked for it to execute — the status call
    /// to `executing`, or the submission that an approval then passes — never for the
    /// approver: an approval does not lend the approver's rights to what the plan runs (its
    /// workflows may still change after the vote).
    fn record_executor(&mut self) {
        self.p.internal.executor_id = self.who.uid.clone();
    }
}

/// What an edit record shows of a plan (spec §9: a before/after summary).
pub(super) fn summary(p: &ReleasePlan) -> Value {
    json!({
        "name": p.name,
        "manager": p.manager,
        "start_time": p.start_time,
        "end_time": p.end_time,
        "schedule_execute_time": p.schedule_execute_time,
        "approval": Approval::is_on(&p.approval),
        "jobs": p.jobs.iter().map(|j| format!("{} ({})", j.name, j.kind.as_str())).collect::<Vec<_>>(),
    })
}

pub(super) fn im_name(kind: &str) -> &'static str {
    match kind {
        "lark" | "lark_intl" => "Lark (Feishu)",
        "dingtalk" => "DingTalk",
        "workwx" => "WeCom (WorkWX)",
        _ => "IM",
    }
}

/// A new plan from validated content (spec P0): `planning`, a fresh instance code and hook
/// snapshot, version 1.
pub fn create(id: &str, index: i64, content: &Content, actor: &Actor, ctx: &Ctx<'_>) -> Outcome {
    let now = ctx.now();
    let blank = ReleasePlan {
        id: id.to_string(),
        index,
        name: String::new(),
        manager: String::new(),
        manager_id: String::new(),
        start_time: 0,
        end_time: 0,
        schedule_execute_time: 0,
        description: String::new(),
        created_by: actor.name.clone(),
        create_time: now,
        updated_by: String::new(),
        update_time: 0,
        approval: None,
        jobs: Vec::new(),
        status: Status::Planning,
        planning_time: 0,
        approval_time: 0,
        executing_time: 0,
        success_time: 0,
        finish_planning_time: 0,
        instance_code: String::new(),
        hook_settings: None,
        wait_for_finish_planning_external_check_time: 0,
        wait_for_execute_external_check_time: 0,
        wait_for_all_done_external_check_time: 0,
        external_check_failed_reason: String::new(),
        version: 0,
        internal: crate::release_plan::model::Internal {
            creator_id: actor.uid.clone(),
            ..Default::default()
        },
    };
    let mut s = Step {
        p: blank,
        fx: Vec::new(),
        trail: Vec::new(),
        ctx,
        now,
        who: actor.clone(),
        error: None,
    };
    // Editing a blank plan in `planning` cannot be refused.
    let _ = s.edit(content);
    s.fx.clear();
    let name = s.p.name.clone();
    let after = summary(&s.p);
    s.log_with(
        "新建",
        "release_plan",
        &name,
        Value::Null,
        after,
        String::new(),
    );
    s.p.version = 1;
    s.normalize();
    Outcome {
        plan: s.p,
        effects: s.fx,
        transitions: s.trail,
        error: None,
    }
}
