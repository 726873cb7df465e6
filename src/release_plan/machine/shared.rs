//! `Step` helpers shared by every handler: operation records, status moves, hooks, re-planning,
//! job preparation, entering execution, completion and keeping derived fields in step.

use super::*;

/// What a job looks like in an operation record (spec §9).
pub(super) fn job_snapshot(j: &ReleaseJob) -> Value {
    let mut v = json!({
        "type": j.kind.as_str(),
        "status": j.status.as_str(),
        "executed_by": j.executed_by,
        "executed_time": j.executed_time,
        "remark": j.spec.remark,
    });
    if j.kind == JobKind::Workflow {
        v["workflow_status"] = json!(j.spec.status);
        v["task_id"] = json!(j.spec.task_id);
    }
    v
}

impl Step<'_> {
    pub(super) fn log_with(
        &mut self,
        verb: &'static str,
        target_type: &'static str,
        target_name: &str,
        before: Value,
        after: Value,
        detail: String,
    ) {
        self.fx.push(Effect::Log(LogEntry {
            username: self.who.name.clone(),
            account: self.who.account.clone(),
            verb,
            target_type,
            target_name: target_name.to_string(),
            before,
            after,
            detail,
        }));
    }

    pub(super) fn move_to(&mut self, to: Status) {
        let from = self.p.status;
        if from == to {
            return;
        }
        self.trail.push((from, to));
        self.p.status = to;
        match to {
            Status::Planning => self.p.planning_time = self.now,
            Status::FinishPlanning => self.p.finish_planning_time = self.now,
            Status::Executing => self.p.executing_time = self.now,
            Status::Success => self.p.success_time = self.now,
            _ => {}
        }
        self.log_with(
            "更新",
            "release_plan_status",
            "发布计划状态",
            json!(from.as_str()),
            json!(to.as_str()),
            format!("状态从 {from} 变更为 {to}"),
        );
    }

    pub(super) fn hook(&mut self, event: HookEvent) {
        if HookSnapshot::fires(&self.p.hook_settings, event) {
            let body = hooks::body(&self.p, event);
            self.fx.push(Effect::Hook { event, body });
        }
    }

    pub(super) fn waits(&self, event: HookEvent) -> bool {
        HookSnapshot::waits(&self.p.hook_settings, event)
    }

    pub(super) fn approval_passed(&self) -> bool {
        !Approval::is_on(&self.p.approval)
            || self
                .p
                .approval
                .as_ref()
                .is_some_and(|a| a.status == ApprovalStatus::Passed)
    }

    /// Back to `planning` for a new cycle (spec §4.4): jobs remember their status, a fresh
    /// instance code and hook snapshot, approval decisions forgotten. Timestamps are kept (they
    /// say when each state was last entered and never move backwards).
    pub(super) fn replan(&mut self) {
        self.cancel_running_tasks();
        for j in &mut self.p.jobs {
            // A job that did not run in the cycle being left keeps what it had before, so a
            // job done two cycles ago still counts as done.
            if !matches!(j.status, JobStatus::Todo | JobStatus::Unset) {
                j.last_status = j.status;
            }
            j.status = JobStatus::Todo;
            j.updated = false;
        }
        self.p.hook_settings = Some(self.ctx.hook_setting.clone());
        self.p.instance_code = self.ctx.fresh_code.to_string();
        self.p.external_check_failed_reason.clear();
        self.p.internal.last_callback = None;
        if let Some(a) = &mut self.p.approval {
            a.clear_runtime();
        }
        self.move_to(Status::Planning);
    }

    /// Running workflow jobs' tasks are cancelled when the plan leaves the cycle they belong
    /// to (passed and finished tasks are left alone).
    pub(super) fn cancel_running_tasks(&mut self) {
        for j in &self.p.jobs {
            if j.kind == JobKind::Workflow && j.status == JobStatus::Running && j.spec.task_id != 0
            {
                self.fx.push(Effect::CancelTask {
                    workflow_key: j.spec.workflow_key.clone(),
                    task_id: j.spec.task_id,
                });
            }
        }
    }

    /// Jobs for a new execution: those done in the previous cycle and not edited stay done.
    pub(super) fn prepare_jobs(&mut self) {
        for j in &mut self.p.jobs {
            if j.last_status == JobStatus::Done && !j.updated {
                j.status = JobStatus::Done;
                continue;
            }
            j.status = JobStatus::Todo;
            j.executed_by.clear();
            j.executed_time = 0;
            j.error.clear();
            if j.kind == JobKind::Workflow {
                j.spec.task_id = 0;
                j.spec.status = TaskStatus::NotRun;
            }
        }
    }

    /// Into `executing` without an external check (spec S3/A1/C2/C4 after their checks);
    /// `hook` sends start_execute (callbacks never send hooks, spec §8.5).
    pub(super) fn start_executing(&mut self, hook: bool) {
        self.move_to(Status::Executing);
        self.prepare_jobs();
        let at = self.p.schedule_execute_time;
        self.p.internal.schedule_at = if at != 0 && at + SCHEDULE_GRACE_SECS >= self.now {
            at
        } else {
            0
        };
        if hook {
            self.hook(HookEvent::StartExecute);
        }
        self.complete_if_done();
    }

    /// Towards `executing`: through the start-execute check when the plan waits for it.
    pub(super) fn enter_executing(&mut self) {
        if self.waits(HookEvent::StartExecute) {
            self.move_to(Status::WaitForExecuteExternalCheck);
            self.hook(HookEvent::StartExecute);
        } else {
            self.start_executing(true);
        }
    }

    /// Every job done or skipped → `success` (or the all-done check) — spec E2 with the
    /// DESIGN.md §1.5 fix: `failed` does not count.
    pub(super) fn complete_if_done(&mut self) {
        if self.p.status != Status::Executing || self.p.jobs.is_empty() {
            return;
        }
        let all = self
            .p
            .jobs
            .iter()
            .all(|j| matches!(j.status, JobStatus::Done | JobStatus::Skipped));
        if !all {
            return;
        }
        if self.waits(HookEvent::AllJobDone) {
            self.move_to(Status::WaitForAllDoneExternalCheck);
        } else {
            self.move_to(Status::Success);
        }
        self.hook(HookEvent::AllJobDone);
    }

    pub(super) fn touch(&mut self) {
        self.p.updated_by = self.who.name.clone();
        self.p.update_time = self.now;
    }

    /// Keep the derived fields in step with the plan.
    pub(super) fn normalize(&mut self) {
        let i = &mut self.p.internal;
        if self.p.status != Status::Executing {
            i.schedule_at = 0;
        }
        if self.p.status != Status::WaitForApproval {
            i.approval_deadline = 0;
        }
        i.running_jobs = self
            .p
            .jobs
            .iter()
            .filter(|j| j.status == JobStatus::Running)
            .count()
            .try_into()
            .unwrap_or(i64::MAX);
    }
}
