//! The authenticated state map: a sparse Merkle tree over 256-bit keys (SHA-256 of the
//! logical key) with membership and non-membership proofs of O(log N) hashes.
//!
//! The shape is canonical, a function of the key set alone, so every node computes the same
//! root: a subtree holding no key hashes to `EMPTY`, one key to its leaf hash wherever it
//! sits, two or more to `node(left, right)` split on the next key bit. Leaf and node hashes are
//! domain-separated as in RFC 6962 (`0x00 || key || value_hash`, `0x01 || left || right`); the
//! empty hash is 32 zero bytes, which no SHA-256 output is known to equal.

use super::merkle::{Hash, node_hash};
use serde::{Deserialize, Serialize};

/// The hash of an empty subtree.
pub const EMPTY: Hash = Hash::new([0; 32]);

/// A key of the state map: SHA-256 of a namespaced logical key.
pub type StateKey = Hash;

/// The state key of `name` in `namespace` (e.g. `("registry", "hospital:st-marys")`).
pub fn state_key(namespace: &str, name: &str) -> StateKey {
    let mut input = Vec::with_capacity(namespace.len() + name.len() + 1);
    input.extend_from_slice(namespace.as_bytes());
    input.push(0);
    input.extend_from_slice(name.as_bytes());
    Hash::sha256(&input)
}

/// The hash committing to a value stored in the map.
pub fn value_hash(value: &[u8]) -> Hash {
    Hash::sha256(value)
}

/// The hash of a leaf: `SHA-256(0x00 || key || value_hash)`.
pub fn leaf_hash(key: &StateKey, value_hash: &Hash) -> Hash {
    let mut input = [0u8; 65];
    input[1..33].copy_from_slice(key);
    input[33..].copy_from_slice(value_hash);
    Hash::sha256(&input)
}

/// The root reached from `hash` at depth `siblings.len()` up the path of `path`'s bits, one
/// sibling per level (the shared last step of membership and bucket proofs).
fn climb(mut hash: Hash, siblings: &[Hash], path: &StateKey) -> Hash {
    for (d, sibling) in siblings.iter().enumerate().rev() {
        hash = if bit(path, d) {
            node_hash(sibling, &hash)
        } else {
            node_hash(&hash, sibling)
        };
    }
    hash
}

fn bit(key: &StateKey, depth: usize) -> bool {
    key[depth / 8] & (0x80 >> (depth % 8)) != 0
}

#[derive(Debug, Clone)]
enum Node {
    Empty,
    Leaf {
        key: StateKey,
        value_hash: Hash,
    },
    Internal {
        hash: Hash,
        /// Shared between copies of the tree: a copy is O(1), an insert copies one path.
        children: std::sync::Arc<[Node; 2]>,
    },
}

impl Node {
    fn hash(&self) -> Hash {
        match self {
            Node::Empty => EMPTY,
            Node::Leaf { key, value_hash } => leaf_hash(key, value_hash),
            Node::Internal { hash, .. } => *hash,
        }
    }

    fn internal(children: [Node; 2]) -> Node {
        let hash = node_hash(&children[0].hash(), &children[1].hash());
        Node::Internal {
            hash,
            children: std::sync::Arc::new(children),
        }
    }

    /// Two leaves below `depth`: internal nodes down to where their keys first differ.
    fn split(depth: usize, a: Node, a_key: &StateKey, b: Node, b_key: &StateKey) -> Node {
        let (bit_a, bit_b) = (bit(a_key, depth), bit(b_key, depth));
        if bit_a == bit_b {
            let inner = Self::split(depth + 1, a, a_key, b, b_key);
            let children = if bit_a {
                [Node::Empty, inner]
            } else {
                [inner, Node::Empty]
            };
            Node::internal(children)
        } else if bit_a {
            Node::internal([b, a])
        } else {
            Node::internal([a, b])
        }
    }

    fn insert(self, depth: usize, key: &StateKey, vh: Hash) -> Node {
        match self {
            Node::Empty => Node::Leaf {
                key: *key,
                value_hash: vh,
            },
            Node::Leaf { key: existing, .. } if existing == *key => Node::Leaf {
                key: *key,
                value_hash: vh,
            },
            leaf @ Node::Leaf { .. } => {
                let Node::Leaf { key: existing, .. } = leaf else {
                    unreachable!()
                };
                Self::split(
                    depth,
                    leaf,
                    &existing,
                    Node::Leaf {
                        key: *key,
                        value_hash: vh,
                    },
                    key,
                )
            }
            Node::Internal { children, .. } => {
                let [left, right] = std::sync::Arc::unwrap_or_clone(children);
                if bit(key, depth) {
                    Node::internal([left, right.insert(depth + 1, key, vh)])
                } else {
                    Node::internal([left.insert(depth + 1, key, vh), right])
                }
            }
        }
    }

    /// Removes `key`; an internal node left with one leaf and one empty child collapses to the
    /// leaf, keeping the shape canonical.
    fn remove(self, depth: usize, key: &StateKey) -> Node {
        match self {
            Node::Leaf { key: existing, .. } if existing == *key => Node::Empty,
            Node::Internal { children, .. } => {
                let [left, right] = std::sync::Arc::unwrap_or_clone(children);
                let (left, right) = if bit(key, depth) {
                    (left, right.remove(depth + 1, key))
                } else {
                    (left.remove(depth + 1, key), right)
                };
                match (left, right) {
                    (Node::Empty, Node::Empty) => Node::Empty,
                    (Node::Empty, leaf @ Node::Leaf { .. })
                    | (leaf @ Node::Leaf { .. }, Node::Empty) => leaf,
                    (left, right) => Node::internal([left, right]),
                }
            }
            other => other,
        }
    }
}

/// The map: value hashes by key, as a canonical sparse Merkle tree. Values themselves are
/// stored by the caller; the tree commits to their hashes.
#[derive(Debug, Clone)]
pub struct StateTree {
    root: Node,
    len: usize,
}

impl Default for StateTree {
    fn default() -> Self {
        Self {
            root: Node::Empty,
            len: 0,
        }
    }
}

/// What a proof says is at a key's position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", from = "TerminalRepr")]
pub enum Terminal {
    /// Nothing: the key is absent.
    Empty,
    /// A leaf: the key itself (membership) or another key with the same prefix (absence).
    Leaf {
        /// The leaf's key.
        key: StateKey,
        /// The hash of the leaf's value.
        value_hash: Hash,
    },
}

/// How a [`Terminal`] is read: as its serialized form, but `empty` as a struct variant, so
/// that unknown members are refused there too (serde lets a unit variant of an internally
/// tagged enum ignore them).
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum TerminalRepr {
    Empty {},
    Leaf { key: StateKey, value_hash: Hash },
}

impl From<TerminalRepr> for Terminal {
    fn from(repr: TerminalRepr) -> Self {
        match repr {
            TerminalRepr::Empty {} => Terminal::Empty,
            TerminalRepr::Leaf { key, value_hash } => Terminal::Leaf { key, value_hash },
        }
    }
}

/// A membership or non-membership proof: siblings from the root down, then the terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateProof {
    /// The hashes of the siblings along the key's path, from the root down (at most 256).
    #[serde(deserialize_with = "crate::hash::at_most_256::deserialize")]
    pub siblings: Vec<Hash>,
    /// What the path ends in.
    pub terminal: Terminal,
}

/// Why a state proof does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateProofError {
    /// The proof leads to another root than the state root.
    #[error("state proof does not lead to the state root")]
    RootMismatch,
    /// The proof's leaf does not share the key's path down to its depth.
    #[error("state proof's leaf is not on the key's path")]
    WrongPath,
    /// The proof has more than 256 siblings.
    #[error("state proof is deeper than 256 levels")]
    TooDeep,
}

impl StateTree {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// The map's root hash ([`EMPTY`] when the map is empty).
    pub fn root(&self) -> Hash {
        self.root.hash()
    }

    /// The number of keys in the map.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the map holds no key.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value hash at `key`, if any.
    pub fn get(&self, key: &StateKey) -> Option<Hash> {
        let mut node = &self.root;
        let mut depth = 0;
        loop {
            match node {
                Node::Empty => return None,
                Node::Leaf { key: k, value_hash } => return (k == key).then_some(*value_hash),
                Node::Internal { children, .. } => {
                    node = &children[bit(key, depth) as usize];
                    depth += 1;
                }
            }
        }
    }

    /// Sets the value hash at `key`, adding the key or replacing its value hash.
    pub fn insert(&mut self, key: StateKey, value_hash: Hash) {
        if self.get(&key).is_none() {
            self.len += 1;
        }
        let root = std::mem::replace(&mut self.root, Node::Empty);
        self.root = root.insert(0, &key, value_hash);
    }

    /// Removes `key`; returns whether it was there.
    pub fn remove(&mut self, key: &StateKey) -> bool {
        if self.get(key).is_none() {
            return false;
        }
        let root = std::mem::replace(&mut self.root, Node::Empty);
        self.root = root.remove(0, key);
        self.len -= 1;
        true
    }

    /// Proof of what is (or is not) at `key`.
    pub fn prove(&self, key: &StateKey) -> StateProof {
        let mut siblings = Vec::new();
        let mut node = &self.root;
        let mut depth = 0;
        loop {
            match node {
                Node::Empty => {
                    return StateProof {
                        siblings,
                        terminal: Terminal::Empty,
                    };
                }
                Node::Leaf { key, value_hash } => {
                    return StateProof {
                        siblings,
                        terminal: Terminal::Leaf {
                            key: *key,
                            value_hash: *value_hash,
                        },
                    };
                }
                Node::Internal { children, .. } => {
                    let side = bit(key, depth) as usize;
                    siblings.push(children[1 - side].hash());
                    node = &children[side];
                    depth += 1;
                }
            }
        }
    }
}

impl StateProof {
    /// Checks the proof against `root` for `key`; returns the value hash at `key`, or `None`
    /// if the proof shows the key is absent.
    pub fn verify(&self, root: &Hash, key: &StateKey) -> Result<Option<Hash>, StateProofError> {
        let depth = self.siblings.len();
        if depth > 256 {
            return Err(StateProofError::TooDeep);
        }
        let (hash, found) = match &self.terminal {
            Terminal::Empty => (EMPTY, None),
            Terminal::Leaf {
                key: leaf_key,
                value_hash,
            } => {
                // A leaf at this depth must share the key's first `depth` bits, or it is not
                // where the key would be.
                if (0..depth).any(|d| bit(leaf_key, d) != bit(key, d)) {
                    return Err(StateProofError::WrongPath);
                }
                (
                    leaf_hash(leaf_key, value_hash),
                    (leaf_key == key).then_some(*value_hash),
                )
            }
        };
        if &climb(hash, &self.siblings, key) != root {
            return Err(StateProofError::RootMismatch);
        }
        Ok(found)
    }

    /// Bytes of the proof on the wire (32 per sibling, plus the terminal).
    pub fn encoded_len(&self) -> usize {
        32 * self.siblings.len()
            + if matches!(self.terminal, Terminal::Empty) {
                1
            } else {
                65
            }
    }
}

/// The canonical hash of the subtree at `depth` holding exactly `entries` (keys that share
/// their first `depth` bits): what an honest tree has there, by the definition above.
pub fn subtree_hash(entries: &[(StateKey, Hash)], depth: usize) -> Hash {
    match entries {
        [] => EMPTY,
        [(key, value_hash)] => leaf_hash(key, value_hash),
        _ if depth >= 256 => EMPTY, // distinct keys differ above 256 bits; never reached
        _ => {
            let split = entries.partition_point(|(key, _)| !bit(key, depth));
            let (left, right) = entries.split_at(split);
            node_hash(
                &subtree_hash(left, depth + 1),
                &subtree_hash(right, depth + 1),
            )
        }
    }
}

/// Whether `key` starts with the first `bits` bits of `prefix`.
pub fn has_prefix(key: &StateKey, prefix: &StateKey, bits: usize) -> bool {
    (0..bits.min(256)).all(|d| bit(key, d) == bit(prefix, d))
}

/// A proof that a list of entries is every entry of a tree whose key starts with a prefix
/// (a bucket): the siblings along the prefix's path from the root down, and, where the path
/// ends above the prefix's depth in an empty subtree or a single leaf, that terminal. The
/// verifier rebuilds the bucket's subtree from the entries, so a node can neither add nor
/// withhold an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixProof {
    /// The hashes of the siblings along the prefix's path, from the root down (at most 256).
    #[serde(deserialize_with = "crate::hash::at_most_256::deserialize")]
    pub siblings: Vec<Hash>,
    /// Where the path ends above the prefix's depth: what is there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal: Option<Terminal>,
}

/// Why a bucket's entries and proof do not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PrefixProofError {
    /// The prefix is longer than a key.
    #[error("a prefix has at most 256 bits")]
    TooLong,
    /// An entry's key does not start with the prefix, or two entries have one key.
    #[error("an entry is outside the bucket, or listed twice")]
    StrayEntry,
    /// The proof's shape does not fit the prefix (too many siblings, a terminal where the path
    /// reaches the prefix, or none where it stops above it).
    #[error("the bucket proof does not fit the prefix")]
    Shape,
    /// The entries and proof lead to another root: an entry was added, withheld or altered.
    #[error("the bucket's entries and proof do not lead to the root")]
    RootMismatch,
}

impl PrefixProof {
    /// Checks that `entries` (sorted by key, or in any order) are every entry under the
    /// first `bits` bits of `prefix` in the tree with root `root`.
    pub fn verify(
        &self,
        root: &Hash,
        prefix: &StateKey,
        bits: usize,
        entries: &[(StateKey, Hash)],
    ) -> Result<(), PrefixProofError> {
        if bits > 256 {
            return Err(PrefixProofError::TooLong);
        }
        let mut sorted = entries.to_vec();
        sorted.sort_by_key(|(key, _)| *key);
        if sorted.windows(2).any(|w| w[0].0 == w[1].0)
            || sorted.iter().any(|(key, _)| !has_prefix(key, prefix, bits))
        {
            return Err(PrefixProofError::StrayEntry);
        }
        let depth = self.siblings.len();
        let hash = match (&self.terminal, depth.cmp(&bits)) {
            (None, std::cmp::Ordering::Equal) => subtree_hash(&sorted, bits),
            (Some(Terminal::Empty), std::cmp::Ordering::Less) if sorted.is_empty() => EMPTY,
            (Some(Terminal::Leaf { key, value_hash }), std::cmp::Ordering::Less)
                if has_prefix(key, prefix, depth) =>
            {
                // The one key below this depth: in the bucket, it must be the one entry;
                // elsewhere, the bucket is empty.
                let expected: &[(StateKey, Hash)] = if has_prefix(key, prefix, bits) {
                    &[(*key, *value_hash)]
                } else {
                    &[]
                };
                if sorted != expected {
                    return Err(PrefixProofError::RootMismatch);
                }
                leaf_hash(key, value_hash)
            }
            (Some(Terminal::Empty), std::cmp::Ordering::Less) => {
                return Err(PrefixProofError::RootMismatch);
            }
            _ => return Err(PrefixProofError::Shape),
        };
        if &climb(hash, &self.siblings, prefix) != root {
            return Err(PrefixProofError::RootMismatch);
        }
        Ok(())
    }

    /// Bytes of the proof on the wire (32 per sibling, plus the terminal).
    pub fn encoded_len(&self) -> usize {
        32 * self.siblings.len()
            + match self.terminal {
                None => 0,
                Some(Terminal::Empty) => 1,
                Some(Terminal::Leaf { .. }) => 65,
            }
    }
}

impl StateTree {
    /// The proof for the bucket of keys starting with the first `bits` bits of `prefix` (the
    /// caller lists the bucket's entries, from its own index of the keys).
    pub fn prove_prefix(&self, prefix: &StateKey, bits: usize) -> PrefixProof {
        let bits = bits.min(256);
        let mut siblings = Vec::new();
        let mut node = &self.root;
        loop {
            let depth = siblings.len();
            if depth == bits {
                return PrefixProof {
                    siblings,
                    terminal: None,
                };
            }
            match node {
                Node::Internal { children, .. } => {
                    let side = bit(prefix, depth) as usize;
                    siblings.push(children[1 - side].hash());
                    node = &children[side];
                }
                Node::Empty => {
                    return PrefixProof {
                        siblings,
                        terminal: Some(Terminal::Empty),
                    };
                }
                Node::Leaf { key, value_hash } => {
                    return PrefixProof {
                        siblings,
                        terminal: Some(Terminal::Leaf {
                            key: *key,
                            value_hash: *value_hash,
                        }),
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// The canonical root, straight from the definition, for cross-checking the tree.
    fn reference_root(entries: &[(StateKey, Hash)], depth: usize) -> Hash {
        match entries {
            [] => EMPTY,
            [(k, v)] => leaf_hash(k, v),
            _ => {
                let (right, left): (Vec<_>, Vec<_>) =
                    entries.iter().partition(|(k, _)| bit(k, depth));
                node_hash(
                    &reference_root(&left, depth + 1),
                    &reference_root(&right, depth + 1),
                )
            }
        }
    }

    fn key(i: u32) -> StateKey {
        state_key("test", &i.to_string())
    }

    /// The bucket of `prefix`/`bits` in a tree of `entries`: its proof and its entries.
    fn bucket(
        tree: &StateTree,
        all: &BTreeMap<StateKey, Hash>,
        prefix: &StateKey,
        bits: usize,
    ) -> (PrefixProof, Vec<(StateKey, Hash)>) {
        let entries = all
            .iter()
            .filter(|(k, _)| has_prefix(k, prefix, bits))
            .map(|(k, v)| (*k, *v))
            .collect();
        (tree.prove_prefix(prefix, bits), entries)
    }

    #[test]
    fn buckets_of_an_empty_tree_and_of_one_key_prove_what_they_hold() {
        let empty = StateTree::new();
        let proof = empty.prove_prefix(&key(1), 4);
        assert_eq!(proof.verify(&EMPTY, &key(1), 4, &[]), Ok(()));
        let v = value_hash(b"v");
        assert_eq!(
            proof.verify(&EMPTY, &key(1), 4, &[(key(1), v)]),
            Err(PrefixProofError::RootMismatch)
        );
        let mut one = StateTree::new();
        one.insert(key(1), v);
        // The one leaf sits at the root: its own bucket holds it, any other bucket nothing.
        let own = one.prove_prefix(&key(1), 8);
        assert_eq!(own.verify(&one.root(), &key(1), 8, &[(key(1), v)]), Ok(()));
        assert_eq!(
            own.verify(&one.root(), &key(1), 8, &[]),
            Err(PrefixProofError::RootMismatch)
        );
        let mut other = key(1);
        other[0] ^= 0x80;
        let elsewhere = one.prove_prefix(&other, 8);
        assert_eq!(elsewhere.verify(&one.root(), &other, 8, &[]), Ok(()));
        // All of it (0 bits): the whole tree.
        let all = one.prove_prefix(&key(9), 0);
        assert_eq!(all.verify(&one.root(), &key(9), 0, &[(key(1), v)]), Ok(()));
    }

    #[test]
    fn bucket_proofs_of_a_shape_that_does_not_fit_are_refused() {
        let mut tree = StateTree::new();
        for i in 0..64 {
            tree.insert(key(i), value_hash(&i.to_be_bytes()));
        }
        let prefix = key(3);
        let mut proof = tree.prove_prefix(&prefix, 3);
        assert_eq!(proof.siblings.len(), 3);
        let entries: Vec<_> = (0..64)
            .map(|i| (key(i), value_hash(&i.to_be_bytes())))
            .filter(|(k, _)| has_prefix(k, &prefix, 3))
            .collect();
        assert_eq!(proof.verify(&tree.root(), &prefix, 3, &entries), Ok(()));
        assert_eq!(
            proof.verify(&tree.root(), &prefix, 257, &entries),
            Err(PrefixProofError::TooLong)
        );
        // Proven for 3 bits, read as 2 or 4.
        assert_eq!(
            proof.verify(&tree.root(), &prefix, 2, &entries),
            Err(PrefixProofError::Shape)
        );
        assert!(proof.verify(&tree.root(), &prefix, 4, &entries).is_err());
        // An entry listed twice, or one of another bucket.
        let mut twice = entries.clone();
        twice.push(entries[0]);
        assert_eq!(
            proof.verify(&tree.root(), &prefix, 3, &twice),
            Err(PrefixProofError::StrayEntry)
        );
        proof.terminal = Some(Terminal::Empty);
        assert_eq!(
            proof.verify(&tree.root(), &prefix, 3, &entries),
            Err(PrefixProofError::Shape)
        );
        let wire = serde_json::to_string(&tree.prove_prefix(&prefix, 3)).unwrap();
        assert_eq!(
            serde_json::from_str::<PrefixProof>(&wire).unwrap(),
            tree.prove_prefix(&prefix, 3)
        );
        assert!(serde_json::from_str::<PrefixProof>(r#"{"siblings":[],"extra":1}"#).is_err());
    }

    #[test]
    fn hex_is_lowercase_two_digits_per_byte_and_roundtrips() {
        let all: Vec<u8> = (0..=255).collect();
        let expected: String = all.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(crate::hash::to_hex(&all), expected);
        assert_eq!(crate::hash::to_hex(&[]), "");
        for chunk in all.chunks(32) {
            let hash = Hash::new(chunk.try_into().unwrap());
            assert_eq!(Hash::from_hex(&hash.to_hex()), Some(hash));
        }
    }

    #[test]
    fn empty_tree_proves_absence() {
        let tree = StateTree::new();
        assert_eq!(tree.root(), EMPTY);
        assert_eq!(tree.prove(&key(1)).verify(&EMPTY, &key(1)), Ok(None));
    }

    #[test]
    fn proofs_of_presence_and_absence_verify_and_cannot_be_repurposed() {
        let mut tree = StateTree::new();
        for i in 0..500 {
            tree.insert(key(i), value_hash(&i.to_be_bytes()));
        }
        let root = tree.root();
        for i in 0..600 {
            let proof = tree.prove(&key(i));
            let found = proof.verify(&root, &key(i)).unwrap();
            assert_eq!(found, (i < 500).then(|| value_hash(&i.to_be_bytes())));
            // The same proof says nothing true about another key, or under another root.
            let other = key(i + 10_000);
            assert!(
                proof.verify(&root, &other).is_err()
                    || proof.verify(&root, &other) == Ok(None) && tree.get(&other).is_none()
            );
            assert!(proof.verify(&Hash::new([1; 32]), &key(i)).is_err());
        }
        let mut forged = tree.prove(&key(3));
        if let Terminal::Leaf { value_hash, .. } = &mut forged.terminal {
            value_hash[0] ^= 1;
        }
        assert_eq!(
            forged.verify(&root, &key(3)),
            Err(StateProofError::RootMismatch)
        );
    }

    #[test]
    fn a_leaf_off_the_path_is_refused() {
        let mut tree = StateTree::new();
        tree.insert(key(1), Hash::new([1; 32]));
        tree.insert(key(2), Hash::new([2; 32]));
        let proof = tree.prove(&key(1));
        let mut moved = proof.clone();
        moved.terminal = Terminal::Leaf {
            key: key(2),
            value_hash: Hash::new([2; 32]),
        };
        assert!(moved.verify(&tree.root(), &key(1)).is_err());
    }

    #[test]
    fn proofs_are_logarithmic() {
        let mut tree = StateTree::new();
        for i in 0..100_000u32 {
            tree.insert(key(i), Hash::new([0; 32]));
        }
        let longest = (0..1000)
            .map(|i| tree.prove(&key(i * 97)).siblings.len())
            .max()
            .unwrap();
        assert!(
            longest <= 2 * 17 + 8,
            "longest proof {longest} siblings for 10^5 keys"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Any sequence of inserts and removes gives the root of the definition, and the
        /// root depends only on the final contents, not on the order of operations.
        #[test]
        fn tree_matches_the_definition(ops in proptest::collection::vec((0u32..64, any::<bool>(), any::<u8>()), 0..200)) {
            let mut tree = StateTree::new();
            let mut model = BTreeMap::new();
            for (k, insert, v) in ops {
                if insert {
                    tree.insert(key(k), Hash::new([v; 32]));
                    model.insert(key(k), Hash::new([v; 32]));
                } else {
                    prop_assert_eq!(tree.remove(&key(k)), model.remove(&key(k)).is_some());
                }
            }
            let entries: Vec<_> = model.iter().map(|(k, v)| (*k, *v)).collect();
            prop_assert_eq!(tree.root(), reference_root(&entries, 0));
            prop_assert_eq!(tree.len(), model.len());
            let mut rebuilt = StateTree::new();
            for (k, v) in entries.iter().rev() {
                rebuilt.insert(*k, *v);
            }
            prop_assert_eq!(rebuilt.root(), tree.root());
            for k in 0..64 {
                prop_assert_eq!(tree.prove(&key(k)).verify(&tree.root(), &key(k)), Ok(model.get(&key(k)).copied()));
            }
        }
    }

    proptest! {
        /// Whatever a node sends as a bucket proof and entries, checking it never panics.
        #[test]
        fn any_bucket_proof_is_checked_without_panicking(
            siblings in proptest::collection::vec(any::<[u8; 32]>().prop_map(Hash::new), 0..12),
            leaf in proptest::option::of((any::<[u8; 32]>(), any::<[u8; 32]>())),
            empty in any::<bool>(),
            bits in 0usize..300,
            prefix in any::<[u8; 32]>(),
            entries in proptest::collection::vec((any::<[u8; 32]>(), any::<[u8; 32]>()), 0..6),
        ) {
            let terminal = match (leaf, empty) {
                (Some((k, v)), _) => Some(Terminal::Leaf { key: Hash::new(k), value_hash: Hash::new(v) }),
                (None, true) => Some(Terminal::Empty),
                (None, false) => None,
            };
            let proof = PrefixProof { siblings, terminal };
            let entries: Vec<_> = entries.into_iter().map(|(k, v)| (Hash::new(k), Hash::new(v))).collect();
            let _ = proof.verify(&Hash::new([7; 32]), &Hash::new(prefix), bits, &entries);
        }

        /// Every bucket of every tree verifies with exactly its entries; withholding one,
        /// adding one of the bucket's prefix that is not in the tree, or altering a value is
        /// caught.
        #[test]
        fn buckets_are_complete_and_exact(
            ids in proptest::collection::btree_set(0u32..2000, 0..80),
            probe in 0u32..4000,
            bits in 0usize..10,
            extra in 2000u32..4000,
        ) {
            let mut tree = StateTree::new();
            let mut all = BTreeMap::new();
            for i in &ids {
                let v = value_hash(&i.to_be_bytes());
                tree.insert(key(*i), v);
                all.insert(key(*i), v);
            }
            let prefix = key(probe);
            let (proof, entries) = bucket(&tree, &all, &prefix, bits);
            let root = tree.root();
            prop_assert_eq!(proof.verify(&root, &prefix, bits, &entries), Ok(()));
            prop_assert!(proof.encoded_len() <= 32 * bits + 65);
            if let Some((_, rest)) = entries.split_first() {
                prop_assert!(proof.verify(&root, &prefix, bits, rest).is_err());
                let mut altered = entries.clone();
                altered[0].1 = value_hash(b"altered");
                prop_assert!(proof.verify(&root, &prefix, bits, &altered).is_err());
            }
            let newcomer = key(extra);
            if has_prefix(&newcomer, &prefix, bits) {
                let mut more = entries.clone();
                more.push((newcomer, value_hash(b"new")));
                prop_assert!(proof.verify(&root, &prefix, bits, &more).is_err());
            }
        }
    }
}
