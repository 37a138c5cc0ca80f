//! Who may do what at the counter. Roles come from the staff file; the console checks
//! them before any action, and dual control names a second supervisor for the moves
//! that destroy or write off a card whose chip holds live card data.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A staff member's role (one per account).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Starts cards, hands them over, makes a spoiled card again.
    #[default]
    Operator,
    /// An operator who also decides on cards in doubt, loads stock and approves spoils.
    Supervisor,
    /// Manages staff accounts; takes no part in issuing.
    Admin,
    /// Reads the audit and the reports; changes nothing.
    Auditor,
}

/// Something a role may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duty {
    /// Start, cancel, hand over a card.
    Issue,
    /// Make a spoiled card again, or give up on it.
    MakeAgain,
    /// Confirm or spoil a card left in doubt by a restart.
    ResolveInDoubt,
    /// Second sign-in that approves a spoil after the chip was written.
    ApproveSpoil,
    /// Record blanks loaded.
    LoadStock,
    /// Read stock and the end-of-day reconciliation.
    ReadReports,
    /// Read and export the audit trail.
    ReadAudit,
    /// Add and remove staff accounts.
    ManageStaff,
}

impl Role {
    /// Every role, for listings and tests.
    pub const ALL: [Role; 4] = [Role::Operator, Role::Supervisor, Role::Admin, Role::Auditor];

    /// Whether this role may carry out `duty`.
    pub fn may(self, duty: Duty) -> bool {
        use Duty::*;
        match self {
            Role::Operator => matches!(duty, Issue | MakeAgain | ReadReports),
            Role::Supervisor => matches!(
                duty,
                Issue | MakeAgain | ResolveInDoubt | ApproveSpoil | LoadStock | ReadReports
            ),
            Role::Admin => matches!(duty, ManageStaff),
            Role::Auditor => matches!(duty, ReadAudit | ReadReports),
        }
    }

    /// Stable name (as in the staff file).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Supervisor => "supervisor",
            Role::Admin => "admin",
            Role::Auditor => "auditor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of [`Role`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role '{0}': operator, supervisor, admin or auditor")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_string()))
    }
}

/// Why a member may not do something, in words for the console.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleRefusal {
    /// The member's role does not allow it.
    #[error("{role} accounts cannot {what}; ask a {needed}")]
    NotAllowed {
        /// The member's role.
        role: Role,
        /// What was asked, in words.
        what: &'static str,
        /// A role that may.
        needed: Role,
    },
    /// A second supervisor must approve.
    #[error(
        "the chip of this card was written: a second supervisor must approve with their id and PIN"
    )]
    ApprovalNeeded,
    /// The approver is not a supervisor, or is the member acting.
    #[error("the approval must come from another supervisor than the member acting")]
    BadApprover,
}

impl RoleRefusal {
    /// Stable code for logs and API clients.
    pub fn code(&self) -> &'static str {
        match self {
            RoleRefusal::NotAllowed { .. } => "ROLE_NOT_ALLOWED",
            RoleRefusal::ApprovalNeeded => "ROLE_APPROVAL_NEEDED",
            RoleRefusal::BadApprover => "ROLE_BAD_APPROVER",
        }
    }
}

/// Checks that `role` may carry out `duty`, naming a role that may when it cannot.
pub fn check(role: Role, duty: Duty, what: &'static str) -> Result<(), RoleRefusal> {
    if role.may(duty) {
        return Ok(());
    }
    let needed = Role::ALL
        .into_iter()
        .find(|r| r.may(duty))
        .unwrap_or(Role::Supervisor);
    Err(RoleRefusal::NotAllowed { role, what, needed })
}

/// Checks a dual-control approval: another member than `actor`, a supervisor.
pub fn check_approver(
    actor: &str,
    approver: Option<(&str, Role)>,
) -> Result<Option<String>, RoleRefusal> {
    match approver {
        None => Err(RoleRefusal::ApprovalNeeded),
        Some((id, role)) if id != actor && role.may(Duty::ApproveSpoil) => Ok(Some(id.into())),
        Some(_) => Err(RoleRefusal::BadApprover),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operator_issues_and_makes_again_but_does_not_resolve_or_load() {
        let r = Role::Operator;
        assert!(r.may(Duty::Issue) && r.may(Duty::MakeAgain));
        assert!(!r.may(Duty::ResolveInDoubt) && !r.may(Duty::LoadStock));
        assert!(!r.may(Duty::ApproveSpoil) && !r.may(Duty::ReadAudit));
    }

    #[test]
    fn a_supervisor_resolves_loads_and_approves() {
        let r = Role::Supervisor;
        assert!(r.may(Duty::ResolveInDoubt) && r.may(Duty::LoadStock));
        assert!(r.may(Duty::ApproveSpoil) && r.may(Duty::Issue));
    }

    #[test]
    fn an_auditor_reads_and_changes_nothing() {
        let r = Role::Auditor;
        assert!(r.may(Duty::ReadAudit) && r.may(Duty::ReadReports));
        for d in [
            Duty::Issue,
            Duty::MakeAgain,
            Duty::ResolveInDoubt,
            Duty::ApproveSpoil,
            Duty::LoadStock,
            Duty::ManageStaff,
        ] {
            assert!(!r.may(d), "{d:?}");
        }
    }

    #[test]
    fn an_admin_manages_staff_only() {
        assert!(Role::Admin.may(Duty::ManageStaff));
        assert!(!Role::Admin.may(Duty::Issue) && !Role::Admin.may(Duty::ReadAudit));
    }

    #[test]
    fn a_refusal_names_a_role_that_may() {
        let e = check(Role::Operator, Duty::LoadStock, "record stock").unwrap_err();
        assert_eq!(
            e.to_string(),
            "operator accounts cannot record stock; ask a supervisor"
        );
    }

    #[test]
    fn nobody_approves_their_own_spoil_and_only_a_supervisor_approves() {
        assert_eq!(
            check_approver("bnoor", Some(("bnoor", Role::Supervisor))),
            Err(RoleRefusal::BadApprover)
        );
        assert_eq!(
            check_approver("amartin", Some(("cli", Role::Operator))),
            Err(RoleRefusal::BadApprover)
        );
        assert_eq!(
            check_approver("amartin", None),
            Err(RoleRefusal::ApprovalNeeded)
        );
        assert_eq!(
            check_approver("amartin", Some(("bnoor", Role::Supervisor))),
            Ok(Some("bnoor".into()))
        );
    }

    #[test]
    fn role_names_round_trip_and_a_staff_file_without_one_means_operator() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert!("manager".parse::<Role>().is_err());
        assert_eq!(Role::default(), Role::Operator);
    }
}
