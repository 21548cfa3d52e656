//! Reviewing a held action: shared by the admin API and the CLI.

use warden_approval::{Approval, ApprovalError, Reviewer, Verdict};
use warden_core::TenantId;
use warden_store::{Store, StoreError};

/// Why a review was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// No such approval in the tenant.
    #[error("approval `{0}` not found")]
    NotFound(String),
    /// The state machine refused it (nothing changed).
    #[error(transparent)]
    Refused(#[from] ApprovalError),
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
