//! [`Requester`]: an institution (insurer, hospital, researcher) that receives records.

use crate::error::{EmrshareError, Result, from_client};
use crate::on_runtime;
use crate::party::{Party, log_result, lookup_report};
use crate::types::*;
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

crate::party::institution_basics!(
    Requester,
    "requester",
    REQUESTER_SECRET_NAME,
    requester_id,
    "New keys for the registered name `requester_id` (e.g. `insurer:acme`), saved in `store` under `\"emrshare.requester\"`. Admitted by the council: `admission_request`, then `submit_admission`."
);

#[uniffi::export]
impl Requester {
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
                    crate::types::check_issuer_role(doctor_role)?;
                    let patient = emrshare_core::keys::PartyId::new(patient_id)
                        .map_err(crate::error::from_key_input)?;
                    let (record, doctor, patient) = party
                        .inner
                        .verify_presentation(&presentation, &patient, &nonce)
                        .await
                        .map_err(from_client)?;
                    Ok(VerifiedPresentation {
                        record: (&record).into(),
                        doctor_lookup: lookup_report(&doctor),
                        patient_lookup: lookup_report(&patient),
                    })
                }
                .await,
            )
        })
        .await
    }
}

async fn fetch(party: &Party, grant_id: &str, doctor_role: PartyRole) -> Result<FetchedRecord> {
    crate::types::check_issuer_role(doctor_role)?;
    let fetched = party
        .inner
        .fetch_granted(grant_id)
        .await
        .map_err(|e| match e {
            // The stable variants apps know: no such grant is a 404, a dead one a 403.
            emrshare_client::ClientError::Unverified("the chain proves no such grant") => {
                EmrshareError::Refused { status: 404 }
            }
            emrshare_client::ClientError::Unverified(
                "the grant is revoked or expired on chain",
            ) => EmrshareError::Refused { status: 403 },
            other => from_client(other),
        })?;
    Ok(FetchedRecord {
        record: (&fetched.record).into(),
        grant: GrantInfo::new(&fetched.grant),
        doctor_lookup: lookup_report(&fetched.doctor),
    })
}
