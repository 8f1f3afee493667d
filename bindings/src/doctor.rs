//! [`DoctorSigner`]: a doctor (or hospital) signs a record with a content extraction
//! signature (SD-JWT, DESIGN 4) and seals it to the patient (JWE, DESIGN 5). As a hospital it
//! also admits and expels its doctors and signs its patients' blinded voucher requests.

use crate::error::{Result, from_client, invalid};
use crate::on_runtime;
use crate::party::{Party, log_result};
use crate::types::Registration;

use emrshare_core::PublicKeySet;
use emrshare_core::ces;
use emrshare_core::record::{Ceas, Record};
use std::sync::Arc;

pub const DOCTOR_SECRET_NAME: &str = "emrshare.doctor";

#[derive(uniffi::Object)]
pub struct DoctorSigner {
    party: Arc<Party>,
}

/// The record and its mandatory parts as the app gave them.
fn record_and_ceas(
    record_json: &str,
    mandatory_parts: Option<Vec<String>>,
    record_id: Option<String>,
) -> Result<(Record, Ceas)> {
    let record = Record::from_json(record_json.as_bytes(), record_id.as_deref())
        .map_err(|_| invalid("the record is not a valid object of named parts"))?;
    let ceas = match mandatory_parts {
        Some(names) => Ceas::new(names),
        None => Ceas::default_for(&record),
    };
    Ok((record, ceas))
}

fn from_issue(e: emrshare_client::ClientError) -> crate::error::EmrshareError {
    match e {
        emrshare_client::ClientError::Record(ces::CesError::Record(_)) => {
            invalid("a mandatory part is not in the record")
        }
        other => from_client(other),
    }
}

crate::party::institution_basics!(
    DoctorSigner,
    "doctor",
    DOCTOR_SECRET_NAME,
    doctor_id,
    "New keys for the registered name `doctor_id` (e.g. `hospital:st-marys`), saved in `store` under `\"emrshare.doctor\"`. A hospital is admitted by the council (`admission_request`, `submit_admission`); a doctor by its hospital (`admit_doctor`, given this object's `public_keys_json`)."
);

#[uniffi::export]
impl DoctorSigner {
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
        log_result(
            "sign and seal",
            record_and_ceas(&record_json, mandatory_parts, record_id).and_then(|(record, ceas)| {
                self.party
                    .inner
                    .sign_and_seal(&record, &patient, &ceas)
                    .map_err(from_issue)
            }),
        )
    }

    /// As a hospital: admits the doctor whose public JWK Set is `doctor_public_keys_json` (a
    /// `DoctorSigner`'s `public_keys_json`) for `valid_days`, affiliated with this hospital;
    /// returns the doctor's registration once proven. Refused unless this party is an
    /// admitted, active hospital.
    pub async fn admit_doctor(
        &self,
        doctor_public_keys_json: String,
        valid_days: u32,
    ) -> Result<Registration> {
        let party = self.party.clone();
        on_runtime(async move {
            log_result(
                "admit doctor",
                party
                    .admit_doctor(&doctor_public_keys_json, valid_days)
                    .await,
            )
        })
        .await
    }

    /// As a hospital: expels one of its doctors, from the block that commits it (final).
    /// Records the doctor issued before stay valid; later ones are refused.
    pub async fn expel_doctor(&self, doctor_id: String) -> Result<()> {
        let party = self.party.clone();
        on_runtime(async move { log_result("expel doctor", party.expel_doctor(&doctor_id).await) })
            .await
    }

    /// As a hospital: signs a patient's blinded voucher request
    /// ([`crate::VoucherRequest::blinded_request`], base64url) with its voucher key; returns
    /// the blind signature (base64url) for the patient to finalize. The hospital decides
    /// whom it vouches for (one voucher per person); it cannot see the patient's ID, nor
    /// later tell which registration used the voucher.
    pub fn sign_voucher_request(&self, blinded_request: String) -> Result<String> {
        log_result(
            "sign voucher request",
            self.party.sign_voucher_request(&blinded_request),
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
                    let (record, ceas) = record_and_ceas(&record_json, mandatory_parts, record_id)?;
                    let patient = emrshare_core::keys::PartyId::new(patient_id)
                        .map_err(crate::error::from_key_input)?;
                    party
                        .inner
                        .sign_and_seal_for_registered(&record, &patient, &ceas)
                        .await
                        .map_err(from_issue)
                }
                .await,
            )
        })
        .await
    }
}
