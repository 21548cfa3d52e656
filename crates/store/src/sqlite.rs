//! The SQLite store: one file, WAL mode, `synchronous = FULL` so a commit is
//! on disk when it returns. Beside it, `<database>-index` holds the audit
//! query index, which is derived from the records and rebuilt from them
//! whenever it is missing, behind or was built for another audit trail.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, SqliteConnection};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use warden_audit::{ChainEntry, ChainHead, GENESIS};
use warden_core::{AgentName, AgentState, TenantId, UpstreamName, UserName};

use crate::boot::{IndexSync, current_boot, prepare_index};
use crate::fast::FastPath;
use crate::{
    Agent, AuditQuery, CertRecord, LoginLink, NewAgent, NewRecord, OutboxEvent, OutboxItem,
    SecretRef, Store, StoreError, StoredCheckpoint, Task, User,
};
use warden_approval::Approval;

const SCHEMA_VERSION: i64 = 13;

const MIGRATION_1: &[&str] = &[
    "CREATE TABLE agents (
        tenant TEXT NOT NULL,
        name TEXT NOT NULL,
        state TEXT NOT NULL,
        owner TEXT,
        purpose TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (tenant, name)
    ) STRICT",
    "CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        prev_hash BLOB NOT NULL,
        hash BLOB NOT NULL,
        body BLOB NOT NULL
    ) STRICT",
    "CREATE TABLE catalogs (
        upstream TEXT PRIMARY KEY,
        catalog TEXT NOT NULL,
        updated_at TEXT NOT NULL
    ) STRICT",
];

const MIGRATION_2: &[&str] = &[
    "ALTER TABLE agents ADD COLUMN rotated_at INTEGER",
    "CREATE TABLE certs (
        serial TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        agent TEXT NOT NULL,
        not_before INTEGER NOT NULL,
        not_after INTEGER NOT NULL,
        thumbprint TEXT NOT NULL,
        revoked_at TEXT
    ) STRICT",
    "CREATE INDEX certs_by_agent ON certs (tenant, agent, not_before)",
    "CREATE TABLE users (
        tenant TEXT NOT NULL,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        active INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (tenant, name)
    ) STRICT",
    "CREATE TABLE secrets (
        tenant TEXT NOT NULL,
        upstream TEXT NOT NULL,
        user TEXT NOT NULL,
        sealed BLOB NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (tenant, upstream, user)
    ) STRICT",
];

const MIGRATION_3: &[&str] = &["CREATE TABLE tasks (
        tenant TEXT NOT NULL,
        id TEXT NOT NULL,
        agent TEXT NOT NULL,
        user TEXT,
        purpose TEXT NOT NULL,
        tools TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        ended_at TEXT,
        PRIMARY KEY (tenant, id)
    ) STRICT"];

const MIGRATION_4: &[&str] = &["CREATE TABLE policy_bundles (
        version TEXT PRIMARY KEY,
        bundle TEXT NOT NULL,
        created_at TEXT NOT NULL,
        seq INTEGER NOT NULL
    ) STRICT"];

const MIGRATION_5: &[&str] = &[
    "CREATE TABLE approvals (
        tenant TEXT NOT NULL,
        id TEXT NOT NULL,
        agent TEXT NOT NULL,
        user TEXT NOT NULL,
        upstream TEXT NOT NULL,
        tool TEXT NOT NULL,
        args_sha256 TEXT NOT NULL,
        state TEXT NOT NULL,
        revision INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (tenant, id)
    ) STRICT",
    "CREATE INDEX approvals_by_call ON approvals (tenant, agent, upstream, tool, args_sha256, created_at)",
];

const MIGRATION_6: &[&str] = &[
    "ALTER TABLE users ADD COLUMN password_hash TEXT",
    "ALTER TABLE users ADD COLUMN groups TEXT NOT NULL DEFAULT '[]'",
    "CREATE TABLE login_links (
        token_sha256 TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        user TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        used_at INTEGER
    ) STRICT",
];

const MIGRATION_7: &[&str] = &[
    "CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        target TEXT NOT NULL,
        tenant TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at INTEGER NOT NULL,
        delivered_at INTEGER,
        failed_at INTEGER,
        last_error TEXT
    ) STRICT",
    "CREATE INDEX outbox_due ON outbox (next_at) WHERE delivered_at IS NULL AND failed_at IS NULL",
    "ALTER TABLE approvals ADD COLUMN expires_at INTEGER NOT NULL DEFAULT 0",
    "UPDATE approvals SET expires_at = json_extract(body, '$.expires_at')",
    "CREATE INDEX approvals_open ON approvals (expires_at) WHERE state IN ('pending', 'approved')",
];

const MIGRATION_8: &[&str] = &["CREATE TABLE checkpoints (
        size INTEGER PRIMARY KEY,
        time INTEGER NOT NULL,
        note TEXT NOT NULL,
        compact TEXT NOT NULL
    ) STRICT"];

/// (Superseded by migration 11: indexes on the audit table itself made
/// every commit write seven more pages.)
const MIGRATION_9: &[&str] = &[
    "ALTER TABLE audit ADD COLUMN rec_request TEXT GENERATED ALWAYS AS (json_extract(CAST(body AS TEXT), '$.request_id')) VIRTUAL",
    "ALTER TABLE audit ADD COLUMN rec_tenant TEXT GENERATED ALWAYS AS (coalesce(json_extract(CAST(body AS TEXT), '$.tenant'), '')) VIRTUAL",
    "ALTER TABLE audit ADD COLUMN rec_agent TEXT GENERATED ALWAYS AS (json_extract(CAST(body AS TEXT), '$.agent')) VIRTUAL",
    "ALTER TABLE audit ADD COLUMN rec_user TEXT GENERATED ALWAYS AS (json_extract(CAST(body AS TEXT), '$.user')) VIRTUAL",
    "ALTER TABLE audit ADD COLUMN rec_action TEXT GENERATED ALWAYS AS (json_extract(CAST(body AS TEXT), '$.action')) VIRTUAL",
    "ALTER TABLE audit ADD COLUMN rec_effect TEXT GENERATED ALWAYS AS (json_extract(CAST(body AS TEXT), '$.decision.effect')) VIRTUAL",
    "ALTER TABLE audit ADD COLUMN rec_time TEXT GENERATED ALWAYS AS (json_extract(CAST(body AS TEXT), '$.time')) VIRTUAL",
    "ALTER TABLE audit ADD COLUMN rec_kind TEXT GENERATED ALWAYS AS (json_extract(CAST(body AS TEXT), '$.kind')) VIRTUAL",
    "CREATE INDEX audit_by_request ON audit (rec_request)",
    "CREATE INDEX audit_by_tenant ON audit (rec_tenant)",
    "CREATE INDEX audit_by_agent ON audit (rec_tenant, rec_agent)",
    "CREATE INDEX audit_by_user ON audit (rec_tenant, rec_user)",
    "CREATE INDEX audit_by_action ON audit (rec_tenant, rec_action)",
    "CREATE INDEX audit_by_effect ON audit (rec_tenant, rec_effect)",
    "CREATE INDEX audit_by_time ON audit (rec_tenant, rec_time)",
];

/// How far each audit sink has delivered.
const MIGRATION_10: &[&str] = &["CREATE TABLE sink_cursors (
        name TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        updated_at TEXT NOT NULL
    ) STRICT"];

/// The audit records' fields that queries filter on, in a table of their
/// own, each behind an index: a query is served from an index, never a
/// scan. It is filled from the records' bodies after they are committed,
/// in large batches ([`SqliteStore::index_audit`]), so that the append
/// stays one small write; a query first indexes whatever is missing, so it
/// sees every committed record. Records no tenant was proven for have the
/// tenant `''`. (Superseded by migration 12: the index moved to a file of
/// its own.)
const MIGRATION_11: &[&str] = &[
    "DROP INDEX audit_by_request",
    "DROP INDEX audit_by_tenant",
    "DROP INDEX audit_by_agent",
    "DROP INDEX audit_by_user",
    "DROP INDEX audit_by_action",
    "DROP INDEX audit_by_effect",
    "DROP INDEX audit_by_time",
    "ALTER TABLE audit DROP COLUMN rec_request",
    "ALTER TABLE audit DROP COLUMN rec_tenant",
    "ALTER TABLE audit DROP COLUMN rec_agent",
    "ALTER TABLE audit DROP COLUMN rec_user",
    "ALTER TABLE audit DROP COLUMN rec_action",
    "ALTER TABLE audit DROP COLUMN rec_effect",
    "ALTER TABLE audit DROP COLUMN rec_time",
    "ALTER TABLE audit DROP COLUMN rec_kind",
    "CREATE TABLE audit_index (
        seq INTEGER PRIMARY KEY,
        request_id TEXT,
        tenant TEXT NOT NULL,
        agent TEXT,
        user TEXT,
        action TEXT,
        effect TEXT,
        time TEXT,
        kind TEXT
    ) STRICT",
    "CREATE INDEX audit_by_request ON audit_index (request_id)",
    "CREATE INDEX audit_by_tenant ON audit_index (tenant)",
    "CREATE INDEX audit_by_agent ON audit_index (tenant, agent)",
    "CREATE INDEX audit_by_user ON audit_index (tenant, user)",
    "CREATE INDEX audit_by_action ON audit_index (tenant, action)",
    "CREATE INDEX audit_by_effect ON audit_index (tenant, effect)",
    "CREATE INDEX audit_by_time ON audit_index (tenant, time)",
];

/// The query index moves to its own file (attached as `ix`, see
/// [`INDEX_SCHEMA`]): its rows are copied there and the table in the
/// database is dropped.
const MIGRATION_12: &[&str] = &[
    "INSERT OR IGNORE INTO ix.audit_index
        (seq, request_id, tenant, agent, user, action, effect, time, kind)
     SELECT seq, request_id, tenant, agent, user, action, effect, time, kind
     FROM main.audit_index",
    "INSERT OR REPLACE INTO ix.index_state (id, seq, hash)
     SELECT 1, a.seq, a.hash FROM main.audit a
     WHERE a.seq = (SELECT max(seq) FROM ix.audit_index)",
    "DROP TABLE main.audit_index",
];

/// The fields the query index holds, written with each record by the
/// writer when the record came with them ([`NewRecord::of`]: taken from
/// the value that was serialized), so that the indexer copies them instead
/// of parsing the body. Null for records appended before, or as bare
/// bodies: those are read from the body's JSON (`INDEX_FROM_BODY`).
/// `rec_tenant` is never null when the fields were given. Derived data, as
/// the index is: the chain covers the body alone.
const MIGRATION_13: &[&str] = &[
    "ALTER TABLE audit ADD COLUMN rec_request TEXT",
    "ALTER TABLE audit ADD COLUMN rec_tenant TEXT",
    "ALTER TABLE audit ADD COLUMN rec_agent TEXT",
    "ALTER TABLE audit ADD COLUMN rec_user TEXT",
    "ALTER TABLE audit ADD COLUMN rec_action TEXT",
    "ALTER TABLE audit ADD COLUMN rec_effect TEXT",
    "ALTER TABLE audit ADD COLUMN rec_time TEXT",
    "ALTER TABLE audit ADD COLUMN rec_kind TEXT",
];

/// The schema of the index file, `<database>-index`, attached to every
/// connection as `ix`. The audit records' fields that queries filter on
/// are in a table of their own, each behind an index, so that a query is
/// served from an index, never a scan. The rows are derived from the
/// records' bodies after they are committed, by a thread of the store's
/// own ([`crate::fast`]), so that an append never writes them: in the
/// database's own file they would take its one write lock, and the audit
/// writer's commits would wait for them. A query first indexes whatever is
/// missing, so it sees every committed record. `index_state` holds the
/// newest indexed record's seq and chain hash: an index whose record no
/// longer has that hash (the database was replaced, say restored from a
/// backup) describes another audit trail and is rebuilt.
pub(crate) const INDEX_SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS ix.audit_index (
        seq INTEGER PRIMARY KEY,
        request_id TEXT,
        tenant TEXT NOT NULL,
        agent TEXT,
        user TEXT,
        action TEXT,
        effect TEXT,
        time TEXT,
        kind TEXT
    ) STRICT",
    "CREATE INDEX IF NOT EXISTS ix.audit_by_request ON audit_index (request_id)",
    "CREATE INDEX IF NOT EXISTS ix.audit_by_tenant ON audit_index (tenant)",
    "CREATE INDEX IF NOT EXISTS ix.audit_by_agent ON audit_index (tenant, agent)",
    // Only the rows of agents acting for a user: a query by user never
    // looks for the others, and an agent acting on its own (most records)
    // costs the index one tree less. It replaces the full index of before.
    "DROP INDEX IF EXISTS ix.audit_by_user",
    "CREATE INDEX IF NOT EXISTS ix.audit_by_user_set ON audit_index (tenant, user) WHERE user IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS ix.audit_by_action ON audit_index (tenant, action)",
    // Only the denied: nearly every record is allowed, so an index of
    // every record's effect narrows nothing for `allow` (the tenant's
    // index serves it as well) and costs each record one tree more. A
    // query for `deny` names the value as a literal so that SQLite can use
    // this index (`EFFECT_DENY`). It replaces the full index of before.
    "DROP INDEX IF EXISTS ix.audit_by_effect",
    "CREATE INDEX IF NOT EXISTS ix.audit_by_effect_deny ON audit_index (tenant) WHERE effect = 'deny'",
    "CREATE INDEX IF NOT EXISTS ix.audit_by_time ON audit_index (tenant, time)",
    "CREATE TABLE IF NOT EXISTS ix.index_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq INTEGER NOT NULL,
        hash BLOB
    ) STRICT",
];

/// The index file of the database at `path`.
pub(crate) fn index_path(path: &std::path::Path) -> std::path::PathBuf {
    crate::fast::beside(path, "-index")
}

/// Attaches the index file (`?1`) as `ix`.
pub(crate) const ATTACH_INDEX: &str = "ATTACH DATABASE ?1 AS ix";

/// Then, on that connection: the index's commits are never synced
/// ([`IndexSync::Unsynced`], trusted only in the boot that wrote them, see
/// [`crate::boot`]), or only at its checkpoints where the boot cannot be
/// named; after a crash it may lack its newest rows, which are indexed
/// again from the records.
pub(crate) fn index_pragmas(sync: IndexSync) -> [&'static str; 2] {
    [
        "PRAGMA ix.journal_mode = WAL",
        match sync {
            IndexSync::Unsynced => "PRAGMA ix.synchronous = OFF",
            IndexSync::Synced => "PRAGMA ix.synchronous = NORMAL",
        },
    ]
}

/// Makes sure the index has its state row (`seq` 0: nothing indexed). A
/// write to the index, so that it comes first in an index step and takes
/// the index's write lock (never the database's).
pub(crate) const INDEX_BEGIN: &str =
    "INSERT OR IGNORE INTO ix.index_state (id, seq, hash) VALUES (1, 0, NULL)";

/// Whether the index was built for another audit trail: the newest
/// indexed record no longer has the hash it was indexed with, or rows are
/// there with nothing noted as indexed. Two lookups, whatever the sizes.
pub(crate) const INDEX_FOREIGN: &str = "SELECT CASE WHEN s.seq = 0
        THEN EXISTS (SELECT 1 FROM ix.audit_index)
        ELSE NOT EXISTS (SELECT 1 FROM main.audit a WHERE a.seq = s.seq AND a.hash IS s.hash)
    END FROM ix.index_state s WHERE s.id = 1";

/// The last seq of the next index step: at most `?2` records past `?1`
/// (the newest indexed), or null when there are none.
pub(crate) const INDEX_RANGE: &str = "SELECT max(seq) FROM
    (SELECT seq FROM main.audit WHERE seq > ?1 ORDER BY seq LIMIT ?2)";

/// Where an index step stages the rows it read from the database (on the
/// indexer's connection, in memory), before it writes them to the index in
/// a transaction of its own.
pub(crate) const INDEX_STAGING: &str = "CREATE TEMP TABLE IF NOT EXISTS index_staged (
        seq INTEGER PRIMARY KEY, request_id, tenant, agent, user, action, effect, time, kind
    )";

/// Stages the records of seq `?1` < seq <= `?2` that were written with
/// their fields ([`MIGRATION_13`]): a copy, nothing parsed.
pub(crate) const INDEX_FROM_FIELDS: &str = "INSERT OR IGNORE INTO temp.index_staged
        (seq, request_id, tenant, agent, user, action, effect, time, kind)
    SELECT seq, rec_request, rec_tenant, rec_agent, rec_user, rec_action, rec_effect,
        rec_time, rec_kind
    FROM main.audit WHERE seq > ?1 AND seq <= ?2 AND rec_tenant IS NOT NULL";

/// A record's body parsed once (JSONB) as `j`, null when it is not JSON.
macro_rules! body_json {
    () => {
        "iif(json_valid(t), jsonb(t), NULL) AS j"
    };
}

/// What the query index holds of a body `j`, in the order of
/// `audit_index`'s (and the `rec_*` columns') fields: one reading, shared by
/// the indexer and by verification.
macro_rules! body_fields {
    () => {
        "j ->> '$.request_id', coalesce(j ->> '$.tenant', ''), j ->> '$.agent',
        j ->> '$.user', j ->> '$.action', j ->> '$.decision.effect', j ->> '$.time',
        j ->> '$.kind'"
    };
}

/// Stages the other records of seq `?1` < seq <= `?2` from their bodies,
/// each parsed once (to JSONB). A body that is not JSON (tampered) is
/// indexed with its seq only.
pub(crate) const INDEX_FROM_BODY: &str = concat!(
    "WITH src AS MATERIALIZED (
        SELECT seq, ",
    body_json!(),
    "
        FROM (SELECT seq, CAST(body AS TEXT) AS t FROM main.audit
              WHERE seq > ?1 AND seq <= ?2 AND rec_tenant IS NULL))
    INSERT OR IGNORE INTO temp.index_staged
        (seq, request_id, tenant, agent, user, action, effect, time, kind)
    SELECT seq, ",
    body_fields!(),
    "
    FROM src"
);

/// The records written with index fields that differ from what their
/// bodies say, read as `INDEX_FROM_BODY` reads them (a body that is not
/// JSON matches no fields), up to `?1`.
pub(crate) const FIELDS_MISMATCHED: &str = concat!(
    "WITH src AS MATERIALIZED (
        SELECT seq, rec_request, rec_tenant, rec_agent, rec_user, rec_action, rec_effect,
            rec_time, rec_kind, ",
    body_json!(),
    "
        FROM (SELECT *, CAST(body AS TEXT) AS t FROM main.audit WHERE rec_tenant IS NOT NULL))
    SELECT seq FROM src
    WHERE j IS NULL
        OR (rec_request, rec_tenant, rec_agent, rec_user, rec_action, rec_effect, rec_time,
            rec_kind) IS NOT (",
    body_fields!(),
    ")
    ORDER BY seq LIMIT ?1"
);

/// The hash of record `?1`, read with the staged rows.
pub(crate) const INDEX_HASH_OF: &str = "SELECT hash FROM main.audit WHERE seq = ?1";

/// Writes the staged rows to the index.
pub(crate) const INDEX_COPY: &str = "INSERT OR IGNORE INTO ix.audit_index
        (seq, request_id, tenant, agent, user, action, effect, time, kind)
    SELECT seq, request_id, tenant, agent, user, action, effect, time, kind
    FROM temp.index_staged";

/// After an index step that indexed something: its newest record `?1` and
/// that record's hash `?2`, unless the index already notes a newer one
/// (another process's step).
pub(crate) const INDEX_MARK: &str = "UPDATE ix.index_state SET seq = ?1, hash = ?2
    WHERE id = 1 AND seq < ?1";

/// An audit row as a chain entry (a malformed hash reads as all-ones, which
/// the verifier reports).
fn chain_entry(row: &SqliteRow) -> Result<ChainEntry, StoreError> {
    Ok(ChainEntry {
        seq: seq(row, "seq")?,
        prev_hash: hash32(row, "prev_hash").unwrap_or([0xff; 32]),
        hash: hash32(row, "hash").unwrap_or([0xff; 32]),
        body: row.try_get("body").map_err(db)?,
    })
}

/// The tenant a record's body names: none for a body without one, or one
/// that is not a JSON object with a string `tenant` (which is indexed
/// under no tenant).
fn body_tenant(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Tenant<'a> {
        #[serde(borrow, default)]
        tenant: Option<std::borrow::Cow<'a, str>>,
    }
    serde_json::from_slice::<Tenant<'_>>(body)
        .ok()?
        .tenant
        .map(std::borrow::Cow::into_owned)
}

/// The records found through `audit_index` (`i`).
const SELECT_INDEXED: &str = "SELECT a.seq, a.prev_hash, a.hash, a.body FROM ix.audit_index i JOIN main.audit a ON a.seq = i.seq";
/// Its plan.
const PLAN_INDEXED: &str = "EXPLAIN QUERY PLAN SELECT a.seq, a.prev_hash, a.hash, a.body FROM ix.audit_index i JOIN main.audit a ON a.seq = i.seq";

/// The filter on denied records, written as the partial index
/// `audit_by_effect_deny` states its condition: SQLite uses a partial index
/// only for a query whose terms imply that condition, and a literal does
/// so however SQLite treats bound values.
const EFFECT_DENY: &str = " AND i.effect = 'deny'";

/// `select` restricted to the records `query` matches, newest first.
fn audit_query(select: &'static str, query: &AuditQuery) -> sqlx::QueryBuilder<sqlx::Sqlite> {
    let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(select);
    q.push(" WHERE 1 = 1");
    if let Some(t) = &query.tenant {
        q.push(" AND i.tenant IN (").push_bind(t.clone());
        if query.unattributed {
            q.push(", ''");
        }
        q.push(")");
    }
    // Any other value is bound as given (`allow`, or one that matches nothing).
    let effect = match query.effect.as_deref() {
        Some("deny") => {
            q.push(EFFECT_DENY);
            None
        }
        _ => query.effect.clone(),
    };
    for (column, value) in [
        ("i.request_id", &query.request_id),
        ("i.agent", &query.agent),
        ("i.user", &query.user),
        ("i.action", &query.action),
        ("i.effect", &effect),
        ("i.kind", &query.kind),
    ] {
        if let Some(v) = value {
            q.push(format_args!(" AND {column} = "))
                .push_bind(v.clone());
        }
    }
    if let Some(since) = &query.since {
        q.push(" AND i.time >= ").push_bind(since.clone());
    }
    if let Some(until) = &query.until {
        q.push(" AND i.time < ").push_bind(until.clone());
    }
    if let Some(before) = query.before {
        q.push(" AND i.seq < ")
            .push_bind(i64::try_from(before).unwrap_or(i64::MAX));
    }
    q.push(" ORDER BY i.seq DESC LIMIT ")
        .push_bind(i64::from(query.limit.min(10_000)));
    q
}

impl SqliteStore {
    /// How SQLite runs `query` (`EXPLAIN QUERY PLAN`): proof that filters
    /// are served from indexes.
    pub async fn audit_query_plan(&self, query: &AuditQuery) -> Result<Vec<String>, StoreError> {
        let mut q = audit_query(PLAN_INDEXED, query);
        let rows = q.build().fetch_all(&self.pool).await.map_err(db)?;
        rows.iter()
            .map(|row| row.try_get::<String, _>("detail").map_err(db))
            .collect()
    }
}

/// The SQLite implementation of [`Store`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    fast: std::sync::Arc<FastPath>,
}

fn db(e: sqlx::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

fn now() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` and migrates it.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(db)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let path = options.get_filename().to_owned();
        if path.as_os_str().is_empty() || path.to_string_lossy().contains(":memory:") {
            return Err(StoreError::Conflict(
                "an in-memory database would lose the audit trail: use a file".into(),
            ));
        }
        // Before any connection attaches the index file.
        let index_sync = prepare_index(&path, current_boot().as_deref())?;
        let index = index_path(&path).to_string_lossy().into_owned();
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .after_connect(move |conn, _| {
                let index = index.clone();
                Box::pin(async move {
                    sqlx::query(ATTACH_INDEX)
                        .bind(index)
                        .execute(&mut *conn)
                        .await?;
                    for pragma in index_pragmas(index_sync) {
                        sqlx::query(pragma).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(db)?;
        for statement in INDEX_SCHEMA {
            sqlx::query(*statement).execute(&pool).await.map_err(db)?;
        }
        migrate(&pool).await?;
        let fast = std::sync::Arc::new(FastPath::open(&path, index_sync)?);
        Ok(Self { pool, fast })
    }
}

async fn migrate(pool: &SqlitePool) -> Result<(), StoreError> {
    {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let version: i64 = sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Conflict(format!(
                "the database schema is version {version}, newer than this Warden ({SCHEMA_VERSION}): upgrade Warden"
            )));
        }
        let steps: [&'static [&'static str]; 13] = [
            MIGRATION_1,
            MIGRATION_2,
            MIGRATION_3,
            MIGRATION_4,
            MIGRATION_5,
            MIGRATION_6,
            MIGRATION_7,
            MIGRATION_8,
            MIGRATION_9,
            MIGRATION_10,
            MIGRATION_11,
            MIGRATION_12,
            MIGRATION_13,
        ];
        for (to, statements) in (1_i64..).zip(steps) {
            if version >= to {
                continue;
            }
            for statement in statements {
                sqlx::query(*statement)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
            }
            // `to` is one of our own small integers.
            sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA user_version = {to}")))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }
}

impl SqliteStore {
    async fn head(conn: &mut SqliteConnection) -> Result<ChainHead, StoreError> {
        let row = sqlx::query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
        match row {
            None => Ok(ChainHead {
                seq: 0,
                hash: GENESIS,
            }),
            Some(row) => Ok(ChainHead {
                seq: seq(&row, "seq")?,
                hash: hash32(&row, "hash")?,
            }),
        }
    }
}

fn seq(row: &SqliteRow, column: &str) -> Result<u64, StoreError> {
    let v: i64 = row.try_get(column).map_err(db)?;
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative {column}")))
}

fn hash32(row: &SqliteRow, column: &str) -> Result<[u8; 32], StoreError> {
    let v: Vec<u8> = row.try_get(column).map_err(db)?;
    // A wrong length is reported as corruption; the verifier then names the entry.
    let mut out = [0u8; 32];
    if v.len() != 32 {
        return Err(StoreError::Corrupt(format!(
            "{column} of {} bytes",
            v.len()
        )));
    }
    out.copy_from_slice(&v);
    Ok(out)
}

fn agent_from(row: &SqliteRow) -> Result<Agent, StoreError> {
    let text = |c: &str| row.try_get::<String, _>(c).map_err(db);
    Agent::from_columns(
        text("tenant")?,
        text("name")?,
        &text("state")?,
        row.try_get("owner").map_err(db)?,
        row.try_get("purpose").map_err(db)?,
        text("created_at")?,
        text("updated_at")?,
        row.try_get("rotated_at").map_err(db)?,
    )
}

fn corrupt(e: warden_core::NameError) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn unix(row: &SqliteRow, column: &str) -> Result<u64, StoreError> {
    let v: i64 = row.try_get(column).map_err(db)?;
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative {column}")))
}

fn cert_from(row: &SqliteRow) -> Result<CertRecord, StoreError> {
    let text = |c: &str| row.try_get::<String, _>(c).map_err(db);
    Ok(CertRecord {
        serial: text("serial")?,
        tenant: TenantId::new(text("tenant")?).map_err(corrupt)?,
        agent: AgentName::new(text("agent")?).map_err(corrupt)?,
        not_before: unix(row, "not_before")?,
        not_after: unix(row, "not_after")?,
        thumbprint: text("thumbprint")?,
        revoked_at: row.try_get("revoked_at").map_err(db)?,
    })
}

fn checkpoint_from(row: &SqliteRow) -> Result<StoredCheckpoint, StoreError> {
    let compact: String = row.try_get("compact").map_err(db)?;
    let compact = compact
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| {
            hex::decode(h)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| StoreError::Corrupt("a checkpoint's tree state".into()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(StoredCheckpoint {
        size: unix(row, "size")?,
        time: unix(row, "time")?,
        note: row.try_get("note").map_err(db)?,
        compact,
    })
}

fn user_from(row: &SqliteRow) -> Result<User, StoreError> {
    let text = |c: &str| row.try_get::<String, _>(c).map_err(db);
    Ok(User {
        tenant: TenantId::new(text("tenant")?).map_err(corrupt)?,
        name: UserName::new(text("name")?).map_err(corrupt)?,
        role: text("role")?,
        active: row.try_get::<i64, _>("active").map_err(db)? != 0,
        created_at: text("created_at")?,
        groups: serde_json::from_str(&text("groups")?)
            .map_err(|e| StoreError::Corrupt(format!("user groups: {e}")))?,
        has_password: row
            .try_get::<Option<String>, _>("password_hash")
            .map_err(db)?
            .is_some(),
    })
}

fn task_from(row: &SqliteRow) -> Result<Task, StoreError> {
    let text = |c: &str| row.try_get::<String, _>(c).map_err(db);
    let user: Option<String> = row.try_get("user").map_err(db)?;
    let tools: Vec<String> = serde_json::from_str(&text("tools")?)
        .map_err(|e| StoreError::Corrupt(format!("task tools: {e}")))?;
    Ok(Task {
        id: text("id")?,
        tenant: TenantId::new(text("tenant")?).map_err(corrupt)?,
        agent: AgentName::new(text("agent")?).map_err(corrupt)?,
        user: user.map(UserName::new).transpose().map_err(corrupt)?,
        purpose: text("purpose")?,
        tools,
        created_at: text("created_at")?,
        expires_at: unix(row, "expires_at")?,
        ended_at: row.try_get("ended_at").map_err(db)?,
    })
}

fn approval_from(row: &SqliteRow) -> Result<Approval, StoreError> {
    let body: String = row.try_get("body").map_err(db)?;
    serde_json::from_str(&body).map_err(|e| StoreError::Corrupt(format!("approval: {e}")))
}

fn approval_state(a: &Approval) -> Result<String, StoreError> {
    serde_json::to_value(a.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .ok_or_else(|| StoreError::Database("approval state".into()))
}

fn user_key(at: &SecretRef) -> &str {
    at.user.as_ref().map_or("", |u| u.as_str())
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_agent(&self, agent: NewAgent) -> Result<Agent, StoreError> {
        let (tenant, name) = (agent.tenant.clone(), agent.name.clone());
        self.create_agents(vec![agent]).await?;
        self.agent(&tenant, &name)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("agent `{name}`")))
    }

    async fn create_agents(&self, agents: Vec<NewAgent>) -> Result<(), StoreError> {
        let now = now();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        for agent in &agents {
            let result = sqlx::query(
                "INSERT INTO agents (tenant, name, state, owner, purpose, created_at, updated_at) VALUES (?, ?, 'active', ?, ?, ?, ?)",
            )
            .bind(agent.tenant.as_str())
            .bind(agent.name.as_str())
            .bind(agent.owner.as_deref())
            .bind(agent.purpose.as_deref())
            .bind(&now)
            .bind(&now)
            .execute(&mut *tx)
            .await;
            match result {
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                    return Err(StoreError::Conflict(format!(
                        "agent `{}` already exists in tenant `{}`",
                        agent.name, agent.tenant
                    )));
                }
                Err(e) => return Err(db(e)),
                Ok(_) => {}
            }
        }
        tx.commit().await.map_err(db)?;
        self.fast.agents_changed();
        Ok(())
    }

    async fn agent(
        &self,
        tenant: &TenantId,
        name: &AgentName,
    ) -> Result<Option<Agent>, StoreError> {
        self.fast.agent(tenant, name)
    }

    async fn list_agents(&self, tenant: &TenantId) -> Result<Vec<Agent>, StoreError> {
        let rows = sqlx::query("SELECT * FROM agents WHERE tenant = ? ORDER BY name")
            .bind(tenant.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(agent_from).collect()
    }

    async fn set_agent_state(
        &self,
        tenant: &TenantId,
        name: &AgentName,
        state: AgentState,
    ) -> Result<Agent, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let current: Option<String> =
            sqlx::query_scalar("SELECT state FROM agents WHERE tenant = ? AND name = ?")
                .bind(tenant.as_str())
                .bind(name.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        match current.as_deref() {
            None => {
                return Err(StoreError::NotFound(format!(
                    "agent `{name}` in tenant `{tenant}`"
                )));
            }
            Some(current) => {
                let current: AgentState = current.parse().map_err(corrupt)?;
                if current.is_final() && state != current {
                    return Err(StoreError::Conflict(format!(
                        "agent `{name}` is {current}; a {current} agent cannot change state"
                    )));
                }
            }
        }
        sqlx::query("UPDATE agents SET state = ?, updated_at = ? WHERE tenant = ? AND name = ?")
            .bind(state.as_str())
            .bind(now())
            .bind(tenant.as_str())
            .bind(name.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        self.fast.agents_changed();
        self.agent(tenant, name)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("agent `{name}`")))
    }

    async fn rotate_agent(&self, tenant: &TenantId, name: &AgentName) -> Result<Agent, StoreError> {
        let rotated = OffsetDateTime::now_utc().unix_timestamp();
        let done = sqlx::query(
            "UPDATE agents SET rotated_at = ?, updated_at = ? WHERE tenant = ? AND name = ?",
        )
        .bind(rotated)
        .bind(now())
        .bind(tenant.as_str())
        .bind(name.as_str())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        self.fast.agents_changed();
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "agent `{name}` in tenant `{tenant}`"
            )));
        }
        self.agent(tenant, name)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("agent `{name}`")))
    }

    async fn record_cert(&self, cert: CertRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO certs (serial, tenant, agent, not_before, not_after, thumbprint, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&cert.serial)
        .bind(cert.tenant.as_str())
        .bind(cert.agent.as_str())
        .bind(to_i64(cert.not_before))
        .bind(to_i64(cert.not_after))
        .bind(&cert.thumbprint)
        .bind(cert.revoked_at.as_deref())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn cert(&self, serial: &str) -> Result<Option<CertRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM certs WHERE serial = ?")
            .bind(serial)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(cert_from).transpose()
    }

    async fn list_certs(
        &self,
        tenant: &TenantId,
        agent: &AgentName,
    ) -> Result<Vec<CertRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM certs WHERE tenant = ? AND agent = ? ORDER BY not_before DESC, serial",
        )
        .bind(tenant.as_str())
        .bind(agent.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(cert_from).collect()
    }

    async fn revoke_cert(&self, tenant: &TenantId, serial: &str) -> Result<CertRecord, StoreError> {
        sqlx::query(
            "UPDATE certs SET revoked_at = coalesce(revoked_at, ?) WHERE tenant = ? AND serial = ?",
        )
        .bind(now())
        .bind(tenant.as_str())
        .bind(serial)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        match self.cert(serial).await? {
            Some(c) if &c.tenant == tenant => Ok(c),
            _ => Err(StoreError::NotFound(format!(
                "certificate `{serial}` in tenant `{tenant}`"
            ))),
        }
    }

    async fn create_user(
        &self,
        tenant: &TenantId,
        name: &UserName,
        role: &str,
    ) -> Result<User, StoreError> {
        let result = sqlx::query(
            "INSERT INTO users (tenant, name, role, active, created_at) VALUES (?, ?, ?, 1, ?)",
        )
        .bind(tenant.as_str())
        .bind(name.as_str())
        .bind(role)
        .bind(now())
        .execute(&self.pool)
        .await;
        match result {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::Conflict(format!(
                    "user `{name}` already exists in tenant `{tenant}`"
                )));
            }
            Err(e) => return Err(db(e)),
            Ok(_) => {}
        }
        self.user(tenant, name)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("user `{name}`")))
    }

    async fn user(&self, tenant: &TenantId, name: &UserName) -> Result<Option<User>, StoreError> {
        let row = sqlx::query("SELECT * FROM users WHERE tenant = ? AND name = ?")
            .bind(tenant.as_str())
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(user_from).transpose()
    }

    async fn list_users(&self, tenant: &TenantId) -> Result<Vec<User>, StoreError> {
        let rows = sqlx::query("SELECT * FROM users WHERE tenant = ? ORDER BY name")
            .bind(tenant.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(user_from).collect()
    }

    async fn set_user_active(
        &self,
        tenant: &TenantId,
        name: &UserName,
        active: bool,
    ) -> Result<User, StoreError> {
        sqlx::query("UPDATE users SET active = ? WHERE tenant = ? AND name = ?")
            .bind(i64::from(active))
            .bind(tenant.as_str())
            .bind(name.as_str())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        self.user(tenant, name)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("user `{name}` in tenant `{tenant}`")))
    }

    async fn set_user_groups(
        &self,
        tenant: &TenantId,
        name: &UserName,
        groups: &[String],
    ) -> Result<User, StoreError> {
        let groups = serde_json::to_string(groups)
            .map_err(|e| StoreError::Corrupt(format!("user groups: {e}")))?;
        sqlx::query("UPDATE users SET groups = ? WHERE tenant = ? AND name = ?")
            .bind(groups)
            .bind(tenant.as_str())
            .bind(name.as_str())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        self.user(tenant, name)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("user `{name}` in tenant `{tenant}`")))
    }

    async fn set_user_password(
        &self,
        tenant: &TenantId,
        name: &UserName,
        hash: Option<&str>,
    ) -> Result<(), StoreError> {
        let changed =
            sqlx::query("UPDATE users SET password_hash = ? WHERE tenant = ? AND name = ?")
                .bind(hash)
                .bind(tenant.as_str())
                .bind(name.as_str())
                .execute(&self.pool)
                .await
                .map_err(db)?
                .rows_affected();
        if changed == 0 {
            return Err(StoreError::NotFound(format!(
                "user `{name}` in tenant `{tenant}`"
            )));
        }
        Ok(())
    }

    async fn user_password(
        &self,
        tenant: &TenantId,
        name: &UserName,
    ) -> Result<Option<String>, StoreError> {
        let hash: Option<Option<String>> =
            sqlx::query_scalar("SELECT password_hash FROM users WHERE tenant = ? AND name = ?")
                .bind(tenant.as_str())
                .bind(name.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        Ok(hash.flatten())
    }

    async fn create_login_link(&self, link: &LoginLink) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO login_links (token_sha256, tenant, user, expires_at, used_at) VALUES (?, ?, ?, ?, NULL)",
        )
        .bind(&link.token_sha256)
        .bind(link.tenant.as_str())
        .bind(link.user.as_str())
        .bind(i64::try_from(link.expires_at).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn use_login_link(
        &self,
        token_sha256: &str,
        now: u64,
    ) -> Result<Option<(TenantId, UserName)>, StoreError> {
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        let row = sqlx::query(
            "UPDATE login_links SET used_at = ? WHERE token_sha256 = ? AND used_at IS NULL AND expires_at > ? RETURNING tenant, user",
        )
        .bind(now)
        .bind(token_sha256)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        let Some(row) = row else { return Ok(None) };
        let tenant: String = row.try_get("tenant").map_err(db)?;
        let user: String = row.try_get("user").map_err(db)?;
        Ok(Some((
            TenantId::new(tenant).map_err(corrupt)?,
            UserName::new(user).map_err(corrupt)?,
        )))
    }

    async fn enqueue_events(&self, events: &[OutboxEvent], now: u64) -> Result<(), StoreError> {
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        let mut tx = self.pool.begin().await.map_err(db)?;
        for e in events {
            sqlx::query(
                "INSERT INTO outbox (target, tenant, body, created_at, next_at) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(&e.target)
            .bind(e.tenant.as_str())
            .bind(&e.body)
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn due_events(&self, now: u64, limit: u32) -> Result<Vec<OutboxItem>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, target, tenant, body, attempts FROM outbox WHERE delivered_at IS NULL AND failed_at IS NULL AND next_at <= ? ORDER BY seq LIMIT ?",
        )
        .bind(i64::try_from(now).unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|row| {
                let tenant: String = row.try_get("tenant").map_err(db)?;
                Ok(OutboxItem {
                    seq: unix(row, "seq")?,
                    target: row.try_get("target").map_err(db)?,
                    tenant: TenantId::new(tenant).map_err(corrupt)?,
                    body: row.try_get("body").map_err(db)?,
                    attempts: u32::try_from(unix(row, "attempts")?).unwrap_or(u32::MAX),
                })
            })
            .collect()
    }

    async fn event_delivered(&self, seq: u64, now: u64) -> Result<(), StoreError> {
        sqlx::query("UPDATE outbox SET delivered_at = ?, attempts = attempts + 1 WHERE seq = ?")
            .bind(i64::try_from(now).unwrap_or(i64::MAX))
            .bind(i64::try_from(seq).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn event_retry(&self, seq: u64, next_at: u64, error: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET next_at = ?, attempts = attempts + 1, last_error = ? WHERE seq = ?",
        )
        .bind(i64::try_from(next_at).unwrap_or(i64::MAX))
        .bind(error)
        .bind(i64::try_from(seq).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn event_failed(&self, seq: u64, now: u64, error: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET failed_at = ?, attempts = attempts + 1, last_error = ? WHERE seq = ?",
        )
        .bind(i64::try_from(now).unwrap_or(i64::MAX))
        .bind(error)
        .bind(i64::try_from(seq).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn save_checkpoint(&self, c: &StoredCheckpoint) -> Result<(), StoreError> {
        let compact: Vec<String> = c.compact.iter().map(hex::encode).collect();
        sqlx::query(
            "INSERT INTO checkpoints (size, time, note, compact) VALUES (?, ?, ?, ?) ON CONFLICT (size) DO NOTHING",
        )
        .bind(to_i64(c.size))
        .bind(to_i64(c.time))
        .bind(&c.note)
        .bind(compact.join(","))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let rows = sqlx::query("SELECT size, time, note, compact FROM checkpoints ORDER BY size")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(checkpoint_from).collect()
    }

    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        let row = sqlx::query(
            "SELECT size, time, note, compact FROM checkpoints ORDER BY size DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(checkpoint_from).transpose()
    }

    async fn create_task(&self, task: Task) -> Result<(), StoreError> {
        let tools =
            serde_json::to_string(&task.tools).map_err(|e| StoreError::Database(e.to_string()))?;
        let result = sqlx::query(
            "INSERT INTO tasks (tenant, id, agent, user, purpose, tools, created_at, expires_at, ended_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)",
        )
        .bind(task.tenant.as_str())
        .bind(&task.id)
        .bind(task.agent.as_str())
        .bind(task.user.as_ref().map(|u| u.as_str()))
        .bind(&task.purpose)
        .bind(tools)
        .bind(&task.created_at)
        .bind(to_i64(task.expires_at))
        .execute(&self.pool)
        .await;
        match result {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Conflict(
                format!("task `{}` exists already", task.id),
            )),
            Err(e) => Err(db(e)),
            Ok(_) => Ok(()),
        }
    }

    async fn task(&self, tenant: &TenantId, id: &str) -> Result<Option<Task>, StoreError> {
        let row = sqlx::query("SELECT * FROM tasks WHERE tenant = ? AND id = ?")
            .bind(tenant.as_str())
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(task_from).transpose()
    }

    async fn list_tasks(&self, tenant: &TenantId) -> Result<Vec<Task>, StoreError> {
        let rows = sqlx::query("SELECT * FROM tasks WHERE tenant = ? ORDER BY created_at DESC, id")
            .bind(tenant.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(task_from).collect()
    }

    async fn end_task(&self, tenant: &TenantId, id: &str) -> Result<Task, StoreError> {
        let done = sqlx::query(
            "UPDATE tasks SET ended_at = ? WHERE tenant = ? AND id = ? AND ended_at IS NULL",
        )
        .bind(now())
        .bind(tenant.as_str())
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        let task = self
            .task(tenant, id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("task `{id}` in tenant `{tenant}`")))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "task `{id}` has ended already"
            )));
        }
        Ok(task)
    }

    async fn create_approval(&self, a: &Approval) -> Result<(), StoreError> {
        let body = serde_json::to_string(a).map_err(|e| StoreError::Database(e.to_string()))?;
        let r = &a.request;
        let result = sqlx::query(
            "INSERT INTO approvals (tenant, id, agent, user, upstream, tool, args_sha256, state, revision, created_at, expires_at, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&r.tenant)
        .bind(&a.id)
        .bind(&r.agent)
        .bind(r.user.as_deref().unwrap_or(""))
        .bind(&r.upstream)
        .bind(&r.tool)
        .bind(&r.arguments_sha256)
        .bind(approval_state(a)?)
        .bind(to_i64(a.revision))
        .bind(to_i64(a.created_at))
        .bind(to_i64(a.expires_at))
        .bind(body)
        .execute(&self.pool)
        .await;
        match result {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Conflict(
                format!("approval `{}` exists already", a.id),
            )),
            Err(e) => Err(db(e)),
            Ok(_) => Ok(()),
        }
    }

    async fn approval(&self, tenant: &TenantId, id: &str) -> Result<Option<Approval>, StoreError> {
        let row = sqlx::query("SELECT body FROM approvals WHERE tenant = ? AND id = ?")
            .bind(tenant.as_str())
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(approval_from).transpose()
    }

    async fn list_approvals(
        &self,
        tenant: &TenantId,
        pending_only: bool,
    ) -> Result<Vec<Approval>, StoreError> {
        let sql = if pending_only {
            "SELECT body FROM approvals WHERE tenant = ? AND state = 'pending' ORDER BY created_at DESC, id"
        } else {
            "SELECT body FROM approvals WHERE tenant = ? ORDER BY created_at DESC, id"
        };
        let rows = sqlx::query(sql)
            .bind(tenant.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(approval_from).collect()
    }

    async fn overdue_approvals(&self, now: u64, limit: u32) -> Result<Vec<Approval>, StoreError> {
        let rows = sqlx::query(
            "SELECT body FROM approvals WHERE state IN ('pending', 'approved') AND expires_at <= ? ORDER BY expires_at LIMIT ?",
        )
        .bind(to_i64(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(approval_from).collect()
    }

    async fn find_approval(
        &self,
        b: &warden_approval::Request,
    ) -> Result<Option<Approval>, StoreError> {
        let row = sqlx::query(
            "SELECT body FROM approvals WHERE tenant = ? AND agent = ? AND user = ? AND upstream = ? AND tool = ? AND args_sha256 = ? ORDER BY created_at DESC, revision DESC LIMIT 1",
        )
        .bind(&b.tenant)
        .bind(&b.agent)
        .bind(b.user.as_deref().unwrap_or(""))
        .bind(&b.upstream)
        .bind(&b.tool)
        .bind(&b.arguments_sha256)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(approval_from).transpose()
    }

    async fn update_approval(&self, a: &Approval, revision: u64) -> Result<bool, StoreError> {
        let body = serde_json::to_string(a).map_err(|e| StoreError::Database(e.to_string()))?;
        let done = sqlx::query(
            "UPDATE approvals SET state = ?, revision = ?, expires_at = ?, body = ? WHERE tenant = ? AND id = ? AND revision = ?",
        )
        .bind(approval_state(a)?)
        .bind(to_i64(a.revision))
        .bind(to_i64(a.expires_at))
        .bind(body)
        .bind(&a.request.tenant)
        .bind(&a.id)
        .bind(to_i64(revision))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    async fn save_bundle(&self, version: &str, bundle: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO policy_bundles (version, bundle, created_at, seq)
             SELECT ?, ?, ?, coalesce(max(seq), 0) + 1 FROM policy_bundles WHERE true
             ON CONFLICT (version) DO NOTHING",
        )
        .bind(version)
        .bind(bundle)
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() > 0)
    }

    async fn bundles(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query("SELECT version, created_at FROM policy_bundles ORDER BY seq DESC")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("version").map_err(db)?,
                    r.try_get("created_at").map_err(db)?,
                ))
            })
            .collect()
    }

    async fn bundle(&self, version: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT bundle FROM policy_bundles WHERE version = ?")
            .bind(version)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)
    }

    async fn put_secret(&self, at: &SecretRef, sealed: Vec<u8>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO secrets (tenant, upstream, user, sealed, updated_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (tenant, upstream, user) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at",
        )
        .bind(at.tenant.as_str())
        .bind(at.upstream.as_str())
        .bind(user_key(at))
        .bind(sealed)
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn secret(&self, at: &SecretRef) -> Result<Option<Vec<u8>>, StoreError> {
        sqlx::query_scalar(
            "SELECT sealed FROM secrets WHERE tenant = ? AND upstream = ? AND user = ?",
        )
        .bind(at.tenant.as_str())
        .bind(at.upstream.as_str())
        .bind(user_key(at))
        .fetch_optional(&self.pool)
        .await
        .map_err(db)
    }

    async fn delete_secret(&self, at: &SecretRef) -> Result<bool, StoreError> {
        let done =
            sqlx::query("DELETE FROM secrets WHERE tenant = ? AND upstream = ? AND user = ?")
                .bind(at.tenant.as_str())
                .bind(at.upstream.as_str())
                .bind(user_key(at))
                .execute(&self.pool)
                .await
                .map_err(db)?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_secrets(&self, tenant: &TenantId) -> Result<Vec<SecretRef>, StoreError> {
        let rows = sqlx::query(
            "SELECT upstream, user FROM secrets WHERE tenant = ? ORDER BY upstream, user",
        )
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|row| {
                let upstream: String = row.try_get("upstream").map_err(db)?;
                let user: String = row.try_get("user").map_err(db)?;
                Ok(SecretRef {
                    tenant: tenant.clone(),
                    upstream: UpstreamName::new(upstream).map_err(corrupt)?,
                    user: if user.is_empty() {
                        None
                    } else {
                        Some(UserName::new(user).map_err(corrupt)?)
                    },
                })
            })
            .collect()
    }

    async fn append_audit(&self, records: Vec<NewRecord>) -> Result<Vec<u64>, StoreError> {
        self.fast.append(records).await
    }

    fn queue_audit(
        &self,
        records: Vec<NewRecord>,
        then: crate::AuditDone,
    ) -> Result<(), (Vec<NewRecord>, crate::AuditDone)> {
        self.fast.queue(records, then)
    }

    async fn audit_entries(&self, after: u64, limit: u32) -> Result<Vec<ChainEntry>, StoreError> {
        // Read by the fast path's connections on a blocking thread: the
        // checkpointer reads every record back, and through sqlx that was
        // a tenth of the gateway's audit cost (docs/performance.md).
        let fast = self.fast.clone();
        tokio::task::spawn_blocking(move || fast.entries(after, limit))
            .await
            .map_err(|e| StoreError::Database(format!("audit read: {e}")))?
    }

    async fn index_audit(&self, limit: u32) -> Result<u32, StoreError> {
        // The same step as the store's indexing thread, on its connection.
        let fast = self.fast.clone();
        tokio::task::spawn_blocking(move || fast.index(limit))
            .await
            .map_err(|e| StoreError::Database(format!("audit index: {e}")))?
    }

    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<ChainEntry>, StoreError> {
        // Whatever is committed and not yet indexed is indexed first.
        while self.index_audit(10_000).await? > 0 {}
        let mut q = audit_query(SELECT_INDEXED, query);
        let rows = q.build().fetch_all(&self.pool).await.map_err(db)?;
        let entries: Vec<ChainEntry> = rows.iter().map(chain_entry).collect::<Result<_, _>>()?;
        let Some(tenant) = &query.tenant else {
            return Ok(entries);
        };
        // The index (and the fields it is copied from) is derived data that
        // the chain does not cover: a record reaches a tenant's query only
        // if its body, which the chain covers, names that tenant.
        Ok(entries
            .into_iter()
            .filter(|e| {
                let named = body_tenant(&e.body);
                let mine = named.as_deref() == Some(tenant.as_str())
                    || (query.unattributed && named.as_deref().is_none_or(str::is_empty));
                if !mine {
                    tracing::warn!(
                        seq = e.seq,
                        "an audit record's index entry names another tenant than its body: \
                         left out of the query (run `warden audit verify`)"
                    );
                }
                mine
            })
            .collect())
    }

    async fn audit_fields_mismatched(&self, limit: u32) -> Result<Vec<u64>, StoreError> {
        let seqs: Vec<i64> = sqlx::query_scalar(FIELDS_MISMATCHED)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(seqs
            .into_iter()
            .map(|s| u64::try_from(s).unwrap_or(0))
            .collect())
    }

    async fn sink_cursor(&self, name: &str) -> Result<u64, StoreError> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT seq FROM sink_cursors WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(seq.map_or(0, |s| u64::try_from(s).unwrap_or(0)))
    }

    async fn set_sink_cursor(&self, name: &str, seq: u64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sink_cursors (name, seq, updated_at) VALUES (?, ?, ?)
             ON CONFLICT (name) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(i64::try_from(seq).unwrap_or(i64::MAX))
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn audit_head(&self) -> Result<ChainHead, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        Self::head(&mut conn).await
    }

    async fn save_catalog(&self, upstream: &UpstreamName, catalog: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO catalogs (upstream, catalog, updated_at) VALUES (?, ?, ?)
             ON CONFLICT (upstream) DO UPDATE SET catalog = excluded.catalog, updated_at = excluded.updated_at",
        )
        .bind(upstream.as_str())
        .bind(catalog)
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn catalogs(&self) -> Result<Vec<(UpstreamName, String)>, StoreError> {
        let rows = sqlx::query("SELECT upstream, catalog FROM catalogs ORDER BY upstream")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|row| {
                let name: String = row.try_get("upstream").map_err(db)?;
                let name =
                    UpstreamName::new(name).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok((name, row.try_get("catalog").map_err(db)?))
            })
            .collect()
    }
}
