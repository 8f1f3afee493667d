//! [`PatientWallet`]: the patient's side of the three stories (DESIGN 1).

use crate::config::ClientConfig;
use crate::error::{
    EmrshareError, Result, from_ces, from_jwe_open, from_jwe_seal, from_net, invalid, unverified,
};
use crate::party::{Party, log_result};
use crate::secrets::{SecretStore, UploadProgress};
use crate::types::*;
use crate::{now, on_runtime};
use emrshare_core::account::share_envelope;
use emrshare_core::ces::{self, SdJwt, VerifyPolicy};
use emrshare_core::jwe::Envelope;
use emrshare_core::ledger::state::hex32;
use emrshare_core::ledger::tx::{Action, TxBody};
use std::sync::Arc;

/// The name the wallet's secrets have in the app's [`SecretStore`].
pub const PATIENT_SECRET_NAME: &str = "emrshare.patient";

/// The most a grant may last (ten years).
const MAX_GRANT_SECONDS: u64 = 10 * 365 * 24 * 3600;

/// A patient's wallet: keys held by the app's secret store, records verified against the
/// doctor's registered key, storage, grants and the audit log on the consortium.
#[derive(uniffi::Object)]
pub struct PatientWallet {
    party: Arc<Party>,
}

/// An entry of the patient's index, read back from verified blocks.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct IndexedRecord {
    pub blob: String,
    /// The record's ID, when the entry names it (entries this SDK writes do).
    pub record_id: Option<String>,
    pub department: String,
    pub location: String,
    pub time: u64,
    pub height: u64,
}

/// The doctor's ID as the record claims it, before anything is verified: only used to look
/// the doctor up; the signature check then binds the record to the looked-up keys.
pub(crate) fn claimed_issuer(sd_jwt: &SdJwt) -> Result<String> {
    let serialized = sd_jwt.serialize();
    let issuer_jwt = serialized.split('~').next().unwrap_or_default();
    let payload = emrshare_core::jws::unverified_payload(issuer_jwt)
        .map_err(|_| unverified("malformed record"))?;
    payload
        .get("iss")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .ok_or_else(|| unverified("malformed record"))
}

pub(crate) fn parse_sd_jwt(text: &str) -> Result<SdJwt> {
    SdJwt::parse(text).map_err(from_ces)
}

#[uniffi::export]
impl PatientWallet {
    /// New patient keys (ES256 + RSA of `rsa_bits`: 2048, 3072 or 4096), saved in `store`
    /// under `"emrshare.patient"`; refused if keys are stored there already.
    #[uniffi::constructor(default(rsa_bits = 3072))]
    pub fn create(
        config: ClientConfig,
        store: Arc<dyn SecretStore>,
        rsa_bits: u32,
    ) -> Result<Arc<Self>> {
        let bits = crate::party::rsa_bits(rsa_bits)?;
        let party = log_result(
            "create wallet",
            Party::create(config, &store, PATIENT_SECRET_NAME, None, bits),
        )?;
        Ok(Arc::new(Self { party }))
    }

    /// The wallet whose keys `store` holds.
    #[uniffi::constructor]
    pub fn restore(config: ClientConfig, store: Arc<dyn SecretStore>) -> Result<Arc<Self>> {
        let party = log_result(
            "restore wallet",
            Party::restore(config, &store, PATIENT_SECRET_NAME),
        )?;
        Ok(Arc::new(Self { party }))
    }

    /// The patient's non-identifying ID (RFC 7638 thumbprint of the signing key).
    pub fn patient_id(&self) -> String {
        self.party.id()
    }

    /// The public JWK Set a doctor seals records to (e.g. shown as a QR code).
    pub fn public_keys_json(&self) -> String {
        self.party.public_keys_json()
    }

    /// Registers the patient's keys for `valid_days` days; returns once proven on chain.
    pub async fn register(&self, valid_days: u32) -> Result<Registration> {
        let party = self.party.clone();
        on_runtime(async move {
            log_result(
                "register",
                party.register(PartyRole::Patient, valid_days).await,
            )
        })
        .await
    }

    /// Looks a party up k-anonymously (the target among k-1 registered decoys of its role,
    /// asked of n nodes, verified): who is asking, verified how.
    pub async fn look_up(&self, party_id: String, role: PartyRole) -> Result<LookupReport> {
        let party = self.party.clone();
        on_runtime(async move {
            log_result("look up", party.lookup(&party_id, role).await.map(|r| r.1))
        })
        .await
    }

    /// Reads an institution's request (the handshake's first message) and verifies who asks:
    /// a k-anonymous lookup of the requester among `requester_role`, whose registered,
    /// active signing key must have signed the request; a stale request, or one this wallet
    /// already answered, is refused. Only then does the result show who asks, for what, and
    /// which parts; [`IncomingRequest::accept`] answers it.
    pub async fn read_request(
        &self,
        request: String,
        requester_role: PartyRole,
    ) -> Result<Arc<crate::handshake::IncomingRequest>> {
        let party = self.party.clone();
        on_runtime(async move {
            log_result(
                "read request",
                crate::handshake::read_request(party, request, requester_role).await,
            )
        })
        .await
    }

    /// Opens a record a doctor sealed to this patient and verifies it: the doctor's key from
    /// a verified k-anonymous lookup among `doctor_role`, the signature, every disclosure, the
    /// CEAS, and that the record is this patient's.
    pub async fn receive_record(
        &self,
        sealed_record: String,
        doctor_role: PartyRole,
    ) -> Result<ReceivedRecord> {
        let party = self.party.clone();
        on_runtime(async move {
            log_result(
                "receive record",
                receive(&party, &sealed_record, doctor_role).await,
            )
        })
        .await
    }

    /// Keeps only the named parts (mandatory parts always stay); no key binding. A name the
    /// record lacks is an error, so a typo cannot disclose less than intended.
    pub fn extract(&self, sd_jwt: String, disclose: Vec<String>) -> Result<String> {
        let record = parse_sd_jwt(&sd_jwt)?;
        let keep: Vec<&str> = disclose.iter().map(String::as_str).collect();
        Ok(record.extract(&keep).map_err(from_ces)?.serialize())
    }

    /// Extracts the named parts and binds the presentation to `audience` (the requester's ID)
    /// and its `nonce`, signed with the patient's key (KB-JWT).
    pub fn present(
        &self,
        sd_jwt: String,
        disclose: Vec<String>,
        audience: String,
        nonce: String,
    ) -> Result<String> {
        if audience.is_empty() || nonce.len() < 16 || nonce.len() > 512 {
            return Err(invalid(
                "audience must be set and the nonce 16 to 512 characters",
            ));
        }
        let record = parse_sd_jwt(&sd_jwt)?;
        let keep: Vec<&str> = disclose.iter().map(String::as_str).collect();
        let extracted = record.extract(&keep).map_err(from_ces)?;
        Ok(self
            .party
            .with_keys(|k| extracted.bind(&k.signing, &audience, &nonce, now()))
            .serialize())
    }

    /// Stores a received record: sealed to the patient, the ciphertext on up to n nodes, and
    /// an index entry (sealed, linked to the previous one) committed on chain.
    pub async fn store_record(
        &self,
        sd_jwt: String,
        department: String,
        progress: Option<Arc<dyn UploadProgress>>,
    ) -> Result<StoredRecord> {
        let party = self.party.clone();
        on_runtime(async move {
            log_result(
                "store record",
                store(&party, &sd_jwt, &department, progress).await,
            )
        })
        .await
    }

    /// Grants `grantee_id` (looked up k-anonymously among `grantee_role`) read access for
    /// `valid_seconds` to the record in `envelope` (a [`StoredRecord`]'s). With no `parts`,
    /// the whole record: its content key is wrapped to the grantee (the content is not
    /// re-encrypted). With parts, only those (and the mandatory ones) are extracted and sealed
    /// to patient and grantee. Either version is stored as its own blob.
    pub async fn grant(
        &self,
        envelope: String,
        grantee_id: String,
        grantee_role: PartyRole,
        parts: Vec<String>,
        valid_seconds: u64,
    ) -> Result<GrantInfo> {
        let party = self.party.clone();
        on_runtime(async move {
            log_result(
                "grant",
                grant(
                    &party,
                    &envelope,
                    &grantee_id,
                    grantee_role,
                    parts,
                    valid_seconds,
                )
                .await,
            )
        })
        .await
    }

    /// Revokes a grant; returns it as proven revoked on chain.
    pub async fn revoke(&self, grant_id: String) -> Result<GrantInfo> {
        let party = self.party.clone();
        on_runtime(async move {
            log_result(
                "revoke",
                async {
                    party
                        .commit(|account| Ok((account.revoke_grant(&grant_id), ())))
                        .await?;
                    let info = proven_grant(&party, &grant_id)
                        .await?
                        .ok_or_else(|| unverified("the grant is not on chain"))?;
                    if !info.revoked {
                        return Err(unverified("the chain does not show the grant revoked"));
                    }
                    Ok(info)
                }
                .await,
            )
        })
        .await
    }

    /// A grant as proven on chain now (none if the chain proves there is no such grant).
    pub async fn grant_status(&self, grant_id: String) -> Result<Option<GrantInfo>> {
        let party = self.party.clone();
        on_runtime(async move { log_result("grant status", proven_grant(&party, &grant_id).await) })
            .await
    }

    /// The patient's index entries, read from verified blocks and opened with its key.
    pub async fn indexed_records(&self) -> Result<Vec<IndexedRecord>> {
        let party = self.party.clone();
        on_runtime(async move { log_result("index", indexed(&party).await) }).await
    }

    /// Every logged access to the patient's blobs (those of its index entries and grants),
    /// from blocks verified from genesis: who, what, when, under which grant.
    pub async fn audit_log(&self) -> Result<Vec<AccessEvent>> {
        let party = self.party.clone();
        on_runtime(async move { log_result("audit log", audit(&party).await) }).await
    }
}

async fn receive(party: &Party, sealed: &str, doctor_role: PartyRole) -> Result<ReceivedRecord> {
    if sealed.len() > emrshare_core::jwe::MAX_ENVELOPE_BYTES {
        return Err(unverified("the envelope is too large"));
    }
    let envelope = Envelope::parse(sealed.as_bytes()).map_err(from_jwe_open)?;
    let plaintext = party
        .with_keys(|k| envelope.open(k))
        .map_err(from_jwe_open)?;
    let text = std::str::from_utf8(&plaintext).map_err(|_| unverified("malformed record"))?;
    let record = parse_sd_jwt(text)?;
    let doctor_id = claimed_issuer(&record)?;
    let (doctor, doctor_lookup) = party.lookup(&doctor_id, doctor_role).await?;
    let doctor_keys = doctor
        .public_keys()
        .map_err(|_| unverified("the doctor's registered keys are invalid"))?;
    let patient_keys = party.with_keys(|k| k.public());
    let verified = ces::verify(
        &record,
        &VerifyPolicy {
            holder: Some(&patient_keys),
            ..VerifyPolicy::new(&doctor_keys, now())
        },
    )
    .map_err(from_ces)?;
    Ok(ReceivedRecord {
        record: (&verified).into(),
        sd_jwt: record.serialize(),
        doctor_lookup,
    })
}

fn report(progress: &Option<Arc<dyn UploadProgress>>, stage: UploadStage, done: u64, total: u64) {
    if let Some(p) = progress {
        p.on_progress(UploadEvent {
            stage,
            bytes_done: done,
            bytes_total: total,
        });
    }
}

async fn store(
    party: &Party,
    sd_jwt: &str,
    department: &str,
    progress: Option<Arc<dyn UploadProgress>>,
) -> Result<StoredRecord> {
    if department.is_empty() || department.len() > 64 {
        return Err(invalid("a department tag has 1 to 64 characters"));
    }
    let record = parse_sd_jwt(sd_jwt)?;
    // Only a record issued to this patient is stored (the doctor's signature was checked
    // when it was received; the claims are read here to name the record).
    let patient_id = party.id();
    let payload = emrshare_core::jws::unverified_payload(sd_jwt.split('~').next().unwrap_or(""))
        .map_err(|_| invalid("not a record"))?;
    if payload.get("sub").and_then(|v| v.as_str()) != Some(patient_id.as_str()) {
        return Err(invalid("the record is not this patient's"));
    }
    let record_id = payload
        .get("emr_id")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned();
    let public = party.with_keys(|k| k.public());
    let envelope = Envelope::seal_to(
        record.serialize().as_bytes(),
        &[&public],
        Some(ces::SD_JWT_TYP),
    )
    .map_err(from_jwe_seal)?;
    let bytes = envelope.serialize().into_bytes();
    let total = bytes.len() as u64;
    report(&progress, UploadStage::Sealed, 0, total);
    let hash = emrshare_core::content_hash(&bytes);
    let claim = party.with_account(|a| a.blob_claim(&hash, now()));
    let blob = party
        .client
        .put_blob(&bytes, &claim)
        .await
        .map_err(from_net)?;
    report(&progress, UploadStage::Uploaded, total, total);
    let id = party.party_id();
    let previous = party
        .client
        .index(&id, department)
        .await
        .map_err(from_net)?
        .head;
    let location = format!("emrshare:blob/{}", hex32::to_hex(&blob));
    let tx_id = party
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
                .map_err(from_jwe_seal)?;
            let tx_id = tx.id();
            report(&progress, UploadStage::IndexSubmitted, total, total);
            Ok((tx, tx_id))
        })
        .await?;
    let proven = party
        .client
        .index(&id, department)
        .await
        .map_err(from_net)?;
    if proven.head != Some(tx_id) {
        return Err(unverified("the chain does not show the new index entry"));
    }
    report(&progress, UploadStage::Committed, total, total);
    Ok(StoredRecord {
        record_id,
        blob: hex32::to_hex(&blob),
        department: department.into(),
        envelope: String::from_utf8(bytes).map_err(|_| EmrshareError::Internal {
            reason: "envelope is not text".into(),
        })?,
        index_height: proven.height,
        crumbs: proven.crumbs,
    })
}

async fn grant(
    party: &Party,
    envelope: &str,
    grantee_id: &str,
    grantee_role: PartyRole,
    parts: Vec<String>,
    valid_seconds: u64,
) -> Result<GrantInfo> {
    if valid_seconds == 0 || valid_seconds > MAX_GRANT_SECONDS {
        return Err(invalid("a grant lasts 1 second to 10 years"));
    }
    let stored = Envelope::parse(envelope.as_bytes()).map_err(from_jwe_open)?;
    let (grantee, _) = party.lookup(grantee_id, grantee_role).await?;
    let shared = if parts.is_empty() {
        party
            .with_keys(|k| share_envelope(&stored, k, &grantee))
            .map_err(from_jwe_open)?
    } else {
        let plaintext = party.with_keys(|k| stored.open(k)).map_err(from_jwe_open)?;
        let text = std::str::from_utf8(&plaintext).map_err(|_| unverified("malformed record"))?;
        let keep: Vec<&str> = parts.iter().map(String::as_str).collect();
        let extracted = parse_sd_jwt(text)?.extract(&keep).map_err(from_ces)?;
        let grantee_keys = grantee
            .public_keys()
            .map_err(|_| unverified("the grantee's registered keys are invalid"))?;
        let own = party.with_keys(|k| k.public());
        Envelope::seal_to(
            extracted.serialize().as_bytes(),
            &[&own, &grantee_keys],
            Some(ces::SD_JWT_TYP),
        )
        .map_err(from_jwe_seal)?
    };
    let bytes = shared.serialize().into_bytes();
    let hash = emrshare_core::content_hash(&bytes);
    let claim = party.with_account(|a| a.blob_claim(&hash, now()));
    let blob = party
        .client
        .put_blob(&bytes, &claim)
        .await
        .map_err(from_net)?;
    let not_after = now() + valid_seconds;
    let grant_id = party
        .commit(|account| {
            let names: Vec<&str> = parts.iter().map(String::as_str).collect();
            let (grant_id, tx) = account.grant(&grantee, &blob, &names, &[Action::Read], not_after);
            Ok((tx, grant_id))
        })
        .await?;
    proven_grant(party, &grant_id)
        .await?
        .ok_or_else(|| unverified("the chain does not show the grant"))
}

pub(crate) async fn proven_grant(party: &Party, grant_id: &str) -> Result<Option<GrantInfo>> {
    if grant_id.is_empty() || grant_id.len() > 128 {
        return Err(invalid("not a grant ID"));
    }
    let proven = party.client.grant(grant_id).await.map_err(from_net)?;
    Ok(proven
        .grant
        .map(|g| GrantInfo::new(grant_id, &g, proven.height)))
}

async fn indexed(party: &Party) -> Result<Vec<IndexedRecord>> {
    let id = party.party_id();
    let mut out = Vec::new();
    for (height, sender, body) in party.verified_txs_with_sender().await? {
        if sender != id {
            continue;
        }
        if let TxBody::UploadIndex {
            department,
            entry_jwe,
            ..
        } = body
        {
            let opened = party.with_account(|a| a.open_index_entry(&entry_jwe));
            if let Ok(entry) = opened {
                out.push(IndexedRecord {
                    blob: hex32::to_hex(&entry.blob),
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

async fn audit(party: &Party) -> Result<Vec<AccessEvent>> {
    let id = party.party_id();
    let txs = party.verified_txs_with_sender().await?;
    let mut mine = std::collections::BTreeSet::new();
    for (_, sender, body) in &txs {
        if *sender != id {
            continue;
        }
        match body {
            TxBody::UploadIndex { entry_jwe, .. } => {
                let opened = party.with_account(|a| a.open_index_entry(entry_jwe));
                if let Ok(entry) = opened {
                    mine.insert(hex32::to_hex(&entry.blob));
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
                accessor_id: accessor.to_string(),
                record_id,
                action: action.into(),
                at,
                outcome: outcome.into(),
                grant_id,
            }),
            _ => None,
        })
        .collect())
}
