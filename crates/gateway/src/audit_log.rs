//! The audit log as the gateway uses it. A caller that needs durability
//! awaits [`AuditLog::write`]: it returns once the record is committed, and an
//! error if the store failed (the caller then fails closed). The store groups
//! records that arrive while a commit is in flight into the next commit
//! (group commit), so concurrent requests share one fsync.

use std::sync::Arc;

use tokio::sync::Semaphore;
use warden_audit::AuditRecord;
use warden_store::{AuditDone, NewRecord, Store};

/// Outcome records queued but not yet committed, at most; past this,
/// [`AuditLog::write_later`] waits (back-pressure, never a silent drop).
const MAX_PENDING: usize = 8192;

/// The audit log could not take a record.
#[derive(Debug, Clone, thiserror::Error)]
#[error("audit log unavailable: {0}")]
pub struct AuditError(pub String);

/// A handle to the audit trail.
#[derive(Clone, Debug)]
pub struct AuditLog {
    store: Arc<dyn Store>,
    pending: Arc<Semaphore>,
}

impl AuditLog {
    /// An audit log over `store`.
    pub fn start(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            pending: Arc::new(Semaphore::new(MAX_PENDING)),
        }
    }

    /// Outcome records queued and not yet committed.
    pub fn pending(&self) -> usize {
        MAX_PENDING.saturating_sub(self.pending.available_permits())
    }

    /// Waits until no outcome record is queued, or `limit` passes; whether
    /// none is.
    pub async fn settle(&self, limit: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while self.pending() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        true
    }

    /// Writes `record` and waits until it is durable; returns its seq.
    pub async fn write(&self, record: &AuditRecord) -> Result<u64, AuditError> {
        let record = NewRecord::of(record).map_err(|e| AuditError(e.to_string()))?;
        match self.store.append_audit(vec![record]).await {
            Ok(seqs) => seqs
                .first()
                .copied()
                .ok_or_else(|| AuditError("no seq returned".into())),
            Err(e) => Err(AuditError(e.to_string())),
        }
    }

    /// Writes `record` without making the caller wait for the commit
    /// (outcome records, written after the answer). A failure is logged.
    pub async fn write_later(&self, record: &AuditRecord) {
        let record = match NewRecord::of(record) {
            Ok(r) => r,
            Err(e) => return tracing::error!("audit record not serializable: {e}"),
        };
        let Ok(permit) = self.pending.clone().acquire_owned().await else {
            return;
        };
        let then: AuditDone = Box::new(move |result| {
            if let Err(e) = result {
                tracing::error!("an outcome record was not written: {e}");
            }
            drop(permit);
        });
        // Straight to the store's writer if it takes queued records, else
        // by a task of its own.
        if let Err((records, then)) = self.store.queue_audit(vec![record], then) {
            let store = self.store.clone();
            tokio::spawn(async move { then(store.append_audit(records).await) });
        }
    }
}
