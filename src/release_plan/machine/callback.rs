//! External check callbacks (the planning and execution checks a third party answers).

use super::*;

impl Step<'_> {
    pub(super) fn callback(
        &mut self,
        event: HookEvent,
        code: &str,
        result: CallbackResult,
        reason: &str,
    ) -> Result<(), Rejection> {
        if code != self.p.instance_code {
            return Err(Rejection::conflict(format!(
                "release plan instance code is not correct, name: {}, instance code: {code}: it does not match the plan's current instance_code",
                self.p.name
            )));
        }
        let key = crate::release_plan::model::CallbackKey {
            hook_event: event,
            instance_code: code.to_string(),
            result: result.as_str().to_string(),
        };
        if self.p.internal.last_callback.as_ref() == Some(&key) {
            // An identical repeat of the accepted callback: already applied.
            return Ok(());
        }
        if self.p.status != event.wait_status() {
            return Err(Rejection::conflict(format!(
                "release plan {} is {}, not waiting for the {} external check",
                self.p.name,
                self.p.status,
                event.as_str()
            )));
        }
        if result == CallbackResult::Success
            && event == HookEvent::StartExecute
            && !self.approval_passed()
        {
            return Err(Rejection::conflict(format!(
                "approval of release plan {} has not passed: it cannot execute",
                self.p.name
            )));
        }
        let now = self.now;
        match event {
            HookEvent::FinishPlanning => self.p.wait_for_finish_planning_external_check_time = now,
            HookEvent::StartExecute => self.p.wait_for_execute_external_check_time = now,
            HookEvent::AllJobDone => self.p.wait_for_all_done_external_check_time = now,
        }
        self.p.internal.last_callback = Some(key);
        match result {
            CallbackResult::Failed => {
                self.p.external_check_failed_reason = reason.to_string();
                self.move_to(event.failed_status());
            }
            CallbackResult::Success => match event {
                HookEvent::FinishPlanning => {
                    self.move_to(Status::FinishPlanning);
                    // spec C2/§8.5: without approval the plan goes straight on, no hook.
                    if !Approval::is_on(&self.p.approval) {
                        self.start_executing(false);
                    }
                }
                HookEvent::StartExecute => self.start_executing(false),
                HookEvent::AllJobDone => self.move_to(Status::Success),
            },
        }
        Ok(())
    }
}
