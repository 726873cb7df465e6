//! The scheduler tick: the release window, scheduled execution and the native-approval
//! timeout.

use super::*;

impl Step<'_> {
    pub(super) fn tick(&mut self) {
        let now = self.now;
        let deadline = self.p.internal.approval_deadline;
        if self.p.status == Status::WaitForApproval && deadline > 0 && now >= deadline {
            if let Some(a) = &mut self.p.approval {
                a.status = ApprovalStatus::Timeout;
            }
            self.p.approval_time = now;
            self.move_to(Status::Timeout);
        }
        if self.p.status == Status::Executing && self.p.end_time != 0 && now > self.p.end_time {
            self.move_to(Status::Timeout);
        }
        let at = self.p.internal.schedule_at;
        if self.p.status == Status::Executing && at > 0 && now >= at {
            self.p.internal.schedule_at = 0;
            self.p.internal.schedule_fired_ms = self.ctx.now_ms;
            let in_window = self.p.start_time == 0 || now >= self.p.start_time;
            if in_window && self.approval_passed() {
                let due: Vec<ReleaseJob> = self
                    .p
                    .jobs
                    .iter()
                    .filter(|j| {
                        j.kind == JobKind::Workflow
                            && matches!(j.status, JobStatus::Todo | JobStatus::Failed)
                    })
                    .cloned()
                    .collect();
                for job in &due {
                    self.start_job(&job.id);
                    self.log_job("执行", job);
                }
                if !due.is_empty() {
                    self.touch();
                }
            }
        }
    }
}
