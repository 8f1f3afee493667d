//! A patient's records on a ledger that tells a reader nothing linkable (DESIGN section 6),
//! sans I/O: each record has its own account, whose key and secrets derive from the
//! patient's master secret ([`crate::keys::txkeys`]); grants are capabilities; access logs
//! are sealed to the patient.
//!
//! - [`RecordKeys`] (the patient, for its `n`-th record): the record's signing key (its
//!   account ID is the key's thumbprint), the secret its index entry and its handshake logs
//!   are sealed under, and for each grant the grant's own key and log secret. Two records of
//!   one patient share nothing a chain reader can see; the patient re-derives every one from
//!   the master secret alone, so its index is found by asking for record 0, 1, 2, ... until
//!   the chain proves one absent.
//! - [`GrantCapability`] (the grantee): what it opens from a grant's sealed details, with its
//!   registered key: the grant's key (which signs its fetches), the log secret, the parts and
//!   the patient.
//! - [`IndexEntry`], [`GrantDetails`], [`LogDetails`]: what is sealed, and to whom.

use crate::jwe::{Envelope, JweError};
use crate::keys::txkeys::MasterSecret;
use crate::keys::{EncryptionKey, Jwk, PartyId, PrivateKeySet, SigningKey, VerifyingKey};
use crate::ledger::machine::{GrantEntry, LogEntry, RecordEntry, log_key, record_key};
use crate::ledger::tx::{Action, Outcome, SignedTransaction, Transaction, TxBody};
use crate::ledger::verify::LightClient;
use crate::ledger::wire::{MAX_LOGS_PER_ANSWER, RecordAnswer};
use crate::ledger::wire::{
    RECORD_VOUCHER_REQUEST_TYP, RecordVoucherAnswer, RecordVoucherClaims, RecordVoucherRequest,
};
use crate::lookup::NodeFault;
use crate::sealed::{self, SealedError};
use crate::voucher::{Voucher, VoucherError, VoucherKey};
use crate::{Hash, b64, hazmat, jws, strict_json};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The `typ` of an owner's signed claim on a blob it uploads.
pub const BLOB_CLAIM_TYP: &str = "emr-blob+jwt";

/// A record's account's claim on a blob it uploads (the payload of its `x-emr-owner` JWS,
/// typ [`BLOB_CLAIM_TYP`]): one type for the client that signs it and the node that checks
/// it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobClaim {
    /// The blob's address: SHA-256 of its bytes.
    pub blob: Hash,
    /// The record's account that uploads the blob and signs the claim.
    pub owner: PartyId,
    /// Unix seconds.
    pub iat: u64,
}

/// The content type of a grant's sealed details.
pub const GRANT_DETAILS_CTY: &str = "emrshare-grant+json";

/// Where a record's ciphertext lives and what it is (BPDS eq. 3: url, hash of the
/// ciphertext, time; MedBlock's department tag), sealed in its account so only the patient
/// reads it.
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
    /// The department the record is filed under.
    pub department: String,
    /// The record's ID (its `emr_id`), so the patient finds the record a handshake shares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
}

impl IndexEntry {
    /// The format of the entries this version writes.
    pub const FORMAT: &'static str = "emrshare-index-entry/v2";
}

/// What a grant tells its grantee, sealed to the grantee's registered key: the grant's own
/// key and log secret, and what it shares. Names the grant, so details cannot be moved to
/// another grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantDetails {
    /// The grant these details belong to.
    pub grant_id: String,
    /// The patient whose record is shared (its records name it as subject).
    pub patient: PartyId,
    /// The grantee (the registered party the details are sealed to).
    pub grantee: PartyId,
    /// The record's ID (`emr_id`), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
    /// The parts of the record shared; empty for the whole record.
    pub parts: Vec<String>,
    /// The grant's private signing key: a P-256 scalar, base64url.
    pub grant_key: String,
    /// The secret the grantee seals its access logs under, base64url.
    pub log_secret: String,
}

impl GrantDetails {
    /// Opens the details of the grant `grant_id` (as the chain holds it) with the keys of
    /// its grantee or its patient: they must name this grant, and hold the key the chain
    /// committed to.
    pub fn open(
        keys: &PrivateKeySet,
        grant_id: &str,
        grant: &GrantEntry,
    ) -> Result<Self, RecordAccountError> {
        let envelope = Envelope::parse(grant.details.as_bytes())?;
        if envelope.content_type() != Some(GRANT_DETAILS_CTY) {
            return Err(RecordAccountError::Invalid("not a grant's details"));
        }
        let plaintext = envelope.open(keys)?;
        let details: GrantDetails = strict_json::parse(&plaintext)
            .map_err(|_| RecordAccountError::Invalid("malformed grant details"))?;
        if details.grant_id != grant_id {
            return Err(RecordAccountError::Invalid(
                "the details are of another grant",
            ));
        }
        if grant_key_commitment(details.signing_key()?.verifying_key()) != grant.grant_key {
            return Err(RecordAccountError::Invalid(
                "the grant's key is not the one the chain holds",
            ));
        }
        Ok(details)
    }

    fn signing_key(&self) -> Result<SigningKey, RecordAccountError> {
        let scalar = Zeroizing::new(
            b64::decode(&self.grant_key)
                .map_err(|_| RecordAccountError::Invalid("malformed grant key"))?,
        );
        SigningKey::from_scalar(&scalar)
            .map_err(|_| RecordAccountError::Invalid("malformed grant key"))
    }
}

/// What an access log says in private, sealed under the grant's (or the record's) log
/// secret: only the patient (and, for its own logs, the grantee) reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogDetails {
    /// Who accessed the record.
    pub accessor: PartyId,
    /// The record accessed: its blob address (hex) or, for a handshake, its `emr_id`.
    pub record_id: String,
    /// Why, as the accessor said (a handshake's purpose).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// Whether the access was granted.
    pub outcome: Outcome,
}

/// Why a sealed part of a record's account does not open, or a grant's details do not fit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordAccountError {
    /// A sealed text does not open (another record, another secret, or altered).
    #[error(transparent)]
    Sealed(#[from] SealedError),
    /// A grant's details do not open with this party's keys.
    #[error("grant details: {0}")]
    Jwe(#[from] JweError),
    /// What opened is not what it should be (why, fixed text).
    #[error("{0}")]
    Invalid(&'static str),
}

/// The secrets of a patient's `n`-th record, derived from its master secret.
pub struct RecordKeys {
    n: u64,
    secrets: MasterSecret,
    key: SigningKey,
    id: PartyId,
}

impl std::fmt::Debug for RecordKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("RecordKeys")
            .field("n", &self.n)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn sign(
    key: &SigningKey,
    chain_id: &str,
    sender: &PartyId,
    sequence: u64,
    body: TxBody,
) -> SignedTransaction {
    Transaction {
        chain_id: chain_id.into(),
        sender: sender.clone(),
        sequence,
        body,
    }
    .sign(key)
}

/// An AccessLog signed by `key` as `sender`'s transaction `sequence` on `chain_id`: under
/// `grant_id` (carrying the key as the grant's) or the record's own; `details` sealed under
/// `secret` for `context`.
fn access_log(
    key: &SigningKey,
    (chain_id, sender, sequence): (&str, &PartyId, u64),
    grant_id: Option<&str>,
    (action, at): (Action, u64),
    (secret, context, details): (&[u8; 32], &str, &LogDetails),
) -> SignedTransaction {
    let plaintext = serde_json::to_vec(details).expect("details serialize");
    sign(
        key,
        chain_id,
        sender,
        sequence,
        TxBody::AccessLog {
            grant_id: grant_id.map(str::to_owned),
            grant_jwk: grant_id.map(|_| key.verifying_key().to_jwk(None)),
            action,
            at,
            details: sealed::seal(secret, context, &plaintext),
        },
    )
}

fn thumbprint_id(key: &VerifyingKey) -> PartyId {
    PartyId::new(key.thumbprint()).expect("a thumbprint is a valid party ID")
}

impl RecordKeys {
    /// The keys of record `n` of the patient whose master secret is `master`.
    pub fn derive(master: &MasterSecret, n: u64) -> Self {
        let secrets = MasterSecret::from_bytes(*master.derive_secret(&format!("record/{n}")));
        let key = secrets.derive_transaction_key("record");
        let id = thumbprint_id(key.verifying_key());
        Self {
            n,
            secrets,
            key,
            id,
        }
    }

    /// Which of the patient's records this is.
    pub fn n(&self) -> u64 {
        self.n
    }

    /// The record's account ID: the thumbprint of its key.
    pub fn id(&self) -> &PartyId {
        &self.id
    }

    /// The record's signing key.
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    fn index_context(&self) -> String {
        format!("emrshare/index/{}", self.id)
    }

    fn log_context(&self, grant_id: Option<&str>) -> String {
        match grant_id {
            Some(grant_id) => grant_log_context(grant_id),
            None => format!("emrshare/log/record/{}", self.id),
        }
    }

    fn log_secret(&self, grant_id: Option<&str>) -> Zeroizing<[u8; 32]> {
        match grant_id {
            Some(grant_id) => self.secrets.derive_secret(&format!("grant/{grant_id}/log")),
            None => self.secrets.derive_secret("log"),
        }
    }

    /// The key of this record's grant `grant_id` (the patient's copy of what the grantee
    /// holds).
    pub fn grant_signing_key(&self, grant_id: &str) -> SigningKey {
        self.secrets
            .derive_transaction_key(&format!("grant/{grant_id}"))
    }

    /// Opens the record's account (its first transaction): its key, the `voucher` a node
    /// signed blind for [`Self::id`] on `chain_id`, and `entry` sealed.
    pub fn open_account(
        &self,
        chain_id: &str,
        voucher: Voucher,
        entry: &IndexEntry,
    ) -> SignedTransaction {
        let plaintext = serde_json::to_vec(entry).expect("entries serialize");
        sign(
            &self.key,
            chain_id,
            &self.id,
            0,
            TxBody::OpenRecord {
                signing_jwk: self.key.verifying_key().to_jwk(None),
                voucher,
                entry: sealed::seal(
                    &self.secrets.derive_secret("index"),
                    &self.index_context(),
                    &plaintext,
                ),
            },
        )
    }

    /// Reads the record's index entry back from its account's sealed `entry`.
    pub fn open_entry(&self, entry: &str) -> Result<IndexEntry, RecordAccountError> {
        let plaintext = sealed::open(
            &self.secrets.derive_secret("index"),
            &self.index_context(),
            entry,
        )?;
        strict_json::parse(&plaintext)
            .map_err(|_| RecordAccountError::Invalid("malformed index entry"))
    }

    /// The signed claim that this record's account owns the blob `hash` (header
    /// `x-emr-owner` of a PUT).
    pub fn blob_claim(&self, hash: &Hash, now: u64) -> String {
        let payload = serde_json::to_value(BlobClaim {
            blob: *hash,
            owner: self.id.clone(),
            iat: now,
        })
        .expect("claims serialize");
        jws::sign(
            &self.key,
            &jws::Header::es256(BLOB_CLAIM_TYP, None),
            &payload,
        )
    }

    /// A grant to `grantee` (its registered, verified keys) of `actions` on the version of
    /// the record stored at `blob` until `not_after`, as the record's account's transaction
    /// number `sequence`; the details are sealed to the grantee and to `patient` (its ID
    /// and current encryption key), neither named. Returns the grant's fresh random ID and
    /// the transaction.
    #[allow(clippy::too_many_arguments)]
    pub fn grant(
        &self,
        chain_id: &str,
        sequence: u64,
        patient: (&PartyId, &EncryptionKey),
        grantee: (&PartyId, &EncryptionKey),
        blob: &Hash,
        record_id: Option<&str>,
        parts: &[String],
        actions: &[Action],
        not_after: u64,
    ) -> Result<(String, SignedTransaction), RecordAccountError> {
        let grant_id = format!("grant-{}", b64::encode(hazmat::random_array::<16>()));
        let grant_key = self.grant_signing_key(&grant_id);
        let details = GrantDetails {
            grant_id: grant_id.clone(),
            patient: patient.0.clone(),
            grantee: grantee.0.clone(),
            record_id: record_id.map(str::to_owned),
            parts: parts.to_vec(),
            grant_key: b64::encode(grant_key.to_scalar().as_slice()),
            log_secret: b64::encode(self.log_secret(Some(&grant_id)).as_slice()),
        };
        let sealed = Envelope::seal_unnamed_to(
            &Zeroizing::new(serde_json::to_vec(&details).expect("details serialize")),
            &[grantee.1, patient.1],
            Some(GRANT_DETAILS_CTY),
        )?
        .serialize();
        let tx = sign(
            &self.key,
            chain_id,
            &self.id,
            sequence,
            TxBody::Grant {
                grant_id: grant_id.clone(),
                blob: *blob,
                grant_key: grant_key_commitment(grant_key.verifying_key()),
                actions: actions.to_vec(),
                not_after,
                details: sealed,
            },
        );
        Ok((grant_id, tx))
    }

    /// Revokes the grant `grant_id`, as the record's account's transaction `sequence`.
    pub fn revoke(&self, chain_id: &str, sequence: u64, grant_id: &str) -> SignedTransaction {
        sign(
            &self.key,
            chain_id,
            &self.id,
            sequence,
            TxBody::RevokeGrant {
                grant_id: grant_id.into(),
            },
        )
    }

    /// Logs an access the patient allowed itself (a handshake), sealed under the record's
    /// log secret, as the record's account's transaction `sequence`.
    pub fn log_access(
        &self,
        chain_id: &str,
        sequence: u64,
        action: Action,
        at: u64,
        details: &LogDetails,
    ) -> SignedTransaction {
        access_log(
            &self.key,
            (chain_id, &self.id, sequence),
            None,
            (action, at),
            (&self.log_secret(None), &self.log_context(None), details),
        )
    }

    /// Reads one of the record's access logs (under a grant of this record, or its own).
    pub fn open_log(&self, log: &LogEntry) -> Result<LogDetails, RecordAccountError> {
        let grant_id = log.grant_id.as_deref();
        let plaintext = sealed::open(
            &self.log_secret(grant_id),
            &self.log_context(grant_id),
            &log.details,
        )?;
        strict_json::parse(&plaintext)
            .map_err(|_| RecordAccountError::Invalid("malformed log details"))
    }
}

fn grant_log_context(grant_id: &str) -> String {
    format!("emrshare/log/grant/{grant_id}")
}

/// The commitment a grant holds to its key: SHA-256 of the key's thumbprint.
pub fn grant_key_commitment(key: &VerifyingKey) -> Hash {
    Hash::sha256(key.thumbprint().as_bytes())
}

/// A grant as its grantee holds it: the details opened, the grant's key checked against the
/// chain's commitment.
pub struct GrantCapability {
    details: GrantDetails,
    key: SigningKey,
    id: PartyId,
    log_secret: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for GrantCapability {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("GrantCapability")
            .field("grant_id", &self.details.grant_id)
            .finish_non_exhaustive()
    }
}

impl GrantCapability {
    /// Opens the grant `grant_id` (as the chain holds it) with the grantee's keys: the
    /// details must name this grant and this grantee, and their key must be the one the
    /// chain committed to.
    pub fn open(
        keys: &PrivateKeySet,
        grant_id: &str,
        grant: &GrantEntry,
    ) -> Result<Self, RecordAccountError> {
        let details = GrantDetails::open(keys, grant_id, grant)?;
        if details.grantee != keys.id {
            return Err(RecordAccountError::Invalid(
                "the grant is for another grantee",
            ));
        }
        let key = details.signing_key()?;
        let log_secret = Zeroizing::new(
            b64::decode_array::<32>(&details.log_secret)
                .map_err(|_| RecordAccountError::Invalid("malformed log secret"))?,
        );
        let id = thumbprint_id(key.verifying_key());
        Ok(Self {
            details,
            key,
            id,
            log_secret,
        })
    }

    /// What the grant shares, and with whom.
    pub fn details(&self) -> &GrantDetails {
        &self.details
    }

    /// The account the grant's key signs as: its thumbprint.
    pub fn key_id(&self) -> &PartyId {
        &self.id
    }

    /// The access log that authorises, and records, a read under the grant (header
    /// `x-emr-access` of a GET), as the grant key's transaction `sequence`; `record` is the
    /// blob read, sealed with the accessor's ID.
    pub fn access_log(
        &self,
        chain_id: &str,
        sequence: u64,
        record: &Hash,
        at: u64,
    ) -> SignedTransaction {
        let details = LogDetails {
            accessor: self.details.grantee.clone(),
            record_id: record.to_hex(),
            purpose: None,
            outcome: Outcome::Granted,
        };
        // The record's account is not known to the grantee: the context names the grant,
        // which the chain ties to the record.
        let context = grant_log_context(&self.details.grant_id);
        access_log(
            &self.key,
            (chain_id, &self.id, sequence),
            Some(&self.details.grant_id),
            (Action::Read, at),
            (&self.log_secret, &context, &details),
        )
    }
}

/// A record voucher being asked for: the message blinded under each of genesis's record
/// voucher keys, kept until the node's answer is unblinded.
pub struct PendingRecordVoucher(Vec<crate::voucher::PendingVoucher>);

impl std::fmt::Debug for PendingRecordVoucher {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("PendingRecordVoucher([redacted])")
    }
}

/// A registered patient's request for a record voucher for the account `record`: the
/// voucher message blinded under every key of `issuers` (genesis's record voucher keys, in
/// order), signed with the patient's registered key (`patient`: its ID and signing key) at
/// `now`.
pub fn request_record_voucher(
    patient: (&PartyId, &SigningKey),
    chain_id: &str,
    issuers: &[Jwk],
    record: &PartyId,
    now: u64,
) -> Result<(PendingRecordVoucher, RecordVoucherRequest), VoucherError> {
    if issuers.is_empty() {
        return Err(VoucherError::Key("genesis names no record voucher keys"));
    }
    let mut pending = Vec::new();
    let mut blinded = Vec::new();
    for jwk in issuers {
        let key = VoucherKey::from_jwk(jwk)?;
        let (waiting, message) = crate::voucher::blind(&key, chain_id, record)?;
        pending.push(waiting);
        blinded.push(b64::encode(&message));
    }
    let claims = serde_json::to_value(RecordVoucherClaims {
        blinded,
        iat: now,
        iss: patient.0.clone(),
    })
    .expect("claims serialize");
    let request = jws::sign(
        patient.1,
        &jws::Header::es256(RECORD_VOUCHER_REQUEST_TYP, None),
        &claims,
    );
    Ok((
        PendingRecordVoucher(pending),
        RecordVoucherRequest { request },
    ))
}

impl PendingRecordVoucher {
    /// Unblinds a node's answer under the key it names (which checks it).
    pub fn finalize(self, answer: &RecordVoucherAnswer) -> Result<Voucher, VoucherError> {
        let signature = b64::decode(&answer.blind_signature)
            .map_err(|_| VoucherError::Malformed("blind signature encoding"))?;
        self.0
            .into_iter()
            .nth(answer.key as usize)
            .ok_or(VoucherError::Malformed("a key genesis does not name"))?
            .finalize(&signature)
    }
}

/// A record's account and some of its access logs, as an answer proves them.
#[derive(Debug, Clone, PartialEq)]
pub struct ProvenRecord {
    /// The account, or `None` where the state proves it is not open.
    pub record: Option<RecordEntry>,
    /// Its access logs from the one asked for on, in order.
    pub logs: Vec<LogEntry>,
}

/// Checks a node's answer for the account `record` and its logs from `from` on, under
/// `trust`'s last header (the caller accepted the answer's header): the account's proof,
/// then exactly as many logs as the proven account states from `from` (at most
/// [`MAX_LOGS_PER_ANSWER`]), each proven at its place. A node can neither hide the account
/// nor a log below its count, nor show one the state does not hold.
pub fn verify_record_answer(
    trust: &LightClient,
    record: &PartyId,
    from: u64,
    answer: &RecordAnswer,
) -> Result<ProvenRecord, NodeFault> {
    let fault = |error| NodeFault::Entry {
        id: record.clone(),
        error,
    };
    let malformed = || NodeFault::Malformed("a value of another shape".into());
    let entry = trust
        .verify_value(
            &record_key(record),
            answer.record.value.as_deref().map(str::as_bytes),
            &answer.record.proof,
        )
        .map_err(fault)?
        .map(serde_json::from_slice::<RecordEntry>)
        .transpose()
        .map_err(|_| malformed())?;
    let count = entry.as_ref().map_or(0, |e| e.logs);
    let expected = count.saturating_sub(from).min(MAX_LOGS_PER_ANSWER);
    if answer.logs.len() as u64 != expected {
        return Err(NodeFault::Malformed(
            "an answer with more or fewer logs than the account states".into(),
        ));
    }
    let mut logs = Vec::with_capacity(answer.logs.len());
    for (i, proven) in answer.logs.iter().enumerate() {
        // Below the proven count, so no overflow.
        let n = from + i as u64;
        let value = trust
            .verify_value(
                &log_key(record, n),
                proven.value.as_deref().map(str::as_bytes),
                &proven.proof,
            )
            .map_err(fault)?
            .ok_or_else(malformed)?;
        logs.push(serde_json::from_slice::<LogEntry>(value).map_err(|_| malformed())?);
    }
    Ok(ProvenRecord {
        record: entry,
        logs,
    })
}

/// The public JWK a record's account or a grant key registers (for tests and tools).
pub fn public_jwk(key: &SigningKey) -> Jwk {
    key.verifying_key().to_jwk(None)
}
