//! Ledger transactions (DESIGN section 6). A transaction is a compact JWS (ES256, `typ`
//! `emr-tx+jwt`) over its JSON body, signed by its sender; its ID is the SHA-256 of the JWS.
//! Replay protection: each sender's transactions carry strictly increasing sequence numbers,
//! which the node's state machine enforces.

use super::governance::{Approval, GovAction, Proposal, Status};
use crate::Hash;
use crate::jws::{self, JwsError};
use crate::keys::{Jwk, KeyError, PartyId, SigningKey, VerifyingKey};
use crate::strict_json::{self, StrictJsonError};
use crate::voucher::Voucher;
use crate::{b64, hazmat};
use serde::{Deserialize, Serialize};

/// The JWS `typ` of a transaction.
pub const TX_TYP: &str = "emr-tx+jwt";
/// Largest accepted transaction, as JWS text.
pub const MAX_TX_BYTES: usize = 64 * 1024;

/// Why a transaction is refused before any state is read, or its signature fails.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TxError {
    /// The JWS text is over [`MAX_TX_BYTES`] or its type's own bound (its length, bytes).
    #[error("transaction of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// The JWS is malformed, or its signature does not verify under the sender's key.
    #[error("transaction signature: {0}")]
    Signature(JwsError),
    /// The payload is not a transaction: not JSON, or of the wrong shape (an unknown member).
    #[error("transaction: {0}")]
    Json(#[from] StrictJsonError),
    /// A key the transaction registers is not a valid JWK of its kind.
    #[error("transaction key: {0}")]
    Key(#[from] KeyError),
    /// The transaction breaks a rule of form (which one, fixed text).
    #[error("invalid transaction: {0}")]
    Invalid(&'static str),
}

/// What a registered party is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A patient: its ID is the RFC 7638 thumbprint of its signing key.
    Patient,
    /// A doctor: issues records.
    Doctor,
    /// A hospital: issues records, and requests them.
    Hospital,
    /// An insurer: requests records.
    Insurer,
    /// A researcher: requests records.
    Researcher,
    /// A full node of the consortium.
    Node,
}

impl Role {
    /// The role's name as JSON and the node's paths spell it (`patient`, `hospital`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Patient => "patient",
            Role::Doctor => "doctor",
            Role::Hospital => "hospital",
            Role::Insurer => "insurer",
            Role::Researcher => "researcher",
            Role::Node => "node",
        }
    }
}

/// What a grant allows, and what a logged access did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Reading the record.
    Read,
    /// Copying the record.
    Copy,
}

/// Whether a logged access was granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The access was granted.
    Granted,
    /// The access was refused.
    Refused,
}

/// The body of a transaction, by type.
// Variants hold keys and proposals inline: a wire type, parsed once per transaction.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TxBody {
    /// A patient registers its ID (the thumbprint of `signing_jwk`) and public keys for a
    /// validity period (BPDST 4.2.2), signed by the key being registered, with a one-use
    /// voucher from an admitted hospital ([`crate::voucher`]) that names no hospital. No
    /// other role registers itself: institutions are admitted by the council
    /// ([`TxBody::Govern`]), doctors by their hospital ([`TxBody::AdmitDoctor`]).
    RegisterIdentity {
        /// The ID being registered: the sender's own.
        id: PartyId,
        /// What the party is.
        role: Role,
        /// The public ES256 key that verifies the party's signatures.
        signing_jwk: Jwk,
        /// The public RSA-OAEP-256 key that records and keys are sealed to.
        encryption_jwk: Jwk,
        /// Start of validity, Unix seconds (inclusive).
        valid_from: u64,
        /// End of validity, Unix seconds (exclusive; after `valid_from`).
        valid_until: u64,
        /// The one-use registration voucher of an admitted hospital (required).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        voucher: Option<Voucher>,
    },
    /// Key rotation, signed by the party's current key: the entry keeps its ID and its key
    /// history (each key with the height and time from which it was in force).
    UpdateKeys {
        /// The party whose keys change: the sender.
        id: PartyId,
        /// The new public ES256 key.
        signing_jwk: Jwk,
        /// The new public RSA-OAEP-256 key.
        encryption_jwk: Jwk,
    },
    /// A party ends its own registration (status `revoked`, final).
    RevokeIdentity {
        /// The party revoked: the sender.
        id: PartyId,
    },
    /// A governance action approved by at least `t` council members
    /// ([`governance`](super::governance)).
    Govern {
        /// The canonical payload the members approved.
        proposal: Proposal,
        /// At least `t` distinct members' approvals of `proposal`.
        approvals: Vec<Approval>,
    },
    /// A registered, active hospital (the sender) admits one of its doctors; the entry names
    /// the hospital as the doctor's affiliation.
    AdmitDoctor {
        /// The doctor's ID.
        id: PartyId,
        /// The doctor's public ES256 key.
        signing_jwk: Jwk,
        /// The doctor's public RSA-OAEP-256 key.
        encryption_jwk: Jwk,
        /// Start of validity, Unix seconds (inclusive).
        valid_from: u64,
        /// End of validity, Unix seconds (exclusive; after `valid_from`).
        valid_until: u64,
    },
    /// A hospital (the sender) suspends, reinstates or expels one of its doctors.
    SetDoctorStatus {
        /// The doctor, affiliated with the sender.
        id: PartyId,
        /// Its new status.
        status: Status,
    },
    /// A patient opens the account of one of its records (DESIGN section 6): the sender is
    /// the record's own key (derived from the patient's master secret,
    /// [`crate::keys::txkeys`]), never the patient's registered key, so a chain reader cannot
    /// link two records of one patient. It carries a one-use record voucher of a consortium
    /// node (a blind signature, [`crate::voucher`]: the node saw which registered patient
    /// asked, not for which record) and the record's index entry, sealed under a secret only
    /// the patient derives ([`crate::sealed`]).
    OpenRecord {
        /// The record's public ES256 key: the sender is its thumbprint.
        signing_jwk: Jwk,
        /// A record voucher of a consortium node for the sender's ID.
        voucher: Voucher,
        /// The sealed [`IndexEntry`](crate::account::IndexEntry).
        entry: String,
    },
    /// A record's account (the sender) grants access to a version of the record, as a
    /// capability: the chain holds a commitment to the grant's own key, its blob, actions
    /// and expiry; who the grantee is and which parts it gets are in `details`, sealed to the
    /// grantee's registered key without naming it.
    Grant {
        /// The grant's ID; one already used on the chain is refused.
        grant_id: String,
        /// The version of the record shared: its blob address.
        blob: Hash,
        /// SHA-256 of the thumbprint of the grant's public key: an access log under the grant
        /// is signed by that key.
        grant_key: Hash,
        /// What the grant allows.
        actions: Vec<Action>,
        /// Last time the grant allows an access, Unix seconds (inclusive).
        not_after: u64,
        /// The [`GrantDetails`](crate::account::GrantDetails), a compact JWE to the grantee
        /// with no `kid`.
        details: String,
    },
    /// The record's account (the sender) revokes one of its grants.
    RevokeGrant {
        /// The grant revoked.
        grant_id: String,
    },
    /// An access to a record, its details sealed to the record's owner. Under a grant, the
    /// sender is the grant's key (its thumbprint, committed in the grant) and a node serves
    /// the grant's blob only against it; without one, the sender is the record's account
    /// logging an access it allowed itself (a handshake).
    AccessLog {
        /// The grant the access was made under.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grant_id: Option<String>,
        /// The grant's public key, which signs (with `grant_id` only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grant_jwk: Option<Jwk>,
        /// What the accessor did.
        action: Action,
        /// When the access happened, Unix seconds: at most
        /// [`ACCESS_LOG_WINDOW_S`](super::machine::ACCESS_LOG_WINDOW_S) before the block time, and
        /// at most [`MAX_CLOCK_SKEW_S`](super::machine::MAX_CLOCK_SKEW_S) after it.
        at: u64,
        /// The [`LogDetails`](crate::account::LogDetails), sealed under the grant's (or the
        /// record's) log secret, which only the patient and the grantee hold.
        details: String,
    },
    /// Evidence of misbehaviour: a validator signed two conflicting consensus messages.
    Misbehaviour {
        /// The consortium member accused: the signer of both messages.
        accused: PartyId,
        /// The evidence: one JSON text of [`Evidence`](super::bft::Evidence).
        evidence: Vec<String>,
    },
    /// A change of a consortium member's credit score. The chain makes these itself; sent as a
    /// transaction, it is refused.
    CreditUpdate {
        /// The member whose credit changes.
        node: PartyId,
        /// The change of credit (negative for a penalty).
        delta: i64,
        /// Why, in words.
        reason: String,
    },
}

impl TxBody {
    /// The largest JWS text of a transaction of this type: room for what the type holds
    /// (an RSA-4096 JWK, a sealed index entry, two signed headers) and no more, so nobody
    /// fills blocks with padding.
    pub fn max_bytes(&self) -> usize {
        match self {
            // Two JWKs (RSA-4096 at most), and for a patient a voucher (an RSA-4096
            // signature).
            Self::RegisterIdentity { .. } => 8 * 1024,
            Self::UpdateKeys { .. } | Self::AdmitDoctor { .. } => 6 * 1024,
            // Up to 64 members' keys and approvals, or an admission's three keys.
            Self::Govern { .. } => 48 * 1024,
            Self::RevokeIdentity { .. }
            | Self::SetDoctorStatus { .. }
            | Self::RevokeGrant { .. }
            | Self::CreditUpdate { .. } => 2 * 1024,
            // A grant key, and sealed details (a log's or an index entry's few hundred bytes).
            Self::AccessLog { .. } => 4 * 1024,
            // A voucher (RSA-4096 at most) and a sealed index entry; sealed details to an
            // RSA-4096 key.
            Self::OpenRecord { .. } | Self::Grant { .. } => 8 * 1024,
            Self::Misbehaviour { .. } => 24 * 1024,
        }
    }
}

/// The names under which a transaction body carries keys, at any depth.
const KEY_MEMBERS: [&str; 4] = ["signing_jwk", "encryption_jwk", "voucher_key", "grant_jwk"];

/// Checks every key a body carries, at any depth (a governance proposal nests them).
fn check_keys_in(value: &serde_json::Value, depth: usize) -> Result<(), TxError> {
    if depth > 8 {
        return Ok(()); // deeper than any body nests keys: the typed parse refuses it
    }
    match value {
        serde_json::Value::Object(members) => {
            for (name, member) in members {
                if KEY_MEMBERS.contains(&name.as_str()) {
                    check_public_jwk_members(member)?;
                } else {
                    check_keys_in(member, depth + 1)?;
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                check_keys_in(item, depth + 1)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The members a public EC or RSA JWK may carry in a transaction (RFC 7517/7518): a key
/// with anything else (private members, padding) is refused rather than ignored.
fn check_public_jwk_members(jwk: &serde_json::Value) -> Result<(), TxError> {
    const PUBLIC: [&str; 9] = ["kty", "use", "alg", "kid", "crv", "x", "y", "n", "e"];
    let members = jwk
        .as_object()
        .ok_or(TxError::Invalid("a key is not a JSON object"))?;
    if members.keys().any(|m| !PUBLIC.contains(&m.as_str())) {
        return Err(TxError::Invalid(
            "a registered key may only have public JWK members",
        ));
    }
    Ok(())
}

/// A transaction: who sends it, in which chain, with which sequence number, what it does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transaction {
    /// The chain the transaction belongs to; other chains refuse it.
    pub chain_id: String,
    /// The party that signs and sends it.
    pub sender: PartyId,
    /// The sender's sequence number: 0 for its first transaction, then one more each time.
    pub sequence: u64,
    /// What the transaction does.
    pub body: TxBody,
}

/// A signed transaction as it travels: the JWS text and its decoded transaction. The
/// signature is checked by [`SignedTransaction::verify`] against the sender's registered key.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedTransaction {
    jws: String,
    tx: Transaction,
}

impl Transaction {
    /// Signs the transaction with `key` as a compact ES256 JWS (`typ` [`TX_TYP`]).
    pub fn sign(self, key: &SigningKey) -> SignedTransaction {
        let payload = serde_json::to_value(&self).expect("transactions serialize");
        let jws = jws::sign(key, &jws::Header::es256(TX_TYP, None), &payload);
        SignedTransaction { jws, tx: self }
    }
}

impl SignedTransaction {
    /// Decodes a JWS into a transaction without checking its signature (the signer's key
    /// depends on state: look it up, then call [`verify`](Self::verify)).
    ///
    /// Refused here, before any state is read: texts over [`MAX_TX_BYTES`] or over their
    /// type's own bound ([`TxBody::max_bytes`], so no transaction is padded with ignored
    /// data), registered keys with members a public JWK does not have, and high-S
    /// signatures (the one signed content would otherwise have a second ID).
    pub fn parse(jws_text: &str) -> Result<Self, TxError> {
        if jws_text.len() > MAX_TX_BYTES {
            return Err(TxError::TooLarge(jws_text.len()));
        }
        let signature = jws_text
            .rsplit_once('.')
            .and_then(|(_, s)| b64::decode(s).ok())
            .ok_or(TxError::Invalid("malformed signature"))?;
        if !hazmat::es256_is_low_s(&signature) {
            return Err(TxError::Invalid(
                "signature is not in low-S form (the only form a transaction may take)",
            ));
        }
        let payload = jws::unverified_payload(jws_text).map_err(TxError::Signature)?;
        if let Some(body) = payload.get("body") {
            check_keys_in(body, 0)?;
        }
        let tx: Transaction = strict_json::from_value(payload)?;
        if jws_text.len() > tx.body.max_bytes() {
            return Err(TxError::TooLarge(jws_text.len()));
        }
        Ok(Self {
            jws: jws_text.to_owned(),
            tx,
        })
    }

    /// Checks the signature with the sender's key.
    pub fn verify(&self, sender_key: &VerifyingKey) -> Result<&Transaction, TxError> {
        jws::verify(&self.jws, sender_key, TX_TYP).map_err(TxError::Signature)?;
        Ok(&self.tx)
    }

    /// For a RegisterIdentity, a governance admission or an OpenRecord, the key it registers
    /// is the key that must have signed it (proof of possession); for an AccessLog under a
    /// grant, the grant key it carries (whose commitment the state checks).
    pub fn self_signing_key(&self) -> Result<Option<VerifyingKey>, TxError> {
        let (id, signing_jwk) = match &self.tx.body {
            TxBody::RegisterIdentity {
                id, signing_jwk, ..
            } => (id.as_str(), signing_jwk),
            TxBody::Govern {
                proposal:
                    Proposal {
                        action:
                            GovAction::Admit {
                                id, signing_jwk, ..
                            },
                        ..
                    },
                ..
            } => (id.as_str(), signing_jwk),
            TxBody::OpenRecord { signing_jwk, .. }
            | TxBody::AccessLog {
                grant_jwk: Some(signing_jwk),
                ..
            } => {
                let key = VerifyingKey::from_jwk(signing_jwk)?;
                if key.thumbprint() != self.tx.sender.as_str() {
                    return Err(TxError::Invalid(
                        "a record's or grant's key signs as its own thumbprint",
                    ));
                }
                return Ok(Some(key));
            }
            _ => return Ok(None),
        };
        if id != self.tx.sender.as_str() {
            return Err(TxError::Invalid(
                "a registration or admission must be sent by the ID it registers",
            ));
        }
        Ok(Some(VerifyingKey::from_jwk(signing_jwk)?))
    }

    /// The decoded transaction (its signature checked only by [`verify`](Self::verify)).
    pub fn transaction(&self) -> &Transaction {
        &self.tx
    }

    /// The compact JWS text, as signed.
    pub fn as_jws(&self) -> &str {
        &self.jws
    }

    /// The transaction ID: SHA-256 of the JWS text.
    pub fn id(&self) -> Hash {
        Hash::sha256(self.jws.as_bytes())
    }

    /// The transaction ID as text (base64url).
    pub fn id_text(&self) -> String {
        b64::encode(self.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration(key: &SigningKey, id: &str) -> Transaction {
        let enc = crate::keys::tests::party()
            .decryption
            .encryption_key()
            .to_jwk(None);
        Transaction {
            chain_id: "test".into(),
            sender: PartyId::new(id).unwrap(),
            sequence: 0,
            body: TxBody::RegisterIdentity {
                id: PartyId::new(id).unwrap(),
                role: Role::Hospital,
                signing_jwk: key.verifying_key().to_jwk(None),
                encryption_jwk: enc,
                valid_from: 0,
                valid_until: u64::MAX,
                voucher: None,
            },
        }
    }

    #[test]
    fn signed_transactions_roundtrip_and_verify_with_the_right_key_only() {
        let key = SigningKey::generate();
        let signed = registration(&key, "hospital:a").sign(&key);
        let parsed = SignedTransaction::parse(signed.as_jws()).unwrap();
        assert_eq!(parsed, signed);
        assert_eq!(parsed.id(), signed.id());
        let self_key = parsed.self_signing_key().unwrap().unwrap();
        assert_eq!(&self_key, key.verifying_key());
        assert!(parsed.verify(&self_key).is_ok());
        assert!(
            parsed
                .verify(SigningKey::generate().verifying_key())
                .is_err()
        );
    }

    #[test]
    fn registration_for_another_id_is_refused() {
        let key = SigningKey::generate();
        let mut tx = registration(&key, "hospital:a");
        tx.sender = PartyId::new("hospital:b").unwrap();
        assert!(matches!(
            tx.sign(&key).self_signing_key(),
            Err(TxError::Invalid(_))
        ));
    }

    /// The high-S twin of a signature verifies as ECDSA but would give the same signed
    /// content a second transaction ID: refused by form.
    #[test]
    fn a_high_s_twin_of_a_transaction_is_refused() {
        let key = SigningKey::generate();
        let signed = registration(&key, "hospital:a").sign(&key);
        let (signing_input, signature) = signed.as_jws().rsplit_once('.').unwrap();
        let mut twin = b64::decode(signature).unwrap();
        let order = [
            0xffu8, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63,
            0x25, 0x51,
        ];
        let mut borrow = 0i16;
        for i in (0..32).rev() {
            let mut digit = i16::from(order[i]) - i16::from(twin[32 + i]) - borrow;
            borrow = i16::from(digit < 0);
            if digit < 0 {
                digit += 256;
            }
            twin[32 + i] = digit as u8;
        }
        let twin = format!("{signing_input}.{}", b64::encode(&twin));
        // The twin is a valid ECDSA signature of the same content...
        assert!(jws::verify(&twin, key.verifying_key(), TX_TYP).is_ok());
        // ...and is refused as a transaction.
        assert!(matches!(
            SignedTransaction::parse(&twin),
            Err(TxError::Invalid(_))
        ));
    }

    /// A registration padded with an ignored JWK member, or carrying a private member, is
    /// refused, as is any transaction over its type's bound.
    #[test]
    fn padded_keys_and_oversized_bodies_are_refused() {
        let key = SigningKey::generate();
        let h = jws::Header::es256(TX_TYP, None);
        let mut payload = serde_json::to_value(registration(&key, "hospital:a")).unwrap();
        payload["body"]["signing_jwk"]["padding"] = "x".repeat(3000).into();
        assert!(matches!(
            SignedTransaction::parse(&jws::sign(&key, &h, &payload)),
            Err(TxError::Invalid(_))
        ));
        let mut payload = serde_json::to_value(registration(&key, "hospital:a")).unwrap();
        payload["body"]["encryption_jwk"]["d"] = "AQAB".into();
        assert!(SignedTransaction::parse(&jws::sign(&key, &h, &payload)).is_err());
        let revoke = |grant_id: String| {
            let tx = Transaction {
                chain_id: "test".into(),
                sender: PartyId::new("hospital:a").unwrap(),
                sequence: 0,
                body: TxBody::RevokeGrant { grant_id },
            };
            SignedTransaction::parse(tx.sign(&key).as_jws())
        };
        assert!(revoke("g".repeat(100)).is_ok());
        assert!(matches!(
            revoke("g".repeat(4000)),
            Err(TxError::TooLarge(_))
        ));
    }

    /// Keys nested in a governance proposal (an admission's keys and voucher key, a new
    /// council's keys) are held to the same rule: public members only.
    #[test]
    fn keys_nested_in_governance_proposals_carry_only_public_members() {
        let key = SigningKey::generate();
        let h = jws::Header::es256(TX_TYP, None);
        let admission = Transaction {
            chain_id: "test".into(),
            sender: PartyId::new("hospital:a").unwrap(),
            sequence: 0,
            body: TxBody::Govern {
                proposal: Proposal::new(
                    "test",
                    10,
                    GovAction::Admit {
                        id: PartyId::new("hospital:a").unwrap(),
                        role: Role::Hospital,
                        signing_jwk: key.verifying_key().to_jwk(None),
                        encryption_jwk: crate::keys::tests::party()
                            .decryption
                            .encryption_key()
                            .to_jwk(None),
                        valid_from: 0,
                        valid_until: 10,
                        voucher_key: Some(
                            crate::keys::tests::party()
                                .decryption
                                .encryption_key()
                                .to_jwk(None),
                        ),
                    },
                ),
                approvals: vec![],
            },
        };
        let good = serde_json::to_value(&admission).unwrap();
        assert!(SignedTransaction::parse(&jws::sign(&key, &h, &good)).is_ok());
        for (path, member, value) in [
            ("voucher_key", "d", "AQAB".to_owned()),
            ("signing_jwk", "padding", "x".repeat(100)),
            ("encryption_jwk", "p", "AQAB".to_owned()),
        ] {
            let mut bad = good.clone();
            bad["body"]["proposal"]["action"][path][member] = value.into();
            assert!(
                matches!(
                    SignedTransaction::parse(&jws::sign(&key, &h, &bad)),
                    Err(TxError::Invalid(_))
                ),
                "{path}.{member}"
            );
        }
    }

    #[test]
    fn malformed_transactions_are_typed_errors() {
        let key = SigningKey::generate();
        let h = jws::Header::es256(TX_TYP, None);
        for payload in [
            serde_json::json!({}),
            serde_json::json!({"chain_id": "c", "sender": "a", "sequence": 0, "body": {"type": "unknown"}}),
            serde_json::json!({"chain_id": "c", "sender": "a", "sequence": -1, "body": {"type": "revoke_grant", "grant_id": "g"}}),
            serde_json::json!({"chain_id": "c", "sender": "bad id", "sequence": 0, "body": {"type": "revoke_grant", "grant_id": "g"}}),
            serde_json::json!({"chain_id": "c", "sender": "a", "sequence": 0, "extra": 1, "body": {"type": "revoke_grant", "grant_id": "g"}}),
            serde_json::json!({"chain_id": "c", "sender": "a", "sequence": 0, "body": {"type": "grant", "grant_id": "g", "blob": "zz", "grant_key": "00", "actions": [], "not_after": 0, "details": "x"}}),
        ] {
            assert!(
                SignedTransaction::parse(&jws::sign(&key, &h, &payload)).is_err(),
                "{payload}"
            );
        }
        assert!(matches!(
            SignedTransaction::parse(&"a".repeat(MAX_TX_BYTES + 1)),
            Err(TxError::TooLarge(_))
        ));
        assert!(SignedTransaction::parse("not.a.jws").is_err());
    }
}
