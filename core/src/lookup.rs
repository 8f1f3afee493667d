//! k-anonymous registry lookup by proven buckets (DESIGN section 8; BPDST 4.2.4 steps 2-3),
//! sans I/O.
//!
//! To learn a party's registered keys without telling the full nodes whom it is checking, a
//! client asks for a whole bucket of the role's directory: every registered ID whose
//! [`directory_key`] (SHA-256 of the ID) starts with the first L bits of the target's. The
//! state commits to each role's directory tree and size ([`DirectoryHead`]); L is the longest
//! prefix whose expected bucket still holds k IDs (size / 2^L >= k), so the bucket is a uniform
//! sample of about k to 2k IDs. The client rebuilds the bucket's subtree from the entries it
//! got, so a node can neither add nor withhold one (completeness); and everyone who looks up
//! one target asks for the same bucket, so repeated lookups intersect to nothing smaller, and
//! no decoy list or key needs to be kept. [`QuerySize::All`] is L = 0: the whole directory.
//!
//! The same request goes to n nodes; [`verify_answers`] checks each answer under the thin
//! client's trust (certified header, freshness, the directory head's state proof, the bucket
//! proof, every entry) and returns the target's entry from the newest verified answer, with
//! evidence against every node whose answer failed. It fails closed when no answer verifies.

use crate::hash::Hash;
use crate::keys::PartyId;
use crate::ledger::block::CertifiedHeader;
use crate::ledger::machine::{DirectoryHead, directory_head_key, directory_key};
use crate::ledger::state::{PrefixProofError, StateKey, value_hash};
use crate::ledger::tx::Role;
use crate::ledger::verify::{EntryError, LightClient, Verdict, VerifiedEntry};
use crate::ledger::wire::BucketAnswer;

/// The largest k a lookup asks for (buckets hold about k to 2k IDs).
pub const MAX_K: usize = 1024;

/// How many IDs a lookup hides its target among.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuerySize {
    /// At least k IDs of the role (the bucket of the longest prefix expected to hold k).
    K(usize),
    /// The whole directory of the target's role: perfect hiding when it is small.
    All,
}

/// Why a lookup cannot be planned or verified.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    /// `k` is 0 or more than [`MAX_K`].
    #[error("k must be between 1 and {MAX_K}")]
    BadK,
    /// The role has fewer registered IDs than k: no bucket can hide the target among k.
    #[error("k = {wanted} needs {wanted} registered IDs of the role, it has {registered}")]
    TooFewRegistered {
        /// The k asked for (the target included).
        wanted: usize,
        /// The role's registered IDs.
        registered: u64,
    },
    /// No node's answer verified (a fail-closed lookup); the evidence against each node.
    #[error("no node's answer verified ({} failed)", .0.len())]
    NoVerifiedAnswer(Vec<NodeEvidence>),
    /// Two verified answers carry different certified headers at this height: a dishonest
    /// majority of the consortium signed both.
    #[error("two certified headers at height {0}: the consortium's majority is dishonest")]
    ConflictingCertificates(u64),
}

/// The prefix length of a lookup among `size` of a role with `registered` IDs: the largest L
/// with registered / 2^L >= k, so the target's bucket is expected to hold k to 2k IDs; 0 (the
/// whole directory) for [`QuerySize::All`].
pub fn bucket_bits(registered: u64, size: QuerySize) -> Result<usize, LookupError> {
    let k = match size {
        QuerySize::All => return Ok(0),
        QuerySize::K(k) if k == 0 || k > MAX_K => return Err(LookupError::BadK),
        QuerySize::K(k) => k as u64,
    };
    if registered < k {
        return Err(LookupError::TooFewRegistered {
            wanted: k as usize,
            registered,
        });
    }
    let mut bits = 0;
    while bits < 63 && registered >> (bits + 1) >= k {
        bits += 1;
    }
    Ok(bits)
}

/// The first `bits` bits of `key`, the rest zero: all of the target's key that leaves the
/// client.
fn masked(key: &StateKey, bits: usize) -> Hash {
    let mut out = [0u8; 32];
    for bit in 0..bits.min(256) {
        let mask = 0x80u8 >> (bit % 8);
        out[bit / 8] |= key[bit / 8] & mask;
    }
    Hash::new(out)
}

/// The prefix a bucket request's path names: a string of at most 256 `0` and `1` characters,
/// the prefix's bits in order (empty: the whole directory). Its length and the prefix, the
/// bits past it zero; `None` for any other text.
pub fn bucket_prefix(bits: &str) -> Option<(usize, Hash)> {
    if bits.len() > 256 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, c) in bits.bytes().enumerate() {
        match c {
            b'0' => {}
            b'1' => out[i / 8] |= 0x80 >> (i % 8),
            _ => return None,
        }
    }
    Some((bits.len(), Hash::new(out)))
}

/// One lookup: the target, its role, and the bucket asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupPlan {
    target: PartyId,
    role: Role,
    bits: usize,
    prefix: Hash,
}

impl LookupPlan {
    /// Plans a lookup of `target` among `size` IDs of `role`, which has `registered` IDs.
    pub fn new(
        target: &PartyId,
        role: Role,
        registered: u64,
        size: QuerySize,
    ) -> Result<Self, LookupError> {
        let bits = bucket_bits(registered, size)?;
        Ok(Self {
            target: target.clone(),
            role,
            bits,
            prefix: masked(&directory_key(target), bits),
        })
    }

    /// The party being looked up.
    pub fn target(&self) -> &PartyId {
        &self.target
    }

    /// The role it is looked up in.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The bucket's prefix length in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// The node API path of the bucket: `/v1/directory/{role}/bucket/{prefix}`, the prefix's
    /// bits as `0` and `1` characters; `/v1/directory/{role}/bucket` for the whole directory.
    pub fn path(&self) -> String {
        let bits: String = (0..self.bits)
            .map(|i| {
                if self.prefix[i / 8] & (0x80 >> (i % 8)) == 0 {
                    '0'
                } else {
                    '1'
                }
            })
            .collect();
        let role = self.role.as_str();
        if bits.is_empty() {
            format!("/v1/directory/{role}/bucket")
        } else {
            format!("/v1/directory/{role}/bucket/{bits}")
        }
    }

    /// The bucket's prefix (its first [`bits`](Self::bits) bits; the rest zero).
    pub fn prefix(&self) -> &Hash {
        &self.prefix
    }
}

/// What was wrong with one node's answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NodeFault {
    /// The node gave no usable answer (none in time, an error status, a malformed body): why.
    #[error("no answer: {0}")]
    NoAnswer(String),
    /// The answer's certified header did not verify under the client's trust.
    #[error("header refused: {0:?}")]
    Header(Verdict),
    /// The answer's body is not what the request asks for (a value of another shape).
    #[error("malformed answer: {0}")]
    Malformed(String),
    /// The role's directory head did not verify against its state proof.
    #[error("directory head: {0}")]
    Head(EntryError),
    /// The bucket's entries and proof do not verify: one was added, withheld or altered.
    #[error("bucket: {0}")]
    Bucket(PrefixProofError),
    /// An entry of the bucket is malformed, or not of the role asked.
    #[error("entry of {id}: {error}")]
    Entry {
        /// The ID whose entry failed.
        id: PartyId,
        /// Why it was refused.
        error: EntryError,
    },
}

impl NodeFault {
    /// Whether an honest node can show this fault: it gave no usable answer in time, or its
    /// answer is under a header older than one the client already trusts (it has not applied
    /// the latest block yet; a replay of an old answer looks the same). Such an answer is
    /// refused, but it is no evidence against the node.
    pub fn is_lag(&self) -> bool {
        matches!(
            self,
            NodeFault::NoAnswer(_)
                | NodeFault::Header(Verdict::Invalid(
                    crate::ledger::verify::InvalidReason::Stale { .. }
                ))
        )
    }
}

/// A node whose answer failed verification: evidence of a dishonest or broken node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeEvidence {
    /// The node's base URL.
    pub node: String,
    /// What was wrong with its answer.
    pub fault: NodeFault,
}

/// A verified lookup.
#[derive(Debug, Clone)]
pub struct LookupOutcome {
    /// The target's entry, or `None` where the proof shows it is not registered.
    pub target: Option<VerifiedEntry>,
    /// The newest verified header: the target's entry is proven under it.
    pub header: CertifiedHeader,
    /// The oldest verified header among the answers.
    pub oldest: CertifiedHeader,
    /// Nodes whose answers verified.
    pub verified_by: Vec<String>,
    /// Nodes whose answers did not verify for a reason no honest node gives: evidence.
    pub evidence: Vec<NodeEvidence>,
    /// Nodes that gave no usable answer in time, or one under a header older than one the
    /// client trusts ([`NodeFault::is_lag`]): refused, but not evidence.
    pub lagging: Vec<NodeEvidence>,
    /// The IDs of the verified bucket: what the target hid among (the target included when it
    /// is registered in the role). Fewer than k is a weak bucket, for the caller to report.
    pub bucket: Vec<PartyId>,
    /// The role's registered IDs, proven with the bucket.
    pub registered: u64,
}

/// One node's verified answer.
struct Verified {
    node: String,
    header: CertifiedHeader,
    registered: u64,
    entries: Vec<VerifiedEntry>,
}

/// Clients that accepted a certified header: answers with the same header and certificate
/// as another node's are not checked signature by signature again.
type AcceptedHeaders = Vec<(CertifiedHeader, LightClient)>;

fn verify_one(
    client: &LightClient,
    accepted: &mut AcceptedHeaders,
    plan: &LookupPlan,
    answer: BucketAnswer,
) -> Result<(CertifiedHeader, u64, Vec<VerifiedEntry>), NodeFault> {
    let client = match accepted.iter().find(|(h, _)| *h == answer.header) {
        Some((_, client)) => client.clone(),
        None => {
            let mut client = client.clone();
            match client.verify_header(&answer.header) {
                Verdict::Success => {}
                other => return Err(NodeFault::Header(other)),
            }
            accepted.push((answer.header.clone(), client.clone()));
            client
        }
    };
    let head = client
        .verify_value(
            &directory_head_key(plan.role),
            answer.head.value.as_deref().map(str::as_bytes),
            &answer.head.proof,
        )
        .map_err(NodeFault::Head)?;
    let head = DirectoryHead::from_proven(head).map_err(NodeFault::Head)?;
    let mut entries = Vec::with_capacity(answer.entries.len());
    let mut leaves = Vec::with_capacity(answer.entries.len());
    for e in &answer.entries {
        let fault = |error| NodeFault::Entry {
            id: e.id.clone(),
            error,
        };
        let entry = client
            .registry_entry_from(&e.id, e.value.as_bytes())
            .map_err(fault)?;
        if entry.entry().role != plan.role {
            return Err(fault(EntryError::Malformed));
        }
        leaves.push((directory_key(&e.id), value_hash(e.value.as_bytes())));
        entries.push(entry);
    }
    answer
        .proof
        .verify(&head.root, &plan.prefix, plan.bits, &leaves)
        .map_err(NodeFault::Bucket)?;
    Ok((answer.header, head.count, entries))
}

/// Verifies the answers of several nodes to `plan`'s request under `client`'s trust (which
/// this does not change: the caller may accept the outcome's header afterwards).
pub fn verify_answers(
    client: &LightClient,
    plan: &LookupPlan,
    answers: Vec<(String, Result<BucketAnswer, String>)>,
) -> Result<LookupOutcome, LookupError> {
    let mut verified: Vec<Verified> = Vec::new();
    let mut evidence = Vec::new();
    let mut accepted = AcceptedHeaders::new();
    for (node, answer) in answers {
        let result = answer
            .map_err(NodeFault::NoAnswer)
            .and_then(|a| verify_one(client, &mut accepted, plan, a));
        match result {
            Ok((header, registered, entries)) => verified.push(Verified {
                node,
                header,
                registered,
                entries,
            }),
            Err(fault) => evidence.push(NodeEvidence { node, fault }),
        }
    }
    // Two different certified headers at one height cannot both be honest.
    for (i, a) in verified.iter().enumerate() {
        for b in &verified[i + 1..] {
            let (x, y) = (&a.header.header, &b.header.header);
            if x.height == y.height && x.hash() != y.hash() {
                return Err(LookupError::ConflictingCertificates(x.height));
            }
        }
    }
    let Some(newest) = verified.iter().max_by_key(|v| v.header.header.height) else {
        return Err(LookupError::NoVerifiedAnswer(evidence));
    };
    let oldest = verified
        .iter()
        .min_by_key(|v| v.header.header.height)
        .map(|v| v.header.clone())
        .expect("at least one verified answer");
    // The bucket is complete: a target missing from it is proven not registered in the role.
    let target = newest
        .entries
        .iter()
        .find(|e| e.id() == &plan.target)
        .cloned();
    let (lagging, evidence) = evidence.into_iter().partition(|e| e.fault.is_lag());
    Ok(LookupOutcome {
        target,
        header: newest.header.clone(),
        oldest,
        verified_by: verified.iter().map(|v| v.node.clone()).collect(),
        evidence,
        lagging,
        bucket: newest.entries.iter().map(|e| e.id().clone()).collect(),
        registered: newest.registered,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::testkit::TestChain;

    struct World {
        chain: TestChain,
        insurers: Vec<PartyId>,
        target: PartyId,
    }

    /// Sixteen registered insurers (the target among them) and two hospitals.
    fn world() -> World {
        let mut chain = TestChain::new();
        let insurers: Vec<PartyId> = (0..16)
            .map(|i| {
                chain
                    .register(Some(&format!("insurer:{i}")), Role::Insurer)
                    .id
            })
            .collect();
        for i in 0..2 {
            chain.register(Some(&format!("hospital:{i}")), Role::Hospital);
        }
        World {
            target: insurers[3].clone(),
            insurers,
            chain,
        }
    }

    fn plan(w: &World, k: usize) -> LookupPlan {
        LookupPlan::new(&w.target, Role::Insurer, 16, QuerySize::K(k)).unwrap()
    }

    fn answers(w: &World, p: &LookupPlan, n: usize) -> Vec<(String, Result<BucketAnswer, String>)> {
        (0..n)
            .map(|i| (format!("node-{i}"), Ok(w.chain.bucket_answer(p))))
            .collect()
    }

    #[test]
    fn bucket_length_is_the_longest_prefix_expected_to_hold_k() {
        assert_eq!(bucket_bits(1000, QuerySize::K(10)), Ok(6)); // 1000/64 = 15.6 >= 10
        assert_eq!(bucket_bits(100_000, QuerySize::K(10)), Ok(13));
        assert_eq!(bucket_bits(1_000_000, QuerySize::K(10)), Ok(16));
        assert_eq!(bucket_bits(10, QuerySize::K(10)), Ok(0));
        assert_eq!(bucket_bits(19, QuerySize::K(10)), Ok(0));
        assert_eq!(bucket_bits(20, QuerySize::K(10)), Ok(1));
        assert_eq!(bucket_bits(5, QuerySize::All), Ok(0));
        assert_eq!(bucket_bits(u64::MAX, QuerySize::K(1)), Ok(63));
        assert_eq!(bucket_bits(100, QuerySize::K(0)), Err(LookupError::BadK));
        assert_eq!(
            bucket_bits(1 << 20, QuerySize::K(MAX_K + 1)),
            Err(LookupError::BadK)
        );
        assert_eq!(
            bucket_bits(9, QuerySize::K(10)),
            Err(LookupError::TooFewRegistered {
                wanted: 10,
                registered: 9
            })
        );
    }

    #[test]
    fn everyone_asks_one_bucket_for_a_target_and_sends_only_its_prefix() {
        let w = world();
        let first = plan(&w, 4);
        assert_eq!(first.bits(), 2);
        assert_eq!(plan(&w, 4), first);
        let path = first.path();
        assert!(path.starts_with("/v1/directory/insurer/bucket/"));
        let bits = path.rsplit('/').next().unwrap();
        assert_eq!(bits.len(), 2);
        // Only the prefix's bits leave the client.
        let (length, prefix) = bucket_prefix(bits).unwrap();
        assert_eq!((length, &prefix), (2, first.prefix()));
        assert_eq!(prefix[0] & 0x3f, 0);
        assert!(prefix[1..].iter().all(|&b| b == 0));
        assert_eq!(prefix[0] >> 6, directory_key(&w.target)[0] >> 6);
        // Paths name one bucket one way.
        for bad in ["2", "01a", " 1", "0b1", &"0".repeat(257)] {
            assert_eq!(bucket_prefix(bad), None, "{bad}");
        }
        assert_eq!(bucket_prefix(""), Some((0, Hash::new([0; 32]))));
        let mut expected = [0; 32];
        expected[0] = 0xab;
        expected[1] = 0xc0;
        assert_eq!(
            bucket_prefix("101010111100"),
            Some((12, Hash::new(expected)))
        );
        let all = LookupPlan::new(&w.target, Role::Insurer, 16, QuerySize::All).unwrap();
        assert_eq!(all.path(), "/v1/directory/insurer/bucket");
    }

    #[test]
    fn honest_answers_verify_and_give_the_registered_keys_among_the_bucket() {
        let w = world();
        let p = plan(&w, 4);
        let outcome = verify_answers(&w.chain.client(), &p, answers(&w, &p, 3)).unwrap();
        let entry = outcome.target.unwrap();
        assert_eq!(entry.id(), &w.target);
        assert_eq!(entry.entry().role, Role::Insurer);
        assert_eq!(outcome.verified_by.len(), 3);
        assert!(outcome.evidence.is_empty());
        assert_eq!(outcome.registered, 16);
        assert!(outcome.bucket.contains(&w.target));
        assert!(outcome.bucket.iter().all(|id| w.insurers.contains(id)));
        // k = all: the whole directory.
        let all = LookupPlan::new(&w.target, Role::Insurer, 16, QuerySize::All).unwrap();
        let outcome = verify_answers(&w.chain.client(), &all, answers(&w, &all, 1)).unwrap();
        assert_eq!(outcome.bucket.len(), 16);
        // An unregistered target (or one of another role) is a proven absence, not an error.
        for stranger in ["insurer:stranger", "hospital:0"] {
            let stranger = PartyId::new(stranger).unwrap();
            let p = LookupPlan::new(&stranger, Role::Insurer, 16, QuerySize::K(4)).unwrap();
            let outcome = verify_answers(&w.chain.client(), &p, answers(&w, &p, 1)).unwrap();
            assert!(outcome.target.is_none());
        }
    }

    #[test]
    fn lying_nodes_are_caught_and_honest_ones_still_answer() {
        let w = world();
        let p = LookupPlan::new(&w.target, Role::Insurer, 16, QuerySize::K(2)).unwrap();
        let mut all = answers(&w, &p, 7);
        let honest = w.chain.bucket_answer(&p);
        assert!(honest.entries.len() >= 2, "the target's bucket has a decoy");
        let target_index = honest
            .entries
            .iter()
            .position(|e| e.id == w.target)
            .unwrap();
        let decoy_index = (target_index + 1) % honest.entries.len();
        // node-0 swaps the target's signing key (a man in the middle's key).
        let entry = &mut all[0].1.as_mut().unwrap().entries[target_index];
        let mut value: serde_json::Value = serde_json::from_str(&entry.value).unwrap();
        value["keys"][0]["signing_jwk"] = serde_json::to_value(
            crate::keys::SigningKey::generate()
                .verifying_key()
                .to_jwk(None),
        )
        .unwrap();
        entry.value = value.to_string();
        // node-1 withholds a decoy: the target would hide among fewer.
        all[1].1.as_mut().unwrap().entries.remove(decoy_index);
        // node-2 forges a certificate: one validator's precommit twice.
        let forged = &mut all[2].1.as_mut().unwrap().header.certificate;
        forged.signatures[1] = forged.signatures[0].clone();
        // node-3 withholds the target itself, claiming it is not registered.
        all[3].1.as_mut().unwrap().entries.remove(target_index);
        // node-4 does not answer; node-5 serves another role's directory head.
        all[4].1 = Err("timed out".into());
        let other_head = w
            .chain
            .state
            .get_with_proof(&directory_head_key(Role::Hospital));
        all[5].1.as_mut().unwrap().head.proof = other_head.1;
        let outcome = verify_answers(&w.chain.client(), &p, all).unwrap();
        assert_eq!(outcome.verified_by, ["node-6"]);
        assert!(outcome.target.is_some());
        let faults: Vec<(&str, &NodeFault)> = outcome
            .evidence
            .iter()
            .map(|e| (e.node.as_str(), &e.fault))
            .collect();
        assert!(matches!(faults[0], ("node-0", NodeFault::Bucket(_))));
        assert!(matches!(faults[1], ("node-1", NodeFault::Bucket(_))));
        assert!(matches!(
            faults[2],
            ("node-2", NodeFault::Header(Verdict::Invalid(_)))
        ));
        assert!(matches!(faults[3], ("node-3", NodeFault::Bucket(_))));
        assert!(matches!(faults[4], ("node-5", NodeFault::Head(_))));
        assert_eq!(faults.len(), 5);
        // Silence is no evidence: node-4 is lagging.
        assert_eq!(outcome.lagging.len(), 1);
        assert_eq!(outcome.lagging[0].node, "node-4");
        assert!(matches!(outcome.lagging[0].fault, NodeFault::NoAnswer(_)));
    }

    #[test]
    fn entries_of_another_role_or_malformed_are_refused_even_when_proven() {
        let w = world();
        // A hospital's bucket, checked as if it were the insurers': the entries are proven
        // (under the hospitals' head) but not of the role asked.
        let hospital = PartyId::new("hospital:0").unwrap();
        let p = LookupPlan::new(&hospital, Role::Hospital, 2, QuerySize::All).unwrap();
        let mut answer = w.chain.bucket_answer(&p);
        let as_insurer = LookupPlan::new(&hospital, Role::Insurer, 16, QuerySize::All).unwrap();
        let (value, proof) = w
            .chain
            .state
            .get_with_proof(&directory_head_key(Role::Insurer));
        let result = verify_answers(
            &w.chain.client(),
            &as_insurer,
            vec![("node".into(), Ok(answer.clone()))],
        );
        assert!(matches!(result, Err(LookupError::NoVerifiedAnswer(_))));
        answer.head.proof = proof;
        answer.head.value = value.map(|v| String::from_utf8(v.to_vec()).unwrap());
        answer.entries[0].value = "{}".into();
        let Err(LookupError::NoVerifiedAnswer(evidence)) = verify_answers(
            &w.chain.client(),
            &as_insurer,
            vec![("node".into(), Ok(answer))],
        ) else {
            panic!("a malformed entry must not verify");
        };
        assert!(matches!(evidence[0].fault, NodeFault::Entry { .. }));
    }

    /// A world whose chain moved on (one more registration) after an answer was kept, and a
    /// client that has accepted the newer header: the kept answer is now stale.
    fn moved_on() -> (World, LookupPlan, BucketAnswer, LightClient) {
        let mut w = world();
        let p = plan(&w, 4);
        let old = w.chain.bucket_answer(&p);
        w.chain.register(Some("insurer:late"), Role::Insurer);
        let mut client = w.chain.client();
        assert_eq!(
            client.verify_header(&w.chain.header(&[0, 1, 2])),
            Verdict::Success
        );
        (w, p, old, client)
    }

    #[test]
    fn stale_and_minority_headers_are_refused_and_all_liars_fail_closed() {
        let (w, p, old, client) = moved_on();
        let mut minority = w.chain.bucket_answer(&p);
        minority.header = w.chain.header(&[3]);
        let result = verify_answers(
            &client,
            &p,
            vec![("stale".into(), Ok(old)), ("minority".into(), Ok(minority))],
        );
        let Err(LookupError::NoVerifiedAnswer(evidence)) = result else {
            panic!("a lookup without a verified answer must fail closed");
        };
        assert!(matches!(
            evidence[0].fault,
            NodeFault::Header(Verdict::Invalid(
                crate::ledger::verify::InvalidReason::Stale { .. }
            ))
        ));
        assert!(matches!(
            evidence[1].fault,
            NodeFault::Header(Verdict::NotEnoughTrust { .. })
        ));
        assert!(matches!(
            verify_answers(&client, &p, vec![]),
            Err(LookupError::NoVerifiedAnswer(_))
        ));
    }

    /// A node a block behind (or one that gave no answer) beside one that is up to date: its
    /// answer is refused, not believed, and listed as lagging, not as evidence; a forged
    /// answer in the same lookup is still evidence.
    #[test]
    fn a_node_behind_is_refused_but_is_no_evidence() {
        let (w, p, old, client) = moved_on();
        let mut forged = w.chain.bucket_answer(&p);
        forged.entries.pop();
        let outcome = verify_answers(
            &client,
            &p,
            vec![
                ("behind".into(), Ok(old)),
                ("silent".into(), Err("timed out".into())),
                ("forged".into(), Ok(forged)),
                ("fresh".into(), Ok(w.chain.bucket_answer(&p))),
            ],
        )
        .unwrap();
        assert_eq!(outcome.verified_by, ["fresh"]);
        let names = |list: &[NodeEvidence]| list.iter().map(|e| e.node.clone()).collect::<Vec<_>>();
        assert_eq!(names(&outcome.lagging), ["behind", "silent"]);
        assert_eq!(names(&outcome.evidence), ["forged"]);
        assert!(matches!(outcome.evidence[0].fault, NodeFault::Bucket(_)));
        assert!(!NodeFault::Malformed("x".into()).is_lag());
        assert!(!NodeFault::Header(Verdict::NotEnoughTrust { power: 1, total: 3 }).is_lag());
    }
}
