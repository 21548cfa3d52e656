//! Signed checkpoints of the audit log, made while the gateway runs: after
//! `audit.checkpoint_every` new records, or `audit.checkpoint_interval`
//! after the last checkpoint when there are new ones, and once more at
//! shutdown. Each checkpoint continues from the last one's tree state and
//! checks the hash chain of the records it adds, so a record changed in
//! the database before it is checkpointed stops checkpointing (and is
//! logged) instead of being signed. Off the request path: the records are
//! read back from the store.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use warden_audit::merkle::{CompactTree, leaf_hash};
use warden_audit::{ChainHead, Checkpoint, NoteSigner, check_link};
use warden_config::AuditConfig;
use warden_store::{Store, StoredCheckpoint};

/// Records read, then hashed, at a time, with a yield to the runtime after
/// each page. Both steps are short for it: a read of 256 records on a
/// blocking thread (under `SCHED_BATCH` a request thread woken meanwhile
/// waits for that read to end), then about three SHA-256 each (the link,
/// the leaf, the tree) on the runtime's thread, some 0.3 ms. A whole
/// second's records at once (5,000-10,000 in `warden-bench`) stalled every
/// request for milliseconds, once a second: the p99 at a fixed rate.
const PAGE: u32 = 256;

/// Reads the checkpoint signing key, making one first when `create` and
/// there is none (0600).
pub fn load_signer(config: &AuditConfig, create: bool) -> Result<NoteSigner, String> {
    let key = match std::fs::read_to_string(&config.key) {
        Ok(pem) => SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
            format!(
                "the audit key `{}` is not an Ed25519 PKCS#8 key: {e}",
                config.key.display()
            )
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            let key = generate(&config.key)?;
            tracing::info!(key = %config.key.display(), "made the audit checkpoint key");
            key
        }
        Err(e) => {
            return Err(format!(
                "cannot read the audit key `{}`: {e}",
                config.key.display()
            ));
        }
    };
    NoteSigner::new(&config.origin, key).map_err(|e| e.to_string())
}

/// Makes a new key at `path` (0600).
pub fn generate(path: &Path) -> Result<SigningKey, String> {
    let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let pem = key
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| format!("cannot encode the audit key: {e}"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    warden_identity::write_atomic(path, pem.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(key)
}

/// Checkpoints every record not yet checkpointed; the new checkpoint, or
/// none when there was nothing new.
pub async fn checkpoint_now(
    store: &dyn Store,
    signer: &NoteSigner,
    now: u64,
) -> Result<Option<Checkpoint>, String> {
    let latest = store.latest_checkpoint().await.map_err(|e| e.to_string())?;
    let (mut tree, mut head) = match &latest {
        None => (CompactTree::new(), ChainHead::default()),
        Some(c) => {
            let tree = CompactTree::from_parts(c.size, &c.compact)
                .ok_or("the last checkpoint's tree state is corrupt")?;
            let head = if c.size == 0 {
                ChainHead::default()
            } else {
                let e = store
                    .audit_entries(c.size - 1, 1)
                    .await
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .next()
                    .ok_or_else(|| {
                        format!("record {} of the last checkpoint is missing", c.size)
                    })?;
                ChainHead {
                    seq: e.seq,
                    hash: e.hash,
                }
            };
            (tree, head)
        }
    };
    absorb(&mut tree, &mut head, |after, limit| async move {
        store
            .audit_entries(after, limit)
            .await
            .map_err(|e| e.to_string())
    })
    .await?;
    let last = latest.as_ref().map_or(0, |c| c.size);
    if tree.size() == last && (latest.is_some() || tree.size() == 0) {
        return Ok(None);
    }
    let checkpoint = signer.sign(tree.size(), &tree.root(), now);
    store
        .save_checkpoint(&StoredCheckpoint {
            size: checkpoint.size,
            time: now,
            note: checkpoint.note.clone(),
            compact: tree.hashes(),
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some(checkpoint))
}

/// Adds every record after `head`, read `PAGE` at a time by `read`
/// (after, limit), to `tree`, checking that each continues the chain. The
/// hashing runs on the runtime's thread, so it yields after each page:
/// requests run there in between.
async fn absorb<F, Fut>(
    tree: &mut CompactTree,
    head: &mut ChainHead,
    mut read: F,
) -> Result<(), String>
where
    F: FnMut(u64, u32) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<warden_audit::ChainEntry>, String>>,
{
    loop {
        let page = read(head.seq, PAGE).await?;
        if page.is_empty() {
            return Ok(());
        }
        for e in &page {
            check_link(head, e).map_err(|e| format!("not checkpointed: {e}"))?;
            tree.push(leaf_hash(&e.body));
        }
        tokio::task::yield_now().await;
    }
}

/// Checkpoints while the gateway runs.
pub(crate) fn run(
    store: Arc<dyn Store>,
    signer: Arc<NoteSigner>,
    config: &AuditConfig,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let (every, interval) = (config.checkpoint_every, config.checkpoint_interval);
    tokio::spawn(async move {
        let mut stop = stop;
        let mut last = match store.latest_checkpoint().await {
            Ok(c) => c.map_or(0, |c| c.size),
            Err(_) => 0,
        };
        let mut since = tokio::time::Instant::now();
        let tick = interval.min(Duration::from_secs(1));
        loop {
            tokio::select! {
                () = tokio::time::sleep(tick) => {}
                _ = stop.changed() => return,
            }
            let Ok(head) = store.audit_head().await else {
                continue;
            };
            let new = head.seq.saturating_sub(last);
            if new == 0 || (new < every && since.elapsed() < interval) {
                continue;
            }
            match checkpoint_now(store.as_ref(), &signer, crate::auth::now_secs()).await {
                Ok(Some(c)) => {
                    tracing::debug!(size = c.size, "audit checkpoint signed");
                    last = c.size;
                    since = tokio::time::Instant::now();
                }
                Ok(None) => since = tokio::time::Instant::now(),
                Err(e) => tracing::error!("audit checkpoint refused: {e}"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A reader over `records` (seq 1 is the first), noting the limit of
    /// every read.
    fn reader(
        records: &[warden_audit::ChainEntry],
        limits: &std::sync::Mutex<Vec<u32>>,
    ) -> impl FnMut(u64, u32) -> std::future::Ready<Result<Vec<warden_audit::ChainEntry>, String>>
    {
        move |after, limit| {
            limits.lock().unwrap().push(limit);
            let from = usize::try_from(after).unwrap().min(records.len());
            let to = (from + limit as usize).min(records.len());
            std::future::ready(Ok(records[from..to].to_vec()))
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn requests_run_between_the_pages_of_a_checkpoint() {
        let mut writer = ChainHead::default();
        let records = 2_000;
        let page: Vec<_> = (0..records)
            .map(|i| writer.append(format!(r#"{{"n":{i}}}"#).into_bytes()))
            .collect();
        // Another task on the one thread, as a request would be: how often
        // it runs while the records are read and hashed.
        let ran = Arc::new(AtomicUsize::new(0));
        let counting = ran.clone();
        let other = tokio::spawn(async move {
            loop {
                counting.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
        });
        let limits = std::sync::Mutex::new(Vec::new());
        let (mut tree, mut head) = (CompactTree::new(), ChainHead::default());
        absorb(&mut tree, &mut head, reader(&page, &limits))
            .await
            .unwrap();
        other.abort();
        assert_eq!((tree.size(), head), (2_000, writer));
        // Every read is a short one, and the other task ran after each.
        let limits = limits.into_inner().unwrap();
        assert!(limits.iter().all(|&l| l <= 256), "{limits:?}");
        let pages = records / 256;
        assert!(
            ran.load(Ordering::SeqCst) >= pages,
            "ran {} times for {pages} pages",
            ran.load(Ordering::SeqCst)
        );
        // A broken link is still refused.
        let mut wrong = page[..3].to_vec();
        wrong[1].body = b"changed".to_vec();
        let (mut tree, mut head) = (CompactTree::new(), ChainHead::default());
        let none = std::sync::Mutex::new(Vec::new());
        assert!(
            absorb(&mut tree, &mut head, reader(&wrong, &none))
                .await
                .is_err()
        );
    }
}
