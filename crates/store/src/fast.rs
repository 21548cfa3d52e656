//! The SQLite hot path, off sqlx's per-connection worker threads: agent
//! lookups read on the caller's thread, and audit batches are appended by
//! one dedicated writer thread, a single hand-off each way per batch.
//!
//! An agent read is kept in memory with the value of the agents' epoch
//! file (`<database>-epoch`) when it was read. Every change to an agent
//! through the store, by any process, writes a new value there after its
//! commit; a kept agent is used only while the file still holds the value
//! it was read under (one `pread` per request), so a suspension, revocation
//! or rotation still applies on the very next request. A kept agent is read
//! again after [`KEEP_AT_MOST`] in any case, so even a change made to the
//! database by hand, around the store, applies within that time. Each sqlx
//! statement is a round trip to another thread; on a busy core every one of
//! those waits for the scheduler, which made them the largest cost of a
//! request (see docs/performance.md).
//!
//! An audit batch is answered only once it is durable. The writer commits
//! without syncing (`synchronous = NORMAL`, which still syncs every WAL
//! checkpoint) and hands the committed batch to a thread of its own that
//! syncs the WAL file (`fdatasync`) and only then answers. The writer
//! meanwhile commits the next batch, so a commit's CPU work no longer
//! waits behind the previous commit's sync, and one sync covers every batch
//! committed before it. A batch nobody waits for (outcome records) is held
//! back, committed, until the next one somebody waits for, and synced with
//! it ([`HOLD_AT_MOST`] at most). A failed sync fails its batches and every later
//! one (the store then refuses appends until it is opened again): after a
//! failed `fsync` the kernel may have dropped the pages it could not write,
//! and a later sync would not say so.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, mpsc};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use tokio::sync::oneshot;
use warden_audit::{ChainEntry, ChainHead, GENESIS};
use warden_core::{AgentName, TenantId};

use crate::boot::IndexSync;
use crate::{Agent, NewRecord, StoreError};

const READERS: usize = 4;
const BUSY: Duration = Duration::from_secs(10);

/// Where the writer sends a batch's result.
enum Reply {
    /// To a caller waiting for it.
    Wait(oneshot::Sender<Result<Vec<u64>, StoreError>>),
    /// To a function, called on the syncing thread.
    Then(crate::AuditDone),
}

impl Reply {
    /// Answers. A function that panics is caught and logged: it must not
    /// take the thread answering (a syncing thread, or the writer) down
    /// with it.
    fn send(self, result: Result<Vec<u64>, StoreError>) {
        match self {
            Self::Wait(tx) => {
                let _ = tx.send(result);
            }
            Self::Then(f) => {
                let called = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(result)));
                if called.is_err() {
                    tracing::error!(
                        "audit log: a function called with an append's result panicked"
                    );
                }
            }
        }
    }
}

struct Append {
    records: Vec<NewRecord>,
    reply: Reply,
}

/// A batch committed by the writer, waiting to be synced: each job's
/// reply and its records' seqs.
type Committed = Vec<(Reply, Vec<u64>)>;

/// Makes what the WAL holds durable (the real one: [`wal_sync`]).
pub(crate) type SyncFn = Box<dyn Fn() -> std::io::Result<()> + Send + Sync>;

/// Syncs the WAL file of the database at `db`, opened afresh each time so
/// that it is always the file SQLite writes.
pub(crate) fn wal_sync(db: &Path) -> SyncFn {
    let wal = beside(db, "-wal");
    Box::new(move || File::open(&wal)?.sync_data())
}

/// What is known to be durable, and whether a sync has failed.
struct Durability {
    sync: SyncFn,
    /// Every record up to this seq is durable.
    through: AtomicU64,
    failed: AtomicBool,
}

impl Durability {
    fn new(sync: SyncFn) -> Self {
        Self {
            sync,
            through: AtomicU64::new(0),
            failed: AtomicBool::new(false),
        }
    }

    fn refused() -> StoreError {
        StoreError::Database(
            "the audit log could not be made durable (a sync of its WAL failed): \
             nothing more is appended until Warden is restarted"
                .into(),
        )
    }

    /// Makes every record committed so far durable, `last` among them.
    fn sync_through(&self, last: u64) -> Result<(), StoreError> {
        if self.failed.load(Ordering::Acquire) {
            return Err(Self::refused());
        }
        if let Err(e) = (self.sync)() {
            self.failed.store(true, Ordering::Release);
            tracing::error!("audit log: the sync of the WAL failed, appends are refused: {e}");
            return Err(Self::refused());
        }
        self.through.fetch_max(last, Ordering::AcqRel);
        Ok(())
    }
}

/// How long a kept agent is used at most before it is read again, even
/// with an unchanged epoch.
pub(crate) const KEEP_AT_MOST: Duration = Duration::from_secs(1);

/// Threads syncing the WAL: a batch committed while one sync is under way
/// starts its own at once rather than waiting for that one to end.
const SYNCERS: usize = 2;

/// Kept agents at most; the map is emptied when full.
const MAX_KEPT: usize = 100_000;

/// The file named `<db><suffix>`, beside the database `db`.
pub(crate) fn beside(db: &Path, suffix: &str) -> PathBuf {
    let mut path = db.as_os_str().to_owned();
    path.push(suffix);
    path.into()
}

/// The agents' epoch: a file beside the database whose 8 bytes change
/// after every change to an agent.
pub(crate) struct Epoch {
    file: File,
}

impl Epoch {
    /// Opens (creating) the epoch file of the database at `db`; none if
    /// it cannot be (agents are then read from the database every time).
    pub(crate) fn open(db: &Path) -> Option<Self> {
        let path = beside(db, "-epoch");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| tracing::warn!(path = ?path, "agents will not be kept in memory: {e}"))
            .ok()?;
        let epoch = Self { file };
        if epoch.read().is_none() {
            epoch.bump();
        }
        epoch.read().map(|_| epoch)
    }

    /// The current value, if it can be read.
    pub(crate) fn read(&self) -> Option<u64> {
        let mut bytes = [0u8; 8];
        self.file.read_exact_at(&mut bytes, 0).ok()?;
        Some(u64::from_le_bytes(bytes))
    }

    /// Writes a value never seen before (time, process and a random key:
    /// two processes changing agents at once still each change it).
    pub(crate) fn bump(&self) {
        use std::hash::{BuildHasher as _, Hasher as _};
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(nanos);
        h.write_u32(std::process::id());
        if let Err(e) = self.file.write_all_at(&h.finish().to_le_bytes(), 0) {
            // Nobody can trust kept agents now: the readers see an
            // unreadable or unchanged epoch. Fail towards reading.
            tracing::error!("cannot change the agents' epoch: {e}");
            let _ = self.file.set_len(0);
        }
    }
}

/// An agent as read, with the epoch it was read under.
struct Kept {
    epoch: u64,
    at: Instant,
    agent: Option<Agent>,
}

/// Read connections, the audit writer and the query indexer of one
/// database file.
pub(crate) struct FastPath {
    epoch: Option<Epoch>,
    kept: Mutex<HashMap<String, Kept>>,
    readers: Vec<Mutex<Connection>>,
    next: AtomicUsize,
    writer: Mutex<mpsc::Sender<Append>>,
    durability: Arc<Durability>,
    /// The connection that writes the query index (with the index file
    /// attached), shared by the indexing thread and callers of [`Self::index`].
    indexer: Arc<Mutex<Connection>>,
    /// Dropped with the fast path: ends the WAL checkpointer and the indexer.
    _stop: [mpsc::Sender<()>; 2],
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
    /// (already created and migrated); `index` says how the query index's
    /// commits reach the disk ([`crate::boot`]).
    pub(crate) fn open(path: &Path, index: IndexSync) -> Result<Self, StoreError> {
        Self::open_with(path, wal_sync(path), index)
    }

    /// [`Self::open`], with `sync` making the WAL durable.
    pub(crate) fn open_with(
        path: &Path,
        sync: SyncFn,
        index: IndexSync,
    ) -> Result<Self, StoreError> {
        Self::open_holding(path, sync, index, HOLD_AT_MOST)
    }

    /// [`Self::open_with`], holding batches nobody waits for at most
    /// `hold` before they are synced (see [`HOLD_AT_MOST`]).
    fn open_holding(
        path: &Path,
        sync: SyncFn,
        index: IndexSync,
        hold: Duration,
    ) -> Result<Self, StoreError> {
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            let conn = Connection::open_with_flags(path, flags).map_err(db)?;
            conn.busy_timeout(BUSY).map_err(db)?;
            readers.push(Mutex::new(conn));
        }
        let writer = Connection::open(path).map_err(db)?;
        writer.busy_timeout(BUSY).map_err(db)?;
        // Its commits are synced by the syncing thread before anyone is
        // answered; NORMAL still syncs each checkpoint (the WAL before it
        // is copied, the database after), so the WAL is never started
        // again over frames whose copy is not durable.
        writer
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(db)?;
        // A thread of its own copies the WAL back into the database, beside
        // the writer (that copy is a stall of milliseconds for every request
        // waiting on a commit). Past `WAL_LIMIT` pages the writer copies what
        // that thread has not yet copied, a few pages, so that its next
        // transaction starts the WAL again from its beginning: a WAL that
        // keeps growing changes its file's size at every commit, and an
        // fsync then writes the inode as well (twice the time of a commit).
        writer
            .pragma_update(None, "wal_autocheckpoint", WAL_LIMIT)
            .map_err(db)?;
        let checkpointer = Connection::open(path).map_err(db)?;
        checkpointer.busy_timeout(BUSY).map_err(db)?;
        let indexer = Connection::open(path).map_err(db)?;
        indexer.busy_timeout(BUSY).map_err(db)?;
        let index_file = crate::sqlite::index_path(path);
        indexer
            .execute(
                crate::sqlite::ATTACH_INDEX,
                [index_file.to_string_lossy().as_ref()],
            )
            .map_err(db)?;
        for pragma in crate::sqlite::index_pragmas(index) {
            indexer.execute_batch(pragma).map_err(db)?;
        }
        // A step's statement journal (1,000 records' index pages) stays in
        // memory instead of spilling to a temporary file.
        indexer
            .execute_batch("PRAGMA temp_store = MEMORY")
            .map_err(db)?;
        indexer
            .execute_batch(crate::sqlite::INDEX_STAGING)
            .map_err(db)?;
        let indexer = Arc::new(Mutex::new(indexer));
        let (tx, rx) = mpsc::channel::<Append>();
        let (stop, stopped) = mpsc::channel::<()>();
        let (stop_index, index_stopped) = mpsc::channel::<()>();
        let owned: PathBuf = path.to_owned();
        let appended = Arc::new(AtomicU64::new(0));
        let counted = appended.clone();
        let durability = Arc::new(Durability::new(sync));
        let committed = Arc::new(SyncQueue::default());
        // Made before the syncing threads start: if anything below fails,
        // it is dropped and they end.
        let closing = Closing(committed.clone());
        for _ in 0..SYNCERS {
            let syncing = durability.clone();
            let committed = committed.clone();
            std::thread::Builder::new()
                .name("warden-audit-sync".into())
                .spawn(move || sync_loop(&committed, &syncing))
                .map_err(|e| StoreError::Database(format!("cannot start the audit sync: {e}")))?;
        }
        let refusing = durability.clone();
        std::thread::Builder::new()
            .name("warden-audit-writer".into())
            .spawn(move || {
                // However the writer ends, the syncing threads end too.
                let closing = closing;
                write_loop(writer, rx, &owned, &counted, &closing.0, &refusing, hold);
            })
            .map_err(|e| StoreError::Database(format!("cannot start the audit writer: {e}")))?;
        let owned: PathBuf = path.to_owned();
        std::thread::Builder::new()
            .name("warden-wal".into())
            .spawn(move || checkpoint_loop(&checkpointer, &stopped, &owned))
            .map_err(|e| StoreError::Database(format!("cannot start the WAL checkpointer: {e}")))?;
        let owned = indexer.clone();
        std::thread::Builder::new()
            .name("warden-index".into())
            .spawn(move || {
                run_in_idle_time();
                index_loop(&owned, &appended, &index_stopped);
            })
            .map_err(|e| StoreError::Database(format!("cannot start the audit indexer: {e}")))?;
        Ok(Self {
            epoch: Epoch::open(path),
            kept: Mutex::new(HashMap::new()),
            readers,
            next: AtomicUsize::new(0),
            writer: Mutex::new(tx),
            durability,
            indexer,
            _stop: [stop, stop_index],
        })
    }

    /// Marks every kept agent as stale, in this process and in every
    /// other (after a committed change to an agent).
    pub(crate) fn agents_changed(&self) {
        if let Some(epoch) = &self.epoch {
            epoch.bump();
        }
        if let Ok(mut kept) = self.kept.lock() {
            kept.clear();
        }
    }

    /// An agent: kept in memory while the epoch is unchanged (and for
    /// [`KEEP_AT_MOST`]), else read on the calling thread.
    pub(crate) fn agent(
        &self,
        tenant: &TenantId,
        name: &AgentName,
    ) -> Result<Option<Agent>, StoreError> {
        // The epoch is read before the database: a change committed in
        // between is read now and seen as a change next time.
        let Some(epoch) = self.epoch.as_ref().and_then(Epoch::read) else {
            return self.read_agent(tenant, name);
        };
        let key = [tenant.as_str(), "\0", name.as_str()].concat();
        if let Some(kept) = self.kept.lock().ok().and_then(|k| {
            k.get(&key)
                .filter(|k| k.epoch == epoch && k.at.elapsed() < KEEP_AT_MOST)
                .map(|k| k.agent.clone())
        }) {
            return Ok(kept);
        }
        let agent = self.read_agent(tenant, name)?;
        if let Ok(mut kept) = self.kept.lock() {
            if kept.len() >= MAX_KEPT {
                kept.clear();
            }
            kept.insert(
                key,
                Kept {
                    epoch,
                    at: Instant::now(),
                    agent: agent.clone(),
                },
            );
        }
        Ok(agent)
    }

    /// A read connection: a free one if there is one, else the next in turn
    /// once it is free.
    fn reader(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let slot =
            (0..READERS).find_map(|i| self.readers.get((start + i) % READERS)?.try_lock().ok());
        match slot {
            Some(c) => Ok(c),
            None => self
                .readers
                .get(start % READERS)
                .ok_or_else(|| StoreError::Database("no reader".into()))?
                .lock()
                .map_err(|_| StoreError::Database("reader poisoned".into())),
        }
    }

    /// Up to `limit` audit entries after `after`, in order, read on the
    /// calling thread (it blocks: call it off the async runtime). A hash
    /// that is not 32 bytes reads as all `0xff`, so that the chain's
    /// verifier names the entry.
    pub(crate) fn entries(&self, after: u64, limit: u32) -> Result<Vec<ChainEntry>, StoreError> {
        let conn = self.reader()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq, prev_hash, hash, body FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(db)?;
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let mut rows = stmt.query(params![after, i64::from(limit)]).map_err(db)?;
        let mut out = Vec::with_capacity(usize::try_from(limit).unwrap_or(0).min(8192));
        while let Some(row) = rows.next().map_err(db)? {
            let seq = row.get::<_, i64>(0).map_err(db)?;
            let seq = u64::try_from(seq)
                .map_err(|_| StoreError::Corrupt(format!("negative seq {seq}")))?;
            let hash = |i: usize| -> [u8; 32] {
                row.get_ref(i)
                    .ok()
                    .and_then(|v| v.as_blob().ok())
                    .and_then(|b| b.try_into().ok())
                    .unwrap_or([0xff; 32])
            };
            let body = row.get::<_, Vec<u8>>(3).map_err(db)?;
            out.push(ChainEntry {
                seq,
                prev_hash: hash(1),
                hash: hash(2),
                body,
            });
        }
        drop(rows);
        drop(stmt);
        drop(conn);
        // Committed records are visible a moment before the sync that
        // makes them durable: none leaves through here (to a checkpoint,
        // a sink) before it is.
        if let Some(last) = out.last().map(|e| e.seq)
            && last > self.durability.through.load(Ordering::Acquire)
        {
            self.durability.sync_through(last)?;
        }
        Ok(out)
    }

    /// Indexes up to `limit` committed records not yet in the query index,
    /// on the calling thread (it blocks); how many it indexed.
    pub(crate) fn index(&self, limit: u32) -> Result<u32, StoreError> {
        let mut conn = self
            .indexer
            .lock()
            .map_err(|_| StoreError::Database("indexer poisoned".into()))?;
        index_step(&mut conn, limit).map_err(db)
    }

    /// Reads an agent from the database on the calling thread.
    fn read_agent(&self, tenant: &TenantId, name: &AgentName) -> Result<Option<Agent>, StoreError> {
        let conn = self.reader()?;
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

    /// Appends a batch through the writer thread; returns once committed
    /// and durable.
    pub(crate) async fn append(&self, records: Vec<NewRecord>) -> Result<Vec<u64>, StoreError> {
        let (reply, wait) = oneshot::channel();
        if self.send(records, Reply::Wait(reply)).is_err() {
            return Err(StoreError::Database("the audit writer has stopped".into()));
        }
        wait.await
            .map_err(|_| StoreError::Database("the audit writer has stopped".into()))?
    }

    /// Hands a batch to the writer thread; `then` is called once it is
    /// committed and durable (or failed). Nobody waits for it, so it is
    /// synced with the next batch somebody waits for, or after at most
    /// [`HOLD_AT_MOST`].
    pub(crate) fn queue(
        &self,
        records: Vec<NewRecord>,
        then: crate::AuditDone,
    ) -> Result<(), (Vec<NewRecord>, crate::AuditDone)> {
        self.send(records, Reply::Then(then))
            .map_err(|(records, reply)| match reply {
                Reply::Then(then) => (records, then),
                // `send` gives back what it was given.
                Reply::Wait(_) => (records, Box::new(|_| {}) as crate::AuditDone),
            })
    }

    fn send(&self, records: Vec<NewRecord>, reply: Reply) -> Result<(), (Vec<NewRecord>, Reply)> {
        let Ok(tx) = self.writer.lock() else {
            return Err((records, reply));
        };
        tx.send(Append { records, reply })
            .map_err(|mpsc::SendError(a)| (a.records, a.reply))
    }
}

/// WAL pages (4 KiB) past which the writer checkpoints by itself, and so
/// about the WAL file's largest size.
const WAL_LIMIT: i64 = 2048;

/// How often the WAL is copied back into the database: often enough that
/// the writer, at `WAL_LIMIT`, finds little left to copy.
const WAL_EVERY: Duration = Duration::from_millis(50);

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

/// How long the writer holds a committed batch that nobody waits for
/// (outcome records, [`Reply::Then`]) before handing it to the syncing
/// threads. Such a batch rides with the next one somebody waits for: the
/// sync that makes a request record durable makes every earlier commit
/// durable too. Alone, each outcome record cost a sync of its own, and
/// the wake-ups around it: at low rates, half of all syncs. Past this
/// time it is handed on anyway, before the writer commits anything more
/// (if a commit is under way then, once it ends): an outcome record is
/// durable about this long, and one sync, after its commit at most. A
/// request record is never held.
pub(crate) const HOLD_AT_MOST: Duration = Duration::from_millis(10);

/// Appends each batch sent on `rx`, counting the records in `appended`,
/// and hands what it committed to the syncing threads (`to_sync`), which
/// answer; a batch nobody waits for is held up to `hold` to go with the
/// next ([`HOLD_AT_MOST`]). Once a sync has failed, batches are refused
/// uncommitted.
fn write_loop(
    conn: Connection,
    rx: mpsc::Receiver<Append>,
    path: &Path,
    appended: &AtomicU64,
    to_sync: &SyncQueue,
    durability: &Durability,
    hold: Duration,
) {
    // Committed, nobody waiting for them, not yet handed on; since when.
    let mut held: Committed = Vec::new();
    let mut held_since = Instant::now();
    loop {
        if !held.is_empty() && held_since.elapsed() >= hold {
            // Its time is up: before anything else is committed.
            hand_on(to_sync, std::mem::take(&mut held));
        }
        let first = if held.is_empty() {
            match rx.recv() {
                Ok(first) => first,
                Err(mpsc::RecvError) => break,
            }
        } else {
            match rx.recv_timeout(hold.saturating_sub(held_since.elapsed())) {
                Ok(first) => first,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    hand_on(to_sync, std::mem::take(&mut held));
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        };
        // Everything already waiting goes into the same transaction.
        let mut jobs = vec![first];
        while let Ok(more) = rx.try_recv() {
            jobs.push(more);
        }
        let broken = to_sync.is_broken();
        if broken || durability.failed.load(Ordering::Acquire) {
            // Nothing committed that cannot be made durable. What is held
            // was committed before; its sync, or the queue, fails it.
            hand_on(to_sync, std::mem::take(&mut held));
            let refused = if broken {
                sync_stopped
            } else {
                Durability::refused
            };
            for job in jobs {
                job.reply.send(Err(refused()));
            }
            continue;
        }
        let sizes: Vec<usize> = jobs.iter().map(|j| j.records.len()).collect();
        let records: Vec<NewRecord> = jobs
            .iter_mut()
            .flat_map(|j| std::mem::take(&mut j.records))
            .collect();
        match append(&conn, records) {
            Ok(seqs) => {
                appended.fetch_add(seqs.len() as u64, Ordering::Relaxed);
                let mut seqs = seqs.into_iter();
                let waited_for = jobs.iter().any(|j| matches!(j.reply, Reply::Wait(_)));
                if held.is_empty() {
                    held_since = Instant::now();
                }
                held.extend(
                    jobs.into_iter()
                        .zip(sizes)
                        .map(|(job, n)| (job.reply, seqs.by_ref().take(n).collect())),
                );
                // (A batch held past its time goes at the loop's top.)
                if waited_for {
                    hand_on(to_sync, std::mem::take(&mut held));
                }
            }
            Err(e) => {
                tracing::error!(path = %path.display(), "audit append failed: {e}");
                for job in jobs {
                    job.reply.send(Err(StoreError::Database(e.to_string())));
                }
            }
        }
    }
    // Nothing more comes: what is held is synced now.
    hand_on(to_sync, held);
}

/// Hands committed batches to the syncing threads, in one group (one
/// sync, answered in the order they were committed); fails them if the
/// syncing threads have stopped.
fn hand_on(to_sync: &SyncQueue, committed: Committed) {
    if committed.is_empty() {
        return;
    }
    if let Err(lost) = to_sync.push(committed) {
        for (reply, _) in lost {
            reply.send(Err(sync_stopped()));
        }
    }
}

/// What the writer committed, for the syncing threads, and how many
/// groups of it were answered.
///
/// A batch wakes one syncing thread, the one that takes it (a condition
/// variable, `notify_one`); an idle thread stays asleep. (With a channel
/// behind a mutex, the thread waiting for the mutex woke as well every
/// time the other took a batch, only to wait again: one wake-up more per
/// sync, each some tens of µs of CPU on a virtual machine, see
/// docs/performance.md.)
#[derive(Default)]
struct SyncQueue {
    pending: Mutex<Pending>,
    /// Signalled when a batch is pushed, or when the writer has ended.
    work: Condvar,
    answered: Mutex<u64>,
    turn: Condvar,
}

/// Batches committed and not yet taken by a syncing thread.
#[derive(Default)]
struct Pending {
    batches: Vec<Committed>,
    /// Groups taken so far: the next group's turn to be answered.
    taken: u64,
    /// The writer has ended: nothing more comes.
    closed: bool,
    /// A syncing thread ended otherwise than at the close (a panic, a
    /// poisoned lock): nothing more is taken, and what comes is failed.
    broken: bool,
}

impl SyncQueue {
    /// Hands a committed batch to the syncing threads; gives it back if
    /// the queue is closed or they have stopped.
    fn push(&self, batch: Committed) -> Result<(), Committed> {
        {
            let Ok(mut pending) = self.pending.lock() else {
                return Err(batch);
            };
            if pending.closed || pending.broken {
                return Err(batch);
            }
            pending.batches.push(batch);
        }
        self.work.notify_one();
        Ok(())
    }

    /// Waits for committed batches and takes all of them, with their
    /// group's turn; none once the writer has ended and all are taken.
    fn take(&self) -> Option<(u64, Vec<Committed>)> {
        let mut pending = self.pending.lock().ok()?;
        loop {
            if pending.broken {
                return None;
            }
            if !pending.batches.is_empty() {
                break;
            }
            if pending.closed {
                return None;
            }
            pending = self.work.wait(pending).ok()?;
        }
        let batches = std::mem::take(&mut pending.batches);
        pending.taken += 1;
        Some((pending.taken - 1, batches))
    }

    /// Nothing more comes: the syncing threads end once they have taken
    /// what is left.
    fn close(&self) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.closed = true;
        }
        self.work.notify_all();
    }

    /// A syncing thread ended otherwise than at the close: nothing more
    /// is taken or answered in turn. The batches not yet taken are failed
    /// (so no caller waits forever), a batch pushed later is given back,
    /// and a thread waiting for its turn fails its own and ends. (The
    /// batches of the thread that ended are dropped with it: a caller
    /// waiting on one gets an error.)
    fn break_down(&self) {
        let lost = {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            pending.broken = true;
            std::mem::take(&mut pending.batches)
        };
        self.work.notify_all();
        // A thread waiting for its turn checks `broken` holding `answered`
        // until it waits: taking that lock here, it has either not checked
        // yet or is waiting, and then hears this.
        drop(self.answered.lock().unwrap_or_else(PoisonError::into_inner));
        self.turn.notify_all();
        for (reply, _) in lost.into_iter().flatten() {
            reply.send(Err(sync_stopped()));
        }
    }

    fn is_broken(&self) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .broken
    }
}

fn sync_stopped() -> StoreError {
    StoreError::Database("the audit sync has stopped".into())
}

/// Closes the sync queue when dropped (the writer thread's end, however
/// it comes, or a failed start).
struct Closing(Arc<SyncQueue>);

impl Drop for Closing {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Breaks the sync queue down when a syncing thread ends, unless it ended
/// at the close ([`SyncQueue::break_down`]).
struct Leaving<'a> {
    queue: &'a SyncQueue,
    at_close: bool,
}

impl Drop for Leaving<'_> {
    fn drop(&mut self) {
        if !self.at_close {
            self.queue.break_down();
        }
    }
}

/// Syncs what the writer committed and answers it: one sync for every
/// batch committed by the time it starts. [`SYNCERS`] threads run this, so
/// a batch committed while a sync is under way starts its own at once
/// instead of waiting for that one to end (two `fdatasync`s in flight on
/// this kind of disk take about as long as one). Each batch is still
/// answered only after a sync that began after its commit, and such a sync
/// makes every earlier commit durable too: `fdatasync` writes, and waits
/// for, every dirty page of the file, those another sync is writing
/// included. Batches are answered in the order they were committed.
fn sync_loop(queue: &SyncQueue, durability: &Durability) {
    let mut leaving = Leaving {
        queue,
        at_close: false,
    };
    loop {
        let Some((turn, batches)) = queue.take() else {
            // Closed and drained, or broken down already.
            leaving.at_close = true;
            return;
        };
        let last = batches
            .iter()
            .flatten()
            .filter_map(|(_, seqs)| seqs.last())
            .max()
            .copied()
            .unwrap_or(0);
        let synced = durability.sync_through(last);
        // Answers go out in commit order: a later sync that ends first
        // waits for the earlier one's answers. (A poisoned lock: the queue
        // is broken, or about to be, and the check below fails the batch.)
        let mut answered = queue
            .answered
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while *answered != turn {
            if queue.is_broken() {
                // An earlier turn will never be answered: fail this one.
                for (reply, _) in batches.into_iter().flatten() {
                    reply.send(Err(sync_stopped()));
                }
                return;
            }
            answered = queue
                .turn
                .wait(answered)
                .unwrap_or_else(PoisonError::into_inner);
        }
        for (reply, seqs) in batches.into_iter().flatten() {
            reply.send(match &synced {
                Ok(()) => Ok(seqs),
                Err(_) => Err(Durability::refused()),
            });
        }
        *answered += 1;
        queue.turn.notify_all();
    }
}

/// Appends `records` in one transaction: all of them or none.
fn append(conn: &Connection, records: Vec<NewRecord>) -> Result<Vec<u64>, rusqlite::Error> {
    // IMMEDIATE takes the write lock first, so the head read below is the
    // head the inserts extend, even with other processes appending. BEGIN
    // and COMMIT are prepared once, like the statements between them.
    conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    let appended = insert_all(conn, records).and_then(|seqs| {
        conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(seqs)
    });
    if appended.is_err()
        && !conn.is_autocommit()
        && let Err(e) = conn.execute_batch("ROLLBACK")
    {
        tracing::error!("audit append: rollback failed: {e}");
    }
    appended
}

/// The inserts of [`append`], inside its transaction.
fn insert_all(conn: &Connection, records: Vec<NewRecord>) -> Result<Vec<u64>, rusqlite::Error> {
    let head = conn
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
    let mut seqs = Vec::with_capacity(records.len());
    let mut insert = conn.prepare_cached(
        "INSERT INTO audit (seq, prev_hash, hash, body, rec_request, rec_tenant, rec_agent,
             rec_user, rec_action, rec_effect, rec_time, rec_kind)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?;
    for NewRecord { body, fields } in records {
        let entry = head.append(body);
        let seq = i64::try_from(entry.seq).map_err(|_| rusqlite::Error::InvalidQuery)?;
        let f = fields.as_ref();
        insert.execute(params![
            seq,
            &entry.prev_hash[..],
            &entry.hash[..],
            entry.body,
            f.map(|f| &f.request_id),
            f.map(|f| &f.tenant),
            f.and_then(|f| f.agent.as_ref()),
            f.and_then(|f| f.user.as_ref()),
            f.and_then(|f| f.action.as_ref()),
            f.map(|f| f.effect),
            f.map(|f| &f.time),
            f.map(|f| f.kind),
        ])?;
        seqs.push(entry.seq);
    }
    Ok(seqs)
}

/// How often the indexer looks for records to index.
const INDEX_EVERY: Duration = Duration::from_millis(100);

/// Records indexed per step. Fewer per step costs more per record: each
/// step reads its records through a page cache that the writer's commits
/// have invalidated, and writes the index pages it touched (at 128 a step,
/// the indexer took twice the CPU per record of 1,000 a step).
const INDEX_STEP: u32 = 1000;

/// The indexer waits for a full step of records appended here, but indexes
/// at least this often (records appended by other processes, the last
/// few of a burst).
const INDEX_AT_LEAST: Duration = Duration::from_secs(1);

/// Puts the calling thread under `SCHED_IDLE` (Linux): it runs only when
/// no other thread of the machine wants its core, and a thread that wakes
/// takes the core from it at once.
///
/// For the indexer. The query index is derived data, and a query first
/// indexes whatever is committed and not yet indexed itself, so an index
/// that lags behind costs no answer its records. Under the gateway's
/// `SCHED_BATCH` a woken request thread waited for the indexer's step
/// (1,000 records, milliseconds of CPU) to end or to use up its time
/// slice; under `SCHED_IDLE` the steps fill the time the core would spend
/// idle, waiting for the WAL's sync (measured in docs/performance.md).
/// A query that needs a step the indexer has begun waits for it to end, and
/// on a core that is busy all the time that step gets little CPU (at worst
/// a share of about 3/1024 against each busy thread).
fn run_in_idle_time() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::{
            NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
            set_thread_priority_and_policy, thread_native_id,
        };
        if let Err(e) = set_thread_priority_and_policy(
            thread_native_id(),
            ThreadPriority::Min,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
        ) {
            tracing::warn!("the audit indexer cannot use SCHED_IDLE: {e:?}");
        }
    }
}

/// How long a background index step runs at most before it gives up the
/// core for a moment ([`pause_while_stepping`]); between two steps the
/// indexer yields.
const INDEX_SLICE: Duration = Duration::from_micros(100);

/// SQLite virtual-machine instructions between two looks at the clock
/// while the indexer steps (a few microseconds of work).
const INDEX_LOOK_EVERY: i32 = 1000;

/// Makes the indexer's statements sleep (and so leave the core) once
/// they have run for [`INDEX_SLICE`] since the last time, until
/// [`stop_pausing`]; for the background steps only.
///
/// `SCHED_IDLE` alone did not keep the indexer off a request thread's
/// core. A thread that *wakes* takes the core from it at once, but a
/// request thread that is preempted at the end of its own time slice,
/// still runnable, does not: the kernel (EEVDF) then picks the indexer
/// whenever it is owed time, which it is after waiting in idle time, and
/// lets it run a full slice of its own. Traced at a fixed 5,000 requests/s
/// (docs/performance.md): indexer runs of 2-7 ms while the request thread
/// waited, and every wait of the request thread over 2 ms (35 in 5 s) was
/// behind the indexer. Sleeping takes it off the run queue, and the
/// waiting thread runs: with the audit's syncs disabled (to take the
/// disk's noise out), the gateway's p90 at that rate fell from 2.1-3.5 ms
/// to 1.3-2.3 ms in four alternating pairs.
fn pause_while_stepping(conn: &Connection) {
    let mut since = Instant::now();
    let pause = move || {
        if since.elapsed() >= INDEX_SLICE {
            std::thread::sleep(Duration::from_micros(1));
            since = Instant::now();
        }
        // Never interrupts the statement.
        false
    };
    if let Err(e) = conn.progress_handler(INDEX_LOOK_EVERY, Some(pause)) {
        tracing::warn!("the audit indexer cannot pause within a step: {e}");
    }
}

/// Ends [`pause_while_stepping`]: a query's own step runs unpaused.
fn stop_pausing(conn: &Connection) {
    if let Err(e) = conn.progress_handler(0, None::<fn() -> bool>) {
        tracing::warn!("the audit indexer's pauses cannot be removed: {e}");
    }
}

/// Keeps the query index up to date with the committed records, in steps,
/// until the fast path is dropped. `appended` counts the records this
/// process's writer committed.
fn index_loop(indexer: &Mutex<Connection>, appended: &AtomicU64, stop: &mpsc::Receiver<()>) {
    let mut seen = 0;
    let mut last = Instant::now();
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(INDEX_EVERY) {
        let now = appended.load(Ordering::Relaxed);
        if now.saturating_sub(seen) < u64::from(INDEX_STEP) && last.elapsed() < INDEX_AT_LEAST {
            continue;
        }
        loop {
            let Ok(mut conn) = indexer.lock() else {
                return;
            };
            pause_while_stepping(&conn);
            let done = index_step(&mut conn, INDEX_STEP);
            stop_pausing(&conn);
            drop(conn);
            match done {
                Ok(n) if n >= INDEX_STEP => std::thread::yield_now(),
                Ok(_) => {
                    seen = now;
                    break;
                }
                Err(e) => {
                    // Queries index what is missing themselves.
                    tracing::warn!("audit indexing: {e}");
                    break;
                }
            }
        }
        last = Instant::now();
    }
}

/// One index step: up to `limit` records are read from the database into
/// a staging table (in memory), then written to the index file in a
/// transaction of its own, and the newest one's hash is noted; an index
/// built for another audit trail is emptied first. The database is read
/// only in the first, short, transaction. The indexer runs in idle time
/// and is often preempted mid-step: a read held open across the writing
/// of seven trees per record kept the WAL checkpointer from starting the
/// WAL over, so the audit writer's commits grew the WAL file, and each
/// sync then wrote its new size too.
fn index_step(conn: &mut Connection, limit: u32) -> Result<u32, rusqlite::Error> {
    conn.prepare_cached(crate::sqlite::INDEX_BEGIN)?
        .execute([])?;
    conn.prepare_cached("DELETE FROM temp.index_staged")?
        .execute([])?;
    let read = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
    let foreign = read
        .prepare_cached(crate::sqlite::INDEX_FOREIGN)?
        .query_row([], |r| r.get::<_, bool>(0))?;
    let after = if foreign {
        0
    } else {
        read.prepare_cached("SELECT coalesce(max(seq), 0) FROM ix.audit_index")?
            .query_row([], |r| r.get::<_, i64>(0))?
    };
    let last = read
        .prepare_cached(crate::sqlite::INDEX_RANGE)?
        .query_row(params![after, limit], |r| r.get::<_, Option<i64>>(0))?;
    let mut newest = None;
    if let Some(last) = last {
        // Records written with their fields are copied, the others parsed.
        for statement in [
            crate::sqlite::INDEX_FROM_FIELDS,
            crate::sqlite::INDEX_FROM_BODY,
        ] {
            read.prepare_cached(statement)?.execute([after, last])?;
        }
        let hash = read
            .prepare_cached(crate::sqlite::INDEX_HASH_OF)?
            .query_row([last], |r| r.get::<_, Option<Vec<u8>>>(0))?;
        newest = Some((last, hash));
    }
    read.commit()?;
    // The index file alone from here: its first statement writes to it.
    let write = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
    write
        .prepare_cached(crate::sqlite::INDEX_BEGIN)?
        .execute([])?;
    if foreign {
        tracing::warn!("the audit query index was built for another audit trail: rebuilding it");
        write.execute("DELETE FROM ix.audit_index", [])?;
        write.execute("UPDATE ix.index_state SET seq = 0, hash = NULL", [])?;
    }
    let indexed = write
        .prepare_cached(crate::sqlite::INDEX_COPY)?
        .execute([])?;
    if let Some((last, hash)) = newest {
        write
            .prepare_cached(crate::sqlite::INDEX_MARK)?
            .execute(params![last, hash])?;
    }
    write.commit()?;
    Ok(u32::try_from(indexed).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;
    use std::sync::Condvar;

    /// A database created and migrated by the store, which is then closed.
    async fn migrated(dir: &Path) -> PathBuf {
        let path = dir.join("w.db");
        let url = format!("sqlite://{}", path.display());
        drop(crate::SqliteStore::open(&url).await.unwrap());
        path
    }

    /// The records committed, as another connection sees them.
    fn committed(path: &Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row("SELECT count(*) FROM audit", [], |r| r.get(0))
            .unwrap()
    }

    fn body() -> Vec<NewRecord> {
        vec![b"{}".to_vec().into()]
    }

    /// A sync that waits until the test opens it, counting its calls.
    #[derive(Default)]
    struct Gate {
        open: Mutex<bool>,
        opened: Condvar,
        calls: AtomicUsize,
    }

    impl Gate {
        fn sync(self: &Arc<Self>) -> SyncFn {
            let gate = self.clone();
            Box::new(move || {
                gate.calls.fetch_add(1, Ordering::SeqCst);
                let mut open = gate.open.lock().unwrap();
                while !*open {
                    open = gate.opened.wait(open).unwrap();
                }
                Ok(())
            })
        }

        fn open(&self) {
            *self.open.lock().unwrap() = true;
            self.opened.notify_all();
        }
    }

    async fn until(what: &str, done: impl Fn() -> bool) {
        for _ in 0..500 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("never: {what}");
    }

    /// A store on a migrated database in `dir` whose syncs wait at a gate.
    async fn gated(dir: &Path) -> (PathBuf, Arc<Gate>, Arc<FastPath>) {
        gated_holding(dir, HOLD_AT_MOST).await
    }

    /// [`gated`], holding batches nobody waits for up to `hold`.
    async fn gated_holding(dir: &Path, hold: Duration) -> (PathBuf, Arc<Gate>, Arc<FastPath>) {
        let path = migrated(dir).await;
        let gate = Arc::new(Gate::default());
        let fast = FastPath::open_holding(&path, gate.sync(), IndexSync::Unsynced, hold);
        (path, gate, Arc::new(fast.unwrap()))
    }

    /// One record queued, nobody waiting for it (an outcome record): its
    /// result comes on the receiver.
    fn queue_one(fast: &FastPath) -> std::sync::mpsc::Receiver<Result<Vec<u64>, StoreError>> {
        let (tx, rx) = std::sync::mpsc::channel();
        let then: crate::AuditDone = Box::new(move |result| {
            let _ = tx.send(result);
        });
        assert!(fast.queue(body(), then).is_ok());
        rx
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_nobody_waits_for_rides_with_the_next_sync() {
        let dir = tempfile::tempdir().unwrap();
        let (path, gate, fast) = gated_holding(dir.path(), Duration::from_secs(600)).await;
        let outcome = queue_one(&fast);
        until("the outcome record committed", || committed(&path) == 1).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(gate.calls.load(Ordering::SeqCst), 0, "no sync of its own");
        // A record somebody waits for is synced at once, and the held one
        // with it: one sync for both.
        let request = append_one(&fast);
        until("the request record committed", || committed(&path) == 2).await;
        until("syncing", || gate.calls.load(Ordering::SeqCst) == 1).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(gate.calls.load(Ordering::SeqCst), 1);
        assert!(
            outcome.try_recv().is_err() && !request.is_finished(),
            "not durable yet"
        );
        gate.open();
        assert_eq!(request.await.unwrap().unwrap(), [2]);
        let outcome = outcome.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(outcome.unwrap(), [1]);
        assert_eq!(gate.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_held_batch_is_synced_when_its_hold_ends_or_the_store_closes() {
        let hold = Duration::from_millis(50);
        let dir = tempfile::tempdir().unwrap();
        let (_, gate, fast) = gated_holding(dir.path(), hold).await;
        gate.open();
        let queued = std::time::Instant::now();
        let outcome = queue_one(&fast);
        let synced = outcome.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(synced.unwrap(), [1]);
        // Never sooner than its hold (a lower bound: no timing assumed).
        assert!(queued.elapsed() >= hold, "{:?}", queued.elapsed());
        assert_eq!(gate.calls.load(Ordering::SeqCst), 1);
        drop(fast);
        // Closed while holding: the writer syncs what it holds on its way out.
        let dir = tempfile::tempdir().unwrap();
        let (path, gate, fast) = gated_holding(dir.path(), Duration::from_secs(600)).await;
        gate.open();
        let outcome = queue_one(&fast);
        until("committed", || committed(&path) == 1).await;
        assert!(outcome.try_recv().is_err());
        drop(fast);
        let synced = outcome.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(synced.unwrap(), [1]);
        assert_eq!(gate.calls.load(Ordering::SeqCst), 1);
    }

    /// One record appended by a task of its own.
    fn append_one(fast: &Arc<FastPath>) -> tokio::task::JoinHandle<Result<Vec<u64>, StoreError>> {
        let fast = fast.clone();
        tokio::spawn(async move { fast.append(body()).await })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_is_answered_only_once_its_sync_returns() {
        let dir = tempfile::tempdir().unwrap();
        let (path, gate, fast) = gated(dir.path()).await;
        let append = append_one(&fast);
        until("committed", || committed(&path) == 1).await;
        until("syncing", || gate.calls.load(Ordering::SeqCst) == 1).await;
        // Committed and visible, but not durable yet: not answered.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!append.is_finished(), "answered before its sync returned");
        // The writer goes on committing while the sync waits.
        let second = append_one(&fast);
        until("the next batch committed", || committed(&path) == 2).await;
        assert!(!second.is_finished());
        gate.open();
        assert_eq!(append.await.unwrap().unwrap(), [1]);
        assert_eq!(second.await.unwrap().unwrap(), [2]);
    }

    #[test]
    fn the_sync_queue_hands_out_all_it_holds_in_turns_and_ends_when_closed() {
        let queue = Arc::new(SyncQueue::default());
        let batch = |seq: u64| -> Committed { vec![(Reply::Then(Box::new(|_| {})), vec![seq])] };
        let seqs = |batches: Vec<Committed>| -> Vec<u64> {
            batches.into_iter().flatten().flat_map(|(_, s)| s).collect()
        };
        assert!(queue.push(batch(1)).is_ok());
        assert!(queue.push(batch(2)).is_ok());
        let (turn, taken) = queue.take().unwrap();
        assert_eq!((turn, seqs(taken)), (0, vec![1, 2]), "both, in order");
        // A thread waiting for work gets the next batch, as the next turn.
        let waiting = std::thread::spawn({
            let queue = queue.clone();
            move || queue.take().map(|(turn, b)| (turn, seqs(b)))
        });
        std::thread::sleep(Duration::from_millis(20));
        assert!(queue.push(batch(3)).is_ok());
        assert_eq!(waiting.join().unwrap(), Some((1, vec![3])));
        // Closed: what is left is still taken, then nothing; a push is
        // given back.
        assert!(queue.push(batch(4)).is_ok());
        queue.close();
        assert!(queue.push(batch(5)).is_err());
        assert_eq!(queue.take().map(|(t, b)| (t, seqs(b))), Some((2, vec![4])));
        assert!(queue.take().is_none());
        // A thread waiting when the queue closes ends too.
        let queue = Arc::new(SyncQueue::default());
        let waiting = std::thread::spawn({
            let queue = queue.clone();
            move || queue.take().is_none()
        });
        std::thread::sleep(Duration::from_millis(20));
        drop(Closing(queue.clone()));
        assert!(waiting.join().unwrap());
        // Broken down (a syncing thread died): what was pending is failed,
        // nothing more is taken, and a push is given back.
        let queue = SyncQueue::default();
        let (tx, failed) = std::sync::mpsc::channel();
        let then: crate::AuditDone = Box::new(move |r| tx.send(r).unwrap());
        assert!(queue.push(vec![(Reply::Then(then), vec![1])]).is_ok());
        queue.break_down();
        assert!(failed.try_recv().unwrap().is_err());
        assert!(queue.take().is_none());
        assert!(queue.push(batch(2)).is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_function_that_panics_on_an_appends_result_harms_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (_, gate, fast) = gated_holding(dir.path(), Duration::from_secs(600)).await;
        gate.open();
        let then: crate::AuditDone = Box::new(|_| panic!("a function that panics"));
        assert!(fast.queue(body(), then).is_ok());
        // Synced with it, and answered after it, by the same thread.
        assert_eq!(fast.append(body()).await.unwrap(), [2]);
        assert_eq!(fast.append(body()).await.unwrap(), [3]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_syncing_thread_that_dies_fails_what_follows_instead_of_hanging_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = migrated(dir.path()).await;
        // The first sync waits at the gate, then panics; the others succeed.
        let gate = Arc::new(Gate::default());
        let sync: SyncFn = Box::new({
            let gate = gate.clone();
            move || {
                if gate.calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    let mut open = gate.open.lock().unwrap();
                    while !*open {
                        open = gate.opened.wait(open).unwrap();
                    }
                    drop(open);
                    panic!("a sync that panics");
                }
                Ok(())
            }
        });
        let fast = Arc::new(FastPath::open_with(&path, sync, IndexSync::Unsynced).unwrap());
        let first = append_one(&fast);
        until("the first sync", || gate.calls.load(Ordering::SeqCst) == 1).await;
        // The second batch's sync succeeds, and its thread waits for the
        // first batch's turn.
        let second = append_one(&fast);
        until("the second sync", || gate.calls.load(Ordering::SeqCst) == 2).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!second.is_finished(), "answered before the batch before it");
        gate.open();
        let within = |f| tokio::time::timeout(Duration::from_secs(10), f);
        let first = within(first).await.expect("no answer").unwrap();
        assert!(first.is_err(), "{first:?}");
        let second = within(second).await.expect("no answer").unwrap();
        assert!(second.is_err(), "{second:?}");
        // Nothing more is committed that could not be made durable.
        let third = within(append_one(&fast)).await.expect("no answer").unwrap();
        assert!(third.is_err(), "{third:?}");
        assert_eq!(committed(&path), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_committed_during_a_sync_starts_its_own_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (path, gate, fast) = gated(dir.path()).await;
        let first = append_one(&fast);
        until("the first sync", || gate.calls.load(Ordering::SeqCst) == 1).await;
        let second = append_one(&fast);
        until("the second batch committed", || committed(&path) == 2).await;
        until("a second sync beside the first", || {
            gate.calls.load(Ordering::SeqCst) == 2
        })
        .await;
        // Two syncs at most: a third batch waits for one of them to end.
        let third = append_one(&fast);
        until("the third batch committed", || committed(&path) == 3).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(gate.calls.load(Ordering::SeqCst), SYNCERS);
        assert!(!first.is_finished() && !second.is_finished() && !third.is_finished());
        gate.open();
        assert_eq!(first.await.unwrap().unwrap(), [1]);
        assert_eq!(second.await.unwrap().unwrap(), [2]);
        assert_eq!(third.await.unwrap().unwrap(), [3]);
        assert_eq!(
            gate.calls.load(Ordering::SeqCst),
            3,
            "the third batch's own sync"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_are_answered_in_commit_order_when_a_later_sync_ends_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = migrated(dir.path()).await;
        // The first sync waits at the gate; every later one returns at once.
        let gate = Arc::new(Gate::default());
        let first_call = gate.sync();
        let calls = AtomicUsize::new(0);
        let sync: SyncFn = Box::new(move || {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                first_call()
            } else {
                Ok(())
            }
        });
        let fast = Arc::new(FastPath::open_with(&path, sync, IndexSync::Unsynced).unwrap());
        let first = append_one(&fast);
        until("the first sync", || gate.calls.load(Ordering::SeqCst) == 1).await;
        let second = append_one(&fast);
        until("the second batch committed", || committed(&path) == 2).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!second.is_finished(), "answered before the batch before it");
        gate.open();
        assert_eq!(first.await.unwrap().unwrap(), [1]);
        assert_eq!(second.await.unwrap().unwrap(), [2]);
    }

    #[tokio::test]
    async fn a_failed_sync_fails_its_batch_and_every_later_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = migrated(dir.path()).await;
        let fail_once = Arc::new(AtomicBool::new(true));
        let failing = fail_once.clone();
        let sync: SyncFn = Box::new(move || {
            if failing.swap(false, Ordering::SeqCst) {
                Err(std::io::Error::other("the disk went away"))
            } else {
                Ok(())
            }
        });
        let fast = FastPath::open_with(&path, sync, IndexSync::Unsynced).unwrap();
        let refused = fast.append(body()).await.unwrap_err();
        assert!(refused.to_string().contains("durable"), "{refused}");
        // A sync would succeed now; the store still refuses, without
        // committing, and reads nothing out.
        assert!(!fail_once.load(Ordering::SeqCst));
        assert!(fast.append(body()).await.is_err());
        assert_eq!(committed(&path), 1, "only the batch whose sync failed");
        assert!(fast.entries(0, 10).is_err());
        let (tx, rx) = oneshot::channel();
        fast.queue(body(), Box::new(move |r| drop(tx.send(r))))
            .map_err(|_| ())
            .unwrap();
        assert!(rx.await.unwrap().is_err());
    }

    #[tokio::test]
    async fn records_are_read_out_only_once_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = migrated(dir.path()).await;
        let calls = Arc::new(AtomicUsize::new(0));
        let counting = calls.clone();
        let sync: SyncFn = Box::new(move || {
            counting.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        let fast = FastPath::open_with(&path, sync, IndexSync::Unsynced).unwrap();
        assert_eq!(fast.append(body()).await.unwrap(), [1]);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Durable already: read without another sync.
        assert_eq!(fast.entries(0, 10).unwrap().len(), 1);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // A record committed by another connection (another process, say)
        // is synced before it is read out.
        Connection::open(&path)
            .unwrap()
            .execute(
                "INSERT INTO audit (seq, prev_hash, hash, body) VALUES (2, x'00', x'00', x'7b7d')",
                [],
            )
            .unwrap();
        assert_eq!(fast.entries(0, 10).unwrap().len(), 2);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(fast.entries(1, 10).unwrap().len(), 1);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    /// The scheduling policy of each of this process's threads named
    /// `name` (field 41 of `/proc/self/task/<tid>/stat`).
    #[cfg(target_os = "linux")]
    fn policies_of(name: &str) -> Vec<u32> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|task| {
                let dir = task.ok()?.path();
                let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
                if comm.trim_end() != name {
                    return None;
                }
                let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
                // The fields after the name (which may hold spaces) start
                // at field 3.
                let (_, after) = stat.rsplit_once(')')?;
                after.split_whitespace().nth(41 - 3)?.parse().ok()
            })
            .collect()
    }

    /// The calling thread's voluntary context switches so far.
    fn voluntary_switches() -> u64 {
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    #[tokio::test]
    #[cfg(target_os = "linux")]
    #[allow(
        clippy::await_holding_lock,
        reason = "the test's one thread holds the indexer's lock on purpose"
    )]
    async fn a_background_step_leaves_the_core_while_it_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = migrated(dir.path()).await;
        let fast = FastPath::open(&path, IndexSync::Unsynced).unwrap();
        // Held from the start, so that the indexing thread steps over none
        // of these records.
        let mut conn = fast.indexer.lock().unwrap();
        let records = (0..3 * INDEX_STEP)
            .map(|i| format!(r#"{{"n":{i}}}"#).into_bytes().into())
            .collect();
        fast.append(records).await.unwrap();
        let step = |conn: &mut Connection| {
            let before = voluntary_switches();
            assert_eq!(index_step(conn, INDEX_STEP).unwrap(), INDEX_STEP);
            voluntary_switches() - before
        };
        // A query's own step runs through.
        let unpaused = step(&mut conn);
        // A background step sleeps every INDEX_SLICE (a step is
        // milliseconds of work, in a test build many more).
        let started = Instant::now();
        pause_while_stepping(&conn);
        let paused = step(&mut conn);
        let took = started.elapsed();
        stop_pausing(&conn);
        assert!(
            paused >= 3 && paused > unpaused,
            "a background step of {took:?} left the core {paused} times ({unpaused} unpaused)"
        );
        // The pauses end with the step: a query's step runs through again.
        let after = step(&mut conn);
        assert!(
            after < paused,
            "a query's step left the core {after} times after a background one ({paused})"
        );
    }

    #[tokio::test]
    #[cfg(target_os = "linux")]
    async fn the_indexer_runs_only_in_idle_time() {
        const SCHED_IDLE: u32 = 5;
        let dir = tempfile::tempdir().unwrap();
        let path = migrated(dir.path()).await;
        let fast = FastPath::open(&path, IndexSync::Unsynced).unwrap();
        // Every indexer of this process (other tests start theirs too)
        // names itself and sets its policy as it starts.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let policies = policies_of("warden-index");
            if !policies.is_empty() && policies.iter().all(|&p| p == SCHED_IDLE) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "indexer threads not (all) under SCHED_IDLE: {policies:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Its writes are not synced (crate::boot): no fsync of the index
        // holds up the audit's own.
        let on_indexer = |sql: &str| -> i64 {
            let conn = fast.indexer.lock().unwrap();
            conn.query_row(sql, [], |r| r.get(0)).unwrap()
        };
        assert_eq!(
            on_indexer("PRAGMA ix.synchronous"),
            0,
            "the index's commits are synced"
        );
        // What it has not indexed yet, the caller indexes.
        for _ in 0..3 {
            fast.append(body()).await.unwrap();
        }
        fast.index(10).unwrap();
        assert_eq!(on_indexer("SELECT count(*) FROM ix.audit_index"), 3);
    }
}
