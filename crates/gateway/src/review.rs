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
        // An expired approval is refused here and recorded as expired by
        // the gateway's sweeper (one audit record, one event).
        a.review(reviewer, verdict, reason.clone(), now)?;
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
    gw.approval_changed(&approval).await;
    Ok(approval)
}

/// Records that `a` (read at `revision`, now marked expired) has expired:
/// in the store by compare-and-swap and, only if that write won, as an
/// audit record and an event. Whether it was this call that recorded it.
pub(crate) async fn record_expiry(gw: &crate::Gateway, a: &Approval, revision: u64) -> bool {
    match gw.store.update_approval(a, revision).await {
        Ok(true) => {}
        Ok(false) => return false,
        Err(e) => {
            tracing::error!(approval = %a.id, "expiry not recorded: {e}");
            return false;
        }
    }
    let mut rec = AuditRecord::admin(
        crate::mcp::exchange_now(),
        &a.request.tenant,
        "warden",
        None,
        &a.request.agent,
        "approval.expire",
    );
    rec.approval = Some(a.id.clone());
    rec.decision.effect = warden_core::Effect::Deny;
    rec.decision.reasons = vec![format!(
        "approval `{}` expired undecided: expiry is a denial",
        a.id
    )];
    if let Err(e) = gw.audit.write(&rec).await {
        tracing::error!("expiry not audited: {e}");
    }
    gw.approval_changed(a).await;
    true
}

/// Records every overdue approval as expired, every `every`, while the
/// gateway runs.
pub(crate) fn sweep_expired(gw: &std::sync::Arc<crate::Gateway>, every: std::time::Duration) {
    let weak = std::sync::Arc::downgrade(gw);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(gw) = weak.upgrade() else { return };
            let now = crate::auth::now_secs();
            let overdue = match gw.store.overdue_approvals(now, 256).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::error!("approval sweep: {e}");
                    continue;
                }
            };
            for mut a in overdue {
                // Only tenants this gateway serves.
                let served = warden_core::TenantId::new(a.request.tenant.as_str())
                    .is_ok_and(|t| gw.served.contains(&t));
                let revision = a.revision;
                if served && a.expire(now) {
                    record_expiry(&gw, &a, revision).await;
                }
            }
        }
    });
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
