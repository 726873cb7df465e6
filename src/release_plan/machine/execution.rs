//! Execution: execute/skip/retry of jobs, the release window, and workflow task start,
//! start failure and finish.

use super::shared::job_snapshot;
use super::*;

impl Step<'_> {
    /// Find a job and run the checks shared by execute/skip/retry: the caller owns it, `kind`
    /// is its type, the plan is executing (else the job "cannot be `verb`") and inside its
    /// release window. `None` when, with `expire`, the closed window timed the plan out: the
    /// action stops there (see [`Self::window_open`]).
    fn acting_job(
        &mut self,
        job_id: &str,
        kind: JobKind,
        verb: &str,
        expire: bool,
    ) -> Result<Option<ReleaseJob>, Rejection> {
        let job = self.p.job(job_id).cloned().ok_or_else(|| {
            Rejection::not_found(format!(
                "release job {job_id} not found in release plan {}",
                self.p.name
            ))
        })?;
        self.require_job_owner(&job)?;
        if job.kind != kind {
            return Err(Rejection::bad_request(format!(
                "`type` is {} but release job {} is a {} job",
                kind.as_str(),
                job.name,
                job.kind.as_str()
            )));
        }
        self.require_executing(verb, &job)?;
        Ok(self.window_open(expire)?.then_some(job))
    }

    fn require_executing(&self, verb: &str, job: &ReleaseJob) -> Result<(), Rejection> {
        if self.p.status == Status::Executing {
            Ok(())
        } else {
            Err(Rejection::conflict(format!(
                "release plan {} is {}, not executing: job {} cannot be {verb}",
                self.p.name, self.p.status, job.name
            )))
        }
    }

    /// The release window (spec T1). With `expire`, a closed window times the plan out (saved)
    /// and the call fails; returns false when the caller must stop.
    pub(super) fn window_open(&mut self, expire: bool) -> Result<bool, Rejection> {
        let (start, end) = (self.p.start_time, self.p.end_time);
        if start != 0 && self.now < start {
            return Err(Rejection::conflict(format!(
                "release plan {} is not in the release time range: the window opens at {start}",
                self.p.name
            )));
        }
        if end != 0 && self.now > end {
            let err = Rejection::conflict(format!(
                "release plan {} is not in the release time range: the window closed at {end}",
                self.p.name
            ));
            if !expire {
                return Err(err);
            }
            self.move_to(Status::Timeout);
            self.error = Some(Rejection {
                message: format!("{}; the plan timed out", err.message),
                ..err
            });
            return Ok(false);
        }
        Ok(true)
    }

    /// Mark a workflow job running; the service starts its task after the save.
    pub(super) fn start_job(&mut self, job_id: &str) {
        let (name, now) = (self.who.name.clone(), self.now);
        if let Some(j) = self.p.job_mut(job_id) {
            j.status = JobStatus::Running;
            j.spec.task_id = 0;
            j.spec.status = TaskStatus::Prepare;
            j.error.clear();
            j.executed_by = name;
            j.executed_time = now;
        }
        self.fx.push(Effect::StartTask {
            job_id: job_id.to_string(),
        });
    }

    pub(super) fn log_job(&mut self, verb: &'static str, before: &ReleaseJob) {
        let after = self.p.job(&before.id).map(job_snapshot).unwrap_or_default();
        self.log_with(
            verb,
            "release_job",
            &before.name,
            job_snapshot(before),
            after,
            String::new(),
        );
    }

    pub(super) fn execute(
        &mut self,
        job_id: &str,
        kind: JobKind,
        remark: &str,
    ) -> Result<(), Rejection> {
        let Some(job) = self.acting_job(job_id, kind, "executed", true)? else {
            return Ok(());
        };
        match job.kind {
            JobKind::Text => {
                if job.status != JobStatus::Todo {
                    return Err(wrong_status(&job, "a todo job can be completed"));
                }
                self.close_job(job_id, JobStatus::Done, Some(remark));
            }
            JobKind::Workflow => {
                if !matches!(job.status, JobStatus::Todo | JobStatus::Failed) {
                    return Err(wrong_status(
                        &job,
                        "a todo or failed workflow job can be executed",
                    ));
                }
                self.start_job(job_id);
            }
        }
        self.touch();
        self.log_job("执行", &job);
        self.complete_if_done();
        Ok(())
    }

    pub(super) fn skip(
        &mut self,
        job_id: &str,
        kind: JobKind,
        remark: &str,
    ) -> Result<(), Rejection> {
        // Without `expire` a closed window is an error, so there is always a job here.
        let Some(job) = self.acting_job(job_id, kind, "skipped", false)? else {
            return Ok(());
        };
        if !matches!(job.status, JobStatus::Todo | JobStatus::Failed) {
            return Err(wrong_status(&job, "a todo or failed job can be skipped"));
        }
        let remark = Some(remark).filter(|r| !r.is_empty());
        self.close_job(job_id, JobStatus::Skipped, remark);
        self.touch();
        self.log_job("跳过", &job);
        self.complete_if_done();
        Ok(())
    }

    pub(super) fn retry(&mut self, job_id: &str, kind: JobKind) -> Result<(), Rejection> {
        if kind == JobKind::Text {
            return Err(Rejection::bad_request(
                "text release job does not support retry (`type` must be workflow)",
            ));
        }
        let Some(job) = self.acting_job(job_id, kind, "retried", true)? else {
            return Ok(());
        };
        if job.status != JobStatus::Failed {
            return Err(wrong_status(&job, "a failed job can be retried"));
        }
        self.start_job(job_id);
        self.touch();
        self.log_job("重试", &job);
        Ok(())
    }

    /// End `job_id` in `status` by the acting user, now; `remark` replaces the stored one.
    fn close_job(&mut self, job_id: &str, status: JobStatus, remark: Option<&str>) {
        let (name, now) = (self.who.name.clone(), self.now);
        if let Some(j) = self.p.job_mut(job_id) {
            j.status = status;
            j.executed_by = name;
            j.executed_time = now;
            if let Some(r) = remark {
                j.spec.remark = r.to_string();
            }
        }
    }

    pub(super) fn running_without_task(&self, job_id: &str) -> bool {
        self.p
            .job(job_id)
            .is_some_and(|j| j.status == JobStatus::Running && j.spec.task_id == 0)
    }

    pub(super) fn task_started(&mut self, job_id: &str, workflow_key: &str, task_id: i64) {
        if !self.running_without_task(job_id) {
            // The plan was re-planned (or the job replaced) while the task was being created.
            if self.p.job(job_id).is_none_or(|j| j.spec.task_id != task_id) {
                self.fx.push(Effect::CancelTask {
                    workflow_key: workflow_key.to_string(),
                    task_id,
                });
            }
            return;
        }
        if let Some(j) = self.p.job_mut(job_id) {
            j.spec.task_id = task_id;
        }
    }

    pub(super) fn task_start_failed(
        &mut self,
        job_id: &str,
        reason: &str,
        revert: Option<&ReleaseJob>,
    ) {
        if !self.running_without_task(job_id) {
            return;
        }
        let Some(before) = self.p.job(job_id).cloned() else {
            return;
        };
        if let Some(j) = self.p.job_mut(job_id) {
            match revert {
                Some(prev) => *j = prev.clone(),
                None => {
                    j.status = JobStatus::Failed;
                    j.spec.status = TaskStatus::Failed;
                    j.error = reason.to_string();
                }
            }
        }
        if revert.is_none() {
            self.log_job("执行", &before);
        }
    }

    pub(super) fn task_finished(&mut self, job_id: &str, task_id: i64, task_status: TaskStatus) {
        let Some(before) = self.p.job(job_id).cloned() else {
            return;
        };
        let ours = before.status == JobStatus::Running
            && (before.spec.task_id == task_id || before.spec.task_id == 0);
        let new_status = match task_status {
            TaskStatus::Passed => JobStatus::Done,
            TaskStatus::Failed
            | TaskStatus::Timeout
            | TaskStatus::Cancelled
            | TaskStatus::Reject => JobStatus::Failed,
            _ => return,
        };
        if !ours {
            return;
        }
        let workflow = before.spec.workflow_key.clone();
        if let Some(j) = self.p.job_mut(job_id) {
            j.status = new_status;
            j.spec.task_id = task_id;
            j.spec.status = task_status;
            if new_status == JobStatus::Failed {
                j.error = format!("workflow {workflow} task {task_id} ended {task_status}");
            }
        }
        self.log_job("更新", &before);
        self.complete_if_done();
    }
}

/// 409: `job` is in a status the action does not take (`only` says which it takes).
fn wrong_status(job: &ReleaseJob, only: &str) -> Rejection {
    Rejection::conflict(format!(
        "release job {} is {}: only {only}",
        job.name,
        job.status.as_str()
    ))
}
