//! The hash chain and its verifier.

use sha2::{Digest, Sha256};

/// The `prev_hash` of the first entry.
pub const GENESIS: [u8; 32] = [0; 32];

const DOMAIN: &[u8] = b"warden-audit-chain-v1\0";

/// One stored entry of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainEntry {
    /// 1, 2, 3, ... without gaps.
    pub seq: u64,
    /// The previous entry's hash ([`GENESIS`] for seq 1).
    pub prev_hash: [u8; 32],
    /// `chain_hash(seq, prev_hash, body)`.
    pub hash: [u8; 32],
    /// The record, serialized (JSON), exactly as hashed.
    pub body: Vec<u8>,
}

/// Where the chain ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    /// The last seq (0 when empty).
    pub seq: u64,
    /// The last hash ([`GENESIS`] when empty).
    pub hash: [u8; 32],
}

impl Default for ChainHead {
    fn default() -> Self {
        Self {
            seq: 0,
            hash: GENESIS,
        }
    }
}

impl ChainHead {
    /// Appends `body`, returning the new entry; `self` moves to it.
    pub fn append(&mut self, body: Vec<u8>) -> ChainEntry {
        let seq = self.seq + 1;
        let hash = chain_hash(seq, &self.hash, &body);
        let entry = ChainEntry {
            seq,
            prev_hash: self.hash,
            hash,
            body,
        };
        *self = Self { seq, hash };
        entry
    }
}

/// The hash of an entry.
pub fn chain_hash(seq: u64, prev_hash: &[u8; 32], body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(seq.to_be_bytes());
    h.update(prev_hash);
    h.update((body.len() as u64).to_be_bytes());
    h.update(body);
    h.finalize().into()
}

/// The first bad entry, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The sequence jumps (an entry was removed or inserted) or repeats.
    #[error(
        "audit chain broken at seq {found}: expected seq {expected} (an entry was removed, inserted or reordered)"
    )]
    Sequence {
        /// The seq that should come next.
        expected: u64,
        /// The seq found.
        found: u64,
    },
    /// The entry does not link to its predecessor.
    #[error(
        "audit chain broken at seq {seq}: it does not link to the previous entry (an entry was removed, inserted or reordered)"
    )]
    Link {
        /// The bad entry.
        seq: u64,
    },
    /// The entry's content does not match its hash.
    #[error(
        "audit chain broken at seq {seq}: its content does not match its hash (the record was modified)"
    )]
    Hash {
        /// The bad entry.
        seq: u64,
    },
    /// The hash matches but the record does not parse.
    #[error("audit chain broken at seq {seq}: the record is not a valid audit record: {reason}")]
    Record {
        /// The bad entry.
        seq: u64,
        /// The parse error.
        reason: String,
    },
}

impl VerifyError {
    /// The seq of the first bad entry.
    pub fn seq(&self) -> u64 {
        match self {
            Self::Sequence { found, .. } => *found,
            Self::Link { seq } | Self::Hash { seq } | Self::Record { seq, .. } => *seq,
        }
    }
}

/// A verified chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries checked.
    pub entries: u64,
    /// The head after them.
    pub head: ChainHead,
}

/// Verifies entries in storage order, starting from `start` (the default
/// head for a whole chain). Stops at the first bad entry.
pub fn verify_chain<I>(entries: I, start: ChainHead) -> Result<VerifyReport, VerifyError>
where
    I: IntoIterator<Item = ChainEntry>,
{
    let mut head = start;
    let mut count = 0;
    for entry in entries {
        check_entry(&mut head, &entry)?;
        count += 1;
    }
    Ok(VerifyReport {
        entries: count,
        head,
    })
}

/// Checks that `entry` follows `head` (sequence, link, hash, a valid
/// record) and moves `head` to it.
pub fn check_entry(head: &mut ChainHead, entry: &ChainEntry) -> Result<(), VerifyError> {
    let mut next = *head;
    check_link(&mut next, entry)?;
    if let Err(e) = serde_json::from_slice::<crate::AuditRecord>(&entry.body) {
        return Err(VerifyError::Record {
            seq: entry.seq,
            reason: e.to_string(),
        });
    }
    *head = next;
    Ok(())
}

/// Checks that `entry` follows `head` (its seq, its link and its hash)
/// without reading the record, and advances `head`. What the checkpointer
/// needs: a record changed before it is signed breaks its hash or a link.
pub fn check_link(head: &mut ChainHead, entry: &ChainEntry) -> Result<(), VerifyError> {
    let expected = head.seq + 1;
    if entry.seq != expected {
        return Err(VerifyError::Sequence {
            expected,
            found: entry.seq,
        });
    }
    if entry.prev_hash != head.hash {
        return Err(VerifyError::Link { seq: entry.seq });
    }
    if chain_hash(entry.seq, &entry.prev_hash, &entry.body) != entry.hash {
        return Err(VerifyError::Hash { seq: entry.seq });
    }
    *head = ChainHead {
        seq: entry.seq,
        hash: entry.hash,
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use warden_core::Decision;

    use super::*;
    use crate::{AuditRecord, RecordKind};

    fn record(i: u64) -> Vec<u8> {
        let r = AuditRecord {
            kind: RecordKind::Request,
            request_id: format!("req-{i}"),
            time: "2026-11-23T00:00:00Z".into(),
            tenant: Some("default".into()),
            agent: Some("bot".into()),
            user: None,
            source: None,
            endpoint: "/mcp/crm".into(),
            method: Some("tools/call".into()),
            upstream: Some("crm".into()),
            action: Some("crm/get_customer".into()),
            resource: None,
            args_digest: None,
            args: None,
            task: None,
            risk: None,
            decision: Decision::deny("no policy permits this request"),
            status: Some(200),
            error: None,
            outcome: None,
            approval: None,
            reviewers: Vec::new(),
            shadow: None,
        };
        serde_json::to_vec(&r).unwrap()
    }

    fn chain(n: u64) -> Vec<ChainEntry> {
        let mut head = ChainHead::default();
        (1..=n).map(|i| head.append(record(i))).collect()
    }

    #[test]
    fn an_intact_chain_verifies() {
        let report = verify_chain(chain(5), ChainHead::default()).unwrap();
        assert_eq!(report.entries, 5);
        assert_eq!(report.head.seq, 5);
        assert_eq!(
            verify_chain(Vec::new(), ChainHead::default())
                .unwrap()
                .entries,
            0
        );
    }

    #[test]
    fn each_kind_of_tampering_names_the_first_bad_entry() {
        let mut modified = chain(5);
        modified[2].body = record(99);
        assert_eq!(
            verify_chain(modified, ChainHead::default()),
            Err(VerifyError::Hash { seq: 3 })
        );

        let mut removed = chain(5);
        removed.remove(1);
        assert_eq!(
            verify_chain(removed, ChainHead::default()).map_err(|e| e.seq()),
            Err(3)
        );

        let mut reordered = chain(5);
        reordered.swap(1, 3);
        assert_eq!(
            verify_chain(reordered, ChainHead::default()).map_err(|e| e.seq()),
            Err(4)
        );

        let mut inserted = chain(5);
        let mut forged_head = ChainHead {
            seq: 1,
            hash: inserted[0].hash,
        };
        inserted.insert(1, forged_head.append(record(42)));
        assert!(verify_chain(inserted, ChainHead::default()).is_err());

        // Renumbering and re-linking without the hashes still fails.
        let mut relinked = chain(3);
        relinked[1].body = record(7);
        relinked[2].prev_hash = relinked[1].hash;
        assert_eq!(
            verify_chain(relinked, ChainHead::default()),
            Err(VerifyError::Hash { seq: 2 })
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Flip any bit of any byte of any entry (body, hash, prev hash or
        /// seq): verification fails.
        #[test]
        fn any_flipped_byte_is_detected(n in 1u64..8, pick in any::<prop::sample::Index>(), bit in 0u8..8, field in 0u8..4) {
            let mut entries = chain(n);
            let victim = pick.index(entries.len());
            let e = &mut entries[victim];
            match field {
                0 => { let i = pick.index(e.body.len()); e.body[i] ^= 1 << bit; }
                1 => { let i = pick.index(32); e.hash[i] ^= 1 << bit; }
                2 => { let i = pick.index(32); e.prev_hash[i] ^= 1 << bit; }
                _ => { e.seq ^= 1 << bit; }
            }
            prop_assert!(verify_chain(entries, ChainHead::default()).is_err());
        }
    }
}
