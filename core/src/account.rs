//! A party's side of the ledger, sans I/O: its transactions numbered and signed, the claims
//! and access logs the node API asks for, the patient's index entries (BPDS eq. 3-4), and
//! standing grants (BPDS data sharing): the record's content key wrapped to the grantee's
//! registered key, and the Grant / RevokeGrant transactions the nodes enforce.

use crate::jwe::{Envelope, JweError, Recipient};
use crate::keys::{DecryptionKey, PartyId, PublicKeySet, SigningKey};
use crate::ledger::governance::{Approval, GovAction, Proposal, Status};
use crate::ledger::merkle::Hash;
use crate::ledger::tx::{Action, Outcome, Role, SignedTransaction, Transaction, TxBody};
use crate::ledger::verify::VerifiedEntry;
use crate::voucher::{Voucher, VoucherKey};
use crate::{PrivateKeySet, b64, hazmat, jws};
use serde::{Deserialize, Serialize};

/// The `typ` of an owner's signed claim on a blob it uploads.
pub const BLOB_CLAIM_TYP: &str = "emr-blob+jwt";
/// An owner's claim on a blob it uploads (the payload of its `x-emr-owner` JWS, typ
/// [`BLOB_CLAIM_TYP`]): one type for the client that signs it and the node that checks it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobClaim {
    /// The blob's address: SHA-256 of its bytes.
    pub blob: Hash,
    /// The party that uploads the blob and signs the claim.
    pub owner: PartyId,
    /// Unix seconds.
    pub iat: u64,
}

/// The content type of an index entry's JWE.
pub const INDEX_ENTRY_CTY: &str = "emrshare-index-entry+json";

/// A party that writes to the ledger: its keys, its chain, and its next sequence number.
#[derive(Debug)]
pub struct Account {
    keys: PrivateKeySet,
    chain_id: String,
    next_sequence: u64,
}

/// Where a record's ciphertext lives (BPDS eq. 3: url, hash of the ciphertext, time), sealed
/// to the patient in its UploadIndex transaction, so the chain never shows it in clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexEntry {
    /// The entry's format: [`IndexEntry::FORMAT`].
    pub format: String,
    /// Where the envelope is stored, e.g. `emrshare:blob/<hex address>`.
    pub location: String,
    /// The stored envelope's address: SHA-256 of its bytes.
    pub blob: Hash,
    /// When the entry was made, Unix seconds.
    pub time: u64,
    /// The record's ID (its `emr_id`), so the patient recognises the record in access logs
    /// that name it (a record shared in a handshake) without opening the blob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
}

impl IndexEntry {
    /// The format of the entries this version writes.
    pub const FORMAT: &'static str = "emrshare-index-entry/v1";
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

    /// The signed claim that this party owns the blob `hash` (header `x-emr-owner` of a PUT).
    pub fn blob_claim(&self, hash: &Hash, now: u64) -> String {
        let payload = serde_json::to_value(BlobClaim {
            blob: *hash,
            owner: self.keys.id.clone(),
            iat: now,
        })
        .expect("claims serialize");
        jws::sign(
            &self.keys.signing,
            &jws::Header::es256(BLOB_CLAIM_TYP, None),
            &payload,
        )
    }

    /// The AccessLog that authorises, and records, this party's read of the blob `record`
    /// (header `x-emr-access` of a GET): its own, or through `grant_id`.
    pub fn access_log(
        &mut self,
        record: &Hash,
        grant_id: Option<&str>,
        now: u64,
    ) -> SignedTransaction {
        self.sign(TxBody::AccessLog {
            accessor: self.keys.id.clone(),
            record_id: record.to_hex(),
            action: Action::Read,
            at: now,
            outcome: Outcome::Granted,
            grant_id: grant_id.map(str::to_owned),
        })
    }

    /// The UploadIndex transaction for a stored record: where it is (and which record, if
    /// known), sealed to this party, tagged with `department` (bread crumbs), linked to the
    /// previous entry `previous`.
    pub fn upload_index(
        &mut self,
        department: &str,
        location: &str,
        blob: &Hash,
        record_id: Option<&str>,
        now: u64,
        previous: Option<Hash>,
    ) -> Result<SignedTransaction, JweError> {
        let entry = IndexEntry {
            format: IndexEntry::FORMAT.into(),
            location: location.into(),
            blob: *blob,
            time: now,
            record_id: record_id.map(str::to_owned),
        };
        let sealed = Envelope::seal_to(
            &serde_json::to_vec(&entry).expect("entries serialize"),
            &[&self.keys.public()],
            Some(INDEX_ENTRY_CTY),
        )?
        .to_compact()?;
        Ok(self.sign(TxBody::UploadIndex {
            department: department.into(),
            entry_jwe: sealed,
            previous,
        }))
    }

    /// Reads one of this party's index entries back.
    pub fn open_index_entry(&self, entry_jwe: &str) -> Result<IndexEntry, JweError> {
        open_index_entry(&self.keys, entry_jwe)
    }

    /// Grants `grantee` `actions` on `parts` of the record stored at `record` until
    /// `not_after`; returns the grant's fresh random ID and the transaction.
    pub fn grant(
        &mut self,
        grantee: &VerifiedEntry,
        record: &Hash,
        parts: &[&str],
        actions: &[Action],
        not_after: u64,
    ) -> (String, SignedTransaction) {
        let grant_id = format!("grant-{}", b64::encode(hazmat::random_array::<16>()));
        let tx = self.sign(TxBody::Grant {
            grant_id: grant_id.clone(),
            grantee: grantee.id().clone(),
            record_id: record.to_hex(),
            parts: parts.iter().map(|p| (*p).to_owned()).collect(),
            actions: actions.to_vec(),
            not_after,
        });
        (grant_id, tx)
    }

    /// Revokes the grant `grant_id` (the chain takes it from its grantor only).
    pub fn revoke_grant(&mut self, grant_id: &str) -> SignedTransaction {
        self.sign(TxBody::RevokeGrant {
            grant_id: grant_id.into(),
        })
    }
}

/// Reads an index entry sealed to `keys` (a party's current keys, or keys it used before a
/// rotation).
pub fn open_index_entry(keys: &PrivateKeySet, entry_jwe: &str) -> Result<IndexEntry, JweError> {
    let plaintext = Envelope::parse(entry_jwe.as_bytes())?.open(keys)?;
    crate::strict_json::parse(&plaintext).map_err(JweError::from)
}

/// The envelope a grantee can open: `envelope` (which `holder` can open) with the content
/// key also wrapped to `grantee`'s registered key. The content is not re-encrypted, but the
/// bytes change, so the shared version is a new blob with its own address.
pub fn share_envelope(
    envelope: &Envelope,
    holder: &PrivateKeySet,
    grantee: &VerifiedEntry,
) -> Result<Envelope, JweError> {
    let keys = grantee.public_keys().map_err(|_| JweError::Wrap)?;
    let kid = keys.id.encryption_kid();
    let mut shared = envelope.clone();
    shared.add_recipient(
        holder,
        Recipient {
            kid: &kid,
            key: &keys.encryption,
        },
    )?;
    Ok(shared)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::RsaBits;
    use crate::ledger::machine::Context;
    use crate::ledger::testkit::{CHAIN, TestChain};

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
    fn accounts_number_their_transactions_and_the_chain_accepts_them() {
        let keys = PrivateKeySet::generate(None, RsaBits::B2048);
        let mut patient = Account::new(keys, CHAIN, 0);
        let mut chain = TestChain::new();
        let voucher = chain.voucher(patient.id());
        chain.apply(&[]);
        let mut state = chain.state.clone();
        let ctx = |height| Context {
            chain_id: CHAIN,
            height,
            now: 1_000,
        };
        state
            .apply(&patient.register_patient(voucher, 0, 10_000), ctx(1))
            .unwrap();
        let blob = crate::content_hash(b"ciphertext");
        let index = patient
            .upload_index(
                "cardiology",
                "node:0/blobs",
                &blob,
                Some("emr-1"),
                1_000,
                None,
            )
            .unwrap();
        state.apply(&index, ctx(2)).unwrap();
        assert_eq!(state.index_head(patient.id()), Some(index.id()));
        assert_eq!(state.crumbs(patient.id(), "cardiology"), [2]);
        // The entry is sealed to the patient: the chain holds it, only the patient reads it.
        let TxBody::UploadIndex { entry_jwe, .. } = &index.transaction().body else {
            unreachable!()
        };
        let entry = patient.open_index_entry(entry_jwe).unwrap();
        assert_eq!(
            (entry.blob, entry.record_id.as_deref()),
            (blob, Some("emr-1"))
        );
        let stranger = Account::new(PrivateKeySet::generate(None, RsaBits::B2048), CHAIN, 0);
        assert!(stranger.open_index_entry(entry_jwe).is_err());
        // A second entry must link the first.
        let unlinked = patient
            .upload_index("cardiology", "x", &blob, None, 1_001, None)
            .unwrap();
        assert!(state.apply(&unlinked, ctx(3)).is_err());
        assert_eq!(patient.next_sequence(), 3);
    }

    #[test]
    fn a_grant_wraps_the_content_key_to_the_grantee_only() {
        let mut chain = TestChain::new();
        let patient_keys = chain.register(None, Role::Patient);
        let insurer_keys = chain.register(Some("insurer:acme"), Role::Insurer);
        let insurer_entry = lookup(&chain, &insurer_keys.id);
        let envelope = Envelope::seal_to(b"the record", &[&patient_keys.public()], None).unwrap();
        let shared = share_envelope(&envelope, &patient_keys, &insurer_entry).unwrap();
        assert_eq!(&*shared.open(&insurer_keys).unwrap(), b"the record");
        assert_eq!(&*shared.open(&patient_keys).unwrap(), b"the record");
        let other =
            PrivateKeySet::generate(Some(PartyId::new("insurer:other").unwrap()), RsaBits::B2048);
        assert!(shared.open(&other).is_err());
        // Only a holder of the content key can share it.
        assert!(share_envelope(&envelope, &other, &insurer_entry).is_err());

        let mut patient = Account::new(patient_keys, CHAIN, 1);
        let blob = crate::content_hash(shared.serialize().as_bytes());
        let (grant_id, tx) = patient.grant(
            &insurer_entry,
            &blob,
            &["examination"],
            &[Action::Read],
            5_000,
        );
        chain.apply(&[tx]);
        let grant = chain.state.grant(&grant_id).unwrap();
        assert_eq!(grant.grantee, insurer_keys.id);
        assert!(grant.allows(Action::Read, 4_000));
        assert!(!grant.allows(Action::Copy, 4_000));
        assert!(!grant.allows(Action::Read, 5_001));
        chain.apply(&[patient.revoke_grant(&grant_id)]);
        assert!(
            !chain
                .state
                .grant(&grant_id)
                .unwrap()
                .allows(Action::Read, 4_000)
        );
        // Grant IDs are fresh.
        let (again, _) = patient.grant(&insurer_entry, &blob, &[], &[Action::Read], 5_000);
        assert_ne!(again, grant_id);
    }

    #[test]
    fn claims_and_access_logs_name_the_blob_and_the_party() {
        let keys =
            PrivateKeySet::generate(Some(PartyId::new("insurer:acme").unwrap()), RsaBits::B2048);
        let mut insurer = Account::new(keys, CHAIN, 4);
        let blob = crate::content_hash(b"x");
        let claim = insurer.blob_claim(&blob, 77);
        let verified = jws::verify(
            &claim,
            insurer.keys().signing.verifying_key(),
            BLOB_CLAIM_TYP,
        )
        .unwrap();
        assert_eq!(verified.payload["blob"], blob.to_hex());
        assert_eq!(verified.payload["owner"], "insurer:acme");
        assert_eq!(verified.payload["iat"], 77);
        let log = insurer.access_log(&blob, Some("g"), 78);
        assert_eq!(log.transaction().sequence, 4);
        let TxBody::AccessLog {
            accessor,
            record_id,
            grant_id,
            ..
        } = &log.transaction().body
        else {
            unreachable!()
        };
        assert_eq!(accessor.as_str(), "insurer:acme");
        assert_eq!(record_id, &blob.to_hex());
        assert_eq!(grant_id.as_deref(), Some("g"));
    }
}
