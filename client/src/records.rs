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
use emrshare_core::account::{open_index_entry, share_envelope};
use emrshare_core::ces::{self, IssueOptions, KeyBindingRequirement, SdJwt, VerifiedRecord};
use emrshare_core::jwe::{Envelope, MAX_ENVELOPE_BYTES};
use emrshare_core::keys::PartyId;
use emrshare_core::ledger::machine::GrantEntry;
use emrshare_core::ledger::merkle::Hash;
use emrshare_core::ledger::tx::{Action, Role, TxBody};
use emrshare_core::record::{Ceas, Record};

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
    /// The height of the certified header the new index entry is proven under.
    pub index_height: u64,
    /// The department's bread crumbs, proven, with this entry's block among them.
    pub crumbs: Vec<u64>,
}

/// Where an upload is (for progress reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadStage {
    /// The record is sealed to the patient.
    Sealed,
    /// The envelope is stored on at least one node.
    Uploaded,
    /// The UploadIndex transaction is signed and about to be submitted.
    IndexSubmitted,
    /// The index entry is committed and proven as the patient's index head.
    Committed,
}

/// A grant as proven on chain.
#[derive(Debug, Clone)]
pub struct ProvenGrant {
    /// The ID the grant is stored under on chain.
    pub grant_id: String,
    /// The grant as the chain holds it.
    pub grant: GrantEntry,
    /// The height of the certified header it is proven under.
    pub height: u64,
}

/// An entry of the patient's index, read back from verified blocks.
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
    /// The height of the verified block holding the entry.
    pub height: u64,
}

/// One logged access to a patient's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEvent {
    /// The height of the verified block holding the AccessLog.
    pub height: u64,
    /// Who accessed the record.
    pub accessor: PartyId,
    /// The record accessed: its blob address (hex), or its `emr_id` for a handshake.
    pub record_id: String,
    /// What the accessor did.
    pub action: Action,
    /// When, Unix seconds, as the accessor logged it.
    pub at: u64,
    /// Whether the access was granted.
    pub outcome: emrshare_core::ledger::tx::Outcome,
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

    /// Stores a received record: sealed to the patient, the ciphertext on up to n nodes, and
    /// an index entry (sealed, linked to the previous one) committed on chain and read back
    /// proven. `progress` hears of each stage.
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
        let payload = emrshare_core::jws::unverified_payload(
            sd_jwt.serialize().split('~').next().unwrap_or(""),
        )
        .map_err(|_| ClientError::Invalid("not a record"))?;
        // Only a record issued to this patient is stored.
        if payload.get("sub").and_then(|v| v.as_str()) != Some(id.as_str()) {
            return Err(ClientError::Invalid("the record is not this patient's"));
        }
        let record_id = payload
            .get("emr_id")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
        let own = self.with_keys(|k| k.public());
        let envelope = Envelope::seal_to(
            sd_jwt.serialize().as_bytes(),
            &[&own],
            Some(ces::SD_JWT_TYP),
        )
        .map_err(ClientError::Seal)?;
        let bytes = envelope.serialize().into_bytes();
        let total = bytes.len() as u64;
        progress(UploadStage::Sealed, total);
        let blob = self.put_blob(&bytes).await?;
        progress(UploadStage::Uploaded, total);
        let previous = self.client().index(&id, department).await?.head;
        let location = format!("emrshare:blob/{}", blob.to_hex());
        let tx_id = self
            .commit(|account| {
                let tx = account
                    .upload_index(
                        department,
                        &location,
                        &blob,
                        Some(&record_id),
                        now(),
                        previous,
                    )
                    .map_err(ClientError::Seal)?;
                let tx_id = tx.id();
                progress(UploadStage::IndexSubmitted, total);
                Ok((tx, tx_id))
            })
            .await?;
        let proven = self.proven_index_head(&id, department, tx_id).await?;
        progress(UploadStage::Committed, total);
        Ok(StoredRecord {
            record_id,
            blob,
            department: department.into(),
            envelope: envelope.serialize(),
            index_height: proven.height,
            crumbs: proven.crumbs,
        })
    }

    /// The index of `department`, proven, once its head is `expected`.
    async fn proven_index_head(
        &self,
        id: &PartyId,
        department: &str,
        expected: Hash,
    ) -> Result<crate::VerifiedIndex> {
        self.once_proven("the chain does not show the new index entry", || async {
            let proven = self.client().index(id, department).await?;
            Ok((proven.head == Some(expected)).then_some(proven))
        })
        .await
    }

    /// What `read` proves once it shows a write just committed: a node may answer from a
    /// height before the block that committed it (the commit was seen at another node, and
    /// validators apply a decided block each in its own time), so it is asked again until it
    /// shows, within the commit timeout; `missing` names what never showed.
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

    /// Uploads bytes with this party's claim; returns their address.
    pub async fn put_blob(&self, bytes: &[u8]) -> Result<Hash> {
        let hash = emrshare_core::content_hash(bytes);
        let claim = self.with_account(|a| a.blob_claim(&hash, now()));
        Ok(self.client().put_blob(bytes, &claim).await?)
    }

    /// Grants `grantee` (looked up among `grantee_role`) read access for `valid_seconds` to
    /// the record in `envelope` (a [`StoredRecord`]'s). With no `parts`, the whole record:
    /// its content key is wrapped to the grantee (the content is not re-encrypted). With
    /// parts, only those (and the mandatory ones) are extracted and sealed to patient and
    /// grantee, so a grant of parts shares only those parts. Either version is stored as its
    /// own blob.
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
        let grantee = self.look_up(grantee, grantee_role).await?.entry;
        let shared = if parts.is_empty() {
            self.try_keys(|k| share_envelope(&stored, k, &grantee))
                .map_err(ClientError::Open)?
        } else {
            let record = open_record(self, envelope.as_bytes())?;
            let keep: Vec<&str> = parts.iter().map(String::as_str).collect();
            let extracted = record.extract(&keep)?;
            let grantee_keys = grantee.public_keys().map_err(|_| {
                ClientError::Unverified("the grantee's registered keys are invalid")
            })?;
            let own = self.with_keys(|k| k.public());
            Envelope::seal_to(
                extracted.serialize().as_bytes(),
                &[&own, &grantee_keys],
                Some(ces::SD_JWT_TYP),
            )
            .map_err(ClientError::Seal)?
        };
        let blob = self.put_blob(shared.serialize().as_bytes()).await?;
        let not_after = now() + valid_seconds;
        let grant_id = self
            .commit(|account| {
                let names: Vec<&str> = parts.iter().map(String::as_str).collect();
                let (grant_id, tx) =
                    account.grant(&grantee, &blob, &names, &[Action::Read], not_after);
                Ok((tx, grant_id))
            })
            .await?;
        self.once_proven("the chain does not show the grant", || {
            self.proven_grant(&grant_id)
        })
        .await
    }

    /// Revokes a grant; returns it as proven revoked on chain.
    pub async fn revoke(&self, grant_id: &str) -> Result<ProvenGrant> {
        self.commit(|account| Ok((account.revoke_grant(grant_id), ())))
            .await?;
        self.once_proven("the chain does not show the grant revoked", || async {
            let proven = self
                .proven_grant(grant_id)
                .await?
                .ok_or(ClientError::Unverified("the grant is not on chain"))?;
            Ok(proven.grant.revoked.then_some(proven))
        })
        .await
    }

    /// A grant as proven on chain now (none if the chain proves there is no such grant).
    pub async fn proven_grant(&self, grant_id: &str) -> Result<Option<ProvenGrant>> {
        if grant_id.is_empty() || grant_id.len() > 128 {
            return Err(ClientError::Invalid("not a grant ID"));
        }
        let proven = self.client().grant(grant_id).await?;
        Ok(proven.grant.map(|grant| ProvenGrant {
            grant_id: grant_id.to_owned(),
            grant,
            height: proven.height,
        }))
    }

    /// Fetches the blob a grant names, under that grant: the grant is checked on chain
    /// (proven, to this party, live), the fetch carries this party's signed access log
    /// (which the node commits: the patient sees it in the audit log), the envelope is
    /// opened, and the record verified against its issuer's registry entry and checked to
    /// be the granting patient's.
    pub async fn fetch_granted(&self, grant_id: &str) -> Result<FetchedRecord> {
        let grant = self
            .proven_grant(grant_id)
            .await?
            .ok_or(ClientError::Unverified("the chain proves no such grant"))?;
        if grant.grant.grantee != self.id() {
            return Err(ClientError::Invalid("the grant is for another party"));
        }
        if !grant.grant.allows(Action::Read, now()) {
            return Err(ClientError::Unverified(
                "the grant is revoked or expired on chain",
            ));
        }
        let blob = Hash::from_hex(&grant.grant.record_id)
            .ok_or(ClientError::Unverified("malformed grant"))?;
        let bytes = {
            let _writing = self.write_lock().await;
            let access = self
                .sign_next(|account| account.access_log(&blob, Some(grant_id), now()))
                .await?;
            let bytes = self.client().get_blob(&blob, &access).await?;
            // The node commits the access log; the next write must come after it.
            self.wait_committed(access.transaction().sequence).await?;
            bytes
        };
        let sd_jwt = open_record(self, &bytes)?;
        let (record, doctor) = verify_issued(self, &sd_jwt, None, None).await?;
        if record.patient() != grant.grant.grantor.as_str() {
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

    /// The patient's index entries, read from verified blocks and opened with its key.
    pub async fn indexed_records(&self) -> Result<Vec<IndexedRecord>> {
        let id = self.id();
        let mut out = Vec::new();
        for (height, sender, body) in self.verified_txs().await? {
            if sender != id {
                continue;
            }
            if let TxBody::UploadIndex {
                department,
                entry_jwe,
                ..
            } = body
            {
                if let Ok(entry) = self.try_keys(|k| open_index_entry(k, &entry_jwe)) {
                    out.push(IndexedRecord {
                        blob: entry.blob,
                        record_id: entry.record_id,
                        department,
                        location: entry.location,
                        time: entry.time,
                        height,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Every logged access to the patient's records (its index entries' blobs and record
    /// IDs, and its grants' blobs), from blocks verified from genesis.
    pub async fn audit_log(&self) -> Result<Vec<AccessEvent>> {
        let id = self.id();
        let txs = self.verified_txs().await?;
        let mut mine = std::collections::BTreeSet::new();
        for (_, sender, body) in &txs {
            if *sender != id {
                continue;
            }
            match body {
                TxBody::UploadIndex { entry_jwe, .. } => {
                    if let Ok(entry) = self.try_keys(|k| open_index_entry(k, entry_jwe)) {
                        mine.insert(entry.blob.to_hex());
                        // A record shared in a handshake is logged by its ID.
                        mine.extend(entry.record_id);
                    }
                }
                TxBody::Grant { record_id, .. } => {
                    mine.insert(record_id.clone());
                }
                _ => {}
            }
        }
        Ok(txs
            .into_iter()
            .filter_map(|(height, _, body)| match body {
                TxBody::AccessLog {
                    accessor,
                    record_id,
                    action,
                    at,
                    outcome,
                    grant_id,
                } if mine.contains(&record_id) => Some(AccessEvent {
                    height,
                    accessor,
                    record_id,
                    action,
                    at,
                    outcome,
                    grant_id,
                }),
                _ => None,
            })
            .collect())
    }
}
