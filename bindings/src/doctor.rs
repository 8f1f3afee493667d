//! [`DoctorSigner`]: a doctor (or hospital) signs a record with a content extraction
//! signature (SD-JWT, DESIGN 4) and seals it to the patient (JWE, DESIGN 5).

use crate::config::ClientConfig;
use crate::error::{Result, from_ces, from_jwe_seal, invalid};
use crate::party::{Party, log_result};
use crate::secrets::SecretStore;
use crate::types::{PartyRole, Registration};
use crate::{now, on_runtime};
use emrshare_core::PublicKeySet;
use emrshare_core::ces::{self, IssueOptions};
use emrshare_core::jwe::Envelope;
use emrshare_core::record::{Ceas, Record};
use std::sync::Arc;

pub const DOCTOR_SECRET_NAME: &str = "emrshare.doctor";

/// Decoy digests added to every record: they hide how many parts were made disclosable.
const DECOYS: usize = 2;

#[derive(uniffi::Object)]
pub struct DoctorSigner {
    party: Arc<Party>,
}

fn sign_and_seal(
    party: &Party,
    record_json: &str,
    patient: &PublicKeySet,
    mandatory_parts: Option<Vec<String>>,
    record_id: Option<String>,
) -> Result<String> {
    let record = Record::from_json(record_json.as_bytes(), record_id.as_deref())
        .map_err(|_| invalid("the record is not a valid object of named parts"))?;
    let ceas = match mandatory_parts {
        Some(names) => Ceas::new(names),
        None => Ceas::default_for(&record),
    };
    let signed = party
        .with_keys(|doctor| {
            ces::issue(
                doctor,
                patient,
                &record,
                &ceas,
                IssueOptions {
                    issued_at: now(),
                    decoys: DECOYS,
                },
            )
        })
        .map_err(|e| match e {
            ces::CesError::Record(_) => invalid("a mandatory part is not in the record"),
            other => from_ces(other),
        })?;
    let sealed = Envelope::seal_to(
        signed.serialize().as_bytes(),
        &[patient],
        Some(ces::SD_JWT_TYP),
    )
    .map_err(from_jwe_seal)?;
    Ok(sealed.serialize())
}

#[uniffi::export]
impl DoctorSigner {
    /// New keys for the registered name `doctor_id` (e.g. `hospital:st-marys`), saved in
    /// `store` under `"emrshare.doctor"`.
    #[uniffi::constructor(default(rsa_bits = 3072))]
    pub fn create(
        config: ClientConfig,
        store: Arc<dyn SecretStore>,
        doctor_id: String,
        rsa_bits: u32,
    ) -> Result<Arc<Self>> {
        let bits = crate::party::rsa_bits(rsa_bits)?;
        let party = log_result(
            "create doctor",
            Party::create(config, &store, DOCTOR_SECRET_NAME, Some(&doctor_id), bits),
        )?;
        Ok(Arc::new(Self { party }))
    }

    #[uniffi::constructor]
    pub fn restore(config: ClientConfig, store: Arc<dyn SecretStore>) -> Result<Arc<Self>> {
        let party = log_result(
            "restore doctor",
            Party::restore(config, &store, DOCTOR_SECRET_NAME),
        )?;
        Ok(Arc::new(Self { party }))
    }

    pub fn doctor_id(&self) -> String {
        self.party.id()
    }

    pub fn public_keys_json(&self) -> String {
        self.party.public_keys_json()
    }

    /// Registers the keys as `role` (doctor or hospital) for `valid_days` days.
    pub async fn register(&self, role: PartyRole, valid_days: u32) -> Result<Registration> {
        let party = self.party.clone();
        on_runtime(async move { log_result("register", party.register(role, valid_days).await) })
            .await
    }

    /// Signs `record_json` (a JSON object of named parts) for the patient whose public JWK
    /// Set the patient handed over (e.g. by QR code), and seals it to them. The mandatory
    /// parts (CEAS) default to gender, age and medical history for BPDS records, none
    /// otherwise. Returns the envelope (JWE) to give the patient.
    pub fn sign_and_seal(
        &self,
        record_json: String,
        patient_public_keys_json: String,
        mandatory_parts: Option<Vec<String>>,
        record_id: Option<String>,
    ) -> Result<String> {
        let patient = PublicKeySet::from_json(patient_public_keys_json.as_bytes())
            .map_err(crate::error::from_key_input)?;
        if !patient.is_self_certifying() {
            return Err(invalid(
                "a patient's ID must be its signing key's thumbprint",
            ));
        }
        log_result(
            "sign and seal",
            sign_and_seal(
                &self.party,
                &record_json,
                &patient,
                mandatory_parts,
                record_id,
            ),
        )
    }

    /// As [`DoctorSigner::sign_and_seal`], to the keys `patient_id` registered (a verified
    /// k-anonymous lookup among patients).
    pub async fn sign_and_seal_for_registered(
        &self,
        record_json: String,
        patient_id: String,
        mandatory_parts: Option<Vec<String>>,
        record_id: Option<String>,
    ) -> Result<String> {
        let party = self.party.clone();
        on_runtime(async move {
            log_result(
                "sign and seal",
                async {
                    let (entry, _) = party.lookup(&patient_id, PartyRole::Patient).await?;
                    let patient = entry.public_keys().map_err(|_| {
                        crate::error::unverified("the patient's registered keys are invalid")
                    })?;
                    sign_and_seal(&party, &record_json, &patient, mandatory_parts, record_id)
                }
                .await,
            )
        })
        .await
    }
}
