//! Reviewing a held action: shared by the admin API and the CLI.

use warden_approval::{Approval, ApprovalError, Reviewer, Verdict};
use warden_audit::AuditRecord;
use warden_core::TenantId;
use warden_store::{Store, StoreError, User};

/// Why a review was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// No such approval in the tenant.
    #[error("approval `{0}` not found")]
    NotFound(String),
    /// The state machine refused it (nothing changed).
    #[error(transparent)]
    Refused(#[from] ApprovalError),
    /// The review itself is malformed (a denial without a reason).
    #[error("{0}")]
    Invalid(String),
    /// It kept changing under us.
    #[error("approval `{0}` keeps changing; try again")]
    Busy(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Records `reviewer`'s verdict on approval `id` of `tenant` at `now`, by
/// compare-and-swap (retried a few times when another review lands first).
pub async fn review(
    store: &dyn Store,
    tenant: &TenantId,
    id: &str,
    reviewer: &Reviewer,
    verdict: Verdict,
    reason: Option<String>,
    now: u64,
) -> Result<Approval, ReviewError> {
    for _ in 0..5 {
        let mut a = store
            .approval(tenant, id)
            .await?
            .ok_or_else(|| ReviewError::NotFound(id.to_owned()))?;
        let revision = a.revision;
        match a.review(reviewer, verdict, reason.clone(), now) {
            Ok(_) => {}
            Err(e @ ApprovalError::Expired(_)) => {
                let _ = store.update_approval(&a, revision).await;
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        }
        if store.update_approval(&a, revision).await? {
            return Ok(a);
        }
    }
    Err(ReviewError::Busy(id.to_owned()))
}

/// A reviewer's decision, as the admin API or the console received it.
#[derive(Debug)]
pub(crate) struct Decided {
    pub(crate) reviewer: Reviewer,
    pub(crate) verdict: Verdict,
    pub(crate) reason: Option<String>,
    /// Where it came from (the reviewer's address).
    pub(crate) source: Option<String>,
}

/// Records a decision on approval `id` of `tenant` and its audit record. A
/// denial needs a reason.
pub(crate) async fn decide(
    gw: &crate::Gateway,
    tenant: &TenantId,
    id: &str,
    d: Decided,
) -> Result<Approval, ReviewError> {
    if d.verdict == Verdict::Deny && d.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
        return Err(ReviewError::Invalid("a denial needs a reason".into()));
    }
    let approval = review(
        gw.store.as_ref(),
        tenant,
        id,
        &d.reviewer,
        d.verdict,
        d.reason.clone(),
        crate::auth::now_secs(),
    )
    .await?;
    let rec = review_record(
        &approval,
        &d.reviewer.name,
        operation(d.verdict),
        d.reason.as_deref(),
        d.source,
    );
    if let Err(e) = gw.audit.write(&rec).await {
        tracing::error!("review not audited: {e}");
    }
    Ok(approval)
}

/// The reviewer a directory user is: an approver only while active and
/// holding the approver role.
pub fn reviewer_of(user: &User) -> Reviewer {
    Reviewer {
        name: user.name.to_string(),
        is_approver: user.active && user.role == "approver",
        tenant: user.tenant.to_string(),
        groups: user.groups.clone(),
    }
}

/// The audit operation of a verdict.
pub fn operation(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Approve => "approval.approve",
        Verdict::Deny => "approval.deny",
    }
}

/// The audit record of `reviewer`'s `operation` (a review or a
/// cancellation) on `approval`, from `source`.
pub fn review_record(
    approval: &Approval,
    reviewer: &str,
    operation: &str,
    reason: Option<&str>,
    source: Option<String>,
) -> AuditRecord {
    let mut rec = AuditRecord::admin(
        crate::mcp::exchange_now(),
        &approval.request.tenant,
        &format!("user:{reviewer}"),
        source,
        &approval.request.agent,
        operation,
    );
    rec.approval = Some(approval.id.clone());
    rec.decision.reasons = vec![format!(
        "{operation} by `{reviewer}`: {}",
        reason.unwrap_or("-")
    )];
    rec
}
