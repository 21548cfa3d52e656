//! Storage for Warden: the [`Store`] trait that the gateway and the CLI use,
//! and its SQLite implementation ([`SqliteStore`]).
//!
//! Every backend must pass the same conformance suite
//! (`tests/conformance.rs`), so the trait is the contract.

mod fast;
mod sqlite;

use async_trait::async_trait;
use serde::Serialize;
use warden_audit::{ChainEntry, ChainHead};
use warden_core::{AgentName, AgentState, TenantId, UpstreamName};

pub use sqlite::SqliteStore;

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
}

impl Agent {
    /// An agent from its stored columns; a value that no longer validates
    /// is reported as corruption.
    pub(crate) fn from_columns(
        tenant: String,
        name: String,
        state: &str,
        owner: Option<String>,
        purpose: Option<String>,
        created_at: String,
        updated_at: String,
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
        })
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
    /// Moves an agent to `state`. A revoked agent stays revoked.
    async fn set_agent_state(
        &self,
        tenant: &TenantId,
        name: &AgentName,
        state: AgentState,
    ) -> Result<Agent, StoreError>;

    /// Appends records (serialized) to the audit chain in one durable
    /// transaction, returning their seqs. When this returns, they are on disk.
    async fn append_audit(&self, bodies: Vec<Vec<u8>>) -> Result<Vec<u64>, StoreError>;
    /// Up to `limit` entries with seq > `after`, in order.
    async fn audit_entries(&self, after: u64, limit: u32) -> Result<Vec<ChainEntry>, StoreError>;
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
