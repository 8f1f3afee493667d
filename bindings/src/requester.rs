//! [`Requester`]: an institution (insurer, hospital, researcher) that receives records.

use crate::config::ClientConfig;
use crate::error::{EmrshareError, Result, from_ces, from_jwe_open, from_net, invalid, unverified};
use crate::party::{Party, log_result};
use crate::patient::{claimed_issuer, parse_sd_jwt, proven_grant};
use crate::secrets::SecretStore;
use crate::types::*;
use crate::{now, on_runtime};
use emrshare_core::ces::{self, KeyBindingRequirement, VerifyPolicy};
use emrshare_core::jwe::Envelope;
use emrshare_core::ledger::state::hex32;
use std::sync::Arc;

pub const REQUESTER_SECRET_NAME: &str = "emrshare.requester";

#[derive(uniffi::Object)]
pub struct Requester {
    party: Arc<Party>,
}

/// A fresh 128-bit random nonce (base64url) for a presentation request.
#[uniffi::export]
pub fn make_nonce() -> String {
    emrshare_core::make_nonce()
}

/// Looks the record's claimed doctor up and verifies the record under the registered key.
async fn verify_record(
    party: &Party,
    text: &str,
    doctor_role: PartyRole,
    holder: Option<&emrshare_core::PublicKeySet>,
    key_binding: Option<KeyBindingRequirement<'_>>,
) -> Result<(ces::VerifiedRecord, LookupReport)> {
    let record = parse_sd_jwt(text)?;
    let doctor_id = claimed_issuer(&record)?;
    let (doctor, report) = party.lookup(&doctor_id, doctor_role).await?;
    let doctor_keys = doctor
        .public_keys()
        .map_err(|_| unverified("the doctor's registered keys are invalid"))?;
    let verified = ces::verify(
        &record,
        &VerifyPolicy {
            holder,
            key_binding,
            ..VerifyPolicy::new(&doctor_keys, now())
        },
    )
    .map_err(from_ces)?;
    Ok((verified, report))
}

#[uniffi::export]
impl Requester {
    /// New keys for the registered name `requester_id` (e.g. `insurer:acme`), saved in
    /// `store` under `"emrshare.requester"`.
    #[uniffi::constructor(default(rsa_bits = 3072))]
    pub fn create(
        config: ClientConfig,
        store: Arc<dyn SecretStore>,
        requester_id: String,
        rsa_bits: u32,
    ) -> Result<Arc<Self>> {
        let bits = crate::party::rsa_bits(rsa_bits)?;
        let party = log_result(
            "create requester",
            Party::create(
                config,
                &store,
                REQUESTER_SECRET_NAME,
                Some(&requester_id),
                bits,
            ),
        )?;
        Ok(Arc::new(Self { party }))
    }

    #[uniffi::constructor]
    pub fn restore(config: ClientConfig, store: Arc<dyn SecretStore>) -> Result<Arc<Self>> {
        let party = log_result(
            "restore requester",
            Party::restore(config, &store, REQUESTER_SECRET_NAME),
        )?;
        Ok(Arc::new(Self { party }))
    }

    pub fn requester_id(&self) -> String {
        self.party.id()
    }

    pub fn public_keys_json(&self) -> String {
        self.party.public_keys_json()
    }

    /// Registers the keys as `role` (insurer, hospital, researcher) for `valid_days` days.
    pub async fn register(&self, role: PartyRole, valid_days: u32) -> Result<Registration> {
        let party = self.party.clone();
        on_runtime(async move { log_result("register", party.register(role, valid_days).await) })
            .await
    }

    /// Starts the mutual-authentication handshake with a patient: a request for `parts` of
    /// a record, for `purpose`. Hand [`OutgoingRequest::request_message`] to the patient.
    pub fn start_request(
        &self,
        purpose: String,
        parts: Vec<String>,
    ) -> Result<Arc<crate::handshake::OutgoingRequest>> {
        log_result(
            "start request",
            crate::handshake::start_request(self.party.clone(), &purpose, &parts),
        )
    }

    /// Fetches the blob a grant names, under that grant: the grant is checked on chain
    /// (proven, to this requester, active), the fetch carries the requester's signed access
    /// log (which the node commits: the patient sees it in the audit log), the envelope is
    /// opened, and the record verified under its doctor's registered key (looked up among
    /// `doctor_role`) and checked to be the granting patient's.
    pub async fn fetch_granted(
        &self,
        grant_id: String,
        doctor_role: PartyRole,
    ) -> Result<FetchedRecord> {
        let party = self.party.clone();
        on_runtime(async move { log_result("fetch", fetch(&party, &grant_id, doctor_role).await) })
            .await
    }

    /// Verifies a presentation the patient `patient_id` made for this requester: the
    /// doctor's signature under its registered key, the disclosures, the mandatory parts,
    /// that the record is the patient's (registered keys), and the patient's key binding to
    /// this requester's ID and `nonce`.
    pub async fn verify_presentation(
        &self,
        presentation: String,
        patient_id: String,
        nonce: String,
        doctor_role: PartyRole,
    ) -> Result<VerifiedPresentation> {
        let party = self.party.clone();
        on_runtime(async move {
            log_result(
                "verify presentation",
                async {
                    let (patient, patient_lookup) =
                        party.lookup(&patient_id, PartyRole::Patient).await?;
                    let patient_keys = patient
                        .public_keys()
                        .map_err(|_| unverified("the patient's registered keys are invalid"))?;
                    let audience = party.id();
                    let (verified, doctor_lookup) = verify_record(
                        &party,
                        &presentation,
                        doctor_role,
                        Some(&patient_keys),
                        Some(KeyBindingRequirement {
                            audience: &audience,
                            nonce: &nonce,
                        }),
                    )
                    .await?;
                    Ok(VerifiedPresentation {
                        record: (&verified).into(),
                        doctor_lookup,
                        patient_lookup,
                    })
                }
                .await,
            )
        })
        .await
    }
}

async fn fetch(party: &Party, grant_id: &str, doctor_role: PartyRole) -> Result<FetchedRecord> {
    let grant = proven_grant(party, grant_id)
        .await?
        .ok_or(EmrshareError::Refused { status: 404 })?;
    if grant.grantee_id != party.id() {
        return Err(invalid("the grant is for another party"));
    }
    if !grant.active {
        return Err(EmrshareError::Refused { status: 403 });
    }
    let blob = hex32::from_hex(&grant.blob).ok_or_else(|| unverified("malformed grant"))?;
    let bytes = {
        let _writing = party.write_lock().await;
        let access = party
            .sign_next(|account| account.access_log(&blob, Some(grant_id), now()))
            .await?;
        let bytes = party
            .client
            .get_blob(&blob, &access)
            .await
            .map_err(from_net)?;
        // The node commits the access log; the next write must come after it.
        party
            .client
            .wait_sequence(
                &party.party_id(),
                access.transaction().sequence,
                party.config.commit_timeout(),
            )
            .await
            .map_err(|_| EmrshareError::Timeout)?;
        bytes
    };
    if bytes.len() > emrshare_core::jwe::MAX_ENVELOPE_BYTES {
        return Err(unverified("the blob is too large"));
    }
    let envelope = Envelope::parse(&bytes).map_err(from_jwe_open)?;
    let plaintext = party
        .with_keys(|k| envelope.open(k))
        .map_err(from_jwe_open)?;
    let text = std::str::from_utf8(&plaintext).map_err(|_| unverified("malformed record"))?;
    let (verified, doctor_lookup) = verify_record(party, text, doctor_role, None, None).await?;
    if verified.patient() != grant.grantor_id {
        return Err(unverified(
            "the record belongs to another patient than the grantor",
        ));
    }
    Ok(FetchedRecord {
        record: (&verified).into(),
        grant,
        doctor_lookup,
    })
}
