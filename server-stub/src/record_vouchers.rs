//! The node as a record voucher issuer (DESIGN section 6): a registered, active patient
//! asks for a blind signature (RFC 9474) on the message that opens one of its records'
//! accounts; the node signs it without seeing which record, within a daily quota per
//! patient, so a stranger cannot open accounts (or upload blobs) and a patient cannot open
//! them without bound. The node learns that a patient asked, never which account the voucher
//! opened: the chain shows a voucher spent, not whose.

use emrshare_core::keys::{PartyId, VerifyingKey};
use emrshare_core::ledger::machine::LedgerState;
use emrshare_core::ledger::tx::Role;
use emrshare_core::ledger::wire::{
    RECORD_VOUCHER_REQUEST_TYP, RecordVoucherAnswer, RecordVoucherClaims, RecordVoucherRequest,
};
use emrshare_core::voucher::VoucherSecretKey;
use emrshare_core::{b64, jws, strict_json};
use std::collections::HashMap;
use std::sync::Mutex;

/// How far a request's time may be from the node's clock, in seconds.
const MAX_SKEW_S: u64 = 300;

/// Why a voucher is not issued.
#[derive(Debug, thiserror::Error)]
pub enum VoucherRefusal {
    /// Not a signed request of the right form (400).
    #[error("malformed request: {0}")]
    Malformed(String),
    /// Not a registered, active patient's, or its signature fails (403).
    #[error("{0}")]
    Forbidden(&'static str),
    /// The patient had its vouchers for today (429).
    #[error("the daily quota of {0} record vouchers is used up; ask again tomorrow")]
    Quota(u32),
    /// This node issues no record vouchers (its key is not in genesis) (404).
    #[error("this node issues no record vouchers")]
    NotIssuer,
}

/// A node's record voucher key, its place in genesis, and who asked how often today.
pub struct RecordVoucherIssuer {
    key: VoucherSecretKey,
    index: u32,
    per_day: u32,
    /// Patient -> (day, vouchers issued that day). One entry per patient who asked (bounded
    /// by the registered patients); a restart forgets it, so a patient may get up to twice
    /// the quota on a day the node restarts.
    issued: Mutex<HashMap<PartyId, (u64, u32)>>,
}

impl RecordVoucherIssuer {
    /// An issuer with `key`, the `index`-th of genesis's record voucher keys, allowing
    /// `per_day` vouchers per patient per UTC day.
    pub fn new(key: VoucherSecretKey, index: u32, per_day: u32) -> Self {
        Self {
            key,
            index,
            per_day,
            issued: Mutex::new(HashMap::new()),
        }
    }

    /// Signs a registered patient's blinded message, checked against `state` at `now`
    /// (Unix seconds): its signature by the patient's current key, its time, the blinded
    /// message's size, the patient's quota.
    pub fn issue(
        &self,
        state: &LedgerState,
        body: &[u8],
        now: u64,
    ) -> Result<RecordVoucherAnswer, VoucherRefusal> {
        let malformed = |e: &dyn std::fmt::Display| VoucherRefusal::Malformed(e.to_string());
        let request: RecordVoucherRequest = strict_json::parse(body).map_err(|e| malformed(&e))?;
        let payload = jws::unverified_payload(&request.request).map_err(|e| malformed(&e))?;
        let claims: RecordVoucherClaims =
            strict_json::from_value(payload).map_err(|e| malformed(&e))?;
        let entry = state
            .registry_entry(&claims.iss)
            .filter(|e| e.role == Role::Patient && e.is_active(now))
            .ok_or(VoucherRefusal::Forbidden(
                "record vouchers are for registered, active patients",
            ))?;
        let key = VerifyingKey::from_jwk(entry.signing_jwk())
            .map_err(|_| VoucherRefusal::Forbidden("the patient's key is invalid"))?;
        jws::verify(&request.request, &key, RECORD_VOUCHER_REQUEST_TYP)
            .map_err(|_| VoucherRefusal::Forbidden("the request is not signed by the patient"))?;
        if claims.iat.abs_diff(now) > MAX_SKEW_S {
            return Err(VoucherRefusal::Forbidden("the request is stale"));
        }
        if claims.blinded.len() > 64 {
            return Err(VoucherRefusal::Malformed(
                "more than 64 blinded messages".into(),
            ));
        }
        let blinded = claims.blinded.get(self.index as usize).ok_or_else(|| {
            VoucherRefusal::Malformed("no message blinded for this node's key".into())
        })?;
        let blinded = b64::decode(blinded).map_err(|e| malformed(&e))?;
        let day = now / 86_400;
        {
            let mut issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
            let count = issued.entry(claims.iss.clone()).or_insert((day, 0));
            if count.0 != day {
                *count = (day, 0);
            }
            if count.1 >= self.per_day {
                return Err(VoucherRefusal::Quota(self.per_day));
            }
            count.1 += 1;
        }
        let signature = self.key.sign_blind(&blinded).map_err(|e| malformed(&e))?;
        Ok(RecordVoucherAnswer {
            blind_signature: b64::encode(&signature),
            key: self.index,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use emrshare_core::PrivateKeySet;
    use emrshare_core::ledger::testkit::{CHAIN, TestChain, record_voucher_key};
    use emrshare_core::voucher::{self, VoucherSecretKey};

    fn issuer(per_day: u32) -> RecordVoucherIssuer {
        let der = record_voucher_key().to_pkcs8().unwrap();
        RecordVoucherIssuer::new(VoucherSecretKey::from_pkcs8(&der).unwrap(), 0, per_day)
    }

    fn request(keys: &PrivateKeySet, blinded: Vec<String>, iat: u64) -> Vec<u8> {
        let claims = serde_json::to_value(RecordVoucherClaims {
            blinded,
            iat,
            iss: keys.id.clone(),
        })
        .unwrap();
        let jws = jws::sign(
            &keys.signing,
            &jws::Header::es256(RECORD_VOUCHER_REQUEST_TYP, None),
            &claims,
        );
        serde_json::to_vec(&RecordVoucherRequest { request: jws }).unwrap()
    }

    #[test]
    fn a_registered_patient_gets_a_voucher_that_opens_its_record() {
        let mut chain = TestChain::new();
        let patient = chain.register(None, Role::Patient);
        let record = PartyId::new("record-account-id").unwrap();
        let public = record_voucher_key().public().unwrap();
        let (pending, blinded) = voucher::blind(&public, CHAIN, &record).unwrap();
        let answer = issuer(2)
            .issue(
                &chain.state,
                &request(&patient, vec![b64::encode(&blinded)], chain.now),
                chain.now,
            )
            .unwrap();
        assert_eq!(answer.key, 0);
        let signature = b64::decode(&answer.blind_signature).unwrap();
        let voucher = pending.finalize(&signature).unwrap();
        assert!(public.verify(CHAIN, &record, &voucher).is_ok());
    }

    #[test]
    fn strangers_other_roles_forgeries_stale_requests_and_the_over_quota_get_nothing() {
        let mut chain = TestChain::new();
        let patient = chain.register(None, Role::Patient);
        let insurer = chain.register(Some("insurer:acme"), Role::Insurer);
        let stranger = PrivateKeySet::generate(None, emrshare_core::keys::RsaBits::B2048);
        let public = record_voucher_key().public().unwrap();
        let record = PartyId::new("record-account-id").unwrap();
        let blinded = || {
            let (_, b) = voucher::blind(&public, CHAIN, &record).unwrap();
            vec![b64::encode(&b)]
        };
        let now = chain.now;
        let issuer = issuer(2);
        let refused = |body: Vec<u8>| issuer.issue(&chain.state, &body, now).unwrap_err();
        assert!(matches!(
            refused(request(&stranger, blinded(), now)),
            VoucherRefusal::Forbidden(_)
        ));
        assert!(matches!(
            refused(request(&insurer, blinded(), now)),
            VoucherRefusal::Forbidden(_)
        ));
        assert!(matches!(
            refused(request(&patient, blinded(), now - 301)),
            VoucherRefusal::Forbidden(_)
        ));
        // Signed by another key than the patient's registered one.
        let mut impostor = PrivateKeySet::generate(None, emrshare_core::keys::RsaBits::B2048);
        impostor.id = patient.id.clone();
        assert!(matches!(
            refused(request(&impostor, blinded(), now)),
            VoucherRefusal::Forbidden(_)
        ));
        // Malformed: not JSON, no message for this node's key, too many messages.
        assert!(matches!(
            refused(b"{}".to_vec()),
            VoucherRefusal::Malformed(_)
        ));
        assert!(matches!(
            refused(request(&patient, vec![], now)),
            VoucherRefusal::Malformed(_)
        ));
        assert!(matches!(
            refused(request(&patient, vec!["AA".into(); 65], now)),
            VoucherRefusal::Malformed(_)
        ));
        // None of the refusals counted: the quota of two is whole, then spent.
        for _ in 0..2 {
            issuer
                .issue(&chain.state, &request(&patient, blinded(), now), now)
                .unwrap();
        }
        assert!(matches!(
            refused(request(&patient, blinded(), now)),
            VoucherRefusal::Quota(2)
        ));
        // A new day, a new quota.
        issuer
            .issue(
                &chain.state,
                &request(&patient, blinded(), now + 86_400),
                now + 86_400,
            )
            .unwrap();
    }
}
