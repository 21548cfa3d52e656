//! The audit trail's record schema, its hash chain and the verifier.
//! No I/O: storage feeds entries in, the verifier says which one is bad.
//!
//! Each entry's hash covers a domain tag, its sequence number, the previous
//! entry's hash and the exact bytes of the record, so that changing, removing,
//! reordering or inserting any entry breaks the chain at that entry.

mod chain;
mod record;

pub use chain::{
    ChainEntry, ChainHead, GENESIS, VerifyError, VerifyReport, chain_hash, verify_chain,
};
pub use record::{AuditRecord, Outcome, RecordKind, ShadowDecision};
