//! The handshake drivers (DESIGN 8; BPDST 4.2.4): the steps of core's sans-I/O handshake
//! that need the consortium, written once. The patient reads a request (the requester looked
//! up and its signature checked before anything of the request is shown); the requester
//! authenticates the patient from M1 (the patient looked up), then accepts the record from
//! M3 (its issuer looked up and checked). The patient logs the exchange in the record's own
//! account, sealed to itself ([`Party::log_shared_record`]): no requester ID follows a
//! lookup on chain. The other steps are core's, with the party's keys.

use crate::error::{ClientError, Result};
use crate::party::{LookedUp, Party, now};
use crate::transport::Transport;
use emrshare_core::handshake::{
    AnsweredRequests, HandshakeConfig, PatientStart, RequesterAwaitingM1, RequesterAwaitingM3,
    SharedRecord, VerifiedRequest,
};
use emrshare_core::ledger::tx::Role;

/// The roles a request may come from.
pub const REQUESTER_ROLES: &[Role] = &[Role::Hospital, Role::Insurer, Role::Researcher];

/// A record accepted at the end of a handshake, verified.
#[derive(Debug)]
pub struct AcceptedRecord {
    /// The record shared in M3, verified and bound to this session's patient.
    pub shared: SharedRecord,
    /// The record's issuer (a doctor or hospital), looked up k-anonymously.
    pub issuer: LookedUp,
}

impl<T: Transport> Party<T> {
    /// The patient reads a request: the requester is looked up k-anonymously among
    /// `requester_role`, and the request must be signed by its registered key, recent, and
    /// not among `answered`. Only the result shows who asks, for what.
    pub async fn read_request(
        &self,
        request: &[u8],
        requester_role: Role,
        answered: &std::sync::Mutex<AnsweredRequests>,
    ) -> Result<(VerifiedRequest, LookedUp)> {
        if !REQUESTER_ROLES.contains(&requester_role) {
            return Err(ClientError::Invalid(
                "a request comes from a hospital, an insurer or a researcher",
            ));
        }
        let read = PatientStart::new(HandshakeConfig::default()).read_request(request, now())?;
        let requester = self.look_up(read.requester(), requester_role).await?;
        let answered = answered.lock().unwrap_or_else(|p| p.into_inner());
        let verified = read.verify_requester(&requester.entry, &answered, now())?;
        Ok((verified, requester))
    }

    /// The requester opens M1 and authenticates the patient it names (looked up
    /// k-anonymously among patients); returns the next state and M2.
    pub async fn authenticate_patient(
        &self,
        awaiting: RequesterAwaitingM1,
        m1: &[u8],
    ) -> Result<(RequesterAwaitingM3, Vec<u8>, LookedUp)> {
        let opened = self.with_keys(|keys| awaiting.receive_m1(m1, keys, now()))?;
        let patient = self.look_up(opened.patient(), Role::Patient).await?;
        let (awaiting_m3, m2) =
            self.with_keys(|keys| opened.verify_patient(&patient.entry, keys, now()))?;
        Ok((awaiting_m3, m2, patient))
    }

    /// The requester opens M3 and accepts the record: its issuer's and its hospital's registry
    /// entries (a doctor and its hospital, or a hospital, active when it issued the record,
    /// its key then in force), the patient's binding to this session, and the record being
    /// the authenticated patient's.
    pub async fn accept_record(
        &self,
        awaiting: RequesterAwaitingM3,
        m3: &[u8],
    ) -> Result<AcceptedRecord> {
        let opened = awaiting.receive_m3(m3)?;
        let issuer = self.look_up_issuer(opened.issuer()).await?;
        let hospital = self.look_up_hospital_of(&issuer).await?;
        let shared = opened.verify_record(&issuer.entry, &hospital.entry, now())?;
        if shared.record().patient() != shared.patient().as_str() {
            return Err(ClientError::Unverified(
                "the record belongs to another patient than the one authenticated",
            ));
        }
        Ok(AcceptedRecord { shared, issuer })
    }
}
