//! The audit writer: records go to the store in batches (group commit), so
//! that many concurrent requests share one durable transaction. A caller that
//! needs durability awaits [`AuditLog::write`]; it returns once the record is
//! committed, and an error if the store failed (the caller then fails closed).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};
use warden_audit::AuditRecord;
use warden_store::Store;

/// Records per transaction at most.
const MAX_BATCH: usize = 512;

/// The audit log could not take a record.
#[derive(Debug, Clone, thiserror::Error)]
#[error("audit log unavailable: {0}")]
pub struct AuditError(pub String);

struct Job {
    body: Vec<u8>,
    done: Option<oneshot::Sender<Result<u64, AuditError>>>,
}

/// A handle to the audit writer task.
#[derive(Clone, Debug)]
pub struct AuditLog {
    tx: mpsc::Sender<Job>,
    failures: Arc<AtomicU64>,
}

impl AuditLog {
    /// Starts the writer over `store`.
    pub fn start(store: Arc<dyn Store>) -> Self {
        let (tx, rx) = mpsc::channel(8192);
        let failures = Arc::new(AtomicU64::new(0));
        tokio::spawn(run(store, rx, failures.clone()));
        Self { tx, failures }
    }

    /// Writes `record` and waits until it is durable; returns its seq.
    pub async fn write(&self, record: &AuditRecord) -> Result<u64, AuditError> {
        let body = serde_json::to_vec(record).map_err(|e| AuditError(e.to_string()))?;
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Job {
                body,
                done: Some(done),
            })
            .await
            .map_err(|_| AuditError("writer stopped".into()))?;
        wait.await
            .map_err(|_| AuditError("writer stopped".into()))?
    }

    /// Queues `record` without waiting for the commit (outcome records,
    /// written after the answer). A failure is counted and logged.
    pub async fn write_later(&self, record: &AuditRecord) {
        match serde_json::to_vec(record) {
            Ok(body) => {
                if self.tx.send(Job { body, done: None }).await.is_err() {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!("audit writer stopped; an outcome record was not written");
                }
            }
            Err(e) => tracing::error!("audit record not serializable: {e}"),
        }
    }

    /// Records that could not be written since start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

async fn run(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Job>, failures: Arc<AtomicU64>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (bodies, waiters): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|j| (j.body, j.done)).unzip();
        match store.append_audit(bodies).await {
            Ok(seqs) => {
                for (waiter, seq) in waiters.into_iter().zip(seqs) {
                    if let Some(w) = waiter {
                        let _ = w.send(Ok(seq));
                    }
                }
            }
            Err(e) => {
                let n = waiters.len() as u64;
                failures.fetch_add(n, Ordering::Relaxed);
                tracing::error!(records = n, "audit append failed: {e}");
                for w in waiters.into_iter().flatten() {
                    let _ = w.send(Err(AuditError(e.to_string())));
                }
            }
        }
    }
}
