//! The status tables: which targets the status API offers and every transition the machine
//! can make.

use super::*;

/// The targets the status API accepts from each status (spec §4.2, tightened: the moves that
/// belong to callbacks, approvals and the scheduler are not offered here).
pub fn status_api_allows(from: Status, to: Status) -> bool {
    use Status::*;
    match from {
        Planning => to == FinishPlanning,
        FinishPlanning => matches!(to, Planning | WaitForApproval | Executing),
        Executing => matches!(to, Planning | Success | Cancel),
        WaitForApproval | Timeout | Denied => matches!(to, Planning | Cancel),
        s if s.is_external_check() => matches!(to, Planning | Cancel),
        _ => false,
    }
}

/// Every status change the machine can make (spec §4.3, the rows we keep).
pub fn is_kept_transition(from: Status, to: Status) -> bool {
    use Status::*;
    if from.is_terminal() {
        return false;
    }
    if to == Planning {
        // Re-plan through the status API or PATCH.
        return !matches!(from, Planning | Success | Cancel);
    }
    match from {
        Planning => matches!(to, FinishPlanning | WaitForFinishPlanningExternalCheck),
        FinishPlanning => matches!(
            to,
            WaitForApproval | Executing | WaitForExecuteExternalCheck
        ),
        WaitForApproval => matches!(
            to,
            Executing | WaitForExecuteExternalCheck | Denied | Timeout | Cancel
        ),
        Executing => matches!(to, Success | WaitForAllDoneExternalCheck | Timeout | Cancel),
        WaitForFinishPlanningExternalCheck => matches!(
            to,
            FinishPlanning | WaitForFinishPlanningExternalCheckFailed | Cancel
        ),
        WaitForExecuteExternalCheck => {
            matches!(to, Executing | WaitForExecuteExternalCheckFailed | Cancel)
        }
        WaitForAllDoneExternalCheck => {
            matches!(to, Success | WaitForAllDoneExternalCheckFailed | Cancel)
        }
        Timeout | Denied => to == Cancel,
        s if s.is_external_check() => to == Cancel,
        _ => false,
    }
}
