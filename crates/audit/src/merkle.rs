//! The Merkle tree over the audit records, as Certificate Transparency
//! defines it (RFC 6962 §2.1, RFC 9162 §2.1): a leaf is
//! `SHA-256(0x00 ‖ record)`, an inner node `SHA-256(0x01 ‖ left ‖ right)`,
//! and a tree of `n` leaves splits at the largest power of two below `n`.
//! Inclusion and consistency proofs are generated from the leaf hashes and
//! verified with the algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2. The
//! tests check the known-answer roots of RFC 6962's reference tree and
//! agreement with an independent implementation (the `ct-merkle` crate).

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// The hash of a leaf: `SHA-256(0x00 ‖ data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// The hash of an inner node: `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two strictly below `n` (for `n >= 2`).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// The root (RFC 6962 `MTH`) of a tree whose leaves hash to `leaves`.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => empty_root(),
        [one] => *one,
        _ => {
            let (left, right) = leaves.split_at(split(leaves.len()));
            node_hash(&root(left), &root(right))
        }
    }
}

/// Why a proof could not be made or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The index or sizes do not fit the tree.
    #[error("{0}")]
    OutOfRange(String),
    /// The proof does not lead to the expected root(s).
    #[error("the proof does not verify: {0}")]
    Invalid(&'static str),
}

/// The inclusion proof (RFC 6962 `PATH`) of leaf `index` in the tree of
/// `leaves`.
pub fn inclusion_proof(leaves: &[Hash], index: u64) -> Result<Vec<Hash>, ProofError> {
    let index = usize::try_from(index).unwrap_or(usize::MAX);
    if index >= leaves.len() {
        return Err(ProofError::OutOfRange(format!(
            "leaf {index} is not in a tree of {} leaves",
            leaves.len()
        )));
    }
    let mut path = Vec::new();
    path_of(leaves, index, &mut path);
    Ok(path)
}

fn path_of(leaves: &[Hash], m: usize, out: &mut Vec<Hash>) {
    if leaves.len() <= 1 {
        return;
    }
    let k = split(leaves.len());
    let (left, right) = leaves.split_at(k);
    if m < k {
        path_of(left, m, out);
        out.push(root(right));
    } else {
        path_of(right, m - k, out);
        out.push(root(left));
    }
}

/// The consistency proof (RFC 6962 `PROOF`) that the tree of the first
/// `old_size` of `leaves` is a prefix of the tree of all of them.
pub fn consistency_proof(leaves: &[Hash], old_size: u64) -> Result<Vec<Hash>, ProofError> {
    let m = usize::try_from(old_size).unwrap_or(usize::MAX);
    if m > leaves.len() {
        return Err(ProofError::OutOfRange(format!(
            "a tree of {m} leaves is not a prefix of one of {}",
            leaves.len()
        )));
    }
    let mut proof = Vec::new();
    if m > 0 {
        subproof(leaves, m, true, &mut proof);
    }
    Ok(proof)
}

fn subproof(leaves: &[Hash], m: usize, whole: bool, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !whole {
            out.push(root(leaves));
        }
        return;
    }
    let k = split(n);
    let (left, right) = leaves.split_at(k);
    if m <= k {
        subproof(left, m, whole, out);
        out.push(root(right));
    } else {
        subproof(right, m - k, false, out);
        out.push(root(left));
    }
}

/// Verifies that `leaf` is leaf `index` of the tree of `size` leaves whose
/// root is `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::OutOfRange(format!(
            "leaf {index} is not in a tree of {size} leaves"
        )));
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err(ProofError::Invalid("the proof is too long"));
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::Invalid("the proof is too short"));
    }
    if &r != root {
        return Err(ProofError::Invalid("it leads to another root"));
    }
    Ok(())
}

/// Verifies that the tree of `old_size` leaves with root `old_root` is a
/// prefix of the tree of `new_size` leaves with root `new_root` (RFC 9162
/// §2.1.4.2).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::OutOfRange(format!(
            "a tree of {old_size} leaves cannot be a prefix of one of {new_size}"
        )));
    }
    if old_size == new_size {
        return if proof.is_empty() && old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::Invalid(
                "equal sizes need equal roots and no proof",
            ))
        };
    }
    if old_size == 0 {
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(ProofError::Invalid("the empty tree needs no proof"))
        };
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return Err(ProofError::Invalid("the proof is empty"));
    };
    let (mut f, mut s) = (old_size - 1, new_size - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s == 0 {
            return Err(ProofError::Invalid("the proof is too long"));
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::Invalid("the proof is too short"));
    }
    if &fr != old_root {
        return Err(ProofError::Invalid("it does not lead to the old root"));
    }
    if &sr != new_root {
        return Err(ProofError::Invalid("it does not lead to the new root"));
    }
    Ok(())
}

/// A tree kept as its compact range: the roots of the perfect subtrees that
/// make it up, largest first (one per set bit of its size). Appending is
/// O(1) amortised and the root O(log n), so a log of any length is
/// checkpointed without holding its leaves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactTree {
    size: u64,
    /// (height, root) of each perfect subtree, heights decreasing.
    subtrees: Vec<(u32, Hash)>,
}

impl CompactTree {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Its number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut node = (0u32, leaf);
        while let Some(&(height, left)) = self.subtrees.last() {
            if height != node.0 {
                break;
            }
            self.subtrees.pop();
            node = (height + 1, node_hash(&left, &node.1));
        }
        self.subtrees.push(node);
        self.size += 1;
    }

    /// The root of the tree so far.
    pub fn root(&self) -> Hash {
        let mut it = self.subtrees.iter().rev();
        let Some(&(_, last)) = it.next() else {
            return empty_root();
        };
        it.fold(last, |acc, (_, left)| node_hash(left, &acc))
    }

    /// The subtree roots, largest first (for storing the state).
    pub fn hashes(&self) -> Vec<Hash> {
        self.subtrees.iter().map(|(_, h)| *h).collect()
    }

    /// A tree of `size` leaves from its stored subtree roots.
    pub fn from_parts(size: u64, hashes: &[Hash]) -> Option<Self> {
        let heights: Vec<u32> = (0..64u32).rev().filter(|b| size >> b & 1 == 1).collect();
        if heights.len() != hashes.len() {
            return None;
        }
        Some(Self {
            size,
            subtrees: heights.into_iter().zip(hashes.iter().copied()).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]
    use super::*;
    use proptest::prelude::*;

    /// RFC 6962's reference tree (the leaves of Certificate Transparency's
    /// merkle_tree_test) and its roots at sizes 1 to 8.
    const LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn reference() -> Vec<Hash> {
        LEAVES
            .iter()
            .map(|l| leaf_hash(&hex::decode(l).unwrap()))
            .collect()
    }

    #[test]
    fn known_answers_of_the_reference_tree() {
        let leaves = reference();
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut compact = CompactTree::new();
        for (n, expected) in ROOTS.iter().enumerate() {
            assert_eq!(
                hex::encode(root(&leaves[..=n])),
                *expected,
                "size {}",
                n + 1
            );
            compact.push(leaves[n]);
            assert_eq!(hex::encode(compact.root()), *expected);
        }
        // RFC 6962's reference inclusion path of leaf 0 in the tree of 8.
        let path = inclusion_proof(&leaves, 0).unwrap();
        assert_eq!(
            path.iter().map(hex::encode).collect::<Vec<_>>(),
            [
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ]
        );
    }

    /// `ct-merkle`, an independent RFC 6962 implementation, as the oracle.
    fn oracle(n: usize) -> ct_merkle::mem_backed_tree::MemoryBackedTree<sha2::Sha256, Vec<u8>> {
        let mut t = ct_merkle::mem_backed_tree::MemoryBackedTree::new();
        for i in 0..n {
            t.push(format!("record {i}").into_bytes());
        }
        t
    }

    fn ours(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("record {i}").as_bytes()))
            .collect()
    }

    proptest! {
        #[test]
        fn proofs_agree_with_an_independent_implementation(n in 1usize..70, i in 0usize..70, m in 0usize..70) {
            let (i, m) = (i % n, m % (n + 1));
            let leaves = ours(n);
            let tree = oracle(n);
            let r = root(&leaves);
            let theirs_root = tree.root();
            prop_assert_eq!(&r[..], &theirs_root.as_bytes()[..]);
            // Our inclusion proof is the oracle's, and both verify.
            let proof = inclusion_proof(&leaves, i as u64).unwrap();
            let theirs = tree.prove_inclusion(i);
            let flat: Vec<u8> = proof.iter().flatten().copied().collect();
            prop_assert_eq!(flat.as_slice(), theirs.as_bytes());
            prop_assert!(verify_inclusion(&leaves[i], i as u64, n as u64, &proof, &r).is_ok());
            // Consistency between the first m leaves and all n.
            let old = root(&leaves[..m]);
            let proof = consistency_proof(&leaves, m as u64).unwrap();
            prop_assert!(verify_consistency(m as u64, n as u64, &old, &r, &proof).is_ok());
            if m > 0 && m < n {
                let theirs = tree.prove_consistency(n - m);
                let flat: Vec<u8> = proof.iter().flatten().copied().collect();
                prop_assert_eq!(flat.as_slice(), theirs.as_bytes());
            }
            // The compact tree has the same root, and survives a round trip.
            let mut c = CompactTree::new();
            for l in &leaves { c.push(*l); }
            prop_assert_eq!(c.root(), r);
            let back = CompactTree::from_parts(c.size(), &c.hashes()).unwrap();
            prop_assert_eq!(back, c);
        }

        #[test]
        fn a_wrong_proof_never_verifies(n in 2usize..40, i in 0usize..40, flip in 0usize..1000) {
            let i = i % n;
            let leaves = ours(n);
            let r = root(&leaves);
            let mut proof = inclusion_proof(&leaves, i as u64).unwrap();
            let at = flip % proof.len();
            proof[at][flip % 32] ^= 1;
            prop_assert!(verify_inclusion(&leaves[i], i as u64, n as u64, &proof, &r).is_err());
            let good = inclusion_proof(&leaves, i as u64).unwrap();
            // Another leaf, another index, a cut or padded proof: refused.
            prop_assert!(verify_inclusion(&leaves[(i + 1) % n], i as u64, n as u64, &good, &r).is_err());
            prop_assert!(verify_inclusion(&leaves[i], i as u64, n as u64, &good[..good.len() - 1], &r).is_err());
            let mut long = good.clone();
            long.push(r);
            prop_assert!(verify_inclusion(&leaves[i], i as u64, n as u64, &long, &r).is_err());
            let m = 1 + flip % (n - 1);
            let old = root(&leaves[..m]);
            let mut proof = consistency_proof(&leaves, m as u64).unwrap();
            prop_assert!(verify_consistency(m as u64, n as u64, &r, &r, &proof).is_err());
            if let Some(p) = proof.first_mut() { p[0] ^= 1; }
            prop_assert!(proof.is_empty() || verify_consistency(m as u64, n as u64, &old, &r, &proof).is_err());
        }
    }

    #[test]
    fn sizes_out_of_range_are_errors() {
        let leaves = reference();
        assert!(inclusion_proof(&leaves, 8).is_err());
        assert!(consistency_proof(&leaves, 9).is_err());
        assert!(verify_inclusion(&leaves[0], 3, 3, &[], &leaves[0]).is_err());
        assert!(verify_consistency(5, 4, &leaves[0], &leaves[0], &[]).is_err());
        assert!(CompactTree::from_parts(3, &[leaves[0]]).is_none());
    }
}
