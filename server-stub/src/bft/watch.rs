//! The equivocation watch: every vote and proposal that gossip brings (as the network codec
//! decodes it) is compared with what the same validator signed before for the same step of
//! a recent height. Two different messages, both signed by a validator of that height, are
//! [`Evidence`]: the watch hands it to the node, which commits it on chain as a Misbehaviour
//! transaction that anyone can check (and that costs the offender its credit).
//!
//! Malachite 0.5 keeps the equivocations it sees to itself, so the watch sees the messages
//! where they enter: in the codec, before the engine. A message is remembered only once its
//! signature verifies against the height's set, so a peer cannot plant a forgery to make an
//! honest validator's real message look like a second one. Memory is bounded: at most
//! [`MAX_REMEMBERED`] messages per height, [`HEIGHTS_KEPT`] heights. The watch also drops a
//! second signature of a vote that already passed (see [`Verdict::Again`]).

use super::context::Signature;
use emrshare_core::b64;
use emrshare_core::keys::PartyId;
use emrshare_core::ledger::bft::{
    ConsensusProposal, ConsensusVote, Evidence, Signed, VerifiedSet, VoteKind,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// Messages remembered per height at most (validators x rounds x steps in honest runs).
pub const MAX_REMEMBERED: usize = 16_384;

/// What the codec does with a vote once the watch has seen it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Hand it to the engine (conflicting votes too: the engine ignores the second).
    Pass,
    /// The same vote as one that passed, under a second valid signature (ECDSA signs with a
    /// fresh nonce, so a validator running twice, or a malicious one, signs one vote twice).
    /// Malachite 0.5 would count both in a commit certificate and stop on its own assertion
    /// that certificates have no duplicate: the codec drops it.
    Again,
}

/// Heights the watch compares messages of: the current one and the ones before it (a
/// validator that lags, or that signs late, equivocates at a height the others have left).
pub const HEIGHTS_KEPT: u64 = 4;

/// Watches one node's incoming consensus messages for equivocation.
pub struct EquivocationWatch {
    chain_id: Arc<str>,
    heights: Mutex<BTreeMap<u64, Seen>>,
    found: tokio::sync::mpsc::Sender<Evidence>,
}

/// What the validators of one height signed, as far as this node saw it.
struct Seen {
    set: VerifiedSet,
    votes: HashMap<(u32, VoteKind, PartyId), Signed<ConsensusVote>>,
    proposals: HashMap<(u32, PartyId), Signed<ConsensusProposal>>,
    /// Offenders already reported at this height (one piece of evidence each is enough).
    reported: HashSet<PartyId>,
}

impl Seen {
    fn new(set: VerifiedSet) -> Self {
        Self {
            set,
            votes: HashMap::new(),
            proposals: HashMap::new(),
            reported: HashSet::new(),
        }
    }

    fn remembered(&self) -> usize {
        self.votes.len() + self.proposals.len()
    }
}

impl EquivocationWatch {
    /// A watch for `chain_id` whose evidence goes to `found` (dropped when it is full: the
    /// same offender shows again at the next equivocation).
    pub fn new(chain_id: Arc<str>, found: tokio::sync::mpsc::Sender<Evidence>) -> Self {
        Self {
            chain_id,
            heights: Mutex::new(BTreeMap::new()),
            found,
        }
    }

    /// The engine started a round of `height`, whose validators are `set`: its messages are
    /// compared from now on, and those of heights [`HEIGHTS_KEPT`] or more below it no more.
    pub fn enter(&self, height: u64, set: VerifiedSet) {
        let mut heights = self.lock();
        match heights.get_mut(&height) {
            Some(seen) => seen.set = set,
            None => {
                heights.insert(height, Seen::new(set));
            }
        }
        let oldest = height.saturating_sub(HEIGHTS_KEPT - 1);
        heights.retain(|&h, _| h >= oldest && h <= height + 2);
    }

    /// A vote as gossip delivered it: [`Verdict::Again`] when the same validator's vote of
    /// the same step and value already passed under another signature.
    pub fn vote(&self, vote: &Signed<ConsensusVote>) -> Verdict {
        let Ok(signature) = b64::decode_array::<64>(&vote.signature) else {
            return Verdict::Pass;
        };
        let canonical = self.canonical(vote.message.clone(), Signature(signature), false);
        if canonical.0 == signature {
            Verdict::Pass
        } else {
            Verdict::Again
        }
    }

    /// The one signature this node lets in for `vote` (one found in a certificate, or this
    /// node's own): the first valid one it saw for that vote, or `signature` if it is the
    /// first. ECDSA signs with a fresh nonce, so two processes with one key (or a malicious
    /// validator) put one vote under several signatures; Malachite 0.5 counts each, and
    /// stops on its own assertion that a commit certificate has no duplicate.
    pub fn canonical_vote(&self, vote: ConsensusVote, signature: Signature) -> Signature {
        self.canonical(vote, signature, false)
    }

    /// The signature this node's own vote goes out with (see [`Self::canonical_vote`]): its
    /// own is trusted without a check.
    pub fn own_vote(&self, vote: ConsensusVote, signature: Signature) -> Signature {
        self.canonical(vote, signature, true)
    }

    fn canonical(&self, vote: ConsensusVote, signature: Signature, own: bool) -> Signature {
        let mut heights = self.lock();
        let Some(seen) = Self::height(&mut heights, vote.height) else {
            return signature;
        };
        let signed = Signed {
            message: vote,
            signature: b64::encode(signature.0),
        };
        let m = &signed.message;
        let valid = |seen: &Seen| own || seen.set.vote_is_signed(&self.chain_id, &signed);
        let key = (m.round, m.kind, m.validator.clone());
        match seen.votes.get(&key) {
            Some(first) if first.signature == signed.signature => signature,
            Some(first) if first.message.value == m.value => {
                if valid(seen) {
                    b64::decode_array::<64>(&first.signature).map_or(signature, Signature)
                } else {
                    signature
                }
            }
            Some(first) => {
                if !seen.reported.contains(&m.validator) && valid(seen) {
                    let evidence =
                        Evidence::DoubleVote(Box::new(first.clone()), Box::new(signed.clone()));
                    seen.reported.insert(m.validator.clone());
                    self.report(evidence);
                }
                signature
            }
            None => {
                if seen.remembered() < MAX_REMEMBERED && valid(seen) {
                    seen.votes.insert(key, signed);
                }
                signature
            }
        }
    }

    /// What was seen at `height`: a height entered, or one or two above the highest entered
    /// (votes of the next height arrive before this node enters it), under the latest set.
    fn height(heights: &mut BTreeMap<u64, Seen>, height: u64) -> Option<&mut Seen> {
        let (&top, latest) = heights.last_key_value()?;
        if height > top && height <= top + 2 {
            let set = latest.set.clone();
            heights.insert(height, Seen::new(set));
        }
        heights.get_mut(&height)
    }

    /// A proposal as gossip delivered it.
    pub fn proposal(&self, proposal: &Signed<ConsensusProposal>) {
        let m = &proposal.message;
        let mut heights = self.lock();
        let Some(seen) = Self::height(&mut heights, m.height) else {
            return;
        };
        if seen.reported.contains(&m.proposer) {
            return;
        }
        let set = &seen.set;
        let key = (m.round, m.proposer.clone());
        match seen.proposals.get(&key) {
            Some(first)
                if (first.message.value, first.message.pol_round) == (m.value, m.pol_round) => {}
            Some(first) => {
                if set.proposal_is_signed(&self.chain_id, proposal) {
                    let evidence = Evidence::DoubleProposal(
                        Box::new(first.clone()),
                        Box::new(proposal.clone()),
                    );
                    seen.reported.insert(m.proposer.clone());
                    self.report(evidence);
                }
            }
            None => {
                if seen.remembered() < MAX_REMEMBERED
                    && set.proposal_is_signed(&self.chain_id, proposal)
                {
                    seen.proposals.insert(key, proposal.clone());
                }
            }
        }
    }

    fn report(&self, evidence: Evidence) {
        tracing::warn!(
            height = evidence.height(),
            "equivocation seen: {}",
            match &evidence {
                Evidence::DoubleVote(a, _) => format!("{} voted twice", a.message.validator),
                Evidence::DoubleProposal(a, _) => format!("{} proposed twice", a.message.proposer),
            }
        );
        let _ = self.found.try_send(evidence);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Seen>> {
        self.heights.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use emrshare_core::Hash;
    use emrshare_core::keys::SigningKey;
    use emrshare_core::ledger::bft::{ConsensusSet, PoweredValidator};

    const CHAIN: &str = "watch-test";

    struct Fixture {
        keys: Vec<SigningKey>,
        watch: EquivocationWatch,
        found: tokio::sync::mpsc::Receiver<Evidence>,
        set: VerifiedSet,
    }

    fn fixture() -> Fixture {
        let keys: Vec<SigningKey> = (0..4).map(|_| SigningKey::generate()).collect();
        let set = ConsensusSet {
            proposers: 4,
            validators: keys
                .iter()
                .enumerate()
                .map(|(i, k)| PoweredValidator {
                    id: PartyId::new(format!("node:{i}")).unwrap(),
                    signing_jwk: k.verifying_key().to_jwk(None),
                    power: 1,
                })
                .collect(),
        }
        .verified()
        .unwrap();
        let (tx, found) = tokio::sync::mpsc::channel(8);
        let watch = EquivocationWatch::new(CHAIN.into(), tx);
        watch.enter(5, set.clone());
        Fixture {
            keys,
            watch,
            found,
            set,
        }
    }

    fn vote(f: &Fixture, who: usize, height: u64, value: Option<u8>) -> Signed<ConsensusVote> {
        let message = ConsensusVote {
            kind: VoteKind::Prevote,
            height,
            round: 0,
            value: value.map(|v| Hash::new([v; 32])),
            validator: PartyId::new(format!("node:{who}")).unwrap(),
        };
        let signature = b64::encode(f.keys[who].sign(&message.sign_bytes(CHAIN)));
        Signed { message, signature }
    }

    fn proposal(f: &Fixture, who: usize, value: u8) -> Signed<ConsensusProposal> {
        let message = ConsensusProposal {
            height: 5,
            round: 0,
            value: Hash::new([value; 32]),
            pol_round: None,
            proposer: PartyId::new(format!("node:{who}")).unwrap(),
        };
        let signature = b64::encode(f.keys[who].sign(&message.sign_bytes(CHAIN)));
        Signed { message, signature }
    }

    #[test]
    fn two_values_under_one_key_are_evidence_anyone_can_check() {
        let mut f = fixture();
        assert_eq!(f.watch.vote(&vote(&f, 1, 5, Some(1))), Verdict::Pass);
        assert_eq!(f.watch.vote(&vote(&f, 1, 5, None)), Verdict::Pass);
        let evidence = f.found.try_recv().unwrap();
        assert_eq!(evidence.verify(CHAIN, &f.set).unwrap().as_str(), "node:1");
        // Once per offender and height.
        f.watch.vote(&vote(&f, 1, 5, Some(2)));
        assert!(f.found.try_recv().is_err());

        f.watch.proposal(&proposal(&f, 2, 7));
        f.watch.proposal(&proposal(&f, 2, 7));
        assert!(
            f.found.try_recv().is_err(),
            "the same proposal twice is no offence"
        );
        f.watch.proposal(&proposal(&f, 2, 8));
        let evidence = f.found.try_recv().unwrap();
        assert!(matches!(evidence, Evidence::DoubleProposal(..)));
        assert_eq!(evidence.verify(CHAIN, &f.set).unwrap().as_str(), "node:2");
    }

    #[test]
    fn one_vote_under_a_second_signature_is_dropped_and_certificates_get_the_first() {
        let mut f = fixture();
        let first = vote(&f, 1, 5, Some(1));
        let second = vote(&f, 1, 5, Some(1));
        assert_ne!(
            first.signature, second.signature,
            "ECDSA signs with a fresh nonce"
        );
        assert_eq!(f.watch.vote(&first), Verdict::Pass);
        assert_eq!(
            f.watch.vote(&first),
            Verdict::Pass,
            "a re-broadcast is the same"
        );
        assert_eq!(f.watch.vote(&second), Verdict::Again);
        let raw = |s: &Signed<ConsensusVote>| Signature(b64::decode_array(&s.signature).unwrap());
        let canonical = f.watch.canonical_vote(second.message.clone(), raw(&second));
        assert_eq!(canonical.0, raw(&first).0);
        // This node's own vote: a copy signed elsewhere that passed first is reused.
        let ours = f.watch.own_vote(second.message.clone(), raw(&second));
        assert_eq!(ours.0, raw(&first).0);
        assert!(f.found.try_recv().is_err());
    }

    #[test]
    fn forgeries_unknown_signers_and_far_heights_are_not_remembered() {
        let mut f = fixture();
        // A forged first vote in node:1's name cannot make its real one look like a double.
        let mut forged = vote(&f, 1, 5, Some(9));
        forged.signature = vote(&f, 2, 5, Some(9)).signature;
        assert_eq!(f.watch.vote(&forged), Verdict::Pass);
        assert_eq!(f.watch.vote(&vote(&f, 1, 5, Some(1))), Verdict::Pass);
        assert!(f.found.try_recv().is_err());
        // A key outside the set signs nothing that counts.
        let stranger = SigningKey::generate();
        let mut outsider = vote(&f, 3, 5, Some(1));
        outsider.signature = b64::encode(stranger.sign(&outsider.message.sign_bytes(CHAIN)));
        assert_eq!(f.watch.vote(&outsider), Verdict::Pass);
        assert_eq!(f.watch.vote(&vote(&f, 3, 5, None)), Verdict::Pass);
        assert!(f.found.try_recv().is_err());
        // Heights far ahead or long left are not compared.
        for height in [1, 50] {
            f.watch.vote(&vote(&f, 0, height, Some(1)));
            assert_eq!(f.watch.vote(&vote(&f, 0, height, Some(2))), Verdict::Pass);
        }
        assert!(f.found.try_recv().is_err());
        // The next height (its votes come early) is compared, under the latest set.
        f.watch.vote(&vote(&f, 0, 6, Some(1)));
        f.watch.vote(&vote(&f, 0, 6, Some(2)));
        assert!(f.found.try_recv().is_ok());
        // Nor is anything once the watch has moved far on.
        f.watch.enter(20, f.set.clone());
        f.watch.vote(&vote(&f, 2, 5, Some(1)));
        f.watch.vote(&vote(&f, 2, 5, Some(2)));
        assert!(f.found.try_recv().is_err());
    }
}
