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
        let blinded = b64::decode(&claims.blinded).map_err(|e| malformed(&e))?;
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
