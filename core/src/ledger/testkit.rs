//! Test support: a consortium in memory (validator keys, a ledger state, certified headers),
//! for tests of everything that verifies what nodes serve.

use super::bft::{ConsensusVote, DecisionCertificate, VoteKind};
use super::block::{CertifiedHeader, Header, Validator, ValidatorSet};
use super::machine::{Context, LedgerState, registry_key};
use super::tx::{Role, SignedTransaction, Transaction, TxBody};
use super::verify::LightClient;
use super::wire::{LookupEntry, LookupResponse};
use crate::keys::{PartyId, RsaBits, SigningKey};
use crate::{PrivateKeySet, hazmat};

/// The test chain's ID.
pub(crate) const CHAIN: &str = "test";

/// 1 proposer (power 2) and 3 auditors (power 1 each): a certificate needs more than 2/3 of
/// the 5, such as node:0, node:1 and node:2. A ledger state, and a height.
pub(crate) struct TestChain {
    pub validator_keys: Vec<(PartyId, SigningKey)>,
    pub set: ValidatorSet,
    pub state: LedgerState,
    pub height: u64,
}

impl TestChain {
    /// Genesis: four validators with credit 100, no registrations, height 0.
    pub(crate) fn new() -> Self {
        let validator_keys: Vec<_> = (0..4)
            .map(|i| {
                (
                    PartyId::new(format!("node:{i}")).unwrap(),
                    SigningKey::generate(),
                )
            })
            .collect();
        let validators: Vec<Validator> = validator_keys
            .iter()
            .map(|(id, k)| Validator {
                id: id.clone(),
                signing_jwk: k.verifying_key().to_jwk(None),
                credit: 100,
            })
            .collect();
        let state = LedgerState::genesis(&validators);
        Self {
            validator_keys,
            set: ValidatorSet {
                validators,
                proposers: 1,
                auditors: 3,
            },
            state,
            height: 0,
        }
    }

    /// A light client trusting the chain's validator set (no header yet).
    pub(crate) fn client(&self) -> LightClient {
        LightClient::new(CHAIN, self.set.clone()).unwrap()
    }

    /// Registers a new party of `role` (RSA 2048 to keep tests fast) in a new block.
    pub(crate) fn register(&mut self, id: Option<&str>, role: Role) -> PrivateKeySet {
        let keys = PrivateKeySet::generate(id.map(|i| PartyId::new(i).unwrap()), RsaBits::B2048);
        let tx = registration(&keys, role);
        self.apply(&[tx]);
        keys
    }

    /// Applies `txs` in a new block at time 1000; panics on a refused one.
    pub(crate) fn apply(&mut self, txs: &[SignedTransaction]) {
        self.height += 1;
        for tx in txs {
            let ctx = Context {
                chain_id: CHAIN,
                height: self.height,
                now: 1_000,
            };
            self.state.apply(tx, ctx).unwrap();
        }
    }

    /// The current state's header, certified by the precommits of `voters` (indices 0..=3).
    pub(crate) fn header(&self, voters: &[usize]) -> CertifiedHeader {
        let header = Header {
            chain_id: CHAIN.into(),
            height: self.height,
            round: 0,
            previous: hazmat::sha256(&self.height.to_be_bytes()),
            time_ms: 1_000_000,
            proposer: self.validator_keys[0].0.clone(),
            tx_root: [0; 32],
            state_root: self.state.root(),
            validators_hash: self.set.hash(),
            next_validators_hash: self.set.hash(),
        };
        let precommits: Vec<_> = voters
            .iter()
            .map(|&i| {
                let (id, key) = &self.validator_keys[i];
                ConsensusVote {
                    kind: VoteKind::Precommit,
                    height: header.height,
                    round: 0,
                    value: Some(header.hash()),
                    validator: id.clone(),
                }
                .sign(CHAIN, key)
            })
            .collect();
        CertifiedHeader {
            certificate: DecisionCertificate::from_precommits(
                header.height,
                0,
                header.hash(),
                &precommits,
            ),
            header,
        }
    }

    /// An honest node's answer to a lookup of `ids`.
    pub(crate) fn lookup(&self, ids: &[PartyId]) -> LookupResponse {
        LookupResponse {
            header: self.header(&[0, 1, 2]),
            entries: ids
                .iter()
                .map(|id| {
                    let (value, proof) = self.state.get_with_proof(&registry_key(id));
                    LookupEntry {
                        id: id.clone(),
                        proof,
                        value: value.map(|v| String::from_utf8(v.to_vec()).unwrap()),
                    }
                })
                .collect(),
        }
    }
}

/// A RegisterIdentity of `keys` as `role`, valid from 0 to 10 000, signed by its own key.
pub(crate) fn registration(keys: &PrivateKeySet, role: Role) -> SignedTransaction {
    Transaction {
        chain_id: CHAIN.into(),
        sender: keys.id.clone(),
        sequence: 0,
        body: TxBody::RegisterIdentity {
            id: keys.id.clone(),
            role,
            signing_jwk: keys.signing.verifying_key().to_jwk(None),
            encryption_jwk: keys.decryption.encryption_key().to_jwk(None),
            valid_from: 0,
            valid_until: 10_000,
        },
    }
    .sign(&keys.signing)
}
