//! Signed checkpoints of the audit log's Merkle tree, in the C2SP
//! `tlog-checkpoint` format over a C2SP `signed-note`:
//!
//! ```text
//! <origin>
//! <tree size>
//! <base64 root hash>
//! time <unix seconds>
//!
//! — <key name> <base64(key id ‖ Ed25519 signature)>
//! ```
//!
//! The signature covers the text above the blank line. The key id is the
//! first four bytes of `SHA-256(<key name> ‖ "\n" ‖ 0x01 ‖ <public key>)`
//! (0x01: Ed25519), and the verifier key is written as
//! `<key name>+<hex key id>+<base64(0x01 ‖ public key)>`. The format is
//! small enough to write here; checkpoints are refused unless every line is
//! exactly as above and a signature line of the expected key verifies.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// The signature algorithm byte of Ed25519 in signed notes.
const ED25519: u8 = 0x01;
/// The longest note accepted.
const MAX_NOTE_BYTES: usize = 16 * 1024;

/// Why a checkpoint or a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// Not a well-formed checkpoint or key.
    #[error("malformed: {0}")]
    Malformed(String),
    /// Of another log.
    #[error("it is of the log `{0}`, not this one")]
    Origin(String),
    /// No signature of the expected key verifies.
    #[error("not signed by the key `{0}`")]
    Unsigned(String),
}

fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ED25519]);
    h.update(key.as_bytes());
    let d: [u8; 32] = h.finalize().into();
    d.first_chunk::<4>().copied().unwrap_or([0; 4])
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

/// The public half: checks a checkpoint's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    id: [u8; 4],
    key: VerifyingKey,
}

impl NoteVerifier {
    /// A verifier for `name`'s Ed25519 key.
    pub fn new(name: &str, key: VerifyingKey) -> Result<Self, CheckpointError> {
        if !valid_name(name) {
            return Err(CheckpointError::Malformed(format!(
                "invalid key name `{name}`"
            )));
        }
        Ok(Self {
            name: name.to_owned(),
            id: key_id(name, &key),
            key,
        })
    }

    /// Parses `<name>+<hex key id>+<base64(0x01 ‖ key)>`.
    pub fn parse(vkey: &str) -> Result<Self, CheckpointError> {
        let bad = |why: &str| CheckpointError::Malformed(format!("verifier key: {why}"));
        let mut parts = vkey.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected <name>+<key id>+<key>"));
        };
        let bytes = B64.decode(key).map_err(|_| bad("the key is not base64"))?;
        let Some((&ED25519, raw)) = bytes.split_first() else {
            return Err(bad("not an Ed25519 key"));
        };
        let raw: [u8; 32] = raw.try_into().map_err(|_| bad("not an Ed25519 key"))?;
        let key = VerifyingKey::from_bytes(&raw).map_err(|_| bad("not an Ed25519 key"))?;
        let v = Self::new(name, key)?;
        if hex::encode(v.id) != id {
            return Err(bad("the key id does not match the key"));
        }
        Ok(v)
    }

    /// `<name>+<hex key id>+<base64(0x01 ‖ key)>`.
    pub fn to_vkey(&self) -> String {
        let mut bytes = vec![ED25519];
        bytes.extend_from_slice(self.key.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.id),
            B64.encode(bytes)
        )
    }

    /// The key's name (the log's origin).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The private half: signs checkpoints.
#[derive(Debug)]
pub struct NoteSigner {
    verifier: NoteVerifier,
    key: SigningKey,
}

impl NoteSigner {
    /// A signer named `name` (the log's origin).
    pub fn new(name: &str, key: SigningKey) -> Result<Self, CheckpointError> {
        Ok(Self {
            verifier: NoteVerifier::new(name, key.verifying_key())?,
            key,
        })
    }

    /// Its verifier.
    pub fn verifier(&self) -> &NoteVerifier {
        &self.verifier
    }

    /// The signed checkpoint of a tree of `size` leaves with `root` at `time`.
    pub fn sign(&self, size: u64, root: &Hash, time: u64) -> Checkpoint {
        let text = format!(
            "{}\n{size}\n{}\ntime {time}\n",
            self.verifier.name,
            B64.encode(root)
        );
        let signature = self.key.sign(text.as_bytes());
        let mut blob = self.verifier.id.to_vec();
        blob.extend_from_slice(&signature.to_bytes());
        let note = format!(
            "{text}\n\u{2014} {} {}\n",
            self.verifier.name,
            B64.encode(blob)
        );
        Checkpoint {
            size,
            root: *root,
            time,
            note,
        }
    }
}

/// A verified checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The tree size.
    pub size: u64,
    /// The tree's root.
    pub root: Hash,
    /// When it was signed (seconds since the epoch).
    pub time: u64,
    /// The signed note, as written.
    pub note: String,
}

/// Parses `note` and checks that `verifier` signed it.
pub fn verify_checkpoint(
    note: &str,
    verifier: &NoteVerifier,
) -> Result<Checkpoint, CheckpointError> {
    let bad = |why: &str| CheckpointError::Malformed(why.to_owned());
    if note.len() > MAX_NOTE_BYTES {
        return Err(bad("the note is too long"));
    }
    let Some((text, signatures)) = note.split_once("\n\n") else {
        return Err(bad("no blank line before the signatures"));
    };
    let text = format!("{text}\n");
    let lines: Vec<&str> = text.lines().collect();
    let [origin, size, root, time] = lines.as_slice() else {
        return Err(bad("expected four lines: origin, size, root, time"));
    };
    if *origin != verifier.name {
        return Err(CheckpointError::Origin((*origin).to_owned()));
    }
    let size_ok = !size.is_empty()
        && size.bytes().all(|b| b.is_ascii_digit())
        && (*size == "0" || !size.starts_with('0'));
    let size: u64 = size
        .parse()
        .ok()
        .filter(|_| size_ok)
        .ok_or_else(|| bad("the size is not a decimal number"))?;
    let root: Hash = B64
        .decode(root)
        .ok()
        .and_then(|r| r.try_into().ok())
        .ok_or_else(|| bad("the root is not a base64 SHA-256 hash"))?;
    let time: u64 = time
        .strip_prefix("time ")
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| bad("the fourth line is not `time <unix seconds>`"))?;
    if !signatures.ends_with('\n') {
        return Err(bad("the signatures do not end with a newline"));
    }
    let mut signed = false;
    for line in signatures.lines() {
        let Some(rest) = line.strip_prefix("\u{2014} ") else {
            return Err(bad("a signature line does not start with an em dash"));
        };
        let Some((name, blob)) = rest.split_once(' ') else {
            return Err(bad("a signature line has no signature"));
        };
        let blob = B64
            .decode(blob)
            .map_err(|_| bad("a signature is not base64"))?;
        if name != verifier.name || blob.len() != 68 || blob.get(..4) != Some(&verifier.id[..]) {
            continue; // another key's signature
        }
        let sig = blob
            .get(4..)
            .and_then(|s| ed25519_dalek::Signature::from_slice(s).ok())
            .ok_or_else(|| bad("a signature is malformed"))?;
        if verifier.key.verify(text.as_bytes(), &sig).is_ok() {
            signed = true;
        } else {
            return Err(CheckpointError::Unsigned(verifier.name.clone()));
        }
    }
    if !signed {
        return Err(CheckpointError::Unsigned(verifier.name.clone()));
    }
    Ok(Checkpoint {
        size,
        root,
        time,
        note: note.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    fn signer(seed: u8) -> NoteSigner {
        NoteSigner::new("warden.local/audit", SigningKey::from_bytes(&[seed; 32])).unwrap()
    }

    #[test]
    fn a_checkpoint_round_trips_and_its_key_too() {
        let s = signer(7);
        let cp = s.sign(42, &[9; 32], 1_795_000_000);
        assert!(
            cp.note.starts_with("warden.local/audit\n42\n"),
            "{}",
            cp.note
        );
        assert!(
            cp.note
                .contains("\ntime 1795000000\n\n\u{2014} warden.local/audit ")
        );
        assert_eq!(verify_checkpoint(&cp.note, s.verifier()).unwrap(), cp);
        let vkey = s.verifier().to_vkey();
        assert!(vkey.starts_with("warden.local/audit+"), "{vkey}");
        assert_eq!(&NoteVerifier::parse(&vkey).unwrap(), s.verifier());
    }

    #[test]
    fn tampered_or_foreign_checkpoints_are_refused() {
        let s = signer(7);
        let note = s.sign(42, &[9; 32], 1_795_000_000).note;
        let other = signer(8);
        // Signed by another key.
        let foreign = other.sign(42, &[9; 32], 1_795_000_000).note;
        assert!(matches!(
            verify_checkpoint(&foreign, s.verifier()),
            Err(CheckpointError::Unsigned(_))
        ));
        // Every edit of the signed text breaks the signature.
        for (from, to) in [("\n42\n", "\n43\n"), ("time 1795000000", "time 1795000001")] {
            let edited = note.replacen(from, to, 1);
            assert!(verify_checkpoint(&edited, s.verifier()).is_err(), "{from}");
        }
        // Malformed notes.
        for bad in [
            String::new(),
            "garbage".into(),
            note.replacen("\n42\n", "\n042\n", 1),
            note.replacen("\n42\n", "\n-1\n", 1),
            note.replacen("time ", "tme ", 1),
            note.replacen('\u{2014}', "-", 1),
            note.trim_end().to_owned(),
            note.replacen("warden.local/audit\n", "another.log\n", 1),
            "x".repeat(MAX_NOTE_BYTES + 1),
        ] {
            assert!(verify_checkpoint(&bad, s.verifier()).is_err(), "{bad:?}");
        }
        // A second, foreign signature line is ignored; ours still counts.
        let both = format!("{note}{}", foreign.rsplit_once("\n\n").unwrap().1);
        assert!(verify_checkpoint(&both, s.verifier()).is_ok());
        // Verifier keys: wrong id, wrong type, garbage.
        let vkey = s.verifier().to_vkey();
        let mut parts: Vec<&str> = vkey.split('+').collect();
        parts[1] = "00000000";
        assert!(NoteVerifier::parse(&parts.join("+")).is_err());
        assert!(NoteVerifier::parse("name+00+AAAA").is_err());
        assert!(NoteVerifier::parse("nonsense").is_err());
    }
}
