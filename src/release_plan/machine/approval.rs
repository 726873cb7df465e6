//! Approval: submitting a plan for approval and native-approval votes.

use super::planning::im_name;
use super::*;
use crate::release_plan::model::ApproveOrReject;

impl Step<'_> {
    /// spec S2 and §7.2; IM approvals need an integration we do not have.
    pub(super) fn submit_approval(&mut self) -> Result<(), Rejection> {
        let name = self.p.name.clone();
        let Some(a) = self.p.approval.as_mut().filter(|a| a.enabled) else {
            return Err(Rejection::conflict(format!(
                "release plan {name} has no approval enabled: nothing to submit"
            )));
        };
        if a.kind != "native" {
            return Err(Rejection::conflict(format!(
                "release plan {name} uses a {} approval, which needs the {} integration; zadig-server has no IM approval integration configured (only type native can be submitted)",
                a.kind,
                im_name(&a.kind)
            )));
        }
        a.clear_runtime();
        let Some(n) = a.native_approval.as_mut() else {
            return Err(Rejection::conflict(format!(
                "release plan {name} has a native approval without native_approval"
            )));
        };
        n.instance_code = self.ctx.fresh_code.to_string();
        self.p.internal.approval_deadline = if n.timeout > 0 {
            self.now + n.timeout * 60
        } else {
            0
        };
        self.move_to(Status::WaitForApproval);
        Ok(())
    }

    pub(super) fn vote(&mut self, approve: bool, comment: &str) -> Result<(), Rejection> {
        let name = self.p.name.clone();
        if self.p.status != Status::WaitForApproval {
            return Err(Rejection::conflict(format!(
                "release plan {name} is {}, not wait_for_approval: there is nothing to approve",
                self.p.status
            )));
        }
        let now = self.now;
        let uid = self.who.uid.clone();
        let account = self.who.account.clone();
        let Some(native) = self
            .p
            .approval
            .as_mut()
            .filter(|a| a.kind == "native")
            .and_then(|a| a.native_approval.as_mut())
        else {
            return Err(Rejection::conflict(format!(
                "release plan {name} has no native approval"
            )));
        };
        let Some(u) = native.approve_users.iter_mut().find(|u| u.user_id == uid) else {
            return Err(Rejection::forbidden(format!(
                "user {account} is not an approver of release plan {name}"
            )));
        };
        if !u.reject_or_approve.is_none() {
            return Err(Rejection::conflict(format!(
                "user {account} has already voted {} on release plan {name}",
                u.reject_or_approve
            )));
        }
        let vote = ApproveOrReject::of(approve);
        u.reject_or_approve = vote;
        u.comment = comment.to_string();
        u.operation_time = now;
        let approvals = native
            .approve_users
            .iter()
            .filter(|u| u.reject_or_approve == ApproveOrReject::Approve)
            .count();
        let needed = usize::try_from(native.needed_approvers.max(1)).unwrap_or(1);
        let decision = if !approve || approvals >= needed {
            vote
        } else {
            ApproveOrReject::None
        };
        native.reject_or_approve = decision;
        self.log_with(
            "更新",
            "approval",
            "审批",
            Value::Null,
            json!(vote),
            comment.to_string(),
        );
        match decision {
            ApproveOrReject::Reject => {
                if let Some(a) = &mut self.p.approval {
                    a.status = ApprovalStatus::Reject;
                }
                self.p.approval_time = now;
                self.move_to(Status::Denied);
            }
            ApproveOrReject::Approve => {
                if let Some(a) = &mut self.p.approval {
                    a.status = ApprovalStatus::Passed;
                }
                self.p.approval_time = now;
                self.enter_executing();
            }
            ApproveOrReject::None => {}
        }
        Ok(())
    }
}
