//! Verifying the whole log: the hash chain entry by entry, the Merkle tree
//! over the records, and every signed checkpoint against that tree. Fed one
//! entry at a time, so a log of any length is verified holding only the
//! tree's compact range.
//!
//! What it catches, and names: an edited, removed, inserted, duplicated or
//! reordered record (the chain, at that seq); a gap in sequence numbers; an
//! edited or forged checkpoint, or one signed by another key (the
//! checkpoint's size); a checkpoint whose root is not the tree's at its size
//! (records changed under it, the chain rewritten); and records cut off the
//! end (a checkpoint larger than the log).

use crate::chain::{ChainEntry, ChainHead, VerifyError, check_entry};
use crate::checkpoint::{Checkpoint, CheckpointError, NoteVerifier, verify_checkpoint};
use crate::merkle::{CompactTree, Hash, leaf_hash};

/// What is wrong with the log: the first problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// A record (see the chain error).
    #[error(transparent)]
    Chain(#[from] VerifyError),
    /// A checkpoint does not parse or is not signed by the log's key.
    #[error("checkpoint #{index} is refused: {error}")]
    Checkpoint {
        /// Its place among the checkpoints given.
        index: usize,
        /// Why.
        error: CheckpointError,
    },
    /// The tree's root at a checkpoint's size is another.
    #[error(
        "checkpoint at size {size} does not match the records: the records up to seq {size} were changed after it was signed"
    )]
    Root {
        /// The checkpoint's size.
        size: u64,
    },
    /// A checkpoint covers records the log does not have.
    #[error(
        "checkpoint at size {size} covers records the log does not have: it ends at seq {records} (records were removed from the end)"
    )]
    Truncated {
        /// The checkpoint's size.
        size: u64,
        /// The records there are.
        records: u64,
    },
    /// What the store keeps beside some records for its queries (their
    /// index fields, which the chain does not cover) says other than the
    /// records do: changed outside Warden. The records themselves verify.
    #[error(
        "the query fields stored beside record(s) {} differ from the records: they were changed outside Warden, and queries would misfile those records",
        list(seqs)
    )]
    Fields {
        /// The first such records, in order.
        seqs: Vec<u64>,
    },
    /// A larger checkpoint was signed before a smaller one.
    #[error(
        "checkpoint at size {size} is dated before the one at size {before}: checkpoints were reordered or forged"
    )]
    Order {
        /// The later (larger) checkpoint.
        size: u64,
        /// The earlier (smaller) one.
        before: u64,
    },
}

fn list(seqs: &[u64]) -> String {
    seqs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A verified log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogReport {
    /// Records checked.
    pub records: u64,
    /// The chain's head.
    pub head: ChainHead,
    /// The Merkle root over all records.
    pub root: Hash,
    /// Checkpoints checked.
    pub checkpoints: usize,
    /// The largest checkpoint.
    pub latest: Option<Checkpoint>,
}

/// Verifies a log fed one entry at a time.
#[derive(Debug)]
pub struct LogVerifier {
    head: ChainHead,
    tree: CompactTree,
    /// Verified checkpoints, smallest size first.
    checkpoints: Vec<Checkpoint>,
    next: usize,
}

impl LogVerifier {
    /// Checks every checkpoint's signature with `verifier` and readies the
    /// walk over the records.
    pub fn new(notes: &[String], verifier: &NoteVerifier) -> Result<Self, LogError> {
        let mut checkpoints = notes
            .iter()
            .enumerate()
            .map(|(index, note)| {
                verify_checkpoint(note, verifier)
                    .map_err(|error| LogError::Checkpoint { index, error })
            })
            .collect::<Result<Vec<_>, _>>()?;
        checkpoints.sort_by_key(|c| c.size);
        for pair in checkpoints.windows(2) {
            if let [a, b] = pair
                && b.time < a.time
            {
                return Err(LogError::Order {
                    size: b.size,
                    before: a.size,
                });
            }
        }
        let mut me = Self {
            head: ChainHead::default(),
            tree: CompactTree::new(),
            checkpoints,
            next: 0,
        };
        me.match_checkpoints()?;
        Ok(me)
    }

    /// Checks the next entry.
    pub fn push(&mut self, entry: &ChainEntry) -> Result<(), LogError> {
        check_entry(&mut self.head, entry)?;
        self.tree.push(leaf_hash(&entry.body));
        self.match_checkpoints()
    }

    /// Every checkpoint at the tree's current size must have its root.
    fn match_checkpoints(&mut self) -> Result<(), LogError> {
        while let Some(c) = self.checkpoints.get(self.next) {
            if c.size != self.tree.size() {
                break;
            }
            if c.root != self.tree.root() {
                return Err(LogError::Root { size: c.size });
            }
            self.next += 1;
        }
        Ok(())
    }

    /// The end of the log: no checkpoint may be beyond it.
    pub fn finish(self) -> Result<LogReport, LogError> {
        if let Some(c) = self.checkpoints.get(self.next) {
            return Err(LogError::Truncated {
                size: c.size,
                records: self.tree.size(),
            });
        }
        Ok(LogReport {
            records: self.tree.size(),
            head: self.head,
            root: self.tree.root(),
            checkpoints: self.checkpoints.len(),
            latest: self.checkpoints.last().cloned(),
        })
    }
}

/// Verifies `entries` (in storage order) and `notes` (checkpoints, any
/// order) signed by `verifier`.
pub fn verify_log<I>(
    entries: I,
    notes: &[String],
    verifier: &NoteVerifier,
) -> Result<LogReport, LogError>
where
    I: IntoIterator<Item = ChainEntry>,
{
    let mut v = LogVerifier::new(notes, verifier)?;
    for e in entries {
        v.push(&e)?;
    }
    v.finish()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]
    use ed25519_dalek::SigningKey;
    use proptest::prelude::*;
    use warden_core::Decision;

    use super::*;
    use crate::AuditRecord;
    use crate::checkpoint::NoteSigner;
    use crate::merkle::root;

    fn body(i: u64) -> Vec<u8> {
        let mut r = AuditRecord::request(
            format!("2026-11-23T00:00:{:02}Z", i % 60),
            "mcp".into(),
            None,
        );
        r.request_id = format!("req-{i}");
        r.decision = Decision::allow(vec![], vec![format!("reason {i}")]);
        serde_json::to_vec(&r).unwrap()
    }

    fn signer(seed: u8) -> NoteSigner {
        NoteSigner::new("test/audit", SigningKey::from_bytes(&[seed; 32])).unwrap()
    }

    /// A log of `n` records with checkpoints at `sizes`.
    fn log(n: u64, sizes: &[u64]) -> (Vec<ChainEntry>, Vec<String>) {
        let mut head = ChainHead::default();
        let entries: Vec<ChainEntry> = (1..=n).map(|i| head.append(body(i))).collect();
        let leaves: Vec<Hash> = entries.iter().map(|e| leaf_hash(&e.body)).collect();
        let s = signer(1);
        let notes = sizes
            .iter()
            .map(|&k| s.sign(k, &root(&leaves[..k as usize]), 1_000 + k).note)
            .collect();
        (entries, notes)
    }

    #[test]
    fn a_sound_log_verifies_with_its_checkpoints() {
        let (entries, notes) = log(20, &[5, 0, 20, 13]);
        let report = verify_log(entries.clone(), &notes, signer(1).verifier()).unwrap();
        assert_eq!((report.records, report.checkpoints), (20, 4));
        assert_eq!(report.latest.unwrap().size, 20);
        let leaves: Vec<Hash> = entries.iter().map(|e| leaf_hash(&e.body)).collect();
        assert_eq!(report.root, root(&leaves));
    }

    #[derive(Debug, Clone)]
    enum Edit {
        /// Change a byte of a record.
        Byte(usize, usize),
        /// Remove a record.
        Remove(usize),
        /// Swap two records.
        Swap(usize, usize),
        /// Repeat a record.
        Duplicate(usize),
        /// Cut records off the end.
        Truncate(usize),
        /// Rewrite the chain from a record on, with a changed record (an
        /// attacker who can recompute the hash chain but not sign).
        Rewrite(usize),
        /// Change a byte of a checkpoint.
        CheckpointByte(usize, usize),
        /// A checkpoint signed by another key.
        ForeignCheckpoint(usize),
        /// Renumber the records from one on (a gap).
        Gap(usize),
    }

    fn edit() -> impl Strategy<Value = Edit> {
        prop_oneof![
            (any::<usize>(), any::<usize>()).prop_map(|(i, b)| Edit::Byte(i, b)),
            any::<usize>().prop_map(Edit::Remove),
            (any::<usize>(), any::<usize>()).prop_map(|(i, j)| Edit::Swap(i, j)),
            any::<usize>().prop_map(Edit::Duplicate),
            any::<usize>().prop_map(Edit::Truncate),
            any::<usize>().prop_map(Edit::Rewrite),
            (any::<usize>(), any::<usize>()).prop_map(|(i, b)| Edit::CheckpointByte(i, b)),
            any::<usize>().prop_map(Edit::ForeignCheckpoint),
            any::<usize>().prop_map(Edit::Gap),
        ]
    }

    proptest! {
        /// Any single edit of records or checkpoints is caught. The last
        /// checkpoint covers the whole log, as the gateway's final one does.
        #[test]
        fn every_kind_of_tampering_is_caught(n in 2u64..30, e in edit()) {
            let (mut entries, mut notes) = log(n, &[n / 2, n]);
            let len = entries.len();
            match e {
                Edit::Byte(i, b) => {
                    let body = &mut entries[i % len].body;
                    let at = b % body.len();
                    body[at] = body[at].wrapping_add(1 + (b % 250) as u8);
                }
                Edit::Remove(i) => { entries.remove(i % len); }
                Edit::Swap(i, j) => {
                    let (i, j) = (i % len, j % len);
                    prop_assume!(entries[i].body != entries[j].body);
                    entries.swap(i, j);
                }
                Edit::Duplicate(i) => {
                    let e = entries[i % len].clone();
                    entries.insert(i % len, e);
                }
                Edit::Truncate(k) => { entries.truncate(k % len); }
                Edit::Rewrite(i) => {
                    let i = i % len;
                    let mut head = if i == 0 { ChainHead::default() } else {
                        ChainHead { seq: entries[i - 1].seq, hash: entries[i - 1].hash }
                    };
                    let mut rest: Vec<Vec<u8>> = entries.drain(i..).map(|e| e.body).collect();
                    rest[0] = body(10_000);
                    for b in rest { entries.push(head.append(b)); }
                }
                Edit::CheckpointByte(i, b) => {
                    let note = &mut notes[i % 2];
                    let mut bytes = note.clone().into_bytes();
                    let at = b % bytes.len();
                    bytes[at] ^= 1 << (b % 7);
                    prop_assume!(String::from_utf8(bytes.clone()).is_ok());
                    *note = String::from_utf8(bytes).unwrap();
                }
                Edit::ForeignCheckpoint(i) => {
                    let k = if i % 2 == 0 { n / 2 } else { n };
                    let leaves: Vec<Hash> = entries.iter().map(|e| leaf_hash(&e.body)).collect();
                    notes[i % 2] = signer(2).sign(k, &root(&leaves[..k as usize]), 1_000 + k).note;
                }
                Edit::Gap(i) => {
                    for e in entries.iter_mut().skip(i % len) { e.seq += 1; }
                }
            }
            prop_assert!(verify_log(entries, &notes, signer(1).verifier()).is_err());
        }
    }

    #[test]
    fn each_problem_is_named() {
        let (entries, notes) = log(10, &[4, 10]);
        let v = signer(1);
        let mut cut = entries.clone();
        cut.truncate(7);
        assert_eq!(
            verify_log(cut, &notes, v.verifier()),
            Err(LogError::Truncated {
                size: 10,
                records: 7
            })
        );
        let foreign = vec![notes[0].clone(), signer(3).sign(10, &[0; 32], 2_000).note];
        assert!(matches!(
            verify_log(entries.clone(), &foreign, v.verifier()),
            Err(LogError::Checkpoint { index: 1, .. })
        ));
        // Rewriting the chain after record 2 (valid hashes, no key) breaks
        // the checkpoint at 4.
        let mut rewritten: Vec<ChainEntry> = entries[..2].to_vec();
        let mut head = ChainHead {
            seq: 2,
            hash: entries[1].hash,
        };
        for i in 3..=10 {
            rewritten.push(head.append(body(i + 100)));
        }
        assert_eq!(
            verify_log(rewritten, &notes, v.verifier()),
            Err(LogError::Root { size: 4 })
        );
        let s = signer(1);
        let leaves: Vec<Hash> = entries.iter().map(|e| leaf_hash(&e.body)).collect();
        let late_small = vec![
            s.sign(4, &root(&leaves[..4]), 5_000).note,
            s.sign(10, &root(&leaves), 4_000).note,
        ];
        assert_eq!(
            verify_log(entries, &late_small, v.verifier()),
            Err(LogError::Order {
                size: 10,
                before: 4
            })
        );
    }
}
