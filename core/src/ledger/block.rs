//! Blocks, the validator set, votes and commit certificates (DESIGN sections 6 and 7).
//!
//! A header commits to the previous header, the transactions (RFC 6962 root over their IDs),
//! the state root and the validator set. Audit nodes (ATN) vote by signing
//! `"emrshare/v1/vote" || chain_id || 0 || header hash` with ES256; more than half of the
//! audit nodes' votes make the commit certificate. The same certificate format can later be
//! produced by another BFT engine without touching clients.

use super::merkle::{self, Hash};
use super::state::hex32;
use super::tx::SignedTransaction;
use crate::keys::{Jwk, KeyError, PartyId, SigningKey, VerifyingKey};
use crate::{b64, hazmat};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// A block header. Its hash is SHA-256 of its JSON serialization (fixed field order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub chain_id: String,
    pub height: u64,
    pub slot: u64,
    #[serde(with = "hex32")]
    pub previous: Hash,
    /// Unix time in milliseconds.
    pub time_ms: u64,
    pub proposer: PartyId,
    #[serde(with = "hex32")]
    pub tx_root: Hash,
    #[serde(with = "hex32")]
    pub state_root: Hash,
    #[serde(with = "hex32")]
    pub validators_hash: Hash,
}

impl Header {
    pub fn hash(&self) -> Hash {
        hazmat::sha256(&serde_json::to_vec(self).expect("headers serialize"))
    }
}

/// The RFC 6962 root over the IDs of a block's transactions.
pub fn tx_root(txs: &[SignedTransaction]) -> Hash {
    let leaves: Vec<Hash> = txs.iter().map(|t| merkle::leaf_hash(&t.id())).collect();
    merkle::root(&leaves)
}

/// One consortium member with its consensus key and credit score.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Validator {
    pub id: PartyId,
    pub signing_jwk: Jwk,
    pub credit: i64,
}

/// The ranked validators of a cycle: the first `proposers` propose (RPN), the next `auditors`
/// audit and sign (ATN).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidatorSet {
    pub validators: Vec<Validator>,
    pub proposers: usize,
    pub auditors: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ValidatorSetError {
    #[error("validator set needs at least one proposer and one auditor, within its size")]
    Sizes,
    #[error("validator {0} appears twice")]
    Duplicate(PartyId),
    #[error("validator key: {0}")]
    Key(#[from] KeyError),
}

impl ValidatorSet {
    pub fn check(&self) -> Result<(), ValidatorSetError> {
        if self.proposers == 0
            || self.auditors == 0
            || self.proposers + self.auditors > self.validators.len()
        {
            return Err(ValidatorSetError::Sizes);
        }
        let mut seen = BTreeSet::new();
        for v in &self.validators {
            if !seen.insert(&v.id) {
                return Err(ValidatorSetError::Duplicate(v.id.clone()));
            }
            VerifyingKey::from_jwk(&v.signing_jwk)?;
        }
        Ok(())
    }

    pub fn hash(&self) -> Hash {
        hazmat::sha256(&serde_json::to_vec(self).expect("validator sets serialize"))
    }

    pub fn proposer_ids(&self) -> impl Iterator<Item = &PartyId> {
        self.validators.iter().take(self.proposers).map(|v| &v.id)
    }

    pub fn auditors(&self) -> &[Validator] {
        &self.validators[self.proposers..self.proposers + self.auditors]
    }

    /// Votes needed for a certificate: more than half of the auditors.
    pub fn quorum(&self) -> usize {
        self.auditors / 2 + 1
    }

    /// The proposer that owns `slot` (round-robin over the proposers).
    pub fn proposer_of(&self, slot: u64) -> &PartyId {
        &self.validators[(slot % self.proposers as u64) as usize].id
    }
}

/// The bytes an auditor signs to vote for a header.
pub fn vote_message(chain_id: &str, header_hash: &Hash) -> Vec<u8> {
    let mut message = b"emrshare/v1/vote".to_vec();
    message.extend_from_slice(chain_id.as_bytes());
    message.push(0);
    message.extend_from_slice(header_hash);
    message
}

/// An auditor's signature over a header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vote {
    pub validator: PartyId,
    /// ES256 signature, base64url.
    pub signature: String,
}

impl Vote {
    pub fn sign(validator: PartyId, key: &SigningKey, header: &Header) -> Self {
        let signature = b64::encode(key.sign(&vote_message(&header.chain_id, &header.hash())));
        Self {
            validator,
            signature,
        }
    }
}

/// More than half of the auditors' votes over one header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitCertificate {
    #[serde(with = "hex32")]
    pub header_hash: Hash,
    pub votes: Vec<Vote>,
}

/// A header with its certificate: what a thin client needs to trust a state root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertifiedHeader {
    pub header: Header,
    pub certificate: CommitCertificate,
}

/// The genesis of a consortium: the chain ID and the first validator set; the root of trust
/// of every thin client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    pub chain_id: String,
    pub validators: ValidatorSet,
    /// Slot length in milliseconds.
    pub slot_ms: u64,
    /// Unix time in milliseconds of slot 0.
    pub start_ms: u64,
}

/// A certified block as nodes exchange it: header, certificate, and the transactions as JWS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertifiedBlock {
    pub header: Header,
    pub certificate: CommitCertificate,
    pub txs: Vec<String>,
}

impl CertifiedBlock {
    pub fn certified_header(&self) -> CertifiedHeader {
        CertifiedHeader {
            header: self.header.clone(),
            certificate: self.certificate.clone(),
        }
    }
}

/// A proposed block, before its certificate: what a proposer sends to the auditors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proposal {
    pub header: Header,
    pub txs: Vec<String>,
    /// The proposer's ES256 signature over the header hash (vote message form), so a second
    /// proposal at one height by the same proposer is evidence of equivocation.
    pub proposer_signature: String,
}
