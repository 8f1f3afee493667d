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
        let (mut hash, found) = match &self.terminal {
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
        for (d, sibling) in self.siblings.iter().enumerate().rev() {
            hash = if bit(key, d) {
                node_hash(sibling, &hash)
            } else {
                node_hash(&hash, sibling)
            };
        }
        if &hash != root {
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
}
