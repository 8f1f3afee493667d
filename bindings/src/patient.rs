//! [`PatientWallet`]: the patient's side of the three stories (DESIGN 1).

use crate::config::ClientConfig;
use crate::error::{Result, from_ces, from_client, invalid, unverified};
use crate::party::{Party, log_result, lookup_report};
use crate::secrets::{SecretStore, UploadProgress};
use crate::types::*;
use crate::{now, on_runtime};
use emrshare_core::keys::PartyId;
use emrshare_core::voucher::{PendingVoucher, Voucher};
use std::sync::Arc;

/// The name the wallet's secrets have in the app's [`SecretStore`].
pub const PATIENT_SECRET_NAME: &str = "emrshare.patient";

/// A patient's wallet: keys held by the app's secret store, records verified against the
/// doctor's registered key, storage, grants and the audit log on the consortium.
#[derive(uniffi::Object)]
pub struct PatientWallet {
    party: Arc<Party>,
}

/// An entry of the patient's index: a record's account, proven, its sealed entry opened.
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

/// A patient's pending registration voucher (RFC 9474 blind signature): the blinded request
/// for the hospital, and the secret that unblinds its answer (kept here, never shown).
#[derive(uniffi::Object)]
pub struct VoucherRequest {
    blinded: String,
    pending: std::sync::Mutex<Option<PendingVoucher>>,
}

#[uniffi::export]
impl VoucherRequest {
    /// The blinded request (base64url) to hand to the hospital: random to it, it reveals
    /// nothing of the patient's ID.
    pub fn blinded_request(&self) -> String {
        self.blinded.clone()
    }

    /// Unblinds the hospital's blind signature (base64url) into the voucher (JSON) that
    /// [`PatientWallet::register`] takes, checking it under the hospital's registered voucher
    /// key. Once only.
    pub fn finalize(&self, blind_signature: String) -> Result<String> {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| invalid("this voucher request was finalized already"))?;
        let signature = emrshare_core::b64::decode(&blind_signature)
            .map_err(|_| invalid("the blind signature is not base64url"))?;
        let voucher = pending
            .finalize(&signature)
            .map_err(|_| unverified("the hospital's blind signature does not verify"))?;
        serde_json::to_string(&voucher).map_err(|_| crate::error::EmrshareError::Internal {
            reason: "a voucher does not serialize".into(),
        })
    }
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

    /// Step 1 of registering: a voucher request to the hospital `hospital_id` (looked up
    /// k-anonymously among hospitals; its registered voucher key). Hand
    /// [`VoucherRequest::blinded_request`] to the hospital (which signs it with
    /// `DoctorSigner.sign_voucher_request`), then [`VoucherRequest::finalize`] its answer
    /// and [`PatientWallet::register`] with the voucher.
    pub async fn voucher_request(&self, hospital_id: String) -> Result<Arc<VoucherRequest>> {
        let party = self.party.clone();
        on_runtime(async move {
            log_result(
                "voucher request",
                async {
                    let hospital =
                        PartyId::new(hospital_id).map_err(crate::error::from_key_input)?;
                    let (pending, blinded) = party
                        .inner
                        .blind_voucher_request(&hospital)
                        .await
                        .map_err(from_client)?;
                    Ok(Arc::new(VoucherRequest {
                        blinded: emrshare_core::b64::encode(&blinded),
                        pending: std::sync::Mutex::new(Some(pending)),
                    }))
                }
                .await,
            )
        })
        .await
    }

    /// Registers the patient for `valid_days` with `voucher` (from
    /// [`VoucherRequest::finalize`]: one use, refused if used before); returns the
    /// registration once the registry proves it.
    pub async fn register(&self, voucher: String, valid_days: u32) -> Result<Registration> {
        let party = self.party.clone();
        on_runtime(async move {
            log_result(
                "register",
                async {
                    let voucher: Voucher = emrshare_core::strict_json::parse(voucher.as_bytes())
                        .map_err(|_| invalid("not a registration voucher"))?;
                    let (from, until) = crate::party::validity(valid_days)?;
                    let entry = party
                        .inner
                        .register_patient(voucher, from, until)
                        .await
                        .map_err(from_client)?;
                    Ok(crate::party::registration(&entry))
                }
                .await,
            )
        })
        .await
    }

    /// Rotates the patient's keys to fresh ones (RSA of `rsa_bits`); the patient ID stays
    /// (the thumbprint of its first key). The update is signed with the current key; the
    /// store then holds the new keys, and the old ones only to open what was sealed to them
    /// (stored records, index entries), so grants and the audit log keep working. Records
    /// issued before the rotation name the old key: they are shared by grants; a
    /// key-bound presentation needs a record issued to the current key.
    #[uniffi::method(default(rsa_bits = 3072))]
    pub async fn rotate_keys(&self, rsa_bits: u32) -> Result<Registration> {
        let party = self.party.clone();
        on_runtime(async move {
            let bits = crate::party::rsa_bits(rsa_bits)?;
            log_result("rotate keys", party.rotate_keys(bits).await)
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
        on_runtime(async move { log_result("revoke", revoke(&party, &grant_id).await) }).await
    }

    /// A grant as proven on chain now (none if the chain proves there is no such grant).
    pub async fn grant_status(&self, grant_id: String) -> Result<Option<GrantInfo>> {
        let party = self.party.clone();
        on_runtime(async move { log_result("grant status", proven_grant(&party, &grant_id).await) })
            .await
    }

    /// The patient's index: each of its records' accounts, proven, its entry opened.
    pub async fn indexed_records(&self) -> Result<Vec<IndexedRecord>> {
        let party = self.party.clone();
        on_runtime(async move { log_result("index", indexed(&party).await) }).await
    }

    /// Every logged access to the patient's records, proven under each record's account and
    /// opened with its secrets: who, what, when, why, under which grant.
    pub async fn audit_log(&self) -> Result<Vec<AccessEvent>> {
        let party = self.party.clone();
        on_runtime(async move { log_result("audit log", audit(&party).await) }).await
    }
}

async fn receive(party: &Party, sealed: &str, doctor_role: PartyRole) -> Result<ReceivedRecord> {
    check_issuer_role(doctor_role)?;
    let received = party
        .inner
        .receive_record(sealed)
        .await
        .map_err(from_client)?;
    Ok(ReceivedRecord {
        record: (&received.record).into(),
        sd_jwt: received.sd_jwt.serialize(),
        doctor_lookup: lookup_report(&received.doctor),
    })
}

async fn store(
    party: &Party,
    sd_jwt: &str,
    department: &str,
    progress: Option<Arc<dyn UploadProgress>>,
) -> Result<StoredRecord> {
    let record = parse_sd_jwt(sd_jwt)?;
    let report = move |stage: emrshare_client::records::UploadStage, total: u64| {
        use emrshare_client::records::UploadStage as S;
        let (stage, done) = match stage {
            S::Sealed => (UploadStage::Sealed, 0),
            S::Uploaded => (UploadStage::Uploaded, total),
            S::IndexSubmitted => (UploadStage::IndexSubmitted, total),
            S::Committed => (UploadStage::Committed, total),
        };
        if let Some(p) = &progress {
            p.on_progress(UploadEvent {
                stage,
                bytes_done: done,
                bytes_total: total,
            });
        }
    };
    let stored = party
        .inner
        .store_record(&record, department, &report)
        .await
        .map_err(from_client)?;
    Ok(StoredRecord {
        record_id: stored.record_id,
        blob: stored.blob.to_hex(),
        department: stored.department,
        envelope: stored.envelope,
        index_height: stored.index_height,
        account_id: stored.account.to_string(),
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
    let grantee = PartyId::new(grantee_id).map_err(crate::error::from_key_input)?;
    let proven = party
        .inner
        .grant(
            envelope,
            &grantee,
            grantee_role.into(),
            &parts,
            valid_seconds,
        )
        .await
        .map_err(from_client)?;
    Ok(GrantInfo::new(&proven))
}

pub(crate) async fn proven_grant(party: &Party, grant_id: &str) -> Result<Option<GrantInfo>> {
    let proven = party
        .inner
        .proven_grant(grant_id)
        .await
        .map_err(from_client)?;
    Ok(proven.as_ref().map(GrantInfo::new))
}

async fn revoke(party: &Party, grant_id: &str) -> Result<GrantInfo> {
    let proven = party.inner.revoke(grant_id).await.map_err(from_client)?;
    Ok(GrantInfo::new(&proven))
}

async fn indexed(party: &Party) -> Result<Vec<IndexedRecord>> {
    let entries = party.inner.indexed_records().await.map_err(from_client)?;
    Ok(entries
        .into_iter()
        .map(|e| IndexedRecord {
            blob: e.blob.to_hex(),
            record_id: e.record_id,
            department: e.department,
            location: e.location,
            time: e.time,
            height: e.height,
        })
        .collect())
}

async fn audit(party: &Party) -> Result<Vec<AccessEvent>> {
    let events = party.inner.audit_log().await.map_err(from_client)?;
    Ok(events
        .into_iter()
        .map(|e| AccessEvent {
            height: e.height,
            accessor_id: e.accessor.map(|a| a.to_string()),
            record_id: e.record_id,
            purpose: e.purpose,
            action: e.action.into(),
            at: e.at,
            outcome: e.outcome.into(),
            grant_id: e.grant_id,
        })
        .collect())
}
