//! Governance (DESIGN section 3): who may be an institution, decided by the consortium
//! itself, with no single key able to admit or expel.
//!
//! - The **council** ([`Council`]): the consortium members allowed to approve governance
//!   actions (IDs and ES256 keys: at genesis, the validators' consensus keys) and the
//!   threshold `t` of approvals an action needs. Genesis names the first council
//!   ([`Genesis::governance`](super::block::Genesis), by default every validator with
//!   `t = floor(2n/3) + 1`); the state keeps the current one at `governance/council`; a
//!   [`GovAction::SetCouncil`] approved by `t` members of the current council replaces it.
//! - A **proposal** ([`Proposal`]) is the canonical payload members approve: the chain ID, a
//!   proposal ID (a nonce the state remembers once used, at `governance/used/<id>`), an
//!   expiry (Unix seconds, checked against the block time), and the action. An
//!   [`Approval`] is a member's ES256 signature over [`Proposal::signing_input`]:
//!   `"emrshare/v1/governance" || 0 || JSON(proposal)`, where the JSON is the serialization
//!   of the typed proposal (fixed field order, no whitespace, JWKs with public members only),
//!   so every member signs, and the state checks, the same bytes, without JWS headers.
//! - A `Govern` transaction carries one proposal and its approvals. The state refuses it
//!   unless at least `t` approvals are valid, each by a distinct council member; an approval
//!   by a non-member, a duplicate, or an invalid signature refuses the whole transaction, as
//!   do an expired proposal, a proposal of another chain, and a proposal ID used before.
//! - Who sends it: an admission is sent by the admitted party itself, signed with the key
//!   being admitted (proof of possession; its first transaction); every other action by a
//!   council member, with its council key.

use super::block::Validator;
use super::tx::Role;
use crate::b64;
use crate::keys::{Jwk, PartyId, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// The domain tag of a member's approval.
pub const GOVERNANCE_DOMAIN: &[u8] = b"emrshare/v1/governance";
/// The most members a council may have (bounds a governance transaction's size).
pub const MAX_COUNCIL_MEMBERS: usize = 64;
/// The longest a proposal may stay approvable: its expiry at most this far after the
/// block that applies it.
pub const MAX_PROPOSAL_LIFETIME_S: u64 = 90 * 24 * 3600;
/// Longest proposal ID.
pub const MAX_PROPOSAL_ID_LEN: usize = 64;

/// One council member: its ID and the key its approvals verify under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CouncilMember {
    /// The member's ID (at genesis, a validator's).
    pub id: PartyId,
    /// The public ES256 key its approvals verify under.
    pub signing_jwk: Jwk,
}

/// The consortium members who govern the registry, and how many must approve an action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Council {
    /// The members, each ID once.
    pub members: Vec<CouncilMember>,
    /// How many distinct members must approve an action (`t`).
    pub threshold: usize,
}

/// Why a council is refused ([`Council::check`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CouncilError {
    /// No members, or more than [`MAX_COUNCIL_MEMBERS`].
    #[error("a council has 1 to {MAX_COUNCIL_MEMBERS} members")]
    Size,
    /// A threshold of at most half of the members, or above their number.
    #[error("the threshold must be more than half of the members and at most all of them")]
    Threshold,
    /// A member (the ID given) listed twice.
    #[error("member {0} appears twice")]
    Duplicate(PartyId),
    /// A member (the ID given) whose key is not a public ES256 JWK.
    #[error("member {0} has an invalid key")]
    Key(PartyId),
}

/// The default threshold for `n` members: more than two thirds, `floor(2n/3) + 1`.
pub fn default_threshold(n: usize) -> usize {
    2 * n / 3 + 1
}

impl Council {
    /// Every validator of genesis, with its consensus key, and the default threshold.
    pub fn of_validators(validators: &[Validator]) -> Self {
        Self {
            members: validators
                .iter()
                .map(|v| CouncilMember {
                    id: v.id.clone(),
                    signing_jwk: v.signing_jwk.clone(),
                })
                .collect(),
            threshold: default_threshold(validators.len()),
        }
    }

    /// A council must have 1 to [`MAX_COUNCIL_MEMBERS`] distinct members with valid keys,
    /// and a threshold above half of them (no two disjoint quorums) and at most all.
    pub fn check(&self) -> Result<(), CouncilError> {
        let n = self.members.len();
        if n == 0 || n > MAX_COUNCIL_MEMBERS {
            return Err(CouncilError::Size);
        }
        if self.threshold * 2 <= n || self.threshold > n {
            return Err(CouncilError::Threshold);
        }
        let mut seen = std::collections::BTreeSet::new();
        for m in &self.members {
            if !seen.insert(&m.id) {
                return Err(CouncilError::Duplicate(m.id.clone()));
            }
            if m.signing_jwk.has_private_members()
                || VerifyingKey::from_jwk(&m.signing_jwk).is_err()
            {
                return Err(CouncilError::Key(m.id.clone()));
            }
        }
        Ok(())
    }

    /// The member with ID `id`, if it is one.
    pub fn member(&self, id: &PartyId) -> Option<&CouncilMember> {
        self.members.iter().find(|m| &m.id == id)
    }
}

/// A registry entry's status. `Expelled` (by governance or, for a doctor, its hospital) and
/// `Revoked` (by the party itself) are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Admitted (or registered) and in good standing.
    Active,
    /// Suspended by governance or its hospital; may be reinstated.
    Suspended,
    /// Expelled by governance or, for a doctor, its hospital; final.
    Expelled,
    /// Ended by the party itself; final.
    Revoked,
}

impl Status {
    /// Whether no status may follow this one (expelled or revoked).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Expelled | Self::Revoked)
    }
}

/// What a governance proposal does.
// An admission holds three keys inline: a wire type, parsed once per transaction, matched
// by value in the state machine; boxing would only add indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum GovAction {
    /// Admits an institution (hospital, insurer, researcher, node operator) with its keys
    /// for `[valid_from, valid_until)`; a hospital may publish its voucher key (RFC 9474,
    /// see [`crate::voucher`]), with which patients register.
    Admit {
        /// The admitted party's ID (it sends the admission).
        id: PartyId,
        /// An institutional role: not a patient, not a doctor.
        role: Role,
        /// The public ES256 key of the admitted party.
        signing_jwk: Jwk,
        /// The public RSA-OAEP-256 key of the admitted party.
        encryption_jwk: Jwk,
        /// Start of validity, Unix seconds (inclusive).
        valid_from: u64,
        /// End of validity, Unix seconds (exclusive).
        valid_until: u64,
        /// For a hospital: its public voucher key ([`crate::voucher::VoucherKey`] as a JWK).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        voucher_key: Option<Jwk>,
    },
    /// Suspends (`suspended`), reinstates (`active`) or expels (`expelled`) an institution
    /// or a doctor, from the block that commits it.
    SetStatus {
        /// The institution or doctor.
        id: PartyId,
        /// Its new status.
        status: Status,
    },
    /// Replaces the council (members and threshold).
    SetCouncil {
        /// The new council (checked with [`Council::check`]).
        council: Council,
    },
}

/// The canonical payload council members approve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proposal {
    /// The chain the proposal is for (a proposal of another chain is refused).
    pub chain_id: String,
    /// A nonce naming this proposal: 1 to 64 characters of `A-Z a-z 0-9 . _ -`; the chain
    /// refuses an ID used before.
    pub proposal_id: String,
    /// Unix seconds after which the proposal can no longer be applied.
    pub expires_at: u64,
    /// What the proposal does.
    pub action: GovAction,
}

/// A council member's approval of a proposal: ES256 over [`Proposal::signing_input`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// The approving council member.
    pub member: PartyId,
    /// ES256 `r || s`, base64url.
    pub signature: String,
}

impl Proposal {
    /// A proposal with a fresh random ID.
    pub fn new(chain_id: &str, expires_at: u64, action: GovAction) -> Self {
        Self {
            chain_id: chain_id.into(),
            proposal_id: b64::encode(crate::hazmat::random_array::<16>()),
            expires_at,
            action,
        }
    }

    /// `"emrshare/v1/governance" || 0 || JSON(self)`: what members sign.
    pub fn signing_input(&self) -> Vec<u8> {
        let mut input = GOVERNANCE_DOMAIN.to_vec();
        input.push(0);
        input.extend_from_slice(&serde_json::to_vec(self).expect("proposals serialize"));
        input
    }

    /// A member's approval.
    pub fn approve(&self, member: &PartyId, key: &SigningKey) -> Approval {
        Approval {
            member: member.clone(),
            signature: b64::encode(key.sign(&self.signing_input())),
        }
    }

    /// Whether the proposal ID is 1 to [`MAX_PROPOSAL_ID_LEN`] characters of `A-Z a-z 0-9 . _ -`.
    pub fn id_is_well_formed(&self) -> bool {
        (1..=MAX_PROPOSAL_ID_LEN).contains(&self.proposal_id.len())
            && self
                .proposal_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    }
}

impl Approval {
    /// Whether this is a valid signature of `proposal` by `key` (low-S, as every signature
    /// the ledger takes).
    pub fn verifies(&self, proposal: &Proposal, key: &VerifyingKey) -> bool {
        let Ok(signature) = b64::decode(&self.signature) else {
            return false;
        };
        crate::hazmat::es256_is_low_s(&signature)
            && key.verify(&proposal.signing_input(), &signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validators(n: usize) -> Vec<Validator> {
        (0..n)
            .map(|i| Validator {
                id: PartyId::new(format!("node:{i}")).unwrap(),
                signing_jwk: SigningKey::generate().verifying_key().to_jwk(None),
                credit: 100,
            })
            .collect()
    }

    #[test]
    fn default_threshold_is_more_than_two_thirds() {
        for (n, t) in [
            (1, 1),
            (2, 2),
            (3, 3),
            (4, 3),
            (5, 4),
            (6, 5),
            (7, 5),
            (10, 7),
        ] {
            assert_eq!(default_threshold(n), t, "n = {n}");
            assert!(3 * t > 2 * n);
            Council::of_validators(&validators(n)).check().unwrap();
        }
    }

    #[test]
    fn councils_are_checked() {
        let mut c = Council::of_validators(&validators(4));
        c.threshold = 2;
        assert_eq!(c.check(), Err(CouncilError::Threshold));
        c.threshold = 5;
        assert_eq!(c.check(), Err(CouncilError::Threshold));
        c.threshold = 3;
        c.members[1].id = c.members[0].id.clone();
        assert!(matches!(c.check(), Err(CouncilError::Duplicate(_))));
        let empty = Council {
            members: vec![],
            threshold: 1,
        };
        assert_eq!(empty.check(), Err(CouncilError::Size));
        let mut bad_key = Council::of_validators(&validators(1));
        bad_key.members[0].signing_jwk.x = Some("AAAA".into());
        assert!(matches!(bad_key.check(), Err(CouncilError::Key(_))));
    }

    #[test]
    fn approvals_bind_the_whole_proposal() {
        let key = SigningKey::generate();
        let member = PartyId::new("node:0").unwrap();
        let p = Proposal::new(
            "c",
            10,
            GovAction::SetStatus {
                id: PartyId::new("insurer:a").unwrap(),
                status: Status::Expelled,
            },
        );
        let a = p.approve(&member, &key);
        assert!(a.verifies(&p, key.verifying_key()));
        assert!(!a.verifies(&p, SigningKey::generate().verifying_key()));
        for changed in [
            Proposal {
                chain_id: "d".into(),
                ..p.clone()
            },
            Proposal {
                expires_at: 11,
                ..p.clone()
            },
            Proposal {
                proposal_id: "other".into(),
                ..p.clone()
            },
            Proposal {
                action: GovAction::SetStatus {
                    id: PartyId::new("insurer:a").unwrap(),
                    status: Status::Suspended,
                },
                ..p.clone()
            },
        ] {
            assert!(!a.verifies(&changed, key.verifying_key()));
        }
        assert!(p.id_is_well_formed());
        assert!(
            !Proposal {
                proposal_id: "a/b".into(),
                ..p
            }
            .id_is_well_formed()
        );
    }
}
