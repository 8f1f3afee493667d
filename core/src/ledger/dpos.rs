//! The rules of the improved DPoS (DESIGN section 7) that every node applies identically:
//! credit scores, the ranking of the consortium members into proposers (RPN) and auditors
//! (ATN), and the credit effects of a block. Tendermint decides the blocks; this is the policy
//! it runs under: who is in the validator set, with what power, and who proposes.
//!
//! A block decided in round `r` means the proposers of rounds 0 to `r - 1` at its height did
//! not get a proposal decided in time: each of them, named once, loses
//! [`MISSED_ROUND_PENALTY`]; the block's proposer gains [`PROPOSAL_REWARD`] up to its initial
//! credit. Equivocation evidence costs [`EQUIVOCATION_PENALTY`]. Each block names the
//! voters whose precommits certified the block before it (its proposer shows the
//! certificate, which the other validators check); a voter missing from
//! [`ABSENCE_WINDOW`] certificates in a row loses [`ABSENCE_PENALTY`]. A cycle is as many heights as
//! genesis has proposers. At a cycle's first block the ranking is recomputed from the credits
//! in the state after that block ([`next_set`]): members below [`ELIGIBLE_CREDIT`] drop out of
//! both roles and the standby members with the most credit fill the places. The header of
//! that block names the set of the next block, so the set of every height is fixed by the
//! chain, never by the clock.

use super::block::{Validator, ValidatorSet};
use crate::keys::{Jwk, PartyId};
use serde::{Deserialize, Serialize};

/// Credit a proposer loses, once per block, when a round it proposed in at that height did
/// not decide.
pub const MISSED_ROUND_PENALTY: i64 = 5;
/// Credit the proposer of a block gains, up to its initial credit.
pub const PROPOSAL_REWARD: i64 = 1;
/// Credit a member loses for proven equivocation (a Misbehaviour transaction).
pub const EQUIVOCATION_PENALTY: i64 = 60;
/// Members with less credit are neither proposers nor auditors from the next cycle on.
pub const ELIGIBLE_CREDIT: i64 = 50;
/// Consecutive certificates a voter may be missing from before it pays
/// [`ABSENCE_PENALTY`] (and the count starts again).
pub const ABSENCE_WINDOW: u32 = 10;
/// Credit a voter loses for every [`ABSENCE_WINDOW`] consecutive blocks whose certificate
/// lacks its precommit.
pub const ABSENCE_PENALTY: i64 = 5;

/// A consortium member as the state records it: its consensus key and credit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// The member's ID.
    pub id: PartyId,
    /// The member's consensus key (ES256, public).
    pub signing_jwk: Jwk,
    /// The member's current credit score.
    pub credit: i64,
    /// The genesis credit: the ceiling of rewards.
    pub initial_credit: i64,
    /// Certificates in a row, up to the last block, that lacked its precommit while it was a
    /// voter (see [`ABSENCE_WINDOW`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub missed_commits: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Member {
    /// The member as genesis lists it, its credit there also its initial credit.
    pub fn from_genesis(v: &Validator) -> Self {
        Self {
            id: v.id.clone(),
            signing_jwk: v.signing_jwk.clone(),
            credit: v.credit,
            initial_credit: v.credit,
            missed_commits: 0,
        }
    }
}

/// The cycle a height belongs to (heights 1 to `cycle` are cycle 0).
pub fn cycle_of(height: u64, cycle: usize) -> u64 {
    height.saturating_sub(1) / cycle.max(1) as u64
}

/// Members sorted by credit, highest first, ties in genesis order.
fn by_credit<'a>(members: impl Iterator<Item = &'a Member>) -> Vec<&'a Member> {
    let mut sorted: Vec<&Member> = members.collect();
    sorted.sort_by_key(|m| std::cmp::Reverse(m.credit));
    sorted
}

/// The ranking at a cycle end. Roles are sticky, so slot-level noise in credit does not move
/// members between roles: a member keeps its role while its credit stays at or above
/// [`ELIGIBLE_CREDIT`]; a member below it drops out to standby; vacancies go to the eligible
/// standby members with the most credit, auditors first (they certify). With too few eligible
/// members the proposers shrink (at least one), then the auditors; with fewer than two the
/// current set stays, so the chain goes on. `proposers` and `auditors` are the genesis sizes.
pub fn next_set(
    current: &ValidatorSet,
    members: &[Member],
    proposers: usize,
    auditors: usize,
) -> ValidatorSet {
    let eligible = |id: &PartyId| {
        members
            .iter()
            .any(|m| &m.id == id && m.credit >= ELIGIBLE_CREDIT)
    };
    let member = |id: &PartyId| members.iter().find(|m| &m.id == id);
    let mut kept_proposers: Vec<&Member> = current
        .proposer_ids()
        .filter(|id| eligible(id))
        .filter_map(member)
        .collect();
    let mut kept_auditors: Vec<&Member> = current
        .auditors()
        .iter()
        .filter(|v| eligible(&v.id))
        .filter_map(|v| member(&v.id))
        .collect();
    if kept_proposers.len() + kept_auditors.len() < 2
        && members
            .iter()
            .filter(|m| m.credit >= ELIGIBLE_CREDIT)
            .count()
            < 2
    {
        return current.clone();
    }
    let in_role =
        |m: &Member, p: &[&Member], a: &[&Member]| p.iter().chain(a).any(|k| k.id == m.id);
    let mut standby: Vec<&Member> =
        by_credit(members.iter().filter(|m| {
            m.credit >= ELIGIBLE_CREDIT && !in_role(m, &kept_proposers, &kept_auditors)
        }));
    standby.reverse(); // pop() takes the most credit first
    while kept_auditors.len() < auditors {
        if let Some(m) = standby.pop() {
            kept_auditors.push(m);
        } else if kept_proposers.len() > 1 {
            kept_auditors.push(kept_proposers.pop().expect("more than one"));
        } else {
            break;
        }
    }
    while kept_proposers.len() < proposers {
        match standby.pop() {
            Some(m) => kept_proposers.push(m),
            None => break,
        }
    }
    if kept_proposers.is_empty() && kept_auditors.len() > 1 {
        kept_proposers.push(kept_auditors.remove(0));
    }
    let (p, a) = (kept_proposers.len(), kept_auditors.len());
    let placed: Vec<&Member> = kept_proposers.into_iter().chain(kept_auditors).collect();
    let rest = by_credit(
        members
            .iter()
            .filter(|m| !placed.iter().any(|k| k.id == m.id)),
    );
    let set = ValidatorSet {
        validators: placed
            .into_iter()
            .chain(rest)
            .map(|m| Validator {
                id: m.id.clone(),
                signing_jwk: m.signing_jwk.clone(),
                credit: m.credit,
            })
            .collect(),
        proposers: p,
        auditors: a,
    };
    if set.same_roles(current) {
        current.clone()
    } else {
        set
    }
}

/// The proposers of the rounds before `round` at `height` (those rounds did not decide),
/// each named once. The set is the one the chain fixed for the height.
pub fn missed_proposers(height: u64, round: u32, set: &ValidatorSet) -> Vec<PartyId> {
    let Ok(voters) = set.consensus_set().verified() else {
        return Vec::new();
    };
    let mut missed: Vec<PartyId> = Vec::new();
    // One turn of the proposers names each of them; more rounds add nothing.
    let first = round.saturating_sub(u32::try_from(set.proposers).unwrap_or(u32::MAX));
    for r in first..round {
        let owner = voters.proposer(height, r);
        if !missed.contains(owner) {
            missed.push(owner.clone());
        }
    }
    missed
}

/// Whether the block at `height` is the first of a cycle: its state decides the ranking of
/// the next cycle.
pub fn starts_cycle(height: u64, cycle: usize) -> bool {
    height <= 1 || cycle_of(height, cycle) > cycle_of(height - 1, cycle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;

    fn members(credits: &[i64]) -> Vec<Member> {
        credits
            .iter()
            .enumerate()
            .map(|(i, &credit)| Member {
                id: PartyId::new(format!("node:{i}")).unwrap(),
                signing_jwk: SigningKey::generate().verifying_key().to_jwk(None),
                credit,
                initial_credit: 100,
                missed_commits: 0,
            })
            .collect()
    }

    fn ids(set: &ValidatorSet) -> Vec<String> {
        set.validators.iter().map(|v| v.id.to_string()).collect()
    }

    fn genesis(n: usize, proposers: usize, auditors: usize) -> (Vec<Member>, ValidatorSet) {
        let m = members(&vec![100; n]);
        let set = ValidatorSet {
            validators: m
                .iter()
                .map(|m| Validator {
                    id: m.id.clone(),
                    signing_jwk: m.signing_jwk.clone(),
                    credit: m.credit,
                })
                .collect(),
            proposers,
            auditors,
        };
        (m, set)
    }

    #[test]
    fn small_credit_changes_keep_every_role_and_the_set_itself() {
        let (mut m, set) = genesis(5, 3, 2);
        m[0].credit = 95; // a missed slot
        m[4].credit = 51;
        assert_eq!(next_set(&set, &m, 3, 2), set);
    }

    #[test]
    fn a_member_below_the_threshold_drops_out_and_standby_fills_in() {
        let (mut m, set) = genesis(6, 3, 2); // node:5 is standby
        m[1].credit = 40;
        let next = next_set(&set, &m, 3, 2);
        assert_eq!(
            ids(&next),
            ["node:0", "node:2", "node:5", "node:3", "node:4", "node:1"]
        );
        assert_eq!((next.proposers, next.auditors), (3, 2));
        // An auditor dropping out: the standby with the most credit audits.
        let (mut m, set) = genesis(7, 3, 2);
        m[3].credit = 10;
        m[5].credit = 80;
        m[6].credit = 90;
        let next = next_set(&set, &m, 3, 2);
        assert_eq!(
            ids(&next)[..5],
            ["node:0", "node:1", "node:2", "node:4", "node:6"]
        );
        assert_eq!(ids(&next)[5..], ["node:5", "node:3"]);
    }

    #[test]
    fn with_too_few_members_the_auditors_are_kept_and_proposers_shrink() {
        let (mut m, set) = genesis(5, 3, 2);
        m[3].credit = 40; // an auditor; no standby
        let next = next_set(&set, &m, 3, 2);
        assert_eq!(
            ids(&next),
            ["node:0", "node:1", "node:4", "node:2", "node:3"]
        );
        assert_eq!((next.proposers, next.auditors), (2, 2));
        let (mut m, set) = genesis(5, 3, 2);
        m[0].credit = 35; // a proposer
        let next = next_set(&set, &m, 3, 2);
        assert_eq!(
            ids(&next),
            ["node:1", "node:2", "node:3", "node:4", "node:0"]
        );
        assert_eq!((next.proposers, next.auditors), (2, 2));
        assert!(next.proposer_ids().all(|p| p.as_str() != "node:0"));
        // Fewer than two eligible: the current set stays.
        let (mut m, set) = genesis(3, 1, 1);
        m[0].credit = 1;
        m[1].credit = 2;
        assert_eq!(next_set(&set, &m, 1, 1), set);
    }

    #[test]
    fn next_set_is_deterministic() {
        let (mut m, set) = genesis(6, 3, 2);
        m[2].credit = 20;
        m[4].credit = 30;
        let a = next_set(&set, &m, 3, 2);
        assert_eq!(a, next_set(&set, &m, 3, 2));
        a.check().unwrap();
        // Applying it again changes nothing.
        assert_eq!(next_set(&a, &m, 3, 2), a);
    }

    #[test]
    fn rounds_lost_name_each_proposer_once() {
        let (_, set) = genesis(5, 3, 2);
        assert!(missed_proposers(4, 0, &set).is_empty());
        // Height 4: round r is node:(4 + r) % 3's turn.
        let missed = missed_proposers(4, 2, &set);
        assert_eq!(missed.len(), 2); // rounds 0 and 1: node:1, node:2
        assert_eq!(missed[0].as_str(), "node:1");
        assert_eq!(missed[1].as_str(), "node:2");
        assert_eq!(missed_proposers(4, 1_000_000, &set).len(), 3);
    }

    #[test]
    fn cycles_start_at_the_first_block_of_each() {
        // Cycles of 3 heights: 1-3, 4-6, 7-9.
        assert!(starts_cycle(1, 3));
        assert!(!starts_cycle(2, 3));
        assert!(!starts_cycle(3, 3));
        assert!(starts_cycle(4, 3));
        assert!(starts_cycle(7, 3));
        assert!(!starts_cycle(8, 3));
    }
}
