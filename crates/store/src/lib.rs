//! Storage for Warden: the [`Store`] trait that the gateway and the CLI use,
//! and its SQLite implementation ([`SqliteStore`]).
//!
//! Every backend must pass the same conformance suite
//! (`tests/conformance.rs`), so the trait is the contract.

mod boot;
mod fast;
mod record;
mod sqlite;

use async_trait::async_trait;
use serde::Serialize;
use warden_approval::Approval;
use warden_audit::{ChainEntry, ChainHead};
use warden_core::{AgentName, AgentState, TenantId, UpstreamName, UserName};

pub use record::NewRecord;
pub use sqlite::SqliteStore;

/// What is done once queued audit records are committed, or failed.
pub type AuditDone = Box<dyn FnOnce(Result<Vec<u64>, StoreError>) + Send>;

/// A storage failure. Callers fail closed on any of these.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("storage error: {0}")]
    Database(String),
    /// The object does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The object exists already, or the change is not allowed.
    #[error("{0}")]
    Conflict(String),
    /// The stored data is corrupt.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

/// An agent: a non-human principal of one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Agent {
    /// Its tenant.
    pub tenant: TenantId,
    /// Its name.
    pub name: AgentName,
    /// Its state.
    pub state: AgentState,
    /// Who is responsible for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// What it is for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// When its credentials were last rotated (seconds since the epoch):
    /// tokens issued and certificates valid from before this are refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<u64>,
}

impl Agent {
    /// An agent from its stored columns; a value that no longer validates
    /// is reported as corruption.
    #[allow(clippy::too_many_arguments, reason = "one argument per column")]
    pub(crate) fn from_columns(
        tenant: String,
        name: String,
        state: &str,
        owner: Option<String>,
        purpose: Option<String>,
        created_at: String,
        updated_at: String,
        rotated_at: Option<i64>,
    ) -> Result<Self, StoreError> {
        let corrupt = |e: warden_core::NameError| StoreError::Corrupt(e.to_string());
        Ok(Self {
            tenant: TenantId::new(tenant).map_err(corrupt)?,
            name: AgentName::new(name).map_err(corrupt)?,
            state: state.parse().map_err(corrupt)?,
            owner,
            purpose,
            created_at,
            updated_at,
            rotated_at: rotated_at.and_then(|t| u64::try_from(t).ok()),
        })
    }

    /// Whether a credential issued at `issued_at` (seconds since the epoch)
    /// predates the last rotation.
    pub fn predates_rotation(&self, issued_at: u64) -> bool {
        self.rotated_at.is_some_and(|r| issued_at < r)
    }
}

/// A certificate Warden's CA issued to an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertRecord {
    /// Serial number, lowercase hex.
    pub serial: String,
    /// The tenant.
    pub tenant: TenantId,
    /// The agent.
    pub agent: AgentName,
    /// Start of validity (seconds since the epoch).
    pub not_before: u64,
    /// End of validity (seconds since the epoch).
    pub not_after: u64,
    /// `x5t#S256`.
    pub thumbprint: String,
    /// When it was revoked (RFC 3339), if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

/// A just-in-time task: a grant of some tools to one agent (acting alone or
/// for one user), open until it ends or expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Task {
    /// The task id.
    pub id: String,
    /// Its tenant.
    pub tenant: TenantId,
    /// The agent.
    pub agent: AgentName,
    /// The user the agent acts for, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<UserName>,
    /// What it is for.
    pub purpose: String,
    /// The tools it grants, `upstream/tool`.
    pub tools: Vec<String>,
    /// RFC 3339.
    pub created_at: String,
    /// When it expires (seconds since the epoch).
    pub expires_at: u64,
    /// When it was ended (RFC 3339), if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
}

impl Task {
    /// Open at `now` (seconds since the epoch): not ended, not expired.
    pub fn is_open(&self, now: u64) -> bool {
        self.ended_at.is_none() && now < self.expires_at
    }
}

/// A human in Warden's own directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// Its tenant.
    pub tenant: TenantId,
    /// Its name.
    pub name: UserName,
    /// `approver`, `admin`, `auditor` or `member`.
    pub role: String,
    /// Whether it may sign in and be acted for.
    pub active: bool,
    /// RFC 3339.
    pub created_at: String,
    /// The groups it belongs to (approval thresholds may name them).
    pub groups: Vec<String>,
    /// Whether it has a console password (the hash never leaves the store).
    pub has_password: bool,
}

/// A one-time console login link: only the SHA-256 of its token is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginLink {
    /// The SHA-256 (hex) of the link's secret token.
    pub token_sha256: String,
    /// The tenant.
    pub tenant: TenantId,
    /// The user it signs in.
    pub user: UserName,
    /// Seconds since the epoch.
    pub expires_at: u64,
}

/// An event to deliver (a webhook notification), queued in the store in
/// the same place as the change it reports, so that none is lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// Where it goes (a webhook's name).
    pub target: String,
    /// Whose it is.
    pub tenant: TenantId,
    /// The JSON body.
    pub body: String,
}

/// A queued event due for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    /// Its place in the queue.
    pub seq: u64,
    /// Where it goes.
    pub target: String,
    /// Whose it is.
    pub tenant: TenantId,
    /// The JSON body.
    pub body: String,
    /// Deliveries tried so far.
    pub attempts: u32,
}

/// Which audit records to find. Every field that is set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Records of this tenant.
    pub tenant: Option<String>,
    /// With `tenant`: also the records no tenant was proven for
    /// (unauthenticated requests).
    pub unattributed: bool,
    /// The request id (a request and its outcome share it).
    pub request_id: Option<String>,
    /// The agent.
    pub agent: Option<String>,
    /// The user (for admin records, the operator).
    pub user: Option<String>,
    /// The action, `upstream/tool`.
    pub action: Option<String>,
    /// The decision: `allow` or `deny`.
    pub effect: Option<String>,
    /// `request`, `outcome` or `admin`.
    pub kind: Option<String>,
    /// Records at or after this RFC 3339 time (`YYYY-MM-DDTHH:MM:SS`, UTC).
    pub since: Option<String>,
    /// Records before this time (same form).
    pub until: Option<String>,
    /// Records with a smaller seq (the next page, newest first).
    pub before: Option<u64>,
    /// At most this many (capped at 10,000).
    pub limit: u32,
}

impl AuditQuery {
    /// A time bound from RFC 3339 (`2026-11-23T10:00:00Z`) or a date
    /// (`2026-11-23`: midnight UTC); none if it is neither.
    pub fn parse_time_bound(text: &str) -> Option<String> {
        use time::format_description::well_known::Rfc3339;
        let at = time::OffsetDateTime::parse(text, &Rfc3339)
            .ok()
            .or_else(|| {
                let format = time::macros::format_description!("[year]-[month]-[day]");
                time::Date::parse(text, &format)
                    .ok()
                    .map(|d| time::PrimitiveDateTime::new(d, time::Time::MIDNIGHT).assume_utc())
            })?;
        (0..=9999)
            .contains(&at.year())
            .then(|| Self::time_bound(at))
    }

    /// A time bound as queries compare it: `YYYY-MM-DDTHH:MM:SS` in UTC
    /// (records' times have fractions of a second; bounds are by the second).
    pub fn time_bound(at: time::OffsetDateTime) -> String {
        let at = at.to_offset(time::UtcOffset::UTC);
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second()
        )
    }
}

/// A signed checkpoint of the audit log, with the tree state it was made
/// from (so that the next one starts from there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// The tree size (records covered).
    pub size: u64,
    /// When it was signed.
    pub time: u64,
    /// The signed note.
    pub note: String,
    /// The tree's compact range at that size.
    pub compact: Vec<[u8; 32]>,
}

/// Where a sealed secret belongs: an upstream of a tenant, for everyone or
/// for one user.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct SecretRef {
    /// The tenant.
    pub tenant: TenantId,
    /// The upstream.
    pub upstream: UpstreamName,
    /// The user it is for; none means the upstream's own credential.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<UserName>,
}

impl SecretRef {
    /// The associated data the secret is sealed with.
    pub fn place(&self) -> String {
        format!(
            "{}/{}/{}",
            self.tenant,
            self.upstream,
            self.user.as_ref().map_or("", |u| u.as_str())
        )
    }
}

/// What creating an agent needs.
#[derive(Debug, Clone)]
pub struct NewAgent {
    /// Its tenant.
    pub tenant: TenantId,
    /// Its name.
    pub name: AgentName,
    /// Who is responsible for it.
    pub owner: Option<String>,
    /// What it is for.
    pub purpose: Option<String>,
}

/// Warden's storage.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Creates an active agent; an existing name is a conflict.
    async fn create_agent(&self, agent: NewAgent) -> Result<Agent, StoreError>;
    /// Creates many active agents in one transaction (bulk registration);
    /// any existing name is a conflict and nothing is created.
    async fn create_agents(&self, agents: Vec<NewAgent>) -> Result<(), StoreError>;
    /// The agent, if it exists.
    async fn agent(&self, tenant: &TenantId, name: &AgentName)
    -> Result<Option<Agent>, StoreError>;
    /// The tenant's agents, by name.
    async fn list_agents(&self, tenant: &TenantId) -> Result<Vec<Agent>, StoreError>;
    /// Moves an agent to `state`. A revoked or retired agent stays so.
    async fn set_agent_state(
        &self,
        tenant: &TenantId,
        name: &AgentName,
        state: AgentState,
    ) -> Result<Agent, StoreError>;
    /// Marks the agent's credentials rotated now: every token issued and
    /// every certificate issued before is refused from now on.
    async fn rotate_agent(&self, tenant: &TenantId, name: &AgentName) -> Result<Agent, StoreError>;

    /// Records a certificate the CA issued.
    async fn record_cert(&self, cert: CertRecord) -> Result<(), StoreError>;
    /// The certificate with `serial`, if Warden issued it.
    async fn cert(&self, serial: &str) -> Result<Option<CertRecord>, StoreError>;
    /// The agent's certificates, newest first.
    async fn list_certs(
        &self,
        tenant: &TenantId,
        agent: &AgentName,
    ) -> Result<Vec<CertRecord>, StoreError>;
    /// Revokes the tenant's certificate `serial`.
    async fn revoke_cert(&self, tenant: &TenantId, serial: &str) -> Result<CertRecord, StoreError>;

    /// Creates a directory user; an existing name is a conflict.
    async fn create_user(
        &self,
        tenant: &TenantId,
        name: &UserName,
        role: &str,
    ) -> Result<User, StoreError>;
    /// The user, if it exists.
    async fn user(&self, tenant: &TenantId, name: &UserName) -> Result<Option<User>, StoreError>;
    /// The tenant's users, by name.
    async fn list_users(&self, tenant: &TenantId) -> Result<Vec<User>, StoreError>;
    /// Enables or disables a user.
    async fn set_user_active(
        &self,
        tenant: &TenantId,
        name: &UserName,
        active: bool,
    ) -> Result<User, StoreError>;

    /// Replaces a user's groups.
    async fn set_user_groups(
        &self,
        tenant: &TenantId,
        name: &UserName,
        groups: &[String],
    ) -> Result<User, StoreError>;
    /// Sets (or, with none, clears) a user's password hash (PHC string).
    async fn set_user_password(
        &self,
        tenant: &TenantId,
        name: &UserName,
        hash: Option<&str>,
    ) -> Result<(), StoreError>;
    /// A user's password hash, if it has one.
    async fn user_password(
        &self,
        tenant: &TenantId,
        name: &UserName,
    ) -> Result<Option<String>, StoreError>;
    /// Records a one-time login link.
    async fn create_login_link(&self, link: &LoginLink) -> Result<(), StoreError>;
    /// Uses a login link by the SHA-256 of its token: at most once, and only
    /// before it expires (atomic); whom it signs in.
    async fn use_login_link(
        &self,
        token_sha256: &str,
        now: u64,
    ) -> Result<Option<(TenantId, UserName)>, StoreError>;

    /// Queues events for delivery, due at once.
    async fn enqueue_events(&self, events: &[OutboxEvent], now: u64) -> Result<(), StoreError>;
    /// Undelivered events due at `now`, oldest first.
    async fn due_events(&self, now: u64, limit: u32) -> Result<Vec<OutboxItem>, StoreError>;
    /// Marks an event delivered.
    async fn event_delivered(&self, seq: u64, now: u64) -> Result<(), StoreError>;
    /// Counts a failed attempt; tried again at `next_at`.
    async fn event_retry(&self, seq: u64, next_at: u64, error: &str) -> Result<(), StoreError>;
    /// Gives an event up after its last attempt (kept, with the error).
    async fn event_failed(&self, seq: u64, now: u64, error: &str) -> Result<(), StoreError>;

    /// Keeps a signed checkpoint (one per size; a second is ignored).
    async fn save_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<(), StoreError>;
    /// Every checkpoint, smallest first.
    async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, StoreError>;
    /// The largest checkpoint.
    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError>;

    /// Records a new task; an existing id is a conflict.
    async fn create_task(&self, task: Task) -> Result<(), StoreError>;
    /// The tenant's task `id`.
    async fn task(&self, tenant: &TenantId, id: &str) -> Result<Option<Task>, StoreError>;
    /// The tenant's tasks, newest first.
    async fn list_tasks(&self, tenant: &TenantId) -> Result<Vec<Task>, StoreError>;
    /// Ends the tenant's task `id`; ending an ended task is a conflict.
    async fn end_task(&self, tenant: &TenantId, id: &str) -> Result<Task, StoreError>;

    /// Records a new approval.
    async fn create_approval(&self, approval: &Approval) -> Result<(), StoreError>;
    /// The tenant's approval `id`.
    async fn approval(&self, tenant: &TenantId, id: &str) -> Result<Option<Approval>, StoreError>;
    /// The tenant's approvals, newest first; only pending ones if asked.
    async fn list_approvals(
        &self,
        tenant: &TenantId,
        pending_only: bool,
    ) -> Result<Vec<Approval>, StoreError>;
    /// The newest approval binding exactly this call: tenant, agent, user,
    /// upstream, tool and arguments digest.
    /// Pending or approved approvals of every tenant whose time is up at
    /// `now`, soonest first.
    async fn overdue_approvals(&self, now: u64, limit: u32) -> Result<Vec<Approval>, StoreError>;
    async fn find_approval(
        &self,
        binding: &warden_approval::Request,
    ) -> Result<Option<Approval>, StoreError>;
    /// Stores `approval` if the stored one is still at `revision` (an atomic
    /// transition); `false` if someone else changed it first.
    async fn update_approval(&self, approval: &Approval, revision: u64)
    -> Result<bool, StoreError>;

    /// Keeps a policy bundle (the policy folder's files as JSON) under its
    /// version; `true` if it was new.
    async fn save_bundle(&self, version: &str, bundle: &str) -> Result<bool, StoreError>;
    /// The kept bundles' versions and when each was first seen, newest first.
    async fn bundles(&self) -> Result<Vec<(String, String)>, StoreError>;
    /// The bundle of `version`.
    async fn bundle(&self, version: &str) -> Result<Option<String>, StoreError>;

    /// Stores a sealed secret, replacing any at the same place.
    async fn put_secret(&self, at: &SecretRef, sealed: Vec<u8>) -> Result<(), StoreError>;
    /// The sealed secret at `at`.
    async fn secret(&self, at: &SecretRef) -> Result<Option<Vec<u8>>, StoreError>;
    /// Deletes the secret at `at`; whether there was one.
    async fn delete_secret(&self, at: &SecretRef) -> Result<bool, StoreError>;
    /// Where the tenant's secrets are (never their values).
    async fn list_secrets(&self, tenant: &TenantId) -> Result<Vec<SecretRef>, StoreError>;

    /// Appends records (serialized) to the audit chain in one durable
    /// transaction, returning their seqs. When this returns, they are on disk.
    async fn append_audit(&self, records: Vec<NewRecord>) -> Result<Vec<u64>, StoreError>;
    /// Queues records to be appended as [`append_audit`](Self::append_audit)
    /// does, without waiting: `then` gets the result once they are
    /// committed (or not). A store that cannot queue gives both back, and
    /// the caller appends them itself.
    fn queue_audit(
        &self,
        records: Vec<NewRecord>,
        then: AuditDone,
    ) -> Result<(), (Vec<NewRecord>, AuditDone)> {
        Err((records, then))
    }
    /// Up to `limit` entries with seq > `after`, in order.
    async fn audit_entries(&self, after: u64, limit: u32) -> Result<Vec<ChainEntry>, StoreError>;
    /// Indexes up to `limit` committed entries for queries (the append
    /// does not); how many it indexed. Queries index the rest themselves;
    /// calling this in the background keeps them fast.
    async fn index_audit(&self, limit: u32) -> Result<u32, StoreError>;
    /// Entries matching `query`, newest first, found through indexes.
    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<ChainEntry>, StoreError>;
    /// The seqs (up to `limit`, in order) of records whose index fields,
    /// written beside the body ([`NewRecord::of`]) and not covered by the
    /// chain, say other than the body does: changed outside Warden. Queries
    /// and a rebuilt index would misfile them, while the chain verifies.
    async fn audit_fields_mismatched(&self, limit: u32) -> Result<Vec<u64>, StoreError>;
    /// The last seq the audit sink `name` delivered (0: none).
    async fn sink_cursor(&self, name: &str) -> Result<u64, StoreError>;
    /// Records that the sink `name` delivered every entry up to `seq`.
    async fn set_sink_cursor(&self, name: &str, seq: u64) -> Result<(), StoreError>;
    /// The last entry's seq and hash.
    async fn audit_head(&self) -> Result<ChainHead, StoreError>;

    /// Records an upstream's tool catalog (JSON).
    async fn save_catalog(&self, upstream: &UpstreamName, catalog: &str) -> Result<(), StoreError>;
    /// Every recorded catalog.
    async fn catalogs(&self) -> Result<Vec<(UpstreamName, String)>, StoreError>;
}

/// Opens the store named by `url` (`sqlite://PATH`).
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    Ok(std::sync::Arc::new(SqliteStore::open(url).await?))
}
