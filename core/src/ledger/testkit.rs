//! The test kit (feature `testkit`, and every unit test of this crate): a consortium in
//! memory, for tests of everything that verifies what nodes serve. [`TestChain`] holds the
//! validator keys, a ledger state and certifies headers; [`Registry`] is a chain with a light
//! client following it, for tests that need `VerifiedEntry` values; [`voucher_key`] and
//! [`voucher`] make patients' registration vouchers. Keys are real and made fresh; RSA keys are
//! 2048-bit and shared, to keep tests fast. Never for production: panics on misuse.
#![allow(clippy::unwrap_used, missing_docs)]

use super::bft::{ConsensusVote, DecisionCertificate, VoteKind};
use super::block::{CertifiedHeader, Header, Validator, ValidatorSet};
use super::governance::{Approval, GovAction, Proposal};
use super::machine::{Context, LedgerState, registry_key};
use super::tx::{Role, SignedTransaction, Transaction, TxBody};
use super::verify::{LightClient, Verdict, VerifiedEntry};
use super::wire::{BucketAnswer, LookupEntry, LookupResponse};
use crate::keys::{PartyId, RsaBits, SigningKey};
use crate::voucher::{self, Voucher, VoucherKey, VoucherSecretKey};
use crate::{Hash, PrivateKeySet};
use std::sync::OnceLock;

/// The test chain's ID.
pub const CHAIN: &str = "test";

/// 1 proposer (power 2) and 3 auditors (power 1 each): a certificate needs more than 2/3 of
/// the 5, such as node:0, node:1 and node:2. A ledger state, and a height.
pub struct TestChain {
    pub validator_keys: Vec<(PartyId, SigningKey)>,
    pub set: ValidatorSet,
    pub state: LedgerState,
    pub height: u64,
    /// The block time of the blocks `apply` makes (Unix seconds; 1000 unless set).
    pub now: u64,
}

impl Default for TestChain {
    fn default() -> Self {
        Self::new()
    }
}

impl TestChain {
    /// Genesis: four validators with credit 100, no registrations, height 0.
    pub fn new() -> Self {
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
        let mut state = LedgerState::genesis(&validators);
        state.set_record_issuers(&[record_voucher_key().public().unwrap().to_jwk()]);
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
    pub fn client(&self) -> LightClient {
        LightClient::new(CHAIN, self.set.clone()).unwrap()
    }

    /// Registers a new party of `role` (RSA 2048 to keep tests fast) in a new block, the way
    /// the chain takes it: a patient with a voucher of the chain's hospital, a doctor
    /// admitted by that hospital, an institution admitted by the council.
    pub fn register(&mut self, id: Option<&str>, role: Role) -> PrivateKeySet {
        let keys = PrivateKeySet::generate(id.map(|i| PartyId::new(i).unwrap()), RsaBits::B2048);
        self.enrol(&keys, role);
        keys
    }

    /// Registers `keys` as `role` in a new block (see [`register`](Self::register)).
    pub fn enrol(&mut self, keys: &PrivateKeySet, role: Role) {
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
    pub fn verified_entry(&self, id: &PartyId) -> Option<VerifiedEntry> {
        let mut client = self.client();
        client.verify_header(&self.header(&[0, 1, 2]));
        let (value, proof) = self.state.get_with_proof(&registry_key(id));
        client.verify_registry_entry(id, value, &proof).unwrap()
    }

    /// The admission of `keys` as `role` approved by three of the four members (the
    /// threshold), sent by the admitted party.
    pub fn admission(
        &self,
        keys: &PrivateKeySet,
        role: Role,
        voucher_key: Option<&VoucherKey>,
    ) -> SignedTransaction {
        self.admission_for(keys, role, voucher_key, 0, u64::MAX)
    }

    /// As [`admission`](Self::admission), valid from `from` to `until` (Unix seconds).
    pub fn admission_for(
        &self,
        keys: &PrivateKeySet,
        role: Role,
        voucher_key: Option<&VoucherKey>,
        from: u64,
        until: u64,
    ) -> SignedTransaction {
        let proposal = Proposal::new(
            CHAIN,
            self.now + 1_000,
            GovAction::Admit {
                id: keys.id.clone(),
                role,
                signing_jwk: keys.signing.verifying_key().to_jwk(None),
                encryption_jwk: keys.decryption.encryption_key().to_jwk(None),
                valid_from: from,
                valid_until: until,
                voucher_key: voucher_key.map(|k| k.to_jwk()),
            },
        );
        let approvals = self.approvals(&proposal, &[0, 1, 2]);
        Transaction {
            chain_id: CHAIN.into(),
            sender: keys.id.clone(),
            sequence: self.state.next_sequence(&keys.id),
            body: TxBody::Govern {
                proposal,
                approvals,
            },
        }
        .sign(&keys.signing)
    }

    /// Approvals of `proposal` by validators `members`.
    pub fn approvals(&self, proposal: &Proposal, members: &[usize]) -> Vec<Approval> {
        members
            .iter()
            .map(|&i| {
                let (id, key) = &self.validator_keys[i];
                proposal.approve(id, key)
            })
            .collect()
    }

    /// The hospital whose voucher key ([`voucher_key`]`(0)`) this chain's patients register
    /// with, and which admits its doctors; admitted on first use.
    pub fn voucher_hospital(&mut self) -> PrivateKeySet {
        static KEYS: OnceLock<String> = OnceLock::new();
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
            let key = voucher_key(0).public().unwrap();
            let tx = self.admission(&keys, Role::Hospital, Some(&key));
            self.apply(&[tx]);
        }
        keys
    }

    /// A voucher of the chain's hospital for `patient`.
    pub fn voucher(&mut self, patient: &PartyId) -> Voucher {
        self.voucher_hospital();
        voucher(voucher_key(0), CHAIN, patient)
    }

    /// A governance action approved by members 0..=2, sent by member 0.
    pub fn govern(&self, action: GovAction) -> SignedTransaction {
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
    pub fn tx(&self, sender: &PrivateKeySet, body: TxBody) -> SignedTransaction {
        Transaction {
            chain_id: CHAIN.into(),
            sender: sender.id.clone(),
            sequence: self.state.next_sequence(&sender.id),
            body,
        }
        .sign(&sender.signing)
    }

    /// `hospital` admits `doctor`.
    pub fn admit_doctor_tx(
        &self,
        hospital: &PrivateKeySet,
        doctor: &PrivateKeySet,
    ) -> SignedTransaction {
        self.admit_doctor_for(hospital, doctor, 0, u64::MAX)
    }

    /// As [`admit_doctor_tx`](Self::admit_doctor_tx), valid from `from` to `until`.
    pub fn admit_doctor_for(
        &self,
        hospital: &PrivateKeySet,
        doctor: &PrivateKeySet,
        from: u64,
        until: u64,
    ) -> SignedTransaction {
        Transaction {
            chain_id: CHAIN.into(),
            sender: hospital.id.clone(),
            sequence: self.state.next_sequence(&hospital.id),
            body: TxBody::AdmitDoctor {
                id: doctor.id.clone(),
                signing_jwk: doctor.signing.verifying_key().to_jwk(None),
                encryption_jwk: doctor.decryption.encryption_key().to_jwk(None),
                valid_from: from,
                valid_until: until,
            },
        }
        .sign(&hospital.signing)
    }

    /// Applies `txs` in a new block at time [`now`](Self::now); panics on a refused one.
    pub fn apply(&mut self, txs: &[SignedTransaction]) {
        self.try_apply(txs).unwrap();
    }

    /// Applies `txs` in a new block at time [`now`](Self::now), or says why the state
    /// machine refused one (the ones before it stay applied, as in a test that wants them).
    pub fn try_apply(&mut self, txs: &[SignedTransaction]) -> Result<(), String> {
        self.height += 1;
        for tx in txs {
            let ctx = Context {
                chain_id: CHAIN,
                height: self.height,
                now: self.now,
            };
            self.state.apply(tx, ctx).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// The current state's header, certified by the precommits of `voters` (indices 0..=3).
    pub fn header(&self, voters: &[usize]) -> CertifiedHeader {
        let header = Header {
            chain_id: CHAIN.into(),
            height: self.height,
            round: 0,
            previous: Hash::sha256(&self.height.to_be_bytes()),
            time_ms: self.now * 1000,
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

    /// An honest node's answer to the bucket request of `plan`.
    pub fn bucket_answer(&self, plan: &crate::lookup::LookupPlan) -> BucketAnswer {
        self.state
            .bucket_answer(
                self.header(&[0, 1, 2]),
                plan.role(),
                plan.prefix(),
                plan.bits(),
                usize::MAX,
            )
            .unwrap()
    }

    /// A node's answer for the account `record` and its logs from `from` on, under a header
    /// certified by validators 0, 1 and 2.
    pub fn record_answer(&self, record: &PartyId, from: u64) -> crate::ledger::wire::RecordAnswer {
        self.state
            .record_answer(self.header(&[0, 1, 2]), record, from)
    }

    /// An honest node's answer to a lookup of `ids`.
    pub fn lookup(&self, ids: &[PartyId]) -> LookupResponse {
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
pub fn registration(keys: &PrivateKeySet, voucher: Voucher) -> SignedTransaction {
    registration_for(keys, voucher, 0, u64::MAX)
}

/// A patient's registration with `voucher`, valid from `from` to `until` (Unix seconds).
pub fn registration_for(
    keys: &PrivateKeySet,
    voucher: Voucher,
    from: u64,
    until: u64,
) -> SignedTransaction {
    Transaction {
        chain_id: CHAIN.into(),
        sender: keys.id.clone(),
        sequence: 0,
        body: TxBody::RegisterIdentity {
            id: keys.id.clone(),
            role: Role::Patient,
            signing_jwk: keys.signing.verifying_key().to_jwk(None),
            encryption_jwk: keys.decryption.encryption_key().to_jwk(None),
            valid_from: from,
            valid_until: until,
            voucher: Some(voucher),
        },
    }
    .sign(&keys.signing)
}

/// Hospital voucher key `i` (0 or 1): RSA key generation is slow, so every test shares two.
pub fn voucher_key(i: usize) -> &'static VoucherSecretKey {
    static KEYS: OnceLock<[VoucherSecretKey; 2]> = OnceLock::new();
    &KEYS.get_or_init(|| {
        [
            VoucherSecretKey::generate(2048).unwrap(),
            VoucherSecretKey::generate(2048).unwrap(),
        ]
    })[i]
}

/// The nodes' record voucher key of every [`TestChain`].
pub fn record_voucher_key() -> &'static VoucherSecretKey {
    static KEY: OnceLock<VoucherSecretKey> = OnceLock::new();
    KEY.get_or_init(|| VoucherSecretKey::generate(2048).unwrap())
}

/// The transaction that opens the account of `record` on a [`TestChain`], filed with
/// `entry`, with a record voucher of the chain's nodes.
pub fn open_record(
    record: &crate::record_account::RecordKeys,
    entry: &crate::record_account::IndexEntry,
) -> SignedTransaction {
    let voucher = voucher(record_voucher_key(), CHAIN, record.id());
    record.open_account(CHAIN, voucher, entry)
}

/// A voucher for `patient` on `chain` from hospital key `key`, the whole blind protocol.
pub fn voucher(key: &VoucherSecretKey, chain: &str, patient: &PartyId) -> Voucher {
    let (pending, blinded) = voucher::blind(&key.public().unwrap(), chain, patient).unwrap();
    pending
        .finalize(&key.sign_blind(&blinded).unwrap())
        .unwrap()
}

/// A [`TestChain`] whose every block is certified and followed by one light client, so
/// registry entries come out as [`VerifiedEntry`], the only form in which the protocols accept
/// a party's keys. Parties register the way the chain takes them: a patient with a voucher of
/// the chain's hospital, a doctor admitted by that hospital, an institution by the council.
pub struct Registry {
    chain: TestChain,
    client: LightClient,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// An empty registry; blocks at 1,700,000,000 (Unix seconds) until [`set_time`](Self::set_time).
    pub fn new() -> Self {
        let mut chain = TestChain::new();
        chain.now = 1_700_000_000;
        Self {
            client: chain.client(),
            chain,
        }
    }

    /// Registers `party` as `role`, valid from the start of time on.
    pub fn with(mut self, party: &PrivateKeySet, role: Role) -> Self {
        self.register(party, role, 0, u64::MAX);
        self
    }

    /// Registers `party` as `role`, valid from `from` to `until`; panics if refused.
    pub fn register(&mut self, party: &PrivateKeySet, role: Role, from: u64, until: u64) {
        self.try_register(party, role, from, until).unwrap();
    }

    /// Registers `party` as `role` valid from `from` to `until`, or says why the ledger
    /// refuses it.
    pub fn try_register(
        &mut self,
        party: &PrivateKeySet,
        role: Role,
        from: u64,
        until: u64,
    ) -> Result<(), String> {
        let tx = match role {
            Role::Patient => {
                let voucher = self.chain.voucher(&party.id);
                registration_for(party, voucher, from, until)
            }
            Role::Doctor => {
                let hospital = self.chain.voucher_hospital();
                self.chain.admit_doctor_for(&hospital, party, from, until)
            }
            role => self.chain.admission_for(party, role, None, from, until),
        };
        self.apply(&tx)
    }

    /// The time of the blocks that follow (Unix seconds).
    pub fn set_time(&mut self, now: u64) {
        self.chain.now = now;
    }

    /// The party revokes its own identity.
    pub fn revoke(&mut self, party: &PrivateKeySet) {
        let id = party.id.clone();
        self.submit(party, TxBody::RevokeIdentity { id });
    }

    /// Applies `body`, sent and signed by `sender`, in a new certified block; panics if refused.
    pub fn submit(&mut self, sender: &PrivateKeySet, body: TxBody) {
        self.try_submit(sender, body).unwrap();
    }

    /// Signs `body` as `sender` with its next sequence number, applies and certifies it.
    pub fn try_submit(&mut self, sender: &PrivateKeySet, body: TxBody) -> Result<(), String> {
        let tx = self.chain.tx(sender, body);
        self.apply(&tx)
    }

    /// Applies a signed transaction in a new block, and the light client accepts its header.
    pub fn apply(&mut self, tx: &SignedTransaction) -> Result<(), String> {
        self.chain.try_apply(std::slice::from_ref(tx))?;
        let header = self.chain.header(&[0, 1, 2]);
        assert_eq!(self.client.verify_header(&header), Verdict::Success);
        Ok(())
    }

    /// The registry entry of `id`, proven under the last certified header; panics if absent.
    pub fn entry(&self, id: &PartyId) -> VerifiedEntry {
        self.find(id)
            .unwrap_or_else(|| panic!("{id} is not registered"))
    }

    /// The registry entry of `id` if it is registered (its absence proven otherwise).
    pub fn find(&self, id: &PartyId) -> Option<VerifiedEntry> {
        let (value, proof) = self.chain.state.get_with_proof(&registry_key(id));
        self.client
            .verify_registry_entry(id, value, &proof)
            .unwrap()
    }
}
