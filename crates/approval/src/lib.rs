//! The approval of a held action: what it binds, who may decide, and the
//! only transitions allowed. Pure logic, no I/O: the store persists an
//! [`Approval`] and applies a transition atomically (compare-and-swap on
//! [`Approval::revision`]).
//!
//! ```text
//!            review(approve) × required          claim_execution
//! Pending ───────────────────────────────▶ Approved ───────────────▶ Executed
//!    │  review(deny)                          │ expiry
//!    ├──────────────▶ Denied                  ▼
//!    │  expiry / cancel                     Expired
//!    └──────────────▶ Expired / Cancelled
//! ```
//!
//! Rules: only approvers of the tenant decide, never the requesting agent
//! (agents are not reviewers); each reviewer counts once; `dual` needs two
//! distinct approvers, so at most one is the user the agent acts for, and
//! that user never approves alone; any denial ends it; after its expiry it
//! decides nothing and executes nothing; it executes at most once.

use serde::{Deserialize, Serialize};
use warden_core::Approval as Required;

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waiting for reviewers.
    Pending,
    /// Enough approvals; may execute once.
    Approved,
    /// A reviewer denied it.
    Denied,
    /// Its time ran out before it executed.
    Expired,
    /// Withdrawn.
    Cancelled,
    /// It ran.
    Executed,
}

impl State {
    /// Whether nothing can happen to it any more.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Pending | Self::Approved)
    }
}

/// A reviewer's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Approve.
    Approve,
    /// Deny.
    Deny,
}

/// One review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    /// The reviewer (a user of the tenant).
    pub reviewer: String,
    /// Their verdict.
    pub verdict: Verdict,
    /// Their reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When (seconds since the epoch).
    pub at: u64,
    /// The reviewer's groups when they reviewed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// What the held call is: everything it binds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The tenant.
    pub tenant: String,
    /// The requesting agent.
    pub agent: String,
    /// The user it acts for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The task it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// The upstream.
    pub upstream: String,
    /// The tool.
    pub tool: String,
    /// SHA-256 (hex) of the tool's definition.
    pub tool_digest: String,
    /// The canonical JSON of the arguments.
    pub arguments: String,
    /// Its SHA-256 (hex): what a retry must match byte for byte.
    pub arguments_sha256: String,
    /// The policy version that held it.
    pub policy_version: String,
    /// The determining policies.
    pub policies: Vec<String>,
    /// Their reasons.
    pub reasons: Vec<String>,
    /// The risk score at request time.
    pub risk: i64,
    /// The agent's stated rationale: its claim, never trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationale: Option<String>,
    /// What running it does (effect, external).
    pub side_effects: String,
}

/// A held action and its reviews.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// Its id.
    pub id: String,
    /// What it binds.
    pub request: Request,
    /// How many approvers it needs.
    pub required: Required,
    /// Groups that must each count an approver among those who approve.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Where it stands.
    pub state: State,
    /// The reviews so far.
    pub reviews: Vec<Review>,
    /// Created (seconds since the epoch).
    pub created_at: u64,
    /// Expires (seconds since the epoch): past it, it is a denial.
    pub expires_at: u64,
    /// When it executed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executed_at: Option<u64>,
    /// Bumped by every transition (the store's compare-and-swap).
    pub revision: u64,
}

/// Who reviews.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reviewer {
    /// The user's name.
    pub name: String,
    /// Whether the user holds the approver role in the tenant.
    pub is_approver: bool,
    /// The user's tenant.
    pub tenant: String,
    /// The user's groups.
    pub groups: Vec<String>,
}

/// Why a transition was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    /// Not pending (already decided, expired, executed or cancelled).
    #[error("approval `{0}` is {1:?}, not pending")]
    NotPending(String, State),
    /// Past its expiry.
    #[error("approval `{0}` has expired")]
    Expired(String),
    /// The reviewer is not an approver of the tenant.
    #[error("`{0}` is not an approver of tenant `{1}`")]
    NotAnApprover(String, String),
    /// The reviewer already reviewed it.
    #[error("`{0}` has already reviewed this approval")]
    AlreadyReviewed(String),
    /// The user the agent acts for, approving alone.
    #[error("`{0}` is the user the agent acts for, and cannot be its only approver")]
    SelfApproval(String),
    /// Not approved, so it cannot run.
    #[error("approval `{0}` is {1:?}: it cannot run")]
    NotApproved(String, State),
}

fn approvals(reviews: &[Review]) -> usize {
    reviews
        .iter()
        .filter(|r| r.verdict == Verdict::Approve)
        .count()
}

impl Approval {
    /// A pending approval.
    pub fn new(id: String, request: Request, required: Required, now: u64, ttl_secs: u64) -> Self {
        Self {
            id,
            request,
            required,
            groups: Vec::new(),
            state: State::Pending,
            reviews: Vec::new(),
            created_at: now,
            expires_at: now.saturating_add(ttl_secs),
            executed_at: None,
            revision: 0,
        }
    }

    /// The same, needing an approver from each of `groups` too.
    #[must_use]
    pub fn with_groups(mut self, groups: Vec<String>) -> Self {
        self.groups = groups;
        self
    }

    /// The groups that no approving reviewer has covered yet.
    pub fn missing_groups(&self) -> Vec<&str> {
        self.groups
            .iter()
            .filter(|g| {
                !self
                    .reviews
                    .iter()
                    .any(|r| r.verdict == Verdict::Approve && r.groups.contains(g))
            })
            .map(String::as_str)
            .collect()
    }

    /// How many approvers it needs.
    pub fn needed(&self) -> usize {
        match self.required {
            Required::Required => 1,
            Required::Dual => 2,
        }
    }

    /// Marks it expired if its time is up; whether it changed.
    pub fn expire(&mut self, now: u64) -> bool {
        if !self.state.is_final() && now >= self.expires_at {
            self.state = State::Expired;
            self.revision += 1;
            return true;
        }
        false
    }

    /// Records a review.
    pub fn review(
        &mut self,
        reviewer: &Reviewer,
        verdict: Verdict,
        reason: Option<String>,
        now: u64,
    ) -> Result<State, ApprovalError> {
        if self.expire(now) {
            return Err(ApprovalError::Expired(self.id.clone()));
        }
        if self.state != State::Pending {
            return Err(ApprovalError::NotPending(self.id.clone(), self.state));
        }
        if !reviewer.is_approver || reviewer.tenant != self.request.tenant {
            return Err(ApprovalError::NotAnApprover(
                reviewer.name.clone(),
                self.request.tenant.clone(),
            ));
        }
        if self.reviews.iter().any(|r| r.reviewer == reviewer.name) {
            return Err(ApprovalError::AlreadyReviewed(reviewer.name.clone()));
        }
        // The human the agent acts for never suffices alone: with one
        // approver needed, it must be someone else; with two, the other is
        // someone else anyway (reviewers are distinct).
        let delegating = self.request.user.as_deref() == Some(reviewer.name.as_str());
        if verdict == Verdict::Approve && self.required == Required::Required && delegating {
            return Err(ApprovalError::SelfApproval(reviewer.name.clone()));
        }
        self.reviews.push(Review {
            reviewer: reviewer.name.clone(),
            verdict,
            reason,
            at: now,
            groups: reviewer.groups.clone(),
        });
        self.state = match verdict {
            Verdict::Deny => State::Denied,
            Verdict::Approve
                if approvals(&self.reviews) >= self.needed()
                    && self.missing_groups().is_empty() =>
            {
                State::Approved
            }
            Verdict::Approve => State::Pending,
        };
        self.revision += 1;
        Ok(self.state)
    }

    /// Claims the single execution: only an approved, unexpired approval.
    pub fn claim_execution(&mut self, now: u64) -> Result<(), ApprovalError> {
        if self.expire(now) {
            return Err(ApprovalError::Expired(self.id.clone()));
        }
        if self.state != State::Approved {
            return Err(ApprovalError::NotApproved(self.id.clone(), self.state));
        }
        self.state = State::Executed;
        self.executed_at = Some(now);
        self.revision += 1;
        Ok(())
    }

    /// Withdraws a pending or approved (not yet executed) approval.
    pub fn cancel(&mut self) -> Result<(), ApprovalError> {
        if self.state.is_final() {
            return Err(ApprovalError::NotPending(self.id.clone(), self.state));
        }
        self.state = State::Cancelled;
        self.revision += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
