//! A registered party's side of the ledger, sans I/O: its transactions numbered and signed
//! (registration, admissions, governance, doctors, key rotation), and the envelope a grant
//! shares. A patient's records have accounts of their own ([`crate::record_account`]): its
//! registered key never signs anything about a record.

use crate::PrivateKeySet;
use crate::jwe::{Envelope, JweError};
use crate::keys::{DecryptionKey, PartyId, PublicKeySet, SigningKey};
use crate::ledger::governance::{Approval, GovAction, Proposal, Status};
use crate::ledger::tx::{Role, SignedTransaction, Transaction, TxBody};
use crate::ledger::verify::VerifiedEntry;
use crate::voucher::{Voucher, VoucherKey};

/// A party that writes to the ledger: its keys, its chain, and its next sequence number.
#[derive(Debug)]
pub struct Account {
    keys: PrivateKeySet,
    chain_id: String,
    next_sequence: u64,
}

impl Account {
    /// `next_sequence`: 0 for a new party, else what the chain says.
    pub fn new(keys: PrivateKeySet, chain_id: &str, next_sequence: u64) -> Self {
        Self {
            keys,
            chain_id: chain_id.into(),
            next_sequence,
        }
    }

    /// The party's ID.
    pub fn id(&self) -> &PartyId {
        &self.keys.id
    }

    /// The party's keys.
    pub fn keys(&self) -> &PrivateKeySet {
        &self.keys
    }

    /// The party's keys, taking the account apart (after a rotation, to keep the old keys
    /// for opening what was sealed to them).
    pub fn into_keys(self) -> PrivateKeySet {
        self.keys
    }

    /// The sequence number the next signed transaction carries.
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// Takes the chain's word for the next sequence number (after a transaction that was
    /// signed but never committed, such as an access log a node refused).
    pub fn set_next_sequence(&mut self, next: u64) {
        self.next_sequence = next;
    }

    /// Signs `body` with the next sequence number.
    pub fn sign(&mut self, body: TxBody) -> SignedTransaction {
        let tx = Transaction {
            chain_id: self.chain_id.clone(),
            sender: self.keys.id.clone(),
            sequence: self.next_sequence,
            body,
        };
        self.next_sequence += 1;
        tx.sign(&self.keys.signing)
    }

    /// Registers this patient's ID and keys for `[valid_from, valid_until)` (Unix seconds),
    /// with a voucher from an admitted hospital ([`crate::voucher`]: blind it with
    /// [`crate::voucher::blind`] for [`Self::id`] and this chain, have the hospital sign it
    /// blind, finalize it). Only patients register themselves.
    pub fn register_patient(
        &mut self,
        voucher: Voucher,
        valid_from: u64,
        valid_until: u64,
    ) -> SignedTransaction {
        self.sign(TxBody::RegisterIdentity {
            id: self.keys.id.clone(),
            role: Role::Patient,
            signing_jwk: self.keys.signing.verifying_key().to_jwk(None),
            encryption_jwk: self.keys.decryption.encryption_key().to_jwk(None),
            valid_from,
            valid_until,
            voucher: Some(voucher),
        })
    }

    /// The proposal that admits this party as an institution of `role` for
    /// `[valid_from, valid_until)`, for council members to approve
    /// ([`Proposal::approve`]) until `expires_at`; a hospital names its voucher key.
    pub fn admission_proposal(
        &self,
        role: Role,
        valid_from: u64,
        valid_until: u64,
        voucher_key: Option<&VoucherKey>,
        expires_at: u64,
    ) -> Proposal {
        Proposal::new(
            &self.chain_id,
            expires_at,
            GovAction::Admit {
                id: self.keys.id.clone(),
                role,
                signing_jwk: self.keys.signing.verifying_key().to_jwk(None),
                encryption_jwk: self.keys.decryption.encryption_key().to_jwk(None),
                valid_from,
                valid_until,
                voucher_key: voucher_key.map(VoucherKey::to_jwk),
            },
        )
    }

    /// A governance transaction: this party's own admission with its approvals (sent by
    /// the admitted party), or, from a council member's account, any approved proposal.
    pub fn govern(&mut self, proposal: Proposal, approvals: Vec<Approval>) -> SignedTransaction {
        self.sign(TxBody::Govern {
            proposal,
            approvals,
        })
    }

    /// From a hospital's account: admits `doctor` (its ID and keys) for
    /// `[valid_from, valid_until)`, affiliated with this hospital.
    pub fn admit_doctor(
        &mut self,
        doctor: &PublicKeySet,
        valid_from: u64,
        valid_until: u64,
    ) -> SignedTransaction {
        self.sign(TxBody::AdmitDoctor {
            id: doctor.id.clone(),
            signing_jwk: doctor.signing.to_jwk(None),
            encryption_jwk: doctor.encryption.to_jwk(None),
            valid_from,
            valid_until,
        })
    }

    /// From a hospital's account: suspends, reinstates or expels one of its doctors.
    pub fn set_doctor_status(&mut self, doctor: &PartyId, status: Status) -> SignedTransaction {
        self.sign(TxBody::SetDoctorStatus {
            id: doctor.clone(),
            status,
        })
    }

    /// Rotates this party's keys: the UpdateKeys transaction is signed with the current key,
    /// then the account holds `new_signing` and `new_decryption` under the same ID (a
    /// patient's ID stays the thumbprint of its first key).
    pub fn rotate_keys(
        &mut self,
        new_signing: SigningKey,
        new_decryption: DecryptionKey,
    ) -> SignedTransaction {
        let tx = self.sign(TxBody::UpdateKeys {
            id: self.keys.id.clone(),
            signing_jwk: new_signing.verifying_key().to_jwk(None),
            encryption_jwk: new_decryption.encryption_key().to_jwk(None),
        });
        self.keys = PrivateKeySet {
            id: self.keys.id.clone(),
            signing: new_signing,
            decryption: new_decryption,
        };
        tx
    }
}

/// The envelope a grantee can open: `envelope` (which `holder` can open) with the content
/// key also wrapped to `grantee`'s registered key, without naming it. The content is not re-encrypted, but the
/// bytes change, so the shared version is a new blob with its own address.
pub fn share_envelope(
    envelope: &Envelope,
    holder: &PrivateKeySet,
    grantee: &VerifiedEntry,
) -> Result<Envelope, JweError> {
    let keys = grantee.public_keys().map_err(|_| JweError::Wrap)?;
    let mut shared = envelope.clone();
    // Unnamed: the blob on the nodes does not say whom it is shared with.
    shared.add_unnamed_recipient(holder, &keys.encryption)?;
    Ok(shared)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::RsaBits;
    use crate::ledger::testkit::TestChain;

    fn lookup(chain: &TestChain, id: &PartyId) -> VerifiedEntry {
        let mut client = chain.client();
        client.verify_header(&chain.header(&[0, 1, 2]));
        let answer = chain.lookup(std::slice::from_ref(id));
        let e = &answer.entries[0];
        client
            .verify_registry_entry(id, e.value.as_deref().map(str::as_bytes), &e.proof)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn a_grant_wraps_the_content_key_to_the_grantee_only() {
        let mut chain = TestChain::new();
        let patient_keys = chain.register(None, Role::Patient);
        let insurer_keys = chain.register(Some("insurer:acme"), Role::Insurer);
        let insurer_entry = lookup(&chain, &insurer_keys.id);
        let envelope =
            Envelope::seal_unnamed_to(b"the record", &[&patient_keys.public().encryption], None)
                .unwrap();
        let shared = share_envelope(&envelope, &patient_keys, &insurer_entry).unwrap();
        assert_eq!(&*shared.open(&insurer_keys).unwrap(), b"the record");
        assert_eq!(&*shared.open(&patient_keys).unwrap(), b"the record");
        let other =
            PrivateKeySet::generate(Some(PartyId::new("insurer:other").unwrap()), RsaBits::B2048);
        assert!(shared.open(&other).is_err());
        // Only a holder of the content key can share it.
        assert!(share_envelope(&envelope, &other, &insurer_entry).is_err());

        // The shared envelope names neither reader.
        assert!(shared.recipient_kids().iter().all(Option::is_none));
    }
}
