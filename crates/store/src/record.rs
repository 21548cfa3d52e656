//! A record on its way into the audit chain: the bytes the chain hashes,
//! and the fields the query index holds when they come from the record
//! itself rather than from reading its bytes back.

use warden_audit::{AuditRecord, RecordKind};
use warden_core::Effect;

/// An audit record to append: its body (the serialized record, which the
/// chain hashes) and, for a record serialized by [`NewRecord::of`], the
/// fields the query index holds, taken from the same value. The indexer
/// then copies them instead of parsing the body; a body given alone
/// (`From<Vec<u8>>`) has them read from its JSON, as before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord {
    pub(crate) body: Vec<u8>,
    pub(crate) fields: Option<IndexFields>,
}

/// The room a record's body is first given.
const BODY_CAPACITY: usize = 1024;

impl NewRecord {
    /// `record` serialized, with its index fields.
    pub fn of(record: &AuditRecord) -> Result<Self, serde_json::Error> {
        // A record is some 500-600 bytes: room for it at once, instead of
        // growing from 128 bytes three times or four.
        let mut body = Vec::with_capacity(BODY_CAPACITY);
        serde_json::to_writer(&mut body, record)?;
        Ok(Self {
            body,
            fields: IndexFields::of(record),
        })
    }
}

impl From<Vec<u8>> for NewRecord {
    /// A body whose index fields are read from its JSON once committed.
    fn from(body: Vec<u8>) -> Self {
        Self { body, fields: None }
    }
}

/// What the query index holds of a record, as `INDEX_FROM_BODY` reads it
/// from the body's JSON: `tenant` is `''` for a record no tenant was proven for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexFields {
    pub(crate) request_id: String,
    pub(crate) tenant: String,
    pub(crate) agent: Option<String>,
    pub(crate) user: Option<String>,
    pub(crate) action: Option<String>,
    pub(crate) effect: &'static str,
    pub(crate) time: String,
    pub(crate) kind: &'static str,
}

impl IndexFields {
    /// None for a record with a NUL in a field, which SQLite's JSON
    /// functions may read differently: its body is read as it always was.
    fn of(record: &AuditRecord) -> Option<Self> {
        let nul = |s: &str| s.contains('\0');
        let texts = [&record.tenant, &record.agent, &record.user, &record.action];
        if nul(&record.request_id)
            || nul(&record.time)
            || texts.into_iter().flatten().any(|s| nul(s))
        {
            return None;
        }
        Some(Self {
            request_id: record.request_id.clone(),
            tenant: record.tenant.clone().unwrap_or_default(),
            agent: record.agent.clone(),
            user: record.user.clone(),
            action: record.action.clone(),
            // As serde writes them (snake_case); a test compares the two.
            effect: match record.decision.effect {
                Effect::Allow => "allow",
                Effect::Deny => "deny",
            },
            time: record.time.clone(),
            kind: match record.kind {
                RecordKind::Request => "request",
                RecordKind::Outcome => "outcome",
                RecordKind::Admin => "admin",
            },
        })
    }
}
