//! Answering an institution's request (DESIGN 8; BPDST 4.2.4 steps 1-7) at the FFI edge:
//! mutual authentication of requester and patient against the registry (both looked up
//! k-anonymously), a forward-secret session key, and the chosen parts of a record sent under
//! it, ending in the patient's AccessLog on chain, sealed in the record's own account.
//!
//! ```text
//! Requester                                   PatientWallet
//! start_request(purpose, parts) -> request  ->  read_request(request, role) -> IncomingRequest
//!   (a JWS signed by the requester)              (signature checked with the requester's
//!                                                 registered key, then: who asks, which parts)
//!                                         <-  accept() -> m1
//! receive_m1(m1) -> m2                      ->
//!                                         <-  send_record(m2, sd_jwt, disclose) -> m3
//! receive_record(m3, doctor_role) -> SharedRecordInfo     log_access()
//!   (verified)                                   (sealed AccessLog in the record's account)
//! ```
//!
//! The app carries the four messages (text: a compact JWS, then JSON) over whatever channel
//! it has (QR code, NFC, HTTPS): the protocol is safe over an open channel, and none of the
//! messages names the patient. The typestates of
//! `emrshare_core::handshake` live inside the two objects; a call at the wrong step is an
//! `InvalidInput` error that leaves the handshake where it was; any other error (a tampered,
//! misdirected or unverifiable message) ends it, and a new one starts from the request.

use crate::error::{EmrshareError, Result, from_client, from_handshake, invalid};
use crate::party::{Party, log_result, lookup_report};
use crate::types::{LookupReport, PartyRole, VerifiedRecordInfo};
use crate::{now, on_runtime};
use emrshare_core::handshake::{
    HandshakeConfig, HandshakeError, PatientAwaitingM2, PatientStart, RequesterAwaitingM1,
    RequesterAwaitingM3, RequesterStart, VerifiedRequest,
};
use std::sync::{Arc, Mutex};

/// Takes the handshake's state for `step` if it is there. A call out of order is the app's
/// mistake, not the peer's: it leaves the state as it was. A failure after the state was
/// taken (a tampered or misdirected message) ends the handshake, so no peer gets a retry.
fn take_at<S, T>(
    slot: &Mutex<Option<S>>,
    step: &str,
    at_step: impl FnOnce(S) -> std::result::Result<T, S>,
) -> Result<T> {
    let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
    let Some(state) = slot.take() else {
        return Err(invalid(&format!(
            "the handshake has ended; the {step} step needs a new one"
        )));
    };
    at_step(state).map_err(|state| {
        *slot = Some(state);
        invalid(&format!("the handshake is not at the {step} step"))
    })
}

fn put<S>(slot: &Mutex<Option<S>>, state: S) {
    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(state);
}

fn text(message: Vec<u8>) -> Result<String> {
    String::from_utf8(message).map_err(|_| EmrshareError::Internal {
        reason: "a handshake message is not text".into(),
    })
}

// ---------------------------------------------------------------------- the patient's side

/// What an institution asks for, and how the patient's wallet verified who it is.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RequestSummary {
    pub requester_id: String,
    pub requester_role: PartyRole,
    pub purpose: String,
    pub requested_parts: Vec<String>,
    /// Unix seconds, by the requester's clock (within the accepted skew of ours).
    pub sent_at: u64,
    /// The k-anonymous lookup that proved the requester's registry entry, whose signing key
    /// signed this request (everything above is what it signed).
    pub requester_lookup: LookupReport,
}

enum PatientStep {
    /// The requester is verified; the patient decides.
    Verified(Box<VerifiedRequest>),
    /// M1 is sent; M2 is awaited.
    AwaitingM2(Box<PatientAwaitingM2>),
    /// M3 is sent; the exchange is to be logged in the record's account.
    Sent {
        /// The record's `emr_id`.
        record_id: String,
    },
}

/// A request the patient received, signed by the requester's registered key, recent, and
/// not answered before. [`accept`](Self::accept) answers it; dropping it declines.
#[derive(uniffi::Object)]
pub struct IncomingRequest {
    party: Arc<Party>,
    summary: RequestSummary,
    step: Mutex<Option<PatientStep>>,
}

pub(crate) async fn read_request(
    party: Arc<Party>,
    request: String,
    requester_role: PartyRole,
) -> Result<Arc<IncomingRequest>> {
    let (verified, requester) = party
        .inner
        .read_request(
            request.as_bytes(),
            requester_role.into(),
            party.answered_requests_lock(),
        )
        .await
        .map_err(from_client)?;
    let requester_lookup = lookup_report(&requester);
    // Only now is anything of the request shown: from what the registered key signed.
    let summary = RequestSummary {
        requester_id: verified.requester().to_string(),
        requester_role,
        purpose: verified.purpose().into(),
        requested_parts: verified.requested_parts().to_vec(),
        sent_at: verified.time(),
        requester_lookup,
    };
    Ok(Arc::new(IncomingRequest {
        party,
        summary,
        step: Mutex::new(Some(PatientStep::Verified(Box::new(verified)))),
    }))
}

#[uniffi::export]
impl IncomingRequest {
    pub fn summary(&self) -> RequestSummary {
        self.summary.clone()
    }

    /// Accepts: returns M1 for the requester (signed by the patient, encrypted to the
    /// requester's registered key, with the patient's ephemeral key). A request is answered
    /// once: accepting it again, or a copy of it, is refused.
    pub fn accept(&self) -> Result<String> {
        log_result("accept request", self.accept_inner())
    }

    /// Receives the requester's M2 (its signature checked with its registered key, our nonce
    /// echoed), derives the session key, and returns M3: the record's `disclose` parts (the
    /// doctor's mandatory parts always stay) with the patient's key binding to this session,
    /// under the session key. Ends the handshake.
    pub fn send_record(&self, m2: String, sd_jwt: String, disclose: Vec<String>) -> Result<String> {
        log_result(
            "send record",
            self.send_record_inner(&m2, &sd_jwt, &disclose),
        )
    }

    /// After [`send_record`](Self::send_record): logs the exchange on chain, in the shared
    /// record's own account, sealed to the patient (who asked, the record, the purpose); no
    /// requester ID appears on chain. The record must be stored. Ends the handshake.
    pub async fn log_access(&self) -> Result<()> {
        let record_id = take_at(&self.step, "log access", |step| match step {
            PatientStep::Sent { record_id } => Ok(record_id),
            other => Err(other),
        });
        let party = self.party.clone();
        let requester = self.summary.requester_id.clone();
        let purpose = self.summary.purpose.clone();
        on_runtime(async move {
            let record_id = record_id?;
            let requester =
                emrshare_core::PartyId::new(requester).map_err(crate::error::from_key_input)?;
            log_result(
                "log access",
                party
                    .inner
                    .log_shared_record(&record_id, &requester, &purpose)
                    .await
                    .map_err(from_client),
            )
        })
        .await
    }
}

impl IncomingRequest {
    fn accept_inner(&self) -> Result<String> {
        let verified = take_at(&self.step, "accept", |step| match step {
            PatientStep::Verified(verified) => Ok(verified),
            other => Err(other),
        })?;
        let (awaiting, m1) = self
            .party
            .with_keys(|keys| {
                let mut answered = self.party.answered_requests();
                PatientStart::new(HandshakeConfig::default()).send_m1(
                    *verified,
                    &mut answered,
                    keys,
                    now(),
                )
            })
            .map_err(from_handshake)?;
        put(&self.step, PatientStep::AwaitingM2(Box::new(awaiting)));
        text(m1)
    }

    fn send_record_inner(&self, m2: &str, sd_jwt: &str, disclose: &[String]) -> Result<String> {
        let awaiting = take_at(&self.step, "send record", |step| match step {
            PatientStep::AwaitingM2(awaiting) => Ok(awaiting),
            other => Err(other),
        })?;
        let record = crate::types::parse_sd_jwt(sd_jwt)?;
        let keep: Vec<&str> = disclose.iter().map(String::as_str).collect();
        let m3 = self
            .party
            .with_keys(|keys| {
                let session = (*awaiting).receive_m2(m2.as_bytes(), keys, now())?;
                session.send_record(&record, &keep, None, keys, now())
            })
            .map_err(from_handshake)?;
        if let Some(record_id) = emrshare_client::records::emr_id_of(&record) {
            put(&self.step, PatientStep::Sent { record_id });
        }
        text(m3)
    }
}

// -------------------------------------------------------------------- the requester's side

/// The patient, authenticated: M1's signature verified with the registered key of the
/// patient it names.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PatientAuthenticated {
    /// M2, for the patient.
    pub m2: String,
    pub patient_id: String,
    pub patient_lookup: LookupReport,
}

/// The outcome of a handshake on the requester's side.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SharedRecordInfo {
    /// The disclosed parts, verified under the doctor's registered key, the patient's record
    /// (holder key) and bound to this session (KB-JWT: aud = us, nonce = ours).
    pub record: VerifiedRecordInfo,
    pub patient_id: String,
    pub purpose: String,
    pub requested_parts: Vec<String>,
    /// The transcript hash (hex): both sides derive the same; names this handshake.
    pub session_id: String,
    pub doctor_lookup: LookupReport,
}

enum RequesterStep {
    AwaitingM1(RequesterAwaitingM1),
    AwaitingM3(Box<RequesterAwaitingM3>),
}

/// A request this requester made; carries the handshake to a verified, logged record.
#[derive(uniffi::Object)]
pub struct OutgoingRequest {
    party: Arc<Party>,
    request: String,
    step: Mutex<Option<RequesterStep>>,
}

pub(crate) fn start_request(
    party: Arc<Party>,
    purpose: &str,
    parts: &[String],
) -> Result<Arc<OutgoingRequest>> {
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let (awaiting, request) = party
        .with_keys(|keys| {
            RequesterStart::new(HandshakeConfig::default()).send_request(
                keys,
                purpose,
                &parts,
                now(),
            )
        })
        .map_err(|e| match e {
            HandshakeError::Malformed { reason, .. } => invalid(reason),
            HandshakeError::TooLarge { .. } => invalid("the request is too large"),
            other => from_handshake(other),
        })?;
    Ok(Arc::new(OutgoingRequest {
        party,
        request: text(request)?,
        step: Mutex::new(Some(RequesterStep::AwaitingM1(awaiting))),
    }))
}

#[uniffi::export]
impl OutgoingRequest {
    /// The request to hand to the patient. It carries no secret.
    pub fn request_message(&self) -> String {
        self.request.clone()
    }

    /// Receives the patient's M1: opens it, checks it answers this request, looks the patient
    /// it names up k-anonymously, verifies its signature with the registered key, and returns
    /// M2 (signed by us, encrypted to the patient's registered key).
    pub async fn receive_m1(self: Arc<Self>, m1: String) -> Result<PatientAuthenticated> {
        on_runtime(async move { log_result("receive M1", self.receive_m1_inner(&m1).await) }).await
    }

    /// Receives M3: opens it under the session key, looks the record's doctor up among
    /// `doctor_role`, verifies the record (doctor's signature, disclosures, mandatory parts,
    /// the patient's record, key binding to this session), then commits our AccessLog for it
    /// before handing the record over. Ends the handshake.
    pub async fn receive_record(
        self: Arc<Self>,
        m3: String,
        doctor_role: PartyRole,
    ) -> Result<SharedRecordInfo> {
        on_runtime(async move {
            log_result(
                "receive record",
                self.receive_record_inner(&m3, doctor_role).await,
            )
        })
        .await
    }
}

impl OutgoingRequest {
    async fn receive_m1_inner(&self, m1: &str) -> Result<PatientAuthenticated> {
        let awaiting = take_at(&self.step, "receive M1", |step| match step {
            RequesterStep::AwaitingM1(awaiting) => Ok(awaiting),
            other => Err(other),
        })?;
        let (awaiting_m3, m2, patient) = self
            .party
            .inner
            .authenticate_patient(awaiting, m1.as_bytes())
            .await
            .map_err(from_client)?;
        let patient_id = patient.entry.id().to_string();
        let patient_lookup = lookup_report(&patient);
        put(&self.step, RequesterStep::AwaitingM3(Box::new(awaiting_m3)));
        Ok(PatientAuthenticated {
            m2: text(m2)?,
            patient_id,
            patient_lookup,
        })
    }

    async fn receive_record_inner(
        &self,
        m3: &str,
        doctor_role: PartyRole,
    ) -> Result<SharedRecordInfo> {
        let awaiting = take_at(&self.step, "receive record", |step| match step {
            RequesterStep::AwaitingM3(awaiting) => Ok(awaiting),
            other => Err(other),
        })?;
        crate::types::check_issuer_role(doctor_role)?;
        let accepted = self
            .party
            .inner
            .accept_record(*awaiting, m3.as_bytes())
            .await
            .map_err(from_client)?;
        let (shared, doctor_lookup) = (accepted.shared, lookup_report(&accepted.issuer));
        Ok(SharedRecordInfo {
            record: shared.record().into(),
            patient_id: shared.patient().to_string(),
            purpose: shared.purpose().into(),
            requested_parts: shared.requested_parts().to_vec(),
            session_id: emrshare_core::hash::to_hex(shared.session_id()),
            doctor_lookup,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use emrshare_core::ces::CesError;
    use emrshare_core::handshake::MessageKind;

    #[test]
    fn handshake_errors_map_to_stable_variants_without_names() {
        let cases = [
            (
                HandshakeError::WrongId {
                    kind: MessageKind::M1,
                    party: "requester",
                },
                "VerificationFailed",
            ),
            (
                HandshakeError::BadSignature(MessageKind::Request),
                "VerificationFailed",
            ),
            (
                HandshakeError::Replayed(MessageKind::Request),
                "VerificationFailed",
            ),
            (
                HandshakeError::SessionKey(MessageKind::M3),
                "VerificationFailed",
            ),
            (HandshakeError::InactiveEntry("requester"), "NotRegistered"),
            (HandshakeError::Encrypt(MessageKind::M2), "Internal"),
            (
                HandshakeError::Record(CesError::UnknownPart("hiv_status".into())),
                "InvalidInput",
            ),
            (
                HandshakeError::Record(CesError::KeyBindingNonce),
                "VerificationFailed",
            ),
        ];
        for (error, variant) in cases {
            let mapped = from_handshake(error);
            let name = format!("{mapped:?}");
            assert!(name.starts_with(variant), "{name} is not {variant}");
            assert!(!mapped.to_string().contains("hiv_status"), "{mapped}");
        }
    }

    #[test]
    fn a_step_out_of_order_leaves_the_state_and_an_ended_handshake_stays_ended() {
        let at_even = |n: u8| if n % 2 == 0 { Ok(n) } else { Err(n) };
        let slot = Mutex::new(Some(1u8));
        let early = take_at(&slot, "accept", at_even).unwrap_err();
        assert!(
            matches!(early, EmrshareError::InvalidInput { .. }),
            "{early:?}"
        );
        assert_eq!(
            *slot.lock().unwrap(),
            Some(1),
            "an out-of-order call keeps the state"
        );
        put(&slot, 2);
        assert_eq!(take_at(&slot, "accept", at_even).unwrap(), 2);
        let ended = take_at(&slot, "accept", at_even).unwrap_err();
        assert!(ended.to_string().contains("ended"), "{ended}");
        assert_eq!(*slot.lock().unwrap(), None);
    }
}
