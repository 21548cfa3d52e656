//! The audit trail's record schema, its hash chain, the Merkle tree over it,
//! signed checkpoints, and the verifiers. No I/O: storage feeds entries in,
//! the verifier says which one is bad.
//!
//! Each entry's hash covers a domain tag, its sequence number, the previous
//! entry's hash and the exact bytes of the record, so that changing, removing,
//! reordering or inserting any entry breaks the chain at that entry. The
//! records are also the leaves of an RFC 6962 Merkle tree whose signed
//! checkpoints let anyone holding the public key check inclusion of a record
//! and that the log only grew — and detect records cut off its end.

mod chain;
pub mod checkpoint;
pub mod explain;
mod log;
pub mod merkle;
pub mod ocsf;
mod record;
mod redact;

pub use chain::{
    ChainEntry, ChainHead, GENESIS, VerifyError, VerifyReport, chain_hash, check_entry, check_link,
    verify_chain,
};
pub use checkpoint::{Checkpoint, CheckpointError, NoteSigner, NoteVerifier, verify_checkpoint};
pub use log::{LogError, LogReport, LogVerifier, verify_log};
pub use record::{AuditRecord, Outcome, RecordKind, Risk, ShadowDecision};
pub use redact::redact_args;
