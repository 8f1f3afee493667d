//! k-anonymous registry lookup (DESIGN section 8; BPDST 4.2.4 steps 2-3), sans I/O.
//!
//! To learn a party's registered keys without telling the full nodes whom it is checking, a
//! patient asks for k IDs at once: the target and k-1 decoys. Decoys are registered IDs of the
//! target's role (an unregistered one would betray itself), chosen by a PRF keyed by the
//! patient's lookup key and the target: repeated lookups of one target send the identical set
//! (fresh decoys each time would let a node intersect the sets), and a growing directory
//! changes only the decoys a newcomer outranks. [`QuerySize::All`] asks for the whole
//! directory of the role.
//!
//! The same request goes to n nodes; [`verify_answers`] checks each answer under the thin
//! client's trust (certified header, freshness, a proof for every ID) and returns the
//! target's entry from the newest verified answer, with evidence against every node whose
//! answer failed. It fails closed when no answer verifies.

use crate::keys::PartyId;
use crate::keys::txkeys::MasterSecret;
use crate::ledger::block::CertifiedHeader;
use crate::ledger::tx::Role;
use crate::ledger::verify::{EntryError, LightClient, Verdict, VerifiedEntry};
use crate::ledger::wire::{LookupRequest, LookupResponse};
use aws_lc_rs::{hkdf, hmac};
use std::fmt;
use zeroize::Zeroizing;

/// The most IDs one lookup asks for (the nodes' default limit).
pub const MAX_K: usize = 1024;

/// The patient's key for choosing decoys: derived from its master secret, never sent.
pub struct LookupKey(Zeroizing<[u8; 32]>);

impl LookupKey {
    /// Derives the key from the patient's master secret (HKDF-SHA256), so the same master secret
    /// always chooses the same decoys.
    pub fn derive(master: &MasterSecret) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        hkdf::Salt::new(hkdf::HKDF_SHA256, b"emrshare/v1/lookup-prf")
            .extract(master.to_bytes().as_ref())
            .expand(&[b"decoys"], hkdf::HKDF_SHA256)
            .and_then(|okm| okm.fill(key.as_mut()))
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Self(key)
    }

    /// PRF(target, candidate): the rank of `candidate` as a decoy for `target`.
    fn rank(&self, target: &PartyId, candidate: &PartyId) -> hmac::Tag {
        let key = hmac::Key::new(hmac::HMAC_SHA256, self.0.as_ref());
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(target.as_str().as_bytes());
        ctx.update(&[0]);
        ctx.update(candidate.as_str().as_bytes());
        ctx.sign()
    }
}

impl fmt::Debug for LookupKey {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("LookupKey([redacted])")
    }
}

/// How many IDs a lookup asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuerySize {
    /// The target and k-1 decoys.
    K(usize),
    /// The whole directory of the target's role: perfect hiding when it is small.
    All,
}

/// Why a lookup cannot be planned or verified.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    /// `k` is 0, or the lookup would ask for more than [`MAX_K`] IDs.
    #[error("k must be between 1 and {MAX_K}")]
    BadK,
    /// The role's directory has fewer than k - 1 IDs besides the target.
    #[error("k = {wanted} needs {} decoys, the directory has {available}", wanted - 1)]
    NotEnoughDecoys {
        /// The k asked for (the target included).
        wanted: usize,
        /// The directory's IDs other than the target.
        available: usize,
    },
    /// No node's answer verified (a fail-closed lookup); the evidence against each node.
    #[error("no node's answer verified ({} failed)", .0.len())]
    NoVerifiedAnswer(Vec<NodeEvidence>),
    /// Two verified answers carry different certified headers at this height: a dishonest
    /// majority of the consortium signed both.
    #[error("two certified headers at height {0}: the consortium's majority is dishonest")]
    ConflictingCertificates(u64),
}

/// The IDs of one lookup, sorted, so the request is identical on every run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupPlan {
    target: PartyId,
    role: Role,
    ids: Vec<PartyId>,
}

impl LookupPlan {
    /// Plans a lookup of `target`, whose role's registered IDs are `directory`.
    pub fn new(
        key: &LookupKey,
        target: &PartyId,
        role: Role,
        directory: &[PartyId],
        size: QuerySize,
    ) -> Result<Self, LookupError> {
        let mut candidates: Vec<&PartyId> = directory.iter().filter(|id| *id != target).collect();
        candidates.sort();
        candidates.dedup();
        let decoys = match size {
            QuerySize::All => candidates.len(),
            QuerySize::K(k) if k == 0 || k > MAX_K => return Err(LookupError::BadK),
            QuerySize::K(k) if k - 1 > candidates.len() => {
                return Err(LookupError::NotEnoughDecoys {
                    wanted: k,
                    available: candidates.len(),
                });
            }
            QuerySize::K(k) => k - 1,
        };
        if decoys + 1 > MAX_K {
            return Err(LookupError::BadK);
        }
        let mut ranked: Vec<(hmac::Tag, &PartyId)> = candidates
            .into_iter()
            .map(|c| (key.rank(target, c), c))
            .collect();
        ranked.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
        let mut ids: Vec<PartyId> = ranked
            .into_iter()
            .take(decoys)
            .map(|(_, id)| id.clone())
            .chain([target.clone()])
            .collect();
        ids.sort();
        Ok(Self {
            target: target.clone(),
            role,
            ids,
        })
    }

    /// The party being looked up.
    pub fn target(&self) -> &PartyId {
        &self.target
    }

    /// Every ID asked for, target and decoys, sorted.
    pub fn ids(&self) -> &[PartyId] {
        &self.ids
    }

    /// The request to send to the nodes: every ID of the plan.
    pub fn request(&self) -> LookupRequest {
        LookupRequest::new(&self.ids)
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
    /// The answer's entries are not exactly the IDs asked for, in the order asked.
    #[error("the answer does not cover exactly the IDs asked for")]
    WrongIds,
    /// The entry of an ID asked for did not verify against its proof.
    #[error("entry of {id}: {error}")]
    Entry {
        /// The ID whose entry failed.
        id: PartyId,
        /// Why its value or proof was refused.
        error: EntryError,
    },
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
    /// Nodes whose answers did not.
    pub evidence: Vec<NodeEvidence>,
    /// Decoys that the verified answer shows unregistered or of another role: the directory
    /// they came from was wrong, and those decoys hide nothing.
    pub weak_decoys: Vec<PartyId>,
}

/// Each asked ID with its proven entry, or its proven absence.
type ProvenEntries = Vec<(PartyId, Option<VerifiedEntry>)>;

/// One node's verified answer.
struct Verified {
    node: String,
    header: CertifiedHeader,
    entries: ProvenEntries,
}

/// Clients that accepted a certified header: answers with the same header and certificate
/// as another node's are not checked signature by signature again.
type AcceptedHeaders = Vec<(CertifiedHeader, LightClient)>;

fn verify_one(
    client: &LightClient,
    accepted: &mut AcceptedHeaders,
    plan: &LookupPlan,
    answer: LookupResponse,
) -> Result<(CertifiedHeader, ProvenEntries), NodeFault> {
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
    let asked: Vec<&PartyId> = plan.ids.iter().collect();
    let answered: Vec<&PartyId> = answer.entries.iter().map(|e| &e.id).collect();
    if asked != answered {
        return Err(NodeFault::WrongIds);
    }
    let entries = answer
        .entries
        .iter()
        .map(|e| {
            client
                .verify_registry_entry(&e.id, e.value.as_deref().map(str::as_bytes), &e.proof)
                .map(|v| (e.id.clone(), v))
                .map_err(|error| NodeFault::Entry {
                    id: e.id.clone(),
                    error,
                })
        })
        .collect::<Result<_, _>>()?;
    Ok((answer.header, entries))
}

/// Verifies the answers of several nodes to `plan`'s request under `client`'s trust (which
/// this does not change: the caller may accept the outcome's header afterwards).
pub fn verify_answers(
    client: &LightClient,
    plan: &LookupPlan,
    answers: Vec<(String, Result<LookupResponse, String>)>,
) -> Result<LookupOutcome, LookupError> {
    let mut verified: Vec<Verified> = Vec::new();
    let mut evidence = Vec::new();
    let mut accepted = AcceptedHeaders::new();
    for (node, answer) in answers {
        let result = answer
            .map_err(NodeFault::NoAnswer)
            .and_then(|a| verify_one(client, &mut accepted, plan, a));
        match result {
            Ok((header, entries)) => verified.push(Verified {
                node,
                header,
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
    let target = newest
        .entries
        .iter()
        .find(|(id, _)| id == &plan.target)
        .and_then(|(_, entry)| entry.clone());
    let weak_decoys = newest
        .entries
        .iter()
        .filter(|(id, entry)| {
            id != &plan.target && entry.as_ref().is_none_or(|e| e.entry().role != plan.role)
        })
        .map(|(id, _)| id.clone())
        .collect();
    Ok(LookupOutcome {
        target,
        header: newest.header.clone(),
        oldest,
        verified_by: verified.iter().map(|v| v.node.clone()).collect(),
        evidence,
        weak_decoys,
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
        key: LookupKey,
    }

    /// Eight registered insurers (the target among them) and two hospitals.
    fn world() -> World {
        let mut chain = TestChain::new();
        let insurers: Vec<PartyId> = (0..8)
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
            key: LookupKey::derive(&MasterSecret::generate()),
        }
    }

    fn plan(w: &World, k: usize) -> LookupPlan {
        LookupPlan::new(
            &w.key,
            &w.target,
            Role::Insurer,
            &w.insurers,
            QuerySize::K(k),
        )
        .unwrap()
    }

    #[test]
    fn repeated_lookups_of_one_target_send_the_identical_request() {
        let w = world();
        let first = plan(&w, 4);
        for _ in 0..5 {
            assert_eq!(plan(&w, 4).request(), first.request());
        }
        assert_eq!(first.ids().len(), 4);
        assert!(first.ids().contains(&w.target));
        assert!(first.ids().iter().all(|id| w.insurers.contains(id)));
        // The directory's order does not matter; a newcomer changes at most one decoy.
        let mut shuffled = w.insurers.clone();
        shuffled.reverse();
        let again = LookupPlan::new(&w.key, &w.target, Role::Insurer, &shuffled, QuerySize::K(4));
        assert_eq!(again.unwrap(), first);
        let mut grown = w.insurers.clone();
        grown.push(PartyId::new("insurer:new").unwrap());
        let grown = LookupPlan::new(&w.key, &w.target, Role::Insurer, &grown, QuerySize::K(4));
        let kept = grown
            .unwrap()
            .ids()
            .iter()
            .filter(|id| first.ids().contains(id))
            .count();
        assert!(kept >= 3);
        // Another patient (another key) picks other decoys, with overwhelming likelihood.
        let other = LookupKey::derive(&MasterSecret::generate());
        let plans: Vec<_> = (0..4)
            .map(|_| LookupKey::derive(&MasterSecret::generate()))
            .chain([other])
            .map(|key| {
                LookupPlan::new(&key, &w.target, Role::Insurer, &w.insurers, QuerySize::K(3))
                    .unwrap()
            })
            .collect();
        assert!(plans.iter().any(|p| p != &plans[0]));
    }

    #[test]
    fn sizes_are_checked_and_all_takes_the_directory() {
        let w = world();
        let all = LookupPlan::new(
            &w.key,
            &w.target,
            Role::Insurer,
            &w.insurers,
            QuerySize::All,
        );
        assert_eq!(all.unwrap().ids().len(), 8);
        for (k, error) in [
            (0, LookupError::BadK),
            (MAX_K + 1, LookupError::BadK),
            (
                9,
                LookupError::NotEnoughDecoys {
                    wanted: 9,
                    available: 7,
                },
            ),
        ] {
            assert_eq!(
                LookupPlan::new(
                    &w.key,
                    &w.target,
                    Role::Insurer,
                    &w.insurers,
                    QuerySize::K(k)
                ),
                Err(error)
            );
        }
        // A target missing from the directory is still asked for.
        let stranger = PartyId::new("insurer:stranger").unwrap();
        let p = LookupPlan::new(
            &w.key,
            &stranger,
            Role::Insurer,
            &w.insurers,
            QuerySize::K(3),
        );
        assert!(p.unwrap().ids().contains(&stranger));
    }

    fn answers(
        w: &World,
        p: &LookupPlan,
        n: usize,
    ) -> Vec<(String, Result<LookupResponse, String>)> {
        (0..n)
            .map(|i| (format!("node-{i}"), Ok(w.chain.lookup(p.ids()))))
            .collect()
    }

    #[test]
    fn honest_answers_verify_and_give_the_registered_keys() {
        let w = world();
        let p = plan(&w, 4);
        let outcome = verify_answers(&w.chain.client(), &p, answers(&w, &p, 3)).unwrap();
        let entry = outcome.target.unwrap();
        assert_eq!(entry.id(), &w.target);
        assert_eq!(entry.entry().role, Role::Insurer);
        assert_eq!(outcome.verified_by.len(), 3);
        assert!(outcome.evidence.is_empty());
        assert!(outcome.weak_decoys.is_empty());
        // An unregistered target is a proven absence, not an error.
        let stranger = PartyId::new("insurer:stranger").unwrap();
        let p = LookupPlan::new(
            &w.key,
            &stranger,
            Role::Insurer,
            &w.insurers,
            QuerySize::K(3),
        )
        .unwrap();
        let outcome = verify_answers(&w.chain.client(), &p, answers(&w, &p, 1)).unwrap();
        assert!(outcome.target.is_none());
    }

    #[test]
    fn lying_nodes_are_caught_and_honest_ones_still_answer() {
        let w = world();
        let p = plan(&w, 4);
        let mut all = answers(&w, &p, 6);
        let target_index = p.ids().iter().position(|id| id == &w.target).unwrap();
        // node-0 swaps the target's signing key (a man in the middle's key).
        let entry = &mut all[0].1.as_mut().unwrap().entries[target_index];
        let mut value: serde_json::Value =
            serde_json::from_str(entry.value.as_ref().unwrap()).unwrap();
        value["keys"][0]["signing_jwk"] = serde_json::to_value(
            crate::keys::SigningKey::generate()
                .verifying_key()
                .to_jwk(None),
        )
        .unwrap();
        entry.value = Some(value.to_string());
        // node-1 withholds the target's entry.
        all[1].1.as_mut().unwrap().entries[target_index].value = None;
        // node-2 forges a certificate: one validator's precommit twice.
        let forged = &mut all[2].1.as_mut().unwrap().header.certificate;
        forged.signatures[1] = forged.signatures[0].clone();
        // node-3 drops an ID; node-4 does not answer.
        all[3].1.as_mut().unwrap().entries.pop();
        all[4].1 = Err("timed out".into());
        let outcome = verify_answers(&w.chain.client(), &p, all).unwrap();
        assert_eq!(outcome.verified_by, ["node-5"]);
        assert!(outcome.target.is_some());
        let faults: Vec<(&str, &NodeFault)> = outcome
            .evidence
            .iter()
            .map(|e| (e.node.as_str(), &e.fault))
            .collect();
        assert!(matches!(faults[0], ("node-0", NodeFault::Entry { .. })));
        assert!(matches!(faults[1], ("node-1", NodeFault::Entry { .. })));
        assert!(matches!(
            faults[2],
            ("node-2", NodeFault::Header(Verdict::Invalid(_)))
        ));
        assert!(matches!(faults[3], ("node-3", NodeFault::WrongIds)));
        assert!(matches!(faults[4], ("node-4", NodeFault::NoAnswer(_))));
    }

    #[test]
    fn stale_and_minority_headers_are_refused_and_all_liars_fail_closed() {
        let mut w = world();
        let p = plan(&w, 4);
        let old = w.chain.lookup(p.ids());
        w.chain.register(Some("insurer:late"), Role::Insurer);
        let mut client = w.chain.client();
        assert_eq!(
            client.verify_header(&w.chain.header(&[0, 1, 2])),
            Verdict::Success
        );
        let mut minority = w.chain.lookup(p.ids());
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

    #[test]
    fn decoys_that_are_not_of_the_role_are_reported() {
        let w = world();
        let mut directory = w.insurers.clone();
        directory.push(PartyId::new("hospital:0").unwrap());
        directory.push(PartyId::new("insurer:ghost").unwrap());
        let p =
            LookupPlan::new(&w.key, &w.target, Role::Insurer, &directory, QuerySize::All).unwrap();
        let outcome = verify_answers(&w.chain.client(), &p, answers(&w, &p, 1)).unwrap();
        let mut weak: Vec<&str> = outcome.weak_decoys.iter().map(|d| d.as_str()).collect();
        weak.sort();
        assert_eq!(weak, ["hospital:0", "insurer:ghost"]);
    }
}
