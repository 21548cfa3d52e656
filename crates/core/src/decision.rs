//! The result of authorization, with the reasons that explain it.

use serde::{Deserialize, Serialize};

/// Allow or deny. Anything that is not an explicit allow is a deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// The request may proceed.
    Allow,
    /// The request is refused.
    Deny,
}

/// An authorization decision and why it was made.
///
/// A `Decision` never hides an error: policy evaluation errors are kept in
/// `errors` and always make the effect [`Effect::Deny`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Allow or deny.
    pub effect: Effect,
    /// The ids of the policies that determined the decision: the permits that
    /// allowed, or the forbids that denied. Empty for a default deny.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// Human-readable reasons, from `@reason` annotations or from Warden.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// Evaluation errors; any error means deny.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// What the determining policies oblige (`@approval`, `@redact`).
    #[serde(default, skip_serializing_if = "Obligations::is_empty")]
    pub obligations: Obligations,
}

/// How many humans must approve an action before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Approval {
    /// One approver (`@approval("required")`).
    Required,
    /// Two distinct approvers (`@approval("dual")`).
    Dual,
}

impl std::str::FromStr for Approval {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "required" => Ok(Self::Required),
            "dual" => Ok(Self::Dual),
            other => Err(format!(
                "`@approval(\"{}\")`: expected \"required\" or \"dual\"",
                other.chars().take(40).collect::<String>()
            )),
        }
    }
}

/// What an allow obliges Warden to do: the policies' `@approval` (the
/// strictest wins) and `@redact` annotations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Obligations {
    /// Human approval needed before the action runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    /// What to redact, for the inspection phase.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redact: Vec<String>,
    /// Groups that must each count an approver among the reviewers
    /// (`@approvers("finance, security")`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approver_groups: Vec<String>,
}

impl Obligations {
    /// Nothing obliged.
    pub fn is_empty(&self) -> bool {
        self.approval.is_none() && self.redact.is_empty() && self.approver_groups.is_empty()
    }

    /// Both sets of obligations: the stricter approval, every redaction.
    pub fn merge(mut self, other: Self) -> Self {
        self.approval = self.approval.max(other.approval);
        for g in other.approver_groups {
            if !self.approver_groups.contains(&g) {
                self.approver_groups.push(g);
            }
        }
        for r in other.redact {
            if !self.redact.contains(&r) {
                self.redact.push(r);
            }
        }
        self
    }
}

impl Decision {
    /// An allow by `policies`, with their `reasons`.
    pub fn allow(policies: Vec<String>, reasons: Vec<String>) -> Self {
        Self {
            effect: Effect::Allow,
            policies,
            reasons,
            errors: Vec::new(),
            obligations: Obligations::default(),
        }
    }

    /// A deny that no policy produced: authentication failed, the request was
    /// malformed, or no policy permitted it.
    pub fn deny(reason: impl Into<String>) -> Self {
        Self {
            effect: Effect::Deny,
            policies: Vec::new(),
            reasons: vec![reason.into()],
            errors: Vec::new(),
            obligations: Obligations::default(),
        }
    }

    /// Whether the request may proceed.
    pub fn is_allow(&self) -> bool {
        self.effect == Effect::Allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn obligations_merge_to_the_strictest() {
        let a = Obligations {
            approval: Some(Approval::Required),
            redact: vec!["email".into()],
            approver_groups: vec!["finance".into()],
        };
        let b = Obligations {
            approval: Some(Approval::Dual),
            redact: vec!["email".into(), "phone".into()],
            approver_groups: vec!["security".into(), "finance".into()],
        };
        let m = a.merge(b);
        assert_eq!(m.approval, Some(Approval::Dual));
        assert_eq!(m.redact, ["email", "phone"]);
        assert_eq!(m.approver_groups, ["finance", "security"]);
        assert!(Obligations::default().is_empty());
        assert_eq!("dual".parse::<Approval>(), Ok(Approval::Dual));
        assert!("maybe".parse::<Approval>().is_err());
    }

    #[test]
    fn deny_carries_its_reason() {
        let d = Decision::deny("no policy permits this");
        assert!(!d.is_allow());
        assert_eq!(d.reasons, vec!["no policy permits this".to_owned()]);
    }
}
