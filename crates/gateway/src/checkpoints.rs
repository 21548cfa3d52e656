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

/// How a checkpoint reads and hashes the records it adds: a page of
/// records is read on a blocking thread, then hashed (about three SHA-256
/// each: the link, the leaf, the tree) on the runtime's thread, and the
/// checkpoint then yields to the runtime and rests before the next page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// Records read, then hashed, at a time.
    pub page: u32,
    /// How long it rests after each page (besides yielding).
    pub rest: Duration,
}

impl Pace {
    /// A checkpoint that someone waits for (`warden audit checkpoint`, the
    /// one at shutdown): pages of 256 (some 0.3 ms of hashing), one after
    /// the other, with a yield between two.
    pub const EAGER: Self = Self {
        page: 256,
        rest: Duration::ZERO,
    };

    /// The gateway's own checkpoints while it serves: pages of 64 (about
    /// 0.1 ms of work with their read), each followed by a rest of a
    /// millisecond (one or two ticks of the runtime's timer). That keeps a
    /// checkpoint to about a tenth of the core at most, and still absorbs
    /// some 30,000 records a second or more, above what one core appends.
    /// Back to back, the records of one second (10,000 at 5,000 requests/s
    /// in `warden-bench`) took the core for some 10-15 ms within 40 ms
    /// while the requests needed it too: once a second, 20-180 requests
    /// queued behind them for 2.5-6 ms (docs/performance.md).
    pub const BACKGROUND: Self = Self {
        page: 64,
        rest: Duration::from_millis(1),
    };

    /// The gateway's pace for a checkpoint of `backlog` new records:
    /// [`Self::BACKGROUND`], unless the backlog is past [`CATCH_UP`] (on a
    /// core that appends faster than the background pace absorbs, or after
    /// checkpoints failed for a while), when it catches up at once.
    #[must_use]
    pub fn for_backlog(backlog: u64) -> Self {
        if backlog > CATCH_UP {
            Self::EAGER
        } else {
            Self::BACKGROUND
        }
    }
}

/// New records past which the gateway's checkpoint no longer rests
/// between pages: ten seconds of appends at 10,000 records a second, a
/// lag the background pace never leaves behind on the cores measured.
pub const CATCH_UP: u64 = 100_000;

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

/// Checkpoints every record not yet checkpointed, as fast as it can
/// ([`Pace::EAGER`]); the new checkpoint, or none when there was nothing
/// new.
pub async fn checkpoint_now(
    store: &dyn Store,
    signer: &NoteSigner,
    now: u64,
) -> Result<Option<Checkpoint>, String> {
    let until = store.audit_head().await.map_err(|e| e.to_string())?.seq;
    checkpoint_at(store, signer, now, Pace::EAGER, until).await
}

/// [`checkpoint_now`], up to record `until` (the newest when the caller
/// looked: records appended while it runs go to the next checkpoint, so it
/// ends even under a steady load; read at `pace`, it would otherwise chase
/// the newest records for as long as they keep coming), reading and
/// hashing the records at `pace`.
pub async fn checkpoint_at(
    store: &dyn Store,
    signer: &NoteSigner,
    now: u64,
    pace: Pace,
    until: u64,
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
    absorb(
        &mut tree,
        &mut head,
        pace,
        until,
        |after, limit| async move {
            store
                .audit_entries(after, limit)
                .await
                .map_err(|e| e.to_string())
        },
    )
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

/// Adds every record after `head` up to seq `until` (or the last one, if
/// fewer), read a page at a time by `read` (after, limit), to `tree`,
/// checking that each continues the chain. The hashing runs on the
/// runtime's thread, so it yields after each page, and rests as `pace`
/// says: requests run there in between.
async fn absorb<F, Fut>(
    tree: &mut CompactTree,
    head: &mut ChainHead,
    pace: Pace,
    until: u64,
    mut read: F,
) -> Result<(), String>
where
    F: FnMut(u64, u32) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<warden_audit::ChainEntry>, String>>,
{
    loop {
        let left = until.saturating_sub(head.seq);
        if left == 0 {
            return Ok(());
        }
        let limit = u32::try_from(left).map_or(pace.page, |left| left.min(pace.page));
        let page = read(head.seq, limit).await?;
        if page.is_empty() {
            return Ok(());
        }
        for e in &page {
            check_link(head, e).map_err(|e| format!("not checkpointed: {e}"))?;
            tree.push(leaf_hash(&e.body));
        }
        if pace.rest.is_zero() {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(pace.rest).await;
        }
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
            let now = crate::auth::now_secs();
            let pace = Pace::for_backlog(new);
            match checkpoint_at(store.as_ref(), &signer, now, pace, head.seq).await {
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
    /// every read and when it was made.
    fn reader(
        records: &[warden_audit::ChainEntry],
        limits: &std::sync::Mutex<Vec<(u32, std::time::Instant)>>,
    ) -> impl FnMut(u64, u32) -> std::future::Ready<Result<Vec<warden_audit::ChainEntry>, String>>
    {
        move |after, limit| {
            limits
                .lock()
                .unwrap()
                .push((limit, std::time::Instant::now()));
            let from = usize::try_from(after).unwrap().min(records.len());
            let to = (from + limit as usize).min(records.len());
            std::future::ready(Ok(records[from..to].to_vec()))
        }
    }

    /// Another task on the one thread, as a request would be, counting how
    /// often it runs.
    fn another_task() -> (Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
        let ran = Arc::new(AtomicUsize::new(0));
        let counting = ran.clone();
        let other = tokio::spawn(async move {
            loop {
                counting.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
        });
        (ran, other)
    }

    #[test]
    fn a_checkpoint_that_fell_behind_catches_up_at_once() {
        assert_eq!(Pace::for_backlog(1_000), Pace::BACKGROUND);
        assert_eq!(Pace::for_backlog(CATCH_UP), Pace::BACKGROUND);
        assert_eq!(Pace::for_backlog(CATCH_UP + 1), Pace::EAGER);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn requests_run_between_the_pages_of_a_checkpoint() {
        let mut writer = ChainHead::default();
        let records = 2_000;
        let page: Vec<_> = (0..records)
            .map(|i| writer.append(format!(r#"{{"n":{i}}}"#).into_bytes()))
            .collect();
        // How often a request could run while the records are read and
        // hashed.
        let (ran, other) = another_task();
        let limits = std::sync::Mutex::new(Vec::new());
        let (mut tree, mut head) = (CompactTree::new(), ChainHead::default());
        absorb(
            &mut tree,
            &mut head,
            Pace::EAGER,
            u64::MAX,
            reader(&page, &limits),
        )
        .await
        .unwrap();
        other.abort();
        assert_eq!((tree.size(), head), (2_000, writer));
        // Every read is a short one, and the other task ran after each.
        let limits = limits.into_inner().unwrap();
        assert!(limits.iter().all(|&(l, _)| l <= 256), "{limits:?}");
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
            absorb(
                &mut tree,
                &mut head,
                Pace::EAGER,
                u64::MAX,
                reader(&wrong, &none)
            )
            .await
            .is_err()
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_background_checkpoint_rests_after_every_page_and_ends_at_the_head_it_began_with() {
        // 1,000 records when the checkpoint begins; 9,000 more are appended
        // while it runs (the reader sees them all).
        let mut writer = ChainHead::default();
        let records: Vec<_> = (0..10_000)
            .map(|i| writer.append(format!(r#"{{"n":{i}}}"#).into_bytes()))
            .collect();
        let at_start = ChainHead {
            seq: records[999].seq,
            hash: records[999].hash,
        };
        let (ran, other) = another_task();
        let reads = std::sync::Mutex::new(Vec::new());
        let (mut tree, mut head) = (CompactTree::new(), ChainHead::default());
        absorb(
            &mut tree,
            &mut head,
            Pace::BACKGROUND,
            1_000,
            reader(&records, &reads),
        )
        .await
        .unwrap();
        other.abort();
        // It stopped at the head it began with, with the tree a checkpoint
        // made at once of those 1,000 has.
        assert_eq!((tree.size(), head), (1_000, at_start));
        let (mut eager, mut eager_head) = (CompactTree::new(), ChainHead::default());
        let none = std::sync::Mutex::new(Vec::new());
        absorb(
            &mut eager,
            &mut eager_head,
            Pace::EAGER,
            1_000,
            reader(&records, &none),
        )
        .await
        .unwrap();
        assert_eq!(tree.root(), eager.root());
        // Pages of 64 (the last one of the 40 left), a rest of at least a
        // millisecond after each, and the other task ran in every rest.
        let reads = reads.into_inner().unwrap();
        let limits: Vec<u32> = reads.iter().map(|&(l, _)| l).collect();
        let mut expected = vec![64; 15];
        expected.push(40);
        assert_eq!(limits, expected);
        for pair in reads.windows(2) {
            let gap = pair[1].1 - pair[0].1;
            assert!(gap >= Pace::BACKGROUND.rest, "{gap:?} between two pages");
        }
        assert!(ran.load(Ordering::SeqCst) >= reads.len() - 1);
    }
}
