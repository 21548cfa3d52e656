//! The SQLite hot path, off sqlx's per-connection worker threads: agent
//! lookups read on the caller's thread (a few microseconds, so revocation is
//! still checked on every request), and audit batches are appended by one
//! dedicated writer thread, a single hand-off each way per batch. Each sqlx
//! statement is a round trip to another thread; on a busy core every one of
//! those waits for the scheduler, which made them the largest cost of a
//! request (see docs/performance.md).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use tokio::sync::oneshot;
use warden_audit::{ChainHead, GENESIS};
use warden_core::{AgentName, TenantId};

use crate::{Agent, StoreError};

const READERS: usize = 4;
const BUSY: Duration = Duration::from_secs(10);

type Reply = oneshot::Sender<Result<Vec<u64>, StoreError>>;

struct Append {
    bodies: Vec<Vec<u8>>,
    reply: Reply,
}

/// Read connections and the audit writer of one database file.
pub(crate) struct FastPath {
    readers: Vec<Mutex<Connection>>,
    next: AtomicUsize,
    writer: Mutex<mpsc::Sender<Append>>,
    /// Dropped with the fast path: ends the WAL checkpointer.
    _stop: mpsc::Sender<()>,
}

impl std::fmt::Debug for FastPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastPath").finish_non_exhaustive()
    }
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

impl FastPath {
    /// Opens the read connections and starts the writer thread on `path`
    /// (already created and migrated).
    pub(crate) fn open(path: &Path) -> Result<Self, StoreError> {
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            let conn = Connection::open_with_flags(path, flags).map_err(db)?;
            conn.busy_timeout(BUSY).map_err(db)?;
            readers.push(Mutex::new(conn));
        }
        let writer = Connection::open(path).map_err(db)?;
        writer.busy_timeout(BUSY).map_err(db)?;
        writer
            .pragma_update(None, "synchronous", "FULL")
            .map_err(db)?;
        // The writer never copies the WAL back into the database itself (a
        // stall of milliseconds for every request waiting on that commit);
        // a thread of its own does, beside it. Past `WAL_LIMIT` pages the
        // writer still does, so the WAL stays bounded if that thread
        // cannot keep up.
        writer
            .pragma_update(None, "wal_autocheckpoint", WAL_LIMIT)
            .map_err(db)?;
        let checkpointer = Connection::open(path).map_err(db)?;
        checkpointer.busy_timeout(BUSY).map_err(db)?;
        let (tx, rx) = mpsc::channel::<Append>();
        let (stop, stopped) = mpsc::channel::<()>();
        let owned: PathBuf = path.to_owned();
        std::thread::Builder::new()
            .name("warden-audit-writer".into())
            .spawn(move || write_loop(writer, rx, &owned))
            .map_err(|e| StoreError::Database(format!("cannot start the audit writer: {e}")))?;
        let owned: PathBuf = path.to_owned();
        std::thread::Builder::new()
            .name("warden-wal".into())
            .spawn(move || checkpoint_loop(&checkpointer, &stopped, &owned))
            .map_err(|e| StoreError::Database(format!("cannot start the WAL checkpointer: {e}")))?;
        Ok(Self {
            readers,
            next: AtomicUsize::new(0),
            writer: Mutex::new(tx),
            _stop: stop,
        })
    }

    /// Reads an agent on the calling thread.
    pub(crate) fn agent(
        &self,
        tenant: &TenantId,
        name: &AgentName,
    ) -> Result<Option<Agent>, StoreError> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        // Take a free connection if there is one, else wait for ours.
        let slot =
            (0..READERS).find_map(|i| self.readers.get((start + i) % READERS)?.try_lock().ok());
        let conn = match slot {
            Some(c) => c,
            None => self
                .readers
                .get(start % READERS)
                .ok_or_else(|| StoreError::Database("no reader".into()))?
                .lock()
                .map_err(|_| StoreError::Database("reader poisoned".into()))?,
        };
        let mut stmt = conn
            .prepare_cached("SELECT tenant, name, state, owner, purpose, created_at, updated_at, rotated_at FROM agents WHERE tenant = ?1 AND name = ?2")
            .map_err(db)?;
        let row = stmt
            .query_row(params![tenant.as_str(), name.as_str()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, Option<i64>>(7)?,
                ))
            })
            .optional()
            .map_err(db)?;
        row.map(
            |(t, n, state, owner, purpose, created_at, updated_at, rotated_at)| {
                Agent::from_columns(
                    t, n, &state, owner, purpose, created_at, updated_at, rotated_at,
                )
            },
        )
        .transpose()
    }

    /// Appends a batch through the writer thread; returns once committed.
    pub(crate) async fn append(&self, bodies: Vec<Vec<u8>>) -> Result<Vec<u64>, StoreError> {
        let (reply, wait) = oneshot::channel();
        let sent = self
            .writer
            .lock()
            .map(|tx| tx.send(Append { bodies, reply }).is_ok())
            .unwrap_or(false);
        if !sent {
            return Err(StoreError::Database("the audit writer has stopped".into()));
        }
        wait.await
            .map_err(|_| StoreError::Database("the audit writer has stopped".into()))?
    }
}

/// After this many appended records, the writer brings the query index up
/// to date inside its next commit: one more fsync-free step per this many
/// records, instead of a transaction of its own that would hold the write
/// lock while requests wait.
const INDEX_EVERY: usize = 1000;

/// WAL pages (4 KiB) past which the writer checkpoints by itself.
const WAL_LIMIT: i64 = 16_384;

/// How often the WAL is copied back into the database.
const WAL_EVERY: Duration = Duration::from_millis(250);

/// Copies committed WAL frames into the database file (a passive
/// checkpoint: it never blocks the writer or readers) until the fast path
/// is dropped.
fn checkpoint_loop(conn: &Connection, stop: &mpsc::Receiver<()>, path: &Path) {
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(WAL_EVERY) {
        let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0));
        if let Err(e) = done {
            tracing::warn!(path = %path.display(), "WAL checkpoint: {e}");
        }
    }
}

fn write_loop(mut conn: Connection, rx: mpsc::Receiver<Append>, path: &Path) {
    let mut unindexed = INDEX_EVERY;
    while let Ok(first) = rx.recv() {
        // Everything already waiting goes into the same transaction.
        let mut jobs = vec![first];
        while let Ok(more) = rx.try_recv() {
            jobs.push(more);
        }
        let sizes: Vec<usize> = jobs.iter().map(|j| j.bodies.len()).collect();
        let bodies: Vec<Vec<u8>> = jobs
            .iter_mut()
            .flat_map(|j| std::mem::take(&mut j.bodies))
            .collect();
        unindexed += bodies.len();
        let index = unindexed >= INDEX_EVERY;
        match append(&mut conn, bodies, index) {
            Ok(seqs) => {
                if index {
                    unindexed = 0;
                }
                let mut seqs = seqs.into_iter();
                for (job, n) in jobs.into_iter().zip(sizes) {
                    let _ = job.reply.send(Ok(seqs.by_ref().take(n).collect()));
                }
            }
            Err(e) => {
                tracing::error!(path = %path.display(), "audit append failed: {e}");
                for job in jobs {
                    let _ = job.reply.send(Err(StoreError::Database(e.to_string())));
                }
            }
        }
    }
}

fn append(
    conn: &mut Connection,
    bodies: Vec<Vec<u8>>,
    index: bool,
) -> Result<Vec<u64>, rusqlite::Error> {
    // IMMEDIATE takes the write lock first, so the head read below is the
    // head the inserts extend, even with other processes appending.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let head = tx
        .prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
        .optional()?;
    let mut head = match head {
        None => ChainHead {
            seq: 0,
            hash: GENESIS,
        },
        Some((seq, hash)) => {
            let seq =
                u64::try_from(seq).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(0, seq))?;
            let hash: [u8; 32] = hash.try_into().map_err(|_| rusqlite::Error::InvalidQuery)?;
            ChainHead { seq, hash }
        }
    };
    let mut seqs = Vec::with_capacity(bodies.len());
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO audit (seq, prev_hash, hash, body) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for body in bodies {
            let entry = head.append(body);
            let seq = i64::try_from(entry.seq).map_err(|_| rusqlite::Error::InvalidQuery)?;
            insert.execute(params![
                seq,
                &entry.prev_hash[..],
                &entry.hash[..],
                entry.body
            ])?;
            seqs.push(entry.seq);
        }
    }
    if index {
        // In a savepoint: the index failing never fails the append.
        let mut tx = tx;
        let indexed = tx.savepoint().and_then(|sp| {
            sp.prepare_cached(crate::sqlite::INDEX_AUDIT)?
                .execute(params![10_000])?;
            sp.commit()
        });
        if let Err(e) = indexed {
            tracing::warn!("audit indexing: {e}");
        }
        tx.commit()?;
        return Ok(seqs);
    }
    tx.commit()?;
    Ok(seqs)
}
