//! Test support: a consortium in memory (validator keys, a ledger state, certified headers),
//! for tests of everything that verifies what nodes serve.

use super::bft::{ConsensusVote, DecisionCertificate, VoteKind};
use super::block::{CertifiedHeader, Header, Validator, ValidatorSet};
use super::governance::{Approval, GovAction, Proposal};
use super::machine::{Context, LedgerState, registry_key};
use super::tx::{Role, SignedTransaction, Transaction, TxBody};
use super::verify::LightClient;
use super::wire::{LookupEntry, LookupResponse};
use crate::keys::{PartyId, RsaBits, SigningKey};
use crate::voucher::Voucher;
use crate::{Hash, PrivateKeySet};

/// The test chain's ID.
pub(crate) const CHAIN: &str = "test";

/// 1 proposer (power 2) and 3 auditors (power 1 each): a certificate needs more than 2/3 of
/// the 5, such as node:0, node:1 and node:2. A ledger state, and a height.
pub(crate) struct TestChain {
    pub validator_keys: Vec<(PartyId, SigningKey)>,
    pub set: ValidatorSet,
    pub state: LedgerState,
    pub height: u64,
    /// The block time of the blocks `apply` makes (Unix seconds; 1000 unless set).
    pub now: u64,
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
            now: 1_000,
        }
    }

    /// A light client trusting the chain's validator set (no header yet).
    pub(crate) fn client(&self) -> LightClient {
        LightClient::new(CHAIN, self.set.clone()).unwrap()
    }

    /// Registers a new party of `role` (RSA 2048 to keep tests fast) in a new block, the way
    /// the chain takes it: a patient with a voucher of the chain's hospital, a doctor
    /// admitted by that hospital, an institution admitted by the council.
    pub(crate) fn register(&mut self, id: Option<&str>, role: Role) -> PrivateKeySet {
        let keys = PrivateKeySet::generate(id.map(|i| PartyId::new(i).unwrap()), RsaBits::B2048);
        self.enrol(&keys, role);
        keys
    }

    /// Registers `keys` as `role` in a new block (see [`register`](Self::register)).
    pub(crate) fn enrol(&mut self, keys: &PrivateKeySet, role: Role) {
        match role {
            Role::Patient => {
                let voucher = self.voucher(&keys.id);
                self.apply(&[registration(keys, voucher)]);
            }
            Role::Doctor => {
                let hospital = self.voucher_hospital();
                let tx = self.admit_doctor_tx(&hospital, keys);
                self.apply(&[tx]);
            }
            role => {
                let tx = self.admission(keys, role, None);
                self.apply(&[tx]);
            }
        }
    }

    /// The registry entry of `id` proven under a certified header of the current state.
    pub(crate) fn verified_entry(&self, id: &PartyId) -> Option<super::verify::VerifiedEntry> {
        let mut client = self.client();
        client.verify_header(&self.header(&[0, 1, 2]));
        let (value, proof) = self.state.get_with_proof(&registry_key(id));
        client.verify_registry_entry(id, value, &proof).unwrap()
    }

    /// The admission of `keys` as `role` approved by three of the four members (the
    /// threshold), sent by the admitted party.
    pub(crate) fn admission(
        &self,
        keys: &PrivateKeySet,
        role: Role,
        voucher_key: Option<&crate::voucher::VoucherKey>,
    ) -> SignedTransaction {
        let proposal = Proposal::new(
            CHAIN,
            self.now + 1_000,
            GovAction::Admit {
                id: keys.id.clone(),
                role,
                signing_jwk: keys.signing.verifying_key().to_jwk(None),
                encryption_jwk: keys.decryption.encryption_key().to_jwk(None),
                valid_from: 0,
                valid_until: u64::MAX,
                voucher_key: voucher_key.map(|k| k.to_jwk()),
            },
        );
        let approvals = self.approvals(&proposal, &[0, 1, 2]);
        Transaction {
            chain_id: CHAIN.into(),
            sender: keys.id.clone(),
            sequence: 0,
            body: TxBody::Govern {
                proposal,
                approvals,
            },
        }
        .sign(&keys.signing)
    }

    /// Approvals of `proposal` by validators `members`.
    pub(crate) fn approvals(&self, proposal: &Proposal, members: &[usize]) -> Vec<Approval> {
        members
            .iter()
            .map(|&i| {
                let (id, key) = &self.validator_keys[i];
                proposal.approve(id, key)
            })
            .collect()
    }

    /// The hospital whose voucher key (`voucher::tests::hospital_key(0)`) this chain's
    /// patients register with, admitted on first use.
    pub(crate) fn voucher_hospital(&mut self) -> PrivateKeySet {
        static KEYS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let json = KEYS.get_or_init(|| {
            PrivateKeySet::generate(
                Some(PartyId::new("hospital:vouchers").unwrap()),
                RsaBits::B2048,
            )
            .to_json()
            .to_string()
        });
        let keys = PrivateKeySet::from_json(json.as_bytes()).unwrap();
        if self.state.registry_entry(&keys.id).is_none() {
            let key = crate::voucher::tests::hospital_key(0).public().unwrap();
            let tx = self.admission(&keys, Role::Hospital, Some(&key));
            self.apply(&[tx]);
        }
        keys
    }

    /// A voucher of the chain's hospital for `patient`.
    pub(crate) fn voucher(&mut self, patient: &PartyId) -> Voucher {
        self.voucher_hospital();
        crate::voucher::tests::voucher(crate::voucher::tests::hospital_key(0), CHAIN, patient)
    }

    /// A governance action approved by members 0..=2, sent by member 0.
    pub(crate) fn govern(&self, action: GovAction) -> SignedTransaction {
        let proposal = Proposal::new(CHAIN, self.now + 1_000, action);
        let approvals = self.approvals(&proposal, &[0, 1, 2]);
        let (id, key) = &self.validator_keys[0];
        Transaction {
            chain_id: CHAIN.into(),
            sender: id.clone(),
            sequence: self.state.next_sequence(id),
            body: TxBody::Govern {
                proposal,
                approvals,
            },
        }
        .sign(key)
    }

    /// `sender`'s next transaction with `body`.
    pub(crate) fn tx(&self, sender: &PrivateKeySet, body: TxBody) -> SignedTransaction {
        Transaction {
            chain_id: CHAIN.into(),
            sender: sender.id.clone(),
            sequence: self.state.next_sequence(&sender.id),
            body,
        }
        .sign(&sender.signing)
    }

    /// `hospital` admits `doctor`.
    pub(crate) fn admit_doctor_tx(
        &self,
        hospital: &PrivateKeySet,
        doctor: &PrivateKeySet,
    ) -> SignedTransaction {
        Transaction {
            chain_id: CHAIN.into(),
            sender: hospital.id.clone(),
            sequence: self.state.next_sequence(&hospital.id),
            body: TxBody::AdmitDoctor {
                id: doctor.id.clone(),
                signing_jwk: doctor.signing.verifying_key().to_jwk(None),
                encryption_jwk: doctor.decryption.encryption_key().to_jwk(None),
                valid_from: 0,
                valid_until: u64::MAX,
            },
        }
        .sign(&hospital.signing)
    }

    /// Applies `txs` in a new block at time [`now`](Self::now); panics on a refused one.
    pub(crate) fn apply(&mut self, txs: &[SignedTransaction]) {
        self.height += 1;
        for tx in txs {
            let ctx = Context {
                chain_id: CHAIN,
                height: self.height,
                now: self.now,
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
            previous: Hash::sha256(&self.height.to_be_bytes()),
            time_ms: 1_000_000,
            proposer: self.validator_keys[0].0.clone(),
            tx_root: Hash::new([0; 32]),
            state_root: self.state.root(),
            validators_hash: self.set.hash(),
            next_validators_hash: self.set.hash(),
            last_commit: Vec::new(),
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

/// A patient's registration with `voucher`.
pub(crate) fn registration(keys: &PrivateKeySet, voucher: Voucher) -> SignedTransaction {
    Transaction {
        chain_id: CHAIN.into(),
        sender: keys.id.clone(),
        sequence: 0,
        body: TxBody::RegisterIdentity {
            id: keys.id.clone(),
            role: Role::Patient,
            signing_jwk: keys.signing.verifying_key().to_jwk(None),
            encryption_jwk: keys.decryption.encryption_key().to_jwk(None),
            valid_from: 0,
            valid_until: u64::MAX,
            voucher: Some(voucher),
        },
    }
    .sign(&keys.signing)
}
