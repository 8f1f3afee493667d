//! A real identity registry for tests: parties register (and revoke) on a `LedgerState`, the
//! validators of a `ValidatorSet` certify each new state root, a `LightClient` accepts the
//! header, and entries come out as `VerifiedEntry`, the only form in which the protocols
//! accept a party's keys.

use emrshare_core::keys::{PartyId, SigningKey};
use emrshare_core::ledger::block::{Header, Validator, ValidatorSet, certify};
use emrshare_core::ledger::governance::{GovAction, Proposal};
use emrshare_core::ledger::machine::{Context, LedgerState, registry_key};
use emrshare_core::ledger::tx::{Role, SignedTransaction, Transaction, TxBody};
use emrshare_core::ledger::verify::{LightClient, Verdict, VerifiedEntry};
use emrshare_core::voucher;
use emrshare_core::{Hash, PrivateKeySet};
use std::sync::OnceLock;

/// The test chain's ID.
pub(crate) const CHAIN: &str = "test";

/// The registry hospital's keys and voucher key (RSA key generation is slow: made once).
fn registry_hospital() -> &'static PrivateKeySet {
    static KEYS: OnceLock<PrivateKeySet> = OnceLock::new();
    KEYS.get_or_init(|| {
        PrivateKeySet::generate(
            Some(PartyId::new("hospital:registry").unwrap()),
            emrshare_core::keys::RsaBits::B2048,
        )
    })
}

fn voucher_secret() -> &'static voucher::VoucherSecretKey {
    static KEY: OnceLock<voucher::VoucherSecretKey> = OnceLock::new();
    KEY.get_or_init(|| voucher::VoucherSecretKey::generate(2048).unwrap())
}

/// Block time of the registrations (the handshake tests run at `super::NOW`).
const REGISTERED_AT: u64 = 1_700_000_000;

/// A ledger state with a light client following it, and the validators that certify it.
pub(crate) struct Registry {
    state: LedgerState,
    client: LightClient,
    validators: Vec<(PartyId, SigningKey)>,
    set: ValidatorSet,
    height: u64,
    /// The time of the next block (Unix seconds).
    time: u64,
}

impl Registry {
    /// An empty registry under a consortium of 3 proposers and 3 auditors.
    pub(crate) fn new() -> Self {
        let validators: Vec<(PartyId, SigningKey)> = (0..6)
            .map(|i| {
                (
                    PartyId::new(format!("node:{i}")).unwrap(),
                    SigningKey::generate(),
                )
            })
            .collect();
        let set = ValidatorSet {
            validators: validators
                .iter()
                .map(|(id, key)| Validator {
                    id: id.clone(),
                    signing_jwk: key.verifying_key().to_jwk(None),
                    credit: 100,
                })
                .collect(),
            proposers: 3,
            auditors: 3,
        };
        Self {
            state: LedgerState::genesis(&set.validators),
            client: LightClient::new(CHAIN, set.clone()).unwrap(),
            validators,
            set,
            height: 0,
            time: REGISTERED_AT,
        }
    }

    /// Registers `party` with `role`, valid from the start of time on.
    pub(crate) fn with(mut self, party: &PrivateKeySet, role: Role) -> Self {
        self.register(party, role, 0, u64::MAX);
        self
    }

    /// Registers `party` as `role`, valid from `from` to `until` (Unix seconds); panics if
    /// refused.
    pub(crate) fn register(&mut self, party: &PrivateKeySet, role: Role, from: u64, until: u64) {
        self.try_register(party, role, from, until).unwrap();
    }

    /// A registration as the ledger takes it, or why it refuses it: a patient registers
    /// itself with a voucher of the registry's hospital, a doctor is admitted by that
    /// hospital, an institution by the council (five of the six members).
    pub(crate) fn try_register(
        &mut self,
        party: &PrivateKeySet,
        role: Role,
        from: u64,
        until: u64,
    ) -> Result<(), String> {
        match role {
            Role::Patient => {
                let hospital = self.hospital();
                let (pending, blinded) =
                    voucher::blind(&hospital.voucher_key().unwrap(), CHAIN, &party.id).unwrap();
                let voucher = pending
                    .finalize(&voucher_secret().sign_blind(&blinded).unwrap())
                    .unwrap();
                let body = TxBody::RegisterIdentity {
                    id: party.id.clone(),
                    role,
                    signing_jwk: party.signing.verifying_key().to_jwk(None),
                    encryption_jwk: party.decryption.encryption_key().to_jwk(None),
                    valid_from: from,
                    valid_until: until,
                    voucher: Some(voucher),
                };
                self.try_submit(party, body)
            }
            Role::Doctor => {
                self.hospital();
                let body = TxBody::AdmitDoctor {
                    id: party.id.clone(),
                    signing_jwk: party.signing.verifying_key().to_jwk(None),
                    encryption_jwk: party.decryption.encryption_key().to_jwk(None),
                    valid_from: from,
                    valid_until: until,
                };
                let hospital = registry_hospital();
                self.try_submit(hospital, body)
            }
            role => self.try_admit(party, role, from, until, None),
        }
    }

    /// The council admits `party` as `role`; the admitted party sends the admission.
    pub(crate) fn try_admit(
        &mut self,
        party: &PrivateKeySet,
        role: Role,
        from: u64,
        until: u64,
        voucher_key: Option<&voucher::VoucherKey>,
    ) -> Result<(), String> {
        let proposal = Proposal::new(
            CHAIN,
            self.time + 3600,
            GovAction::Admit {
                id: party.id.clone(),
                role,
                signing_jwk: party.signing.verifying_key().to_jwk(None),
                encryption_jwk: party.decryption.encryption_key().to_jwk(None),
                valid_from: from,
                valid_until: until,
                voucher_key: voucher_key.map(|k| k.to_jwk()),
            },
        );
        let approvals = self.validators[..5]
            .iter()
            .map(|(id, key)| proposal.approve(id, key))
            .collect();
        self.try_submit(
            party,
            TxBody::Govern {
                proposal,
                approvals,
            },
        )
    }

    /// A governance action approved by five of the six members, sent by member 0.
    pub(crate) fn govern(&mut self, action: GovAction) {
        let proposal = Proposal::new(CHAIN, self.time + 3600, action);
        let approvals = self.validators[..5]
            .iter()
            .map(|(id, key)| proposal.approve(id, key))
            .collect();
        let (id, key) = &self.validators[0];
        let tx = Transaction {
            chain_id: CHAIN.into(),
            sender: id.clone(),
            sequence: self.state.next_sequence(id),
            body: TxBody::Govern {
                proposal,
                approvals,
            },
        }
        .sign(key);
        self.apply(&tx).unwrap();
    }

    /// The registry's own hospital (`hospital:registry`, whose voucher key patients
    /// register with and which admits doctors), admitted on first use.
    pub(crate) fn hospital(&mut self) -> VerifiedEntry {
        let keys = registry_hospital();
        if self.state.registry_entry(&keys.id).is_none() {
            let key = voucher_secret().public().unwrap();
            self.try_admit(keys, Role::Hospital, 0, u64::MAX, Some(&key))
                .unwrap();
        }
        self.entry(&keys.id)
    }

    /// The time of the blocks that follow (Unix seconds).
    pub(crate) fn set_time(&mut self, now: u64) {
        self.time = now;
    }

    /// The party revokes its own identity.
    pub(crate) fn revoke(&mut self, party: &PrivateKeySet) {
        self.submit(
            party,
            TxBody::RevokeIdentity {
                id: party.id.clone(),
            },
        );
    }

    /// Applies `body` sent and signed by `sender` in a new block, and certifies it.
    pub(crate) fn submit(&mut self, sender: &PrivateKeySet, body: TxBody) {
        self.try_submit(sender, body).unwrap();
    }

    /// Signs `body` as `sender` with its next sequence number, then applies and certifies it.
    pub(crate) fn try_submit(
        &mut self,
        sender: &PrivateKeySet,
        body: TxBody,
    ) -> Result<(), String> {
        let tx = Transaction {
            chain_id: CHAIN.into(),
            sender: sender.id.clone(),
            sequence: self.state.next_sequence(&sender.id),
            body,
        }
        .sign(&sender.signing);
        self.apply(&tx)
    }

    /// Applies a signed transaction in a new block and certifies the block's header.
    pub(crate) fn apply(&mut self, tx: &SignedTransaction) -> Result<(), String> {
        let ctx = Context {
            chain_id: CHAIN,
            height: self.height + 1,
            now: self.time,
        };
        self.state.apply(tx, ctx).map_err(|e| e.to_string())?;
        self.certify();
        Ok(())
    }

    fn certify(&mut self) {
        self.height += 1;
        let header = Header {
            chain_id: CHAIN.into(),
            height: self.height,
            round: 0,
            previous: Hash::new([0; 32]),
            time_ms: self.time * 1000,
            proposer: self.validators[0].0.clone(),
            tx_root: Hash::new([0; 32]),
            state_root: self.state.root(),
            validators_hash: self.set.hash(),
            next_validators_hash: self.set.hash(),
            last_commit: Vec::new(),
        };
        // Proposers 0..3 hold power 2 each, auditors 3..6 power 1: 0, 1, 2 and 3 hold 7 of 9.
        let signers: Vec<_> = self.validators[..4]
            .iter()
            .map(|(id, key)| (id, key))
            .collect();
        let certified = certify(header, 0, &signers);
        assert_eq!(self.client.verify_header(&certified), Verdict::Success);
    }

    /// The registry entry of `id`, proven under the last certified header.
    pub(crate) fn entry(&self, id: &PartyId) -> VerifiedEntry {
        self.find(id)
            .unwrap_or_else(|| panic!("{id} is not registered"))
    }

    /// The registry entry of `id` if it is registered (its absence proven).
    pub(crate) fn find(&self, id: &PartyId) -> Option<VerifiedEntry> {
        let (value, proof) = self.state.get_with_proof(&registry_key(id));
        self.client
            .verify_registry_entry(id, value, &proof)
            .unwrap()
    }
}
