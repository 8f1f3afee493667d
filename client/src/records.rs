//! The record flows of DESIGN section 1, written once for every front end: a doctor seals a
//! record to a registered patient; the patient receives and verifies it, stores it (blob and
//! index entry), grants access to it whole or in chosen parts, revokes, reads its index and
//! audit log; a requester fetches a granted record and verifies it.
//!
//! Every record accepted is checked against its issuer's and its hospital's proven registry
//! entries ([`ces::verify_registered`]: a doctor affiliated with the hospital, or the hospital
//! itself, both active at issue time, the key then in force), every party a flow seals to
//! comes from a verified lookup in the role asked.

use crate::error::{ClientError, Result};
use crate::party::{LookedUp, Party, now};
use crate::transport::Transport;
use emrshare_core::PublicKeySet;
use emrshare_core::account::share_envelope;
use emrshare_core::ces::{self, IssueOptions, KeyBindingRequirement, SdJwt, VerifiedRecord};
use emrshare_core::jwe::{Envelope, MAX_ENVELOPE_BYTES};
use emrshare_core::keys::PartyId;
use emrshare_core::ledger::machine::GrantEntry;
use emrshare_core::ledger::merkle::Hash;
use emrshare_core::ledger::tx::{Action, Outcome, Role};
use emrshare_core::record::{Ceas, Record};
use emrshare_core::record_account::{
    GrantCapability, GrantDetails, IndexEntry, LogDetails, RecordKeys, request_record_voucher,
};
use emrshare_core::voucher::Voucher;

/// Asks a record's account without its logs (the first log past any account's).
const NO_LOGS: u64 = u64::MAX;

/// Decoy digests added to every record: they hide how many parts were made disclosable.
const DECOYS: usize = 2;

/// The most a grant may last (ten years).
pub const MAX_GRANT_SECONDS: u64 = 10 * 365 * 24 * 3600;

/// A record received and verified, with how its doctor was looked up.
#[derive(Debug)]
pub struct ReceivedRecord {
    /// The record, verified against its issuer's registry entry and this patient's keys.
    pub record: VerifiedRecord,
    /// The SD-JWT as received: what [`Party::store_record`] stores.
    pub sd_jwt: SdJwt,
    /// The issuer's verified lookup (a doctor or hospital, active when it issued the record).
    pub doctor: LookedUp,
}

/// A stored record: its blob, its envelope (sealed to the patient) and its proven index entry.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    /// The record's `emr_id` (empty if it has none).
    pub record_id: String,
    /// The stored envelope's address: SHA-256 of its bytes.
    pub blob: Hash,
    /// The department tag of its index entry.
    pub department: String,
    /// The stored envelope, sealed to the patient (JWE, compact when possible).
    pub envelope: String,
    /// The height of the certified header the record's account is proven under.
    pub index_height: u64,
    /// Which of the patient's records this is (its account derives from the master secret
    /// and this number).
    pub record: u64,
    /// The record's account ID on chain (it names nothing of the patient).
    pub account: PartyId,
}

/// Where an upload is (for progress reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadStage {
    /// The record is sealed to the patient.
    Sealed,
    /// The record's account (its index entry sealed in it) is about to be submitted.
    IndexSubmitted,
    /// The record's account is committed and proven.
    Committed,
    /// The envelope is stored on at least one node (the last stage: a node takes a blob
    /// only from an open account).
    Uploaded,
}

/// A grant as proven on chain.
#[derive(Debug, Clone)]
pub struct ProvenGrant {
    /// The ID the grant is stored under on chain.
    pub grant_id: String,
    /// The grant as the chain holds it.
    pub grant: GrantEntry,
    /// Its details (patient, grantee, parts), opened with this party's keys.
    pub details: GrantDetails,
    /// The height of the certified header it is proven under.
    pub height: u64,
}

/// An entry of the patient's index: a record's account, proven, its sealed entry opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedRecord {
    /// The stored envelope's address: SHA-256 of its bytes.
    pub blob: Hash,
    /// The record's `emr_id`, when the entry names it.
    pub record_id: Option<String>,
    /// The entry's department tag.
    pub department: String,
    /// Where the envelope is (`emrshare:blob/<hex address>` for a blob on the nodes).
    pub location: String,
    /// When the entry was made, Unix seconds.
    pub time: u64,
    /// The height of the block that opened the record's account.
    pub height: u64,
    /// Which of the patient's records this is.
    pub record: u64,
}

/// One logged access to a patient's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEvent {
    /// The height of the block that committed the AccessLog.
    pub height: u64,
    /// Who accessed the record (`None`: the log's sealed details did not open).
    pub accessor: Option<PartyId>,
    /// The record accessed: its blob address (hex), or its `emr_id` for a handshake.
    pub record_id: Option<String>,
    /// Why, as the accessor said (a handshake's purpose).
    pub purpose: Option<String>,
    /// What the accessor did.
    pub action: Action,
    /// When, Unix seconds, as the accessor logged it.
    pub at: u64,
    /// Whether the access was granted.
    pub outcome: Outcome,
    /// The grant the access was made under, if any.
    pub grant_id: Option<String>,
}

/// A record fetched under a grant and verified.
#[derive(Debug)]
pub struct FetchedRecord {
    /// The record, verified against its issuer's registry entry.
    pub record: VerifiedRecord,
    /// The SD-JWT as fetched: the whole record, or the parts granted.
    pub sd_jwt: SdJwt,
    /// The grant it was fetched under, proven live and to this party.
    pub grant: ProvenGrant,
    /// The issuer's verified lookup (a doctor or hospital, active when it issued the record).
    pub doctor: LookedUp,
}

/// The claims of a record's issuer-signed JWT, unverified (what it says of itself).
fn claims(sd_jwt: &SdJwt) -> Result<serde_json::Value> {
    emrshare_core::jws::unverified_payload(sd_jwt.serialize().split('~').next().unwrap_or(""))
        .map_err(|_| ClientError::Invalid("not a record"))
}

/// The `emr_id` a record's issuer JWT names, unverified (what it says of itself).
pub fn emr_id_of(sd_jwt: &SdJwt) -> Option<String> {
    claims(sd_jwt).ok().as_ref().and_then(emr_id)
}

/// A record's `emr_id`, if its claims name one.
fn emr_id(claims: &serde_json::Value) -> Option<String> {
    claims
        .get("emr_id")
        .and_then(|v| v.as_str())
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
}

fn open_record<T: Transport>(party: &Party<T>, sealed: &[u8]) -> Result<SdJwt> {
    if sealed.len() > MAX_ENVELOPE_BYTES {
        return Err(ClientError::Unverified("the envelope is too large"));
    }
    let envelope = Envelope::parse(sealed).map_err(ClientError::Open)?;
    // A record stored before a rotation is sealed to the party's retired keys.
    let plaintext = party
        .try_keys(|k| envelope.open(k))
        .map_err(ClientError::Open)?;
    let text =
        std::str::from_utf8(&plaintext).map_err(|_| ClientError::Unverified("malformed record"))?;
    Ok(SdJwt::parse(text)?)
}

/// Looks the record's issuer up (among doctors, then hospitals: both issue records) and its
/// hospital (a doctor's affiliation, or the issuer itself), and verifies the record against
/// both entries ([`ces::verify_registered`]).
async fn verify_issued<T: Transport>(
    party: &Party<T>,
    record: &SdJwt,
    holder: Option<&PublicKeySet>,
    key_binding: Option<KeyBindingRequirement<'_>>,
) -> Result<(VerifiedRecord, LookedUp)> {
    let doctor = party.look_up_issuer(&record.claimed_issuer()?).await?;
    let hospital = party.look_up_hospital_of(&doctor).await?;
    let verified = ces::verify_registered(
        record,
        &doctor.entry,
        &hospital.entry,
        holder,
        key_binding,
        now(),
    )?;
    Ok((verified, doctor))
}

impl<T: Transport> Party<T> {
    /// Looks a record's issuer up among the roles that issue records (doctors, then
    /// hospitals): its entry, registered in one of them, active now or not (whether it was
    /// active when it issued a record is the record's check).
    pub async fn look_up_issuer(&self, issuer: &PartyId) -> Result<LookedUp> {
        for role in ces::ISSUER_ROLES {
            match self.look_up_entry(issuer, *role).await {
                Ok(found) => return Ok(found),
                // Not in this role (or too few of the role to hide it): try the next.
                Err(ClientError::NotRegistered { .. } | ClientError::WeakLookup { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Err(ClientError::NotRegistered {
            id: issuer.clone(),
            role: Role::Doctor,
        })
    }

    /// The hospital of a record issuer found by [`Party::look_up_issuer`]: a doctor's
    /// affiliation (looked up among hospitals, active now or not), or a hospital itself.
    pub async fn look_up_hospital_of(&self, issuer: &LookedUp) -> Result<LookedUp> {
        match issuer.entry.affiliation() {
            None => Ok(issuer.clone()),
            Some(hospital) => self.look_up_entry(hospital, Role::Hospital).await,
        }
    }

    /// Signs `record` for `patient` (whose public keys the app holds, e.g. from a QR code)
    /// and seals it to them. The patient's keys must be self-certifying (its ID their
    /// thumbprint).
    pub fn sign_and_seal(
        &self,
        record: &Record,
        patient: &PublicKeySet,
        ceas: &Ceas,
    ) -> Result<String> {
        if !patient.is_self_certifying() {
            return Err(ClientError::Invalid(
                "a patient's ID must be its signing key's thumbprint",
            ));
        }
        self.seal_signed(record, patient, ceas)
    }

    /// Signs `record` for `patient` and seals it to `patient`'s key, whose ID the caller
    /// checked.
    fn seal_signed(&self, record: &Record, patient: &PublicKeySet, ceas: &Ceas) -> Result<String> {
        let signed = self.with_keys(|doctor| {
            ces::issue(
                doctor,
                patient,
                record,
                ceas,
                IssueOptions {
                    issued_at: now(),
                    decoys: DECOYS,
                },
            )
        })?;
        let sealed = Envelope::seal_to(
            signed.serialize().as_bytes(),
            &[patient],
            Some(ces::SD_JWT_TYP),
        )
        .map_err(ClientError::Seal)?;
        Ok(sealed.serialize())
    }

    /// [`Party::sign_and_seal`] to the keys `patient` registered (a verified k-anonymous
    /// lookup among patients).
    pub async fn sign_and_seal_for_registered(
        &self,
        record: &Record,
        patient: &PartyId,
        ceas: &Ceas,
    ) -> Result<String> {
        let found = self.look_up(patient, Role::Patient).await?;
        let keys = found
            .entry
            .public_keys()
            .map_err(|_| ClientError::Unverified("the patient's registered keys are invalid"))?;
        // The proven entry ties the ID to the patient's first key; after a rotation the
        // current key is another one, which the ID's thumbprint check would refuse.
        self.seal_signed(record, &keys, ceas)
    }

    /// Opens a record a doctor sealed to this patient and verifies it: the issuer's entry
    /// from a verified lookup (a doctor or hospital, active when it issued the record), the
    /// signature, every disclosure, the CEAS, and that the record is this patient's.
    pub async fn receive_record(&self, sealed: &str) -> Result<ReceivedRecord> {
        let sd_jwt = open_record(self, sealed.as_bytes())?;
        let own = self.with_keys(|k| k.public());
        let (record, doctor) = verify_issued(self, &sd_jwt, Some(&own), None).await?;
        Ok(ReceivedRecord {
            record,
            sd_jwt,
            doctor,
        })
    }

    /// Stores a received record in an account of its own (DESIGN section 6): the envelope
    /// sealed to the patient without naming it; the record's account opened on chain with a
    /// node's record voucher and the index entry sealed in it, then read back proven; then
    /// the envelope stored on up to n nodes under the account's claim. Nothing on chain or
    /// on the nodes names the patient. `progress` hears of each stage.
    pub async fn store_record(
        &self,
        sd_jwt: &SdJwt,
        department: &str,
        progress: &(dyn Fn(UploadStage, u64) + Send + Sync),
    ) -> Result<StoredRecord> {
        if department.is_empty() || department.chars().count() > 64 {
            return Err(ClientError::Invalid(
                "a department tag has 1 to 64 characters",
            ));
        }
        let id = self.id();
        let payload = claims(sd_jwt)?;
        // Only a record issued to this patient is stored.
        if payload.get("sub").and_then(|v| v.as_str()) != Some(id.as_str()) {
            return Err(ClientError::Invalid("the record is not this patient's"));
        }
        let record_id = emr_id(&payload).unwrap_or_default();
        let own = self.with_keys(|k| k.public());
        let envelope = Envelope::seal_unnamed_to(
            sd_jwt.serialize().as_bytes(),
            &[&own.encryption],
            Some(ces::SD_JWT_TYP),
        )
        .map_err(ClientError::Seal)?;
        let bytes = envelope.serialize().into_bytes();
        let total = bytes.len() as u64;
        progress(UploadStage::Sealed, total);
        let blob = emrshare_core::content_hash(&bytes);
        let entry = IndexEntry {
            format: IndexEntry::FORMAT.into(),
            location: format!("emrshare:blob/{}", blob.to_hex()),
            blob,
            time: now(),
            department: department.into(),
            record_id: (!record_id.is_empty()).then(|| record_id.clone()),
        };
        let (record, index_height) = self
            .open_record_account(&entry, || progress(UploadStage::IndexSubmitted, total))
            .await?;
        progress(UploadStage::Committed, total);
        self.put_record_blob(&record, &bytes).await?;
        progress(UploadStage::Uploaded, total);
        Ok(StoredRecord {
            record_id,
            blob,
            department: department.into(),
            envelope: envelope.serialize(),
            index_height,
            record: record.n(),
            account: record.id().clone(),
        })
    }

    /// Opens the account of this patient's next record with `entry` sealed in it (the first
    /// record the chain proves unopened); returns its keys and the height it is proven at.
    async fn open_record_account(
        &self,
        entry: &IndexEntry,
        submitted: impl Fn(),
    ) -> Result<(RecordKeys, u64)> {
        let _opening = self.opening_lock().await;
        let chain = self.client().config().genesis.chain_id.clone();
        let mut n = self.remembered_records();
        let record = loop {
            let record = self.record_keys(n)?;
            let found = self.client().record_account(record.id(), NO_LOGS).await?;
            if found.record.is_none() {
                break record;
            }
            n += 1;
        };
        let voucher = self.record_voucher(record.id()).await?;
        let open = record.open_account(&chain, voucher, entry);
        submitted();
        self.commit_as(record.id(), |sequence| {
            if sequence != 0 {
                return Err(ClientError::Unverified(
                    "the record's account was opened by another device",
                ));
            }
            Ok((open, ()))
        })
        .await?;
        let height = self
            .once_proven("the chain does not show the record's account", || async {
                let found = self.client().record_account(record.id(), NO_LOGS).await?;
                Ok(found.record.is_some().then_some(found.height))
            })
            .await?;
        self.remember_record(entry.blob, n);
        Ok((record, height))
    }

    /// A node's record voucher for the account `record`: asked with this patient's
    /// registered key, unblinded (and so checked) under the genesis key the answer names.
    async fn record_voucher(&self, record: &PartyId) -> Result<Voucher> {
        let genesis = &self.client().config().genesis;
        let (pending, request) = self.with_keys(|k| {
            request_record_voucher(
                (&k.id, &k.signing),
                &genesis.chain_id,
                &genesis.record_voucher_keys,
                record,
                now(),
            )
        })?;
        let answer = self.client().record_voucher(&request).await?;
        Ok(pending.finalize(&answer)?)
    }

    /// Uploads bytes under `record`'s claim; returns their address.
    async fn put_record_blob(&self, record: &RecordKeys, bytes: &[u8]) -> Result<Hash> {
        let hash = emrshare_core::content_hash(bytes);
        let claim = record.blob_claim(&hash, now());
        let stored = self.client().put_blob(bytes, &claim).await?;
        self.remember_record(hash, record.n());
        Ok(stored)
    }

    /// The keys of this patient's record that holds `blob` (its stored version or one it
    /// shared), from memory or from the proven index; failing that, the stored record whose
    /// `emr_id` is `record_id` (the envelope given is another copy of it, e.g. the doctor's).
    async fn record_holding(&self, blob: &Hash, record_id: Option<&str>) -> Result<RecordKeys> {
        if let Some(n) = self.remembered_record(blob) {
            return self.record_keys(n);
        }
        let index = self.indexed_records().await?;
        let n = self
            .remembered_record(blob)
            .or_else(|| {
                index
                    .iter()
                    .find(|r| record_id.is_some() && r.record_id.as_deref() == record_id)
                    .map(|r| r.record)
            })
            .ok_or(ClientError::Invalid(
                "this patient stored no such record: store it first",
            ))?;
        self.record_keys(n)
    }

    /// The keys of this patient's record whose account is `account`.
    async fn record_with_account(&self, account: &PartyId) -> Result<RecordKeys> {
        for indexed in self.indexed_records().await? {
            let record = self.record_keys(indexed.record)?;
            if record.id() == account {
                return Ok(record);
            }
        }
        Err(ClientError::Invalid(
            "the grant is not from this patient's records",
        ))
    }

    /// What a node answers between a write and the block that commits it: asked again until
    /// it shows the write, within the commit timeout; `missing` names what never showed.
    async fn once_proven<V, F, Fut>(&self, missing: &'static str, mut read: F) -> Result<V>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<V>>>,
    {
        let deadline = tokio::time::Instant::now() + self.settings().commit_timeout;
        loop {
            if let Some(proven) = read().await? {
                return Ok(proven);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClientError::Unverified(missing));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Grants `grantee` (looked up among `grantee_role`) read access for `valid_seconds` to
    /// the record in `envelope` (a [`StoredRecord`]'s), from the record's own account. With
    /// no `parts`, the whole record: its content key is wrapped to the grantee (the content
    /// is not re-encrypted). With parts, only those (and the mandatory ones) are extracted
    /// and sealed to patient and grantee. Either version is stored as its own blob, naming
    /// no reader; on chain the grant shows neither the grantee nor the parts.
    pub async fn grant(
        &self,
        envelope: &str,
        grantee: &PartyId,
        grantee_role: Role,
        parts: &[String],
        valid_seconds: u64,
    ) -> Result<ProvenGrant> {
        if valid_seconds == 0 || valid_seconds > MAX_GRANT_SECONDS {
            return Err(ClientError::Invalid("a grant lasts 1 second to 10 years"));
        }
        let stored = Envelope::parse(envelope.as_bytes()).map_err(ClientError::Open)?;
        let opened = open_record(self, envelope.as_bytes())?;
        let record_id = emr_id(&claims(&opened)?);
        let record = self
            .record_holding(
                &emrshare_core::content_hash(envelope.as_bytes()),
                record_id.as_deref(),
            )
            .await?;
        let grantee = self.look_up(grantee, grantee_role).await?.entry;
        let grantee_keys = grantee
            .public_keys()
            .map_err(|_| ClientError::Unverified("the grantee's registered keys are invalid"))?;
        let own = self.with_keys(|k| k.public());
        let names_nobody = stored.recipient_kids().iter().all(Option::is_none);
        let shared = if parts.is_empty() && names_nobody {
            // The stored version: its content key wrapped to the grantee too, unnamed.
            self.try_keys(|k| share_envelope(&stored, k, &grantee))
                .map_err(ClientError::Open)?
        } else {
            // Parts, or a copy that names its reader (the doctor's): sealed anew, unnamed.
            let shared = if parts.is_empty() {
                opened
            } else {
                let keep: Vec<&str> = parts.iter().map(String::as_str).collect();
                opened.extract(&keep)?
            };
            Envelope::seal_unnamed_to(
                shared.serialize().as_bytes(),
                &[&own.encryption, &grantee_keys.encryption],
                Some(ces::SD_JWT_TYP),
            )
            .map_err(ClientError::Seal)?
        };
        let blob = self
            .put_record_blob(&record, shared.serialize().as_bytes())
            .await?;
        let chain = self.client().config().genesis.chain_id.clone();
        let not_after = now() + valid_seconds;
        let grant_id = self
            .commit_as(record.id(), |sequence| {
                let (grant_id, tx) = record
                    .grant(
                        &chain,
                        sequence,
                        (&own.id, &own.encryption),
                        (&grantee_keys.id, &grantee_keys.encryption),
                        &blob,
                        record_id.as_deref(),
                        parts,
                        &[Action::Read],
                        not_after,
                    )
                    .map_err(|_| ClientError::Invalid("cannot seal the grant's details"))?;
                Ok((tx, grant_id))
            })
            .await?;
        self.once_proven("the chain does not show the grant", || {
            self.proven_grant(&grant_id)
        })
        .await
    }

    /// Revokes one of this patient's grants, from its record's account; returns it as
    /// proven revoked on chain.
    pub async fn revoke(&self, grant_id: &str) -> Result<ProvenGrant> {
        let proven = self
            .proven_grant(grant_id)
            .await?
            .ok_or(ClientError::Unverified("the chain proves no such grant"))?;
        let record = self.record_with_account(&proven.grant.record).await?;
        let chain = self.client().config().genesis.chain_id.clone();
        self.commit_as(record.id(), |sequence| {
            Ok((record.revoke(&chain, sequence, grant_id), ()))
        })
        .await?;
        self.once_proven("the chain does not show the grant revoked", || async {
            let proven = self
                .proven_grant(grant_id)
                .await?
                .ok_or(ClientError::Unverified("the grant is not on chain"))?;
            Ok(proven.grant.revoked_at.is_some().then_some(proven))
        })
        .await
    }

    /// A grant as proven on chain now, its details opened with this party's keys (its
    /// patient's or its grantee's); none if the chain proves there is no such grant.
    pub async fn proven_grant(&self, grant_id: &str) -> Result<Option<ProvenGrant>> {
        if grant_id.is_empty() || grant_id.len() > 128 {
            return Err(ClientError::Invalid("not a grant ID"));
        }
        let proven = self.client().grant(grant_id).await?;
        let Some(grant) = proven.grant else {
            return Ok(None);
        };
        let details = self
            .try_keys(|k| GrantDetails::open(k, grant_id, &grant))
            .map_err(|_| ClientError::Invalid("the grant is for another party: its details do not open with this party's keys"))?;
        Ok(Some(ProvenGrant {
            grant_id: grant_id.to_owned(),
            grant,
            details,
            height: proven.height,
        }))
    }

    /// Fetches the blob a grant names, under that grant: the grant is checked on chain
    /// (proven, live, its details this party's to open), the fetch carries an access log
    /// signed by the grant's own key (which the node commits, sealed to the patient), the
    /// envelope is opened, and the record verified against its issuer's registry entry and
    /// checked to be the granting patient's.
    pub async fn fetch_granted(&self, grant_id: &str) -> Result<FetchedRecord> {
        let grant = self
            .proven_grant(grant_id)
            .await?
            .ok_or(ClientError::Unverified("the chain proves no such grant"))?;
        let capability = self
            .try_keys(|k| GrantCapability::open(k, grant_id, &grant.grant))
            .map_err(|_| ClientError::Invalid("the grant is for another party"))?;
        if !grant.grant.allows(Action::Read, now()) {
            return Err(ClientError::Unverified(
                "the grant is revoked or expired on chain",
            ));
        }
        let chain = self.client().config().genesis.chain_id.clone();
        let blob = grant.grant.blob;
        let key_id = capability.key_id().clone();
        let bytes = {
            let _writing = self.write_lock().await;
            let next = self.client().next_sequence(&key_id).await?;
            let access = capability.access_log(&chain, next, &blob, now());
            let bytes = self.client().get_blob(&blob, &access).await?;
            // The node commits the access log; the next fetch must come after it.
            self.client()
                .wait_sequence(&key_id, next, self.settings().commit_timeout)
                .await
                .map_err(|_| ClientError::Timeout)?;
            bytes
        };
        let sd_jwt = open_record(self, &bytes)?;
        let (record, doctor) = verify_issued(self, &sd_jwt, None, None).await?;
        if record.patient() != grant.details.patient.as_str() {
            return Err(ClientError::Unverified(
                "the record belongs to another patient than the grantor",
            ));
        }
        Ok(FetchedRecord {
            record,
            sd_jwt,
            grant,
            doctor,
        })
    }

    /// Verifies a presentation `patient` made for this party: the issuer's registry entry,
    /// the disclosures, the mandatory parts, that the record is the patient's (registered
    /// keys), and the key binding to this party's ID and `nonce`.
    pub async fn verify_presentation(
        &self,
        presentation: &str,
        patient: &PartyId,
        nonce: &str,
    ) -> Result<(VerifiedRecord, LookedUp, LookedUp)> {
        let patient = self.look_up(patient, Role::Patient).await?;
        let patient_keys = patient
            .entry
            .public_keys()
            .map_err(|_| ClientError::Unverified("the patient's registered keys are invalid"))?;
        let sd_jwt = SdJwt::parse(presentation)?;
        let audience = self.id();
        let (record, doctor) = verify_issued(
            self,
            &sd_jwt,
            Some(&patient_keys),
            Some(KeyBindingRequirement {
                audience: audience.as_str(),
                nonce,
            }),
        )
        .await?;
        Ok((record, doctor, patient))
    }

    /// The patient's index: its records' accounts, 0, 1, 2, ... until the chain proves one
    /// unopened, each proven and its sealed entry opened. Nothing is replayed from blocks,
    /// and a node can hide no record (an absence is proven, and records are numbered).
    pub async fn indexed_records(&self) -> Result<Vec<IndexedRecord>> {
        let mut out = Vec::new();
        for n in 0.. {
            let record = self.record_keys(n)?;
            let found = self.client().record_account(record.id(), NO_LOGS).await?;
            let Some(account) = found.record else {
                break;
            };
            let entry = record
                .open_entry(&account.entry)
                .map_err(|_| ClientError::Unverified("a record's index entry does not open"))?;
            self.remember_record(entry.blob, n);
            out.push(IndexedRecord {
                blob: entry.blob,
                record_id: entry.record_id,
                department: entry.department,
                location: entry.location,
                time: entry.time,
                height: account.height,
                record: n,
            });
        }
        Ok(out)
    }

    /// Every logged access to the patient's records: each record's access logs, proven
    /// under its account (whose proven count says how many there are) and opened with the
    /// record's secrets. A log this patient cannot open (sealed wrongly by a grantee) is
    /// listed with what the chain shows in clear, its accessor unknown.
    pub async fn audit_log(&self) -> Result<Vec<AccessEvent>> {
        let mut events = Vec::new();
        for n in 0.. {
            let record = self.record_keys(n)?;
            let mut from = 0;
            loop {
                let found = self.client().record_account(record.id(), from).await?;
                let Some(account) = found.record else {
                    return Ok(events);
                };
                for log in &found.logs {
                    let details = record.open_log(log).ok();
                    events.push(AccessEvent {
                        height: log.height,
                        accessor: details.as_ref().map(|d| d.accessor.clone()),
                        record_id: details.as_ref().map(|d| d.record_id.clone()),
                        purpose: details.as_ref().and_then(|d| d.purpose.clone()),
                        action: log.action,
                        at: log.at,
                        outcome: details.as_ref().map_or(Outcome::Granted, |d| d.outcome),
                        grant_id: log.grant_id.clone(),
                    });
                }
                from += found.logs.len() as u64;
                if found.logs.is_empty() || from >= account.logs {
                    break;
                }
            }
        }
        Ok(events)
    }

    /// Logs on chain, in the record's own account and sealed to the patient, that
    /// `requester` received the record `record_id` (its `emr_id`) in a handshake for
    /// `purpose`. The record must be stored (it has an account to log in).
    pub async fn log_shared_record(
        &self,
        record_id: &str,
        requester: &PartyId,
        purpose: &str,
    ) -> Result<()> {
        let n = self
            .indexed_records()
            .await?
            .into_iter()
            .find(|r| r.record_id.as_deref() == Some(record_id))
            .map(|r| r.record)
            .ok_or(ClientError::Invalid(
                "the record shared is not stored: store it first, so that its accesses are logged",
            ))?;
        let record = self.record_keys(n)?;
        let chain = self.client().config().genesis.chain_id.clone();
        let details = LogDetails {
            accessor: requester.clone(),
            record_id: record_id.into(),
            purpose: Some(purpose.into()),
            outcome: Outcome::Granted,
        };
        self.commit_as(record.id(), |sequence| {
            Ok((
                record.log_access(&chain, sequence, Action::Read, now(), &details),
                (),
            ))
        })
        .await
    }
}
