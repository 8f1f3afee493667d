//! The handshake's wire formats: every struct refuses unknown members; every parse is strict JSON.

use super::*;
// ---------------------------------------------------------------------------------------
// Wire formats. Every struct refuses unknown members; every parse is strict JSON.

/// What the requester signs in its request (JWT claim names where one fits).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RequestClaims {
    /// The requester.
    pub(super) iss: PartyId,
    /// The request ID: [`REQUEST_ID_LEN`] random bytes, base64url. Makes every request, and so
    /// the request hash M1 signs, unique, and is what the patient remembers once it answered.
    pub(super) jti: String,
    pub(super) purpose: String,
    pub(super) requested_parts: Vec<String>,
    /// When the requester made the request, Unix seconds.
    pub(super) iat: u64,
}

/// M1 and M2 on the wire: the format name and a compact JWE.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SealedWire {
    pub(super) typ: String,
    pub(super) jwe: String,
}

/// What P signs in M1.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct M1Content {
    pub(super) id_p: PartyId,
    pub(super) id_a: PartyId,
    pub(super) n_p: String,
    pub(super) e_p: String,
    pub(super) time: u64,
    pub(super) request_hash: String,
}

/// What A signs in M2.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct M2Content {
    pub(super) id_a: PartyId,
    pub(super) id_p: PartyId,
    pub(super) n_a: String,
    pub(super) n_p: String,
    pub(super) e_a: String,
    pub(super) time: u64,
    pub(super) m1_hash: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct M3Wire {
    pub(super) typ: String,
    pub(super) direction: String,
    pub(super) seq: u64,
    /// AES-256-GCM `ciphertext || tag`, base64url.
    pub(super) ciphertext: String,
}

/// M3's plaintext. Borrowed when sealing, so the record and the grant are not copied.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct M3Content<'a> {
    pub(super) n_a: Cow<'a, str>,
    /// The SD-JWT extraction with its key-binding JWT.
    pub(super) presentation: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) content_key_grant: Option<Cow<'a, str>>,
}

/// Checks the size, parses strictly, and checks that `typ` names the expected message: one
/// of our own side's is reflected, another of the peer's is out of order.
pub(super) fn parse_wire<T: DeserializeOwned>(
    bytes: &[u8],
    expected: MessageKind,
) -> Result<T, HandshakeError> {
    if bytes.len() > expected.max_bytes() {
        return Err(HandshakeError::TooLarge {
            kind: expected,
            size: bytes.len(),
            limit: expected.max_bytes(),
        });
    }
    let Ok(value) = strict_json::parse_value(bytes) else {
        // Not JSON: perhaps a request (a compact JWS) at the wrong step.
        return Err(match compact_jws_typ(bytes) {
            Some(typ) => check_kind(&typ, expected).err(),
            None => None,
        }
        .unwrap_or(malformed(expected, "not strict JSON")));
    };
    let typ = value
        .get("typ")
        .and_then(Value::as_str)
        .ok_or(malformed(expected, "no typ"))?;
    check_kind(typ, expected)?;
    strict_json::from_value(value).map_err(|_| malformed(expected, "unexpected members"))
}

/// The `typ` of a compact JWS's protected header, unverified: only to tell a request from
/// other messages. `None` if `bytes` is not shaped like a compact JWS.
pub(super) fn compact_jws_typ(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut segments = text.split('.');
    let header = segments.next()?;
    if segments.count() != 2 {
        return None;
    }
    let header = strict_json::parse_value(&b64::decode(header).ok()?).ok()?;
    header.get("typ")?.as_str().map(str::to_owned)
}

pub(super) fn check_kind(typ: &str, expected: MessageKind) -> Result<(), HandshakeError> {
    match MessageKind::from_typ(typ) {
        Some(found) if found == expected => Ok(()),
        Some(found) if found.sent_by_patient() == expected.sent_by_patient() => {
            Err(HandshakeError::OutOfOrder { expected, found })
        }
        Some(found) => Err(HandshakeError::Reflected(found)),
        None => Err(HandshakeError::UnknownFormat { expected }),
    }
}

pub(super) fn to_json(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("handshake messages serialize")
}

pub(super) fn decode_nonce(
    kind: MessageKind,
    text: &str,
) -> Result<[u8; NONCE_LEN], HandshakeError> {
    b64::decode_array(text).map_err(|_| malformed(kind, "nonce is not 32 bytes of base64url"))
}

pub(super) fn decode_point(
    kind: MessageKind,
    text: &str,
) -> Result<EcdhP256Public, HandshakeError> {
    b64::decode_array(text).map_err(|_| HandshakeError::BadEphemeralKey(kind))
}

/// Signs `content` as a JWS of format `kind` and seals it as a JWE to `recipient`, whose keys
/// come from its registry entry.
pub(super) fn sign_and_seal(
    kind: MessageKind,
    content: &impl Serialize,
    signer: &PrivateKeySet,
    recipient: &PublicKeySet,
) -> Result<Vec<u8>, HandshakeError> {
    let payload = serde_json::to_value(content).expect("handshake messages serialize");
    let header = jws::Header::es256(kind.typ(), Some(signer.id.signing_kid()));
    let signed = jws::sign(&signer.signing, &header, &payload);
    // No kid: it would name the recipient (the patient, for M2) to anyone who sees the
    // message. The recipient tries its own key.
    let jwe = Envelope::seal_unnamed(signed.as_bytes(), &recipient.encryption, Some(kind.typ()))
        .and_then(|envelope| envelope.to_compact())
        .map_err(|_| HandshakeError::Encrypt(kind))?;
    Ok(to_json(&SealedWire {
        typ: kind.typ().into(),
        jwe,
    }))
}

/// Opens M1 or M2 with our keys (the JWE MAC is checked before decryption), checks the
/// authenticated content type, and returns the inner JWS, not yet verified. Only the compact
/// form with `alg`, `enc` and `cty` is accepted: any other header parameter (a `kid` above
/// all) could name a party in clear, and an honest peer sends none.
pub(super) fn open_sealed(
    bytes: &[u8],
    kind: MessageKind,
    recipient: &PrivateKeySet,
) -> Result<String, HandshakeError> {
    let wire: SealedWire = parse_wire(bytes, kind)?;
    let envelope =
        Envelope::parse(wire.jwe.as_bytes()).map_err(|_| malformed(kind, "not a valid JWE"))?;
    // Each recipient costs an RSA decryption attempt: more than one is only a lever for DoS.
    if envelope.recipient_kids().len() != 1 {
        return Err(malformed(kind, "JWE must have exactly one recipient"));
    }
    if envelope.to_compact().ok().as_deref() != Some(wire.jwe.as_str()) {
        return Err(malformed(kind, "JWE must be in compact form"));
    }
    if envelope
        .protected_header_names()
        .any(|name| !matches!(name, "alg" | "enc" | "cty"))
    {
        return Err(malformed(
            kind,
            "JWE header has parameters other than alg, enc, cty",
        ));
    }
    let plaintext = envelope
        .open(recipient)
        .map_err(|_| HandshakeError::Decrypt(kind))?;
    let typ = envelope
        .content_type()
        .ok_or(malformed(kind, "JWE has no content type"))?;
    check_kind(typ, kind)?;
    String::from_utf8(plaintext.to_vec()).map_err(|_| malformed(kind, "content is not UTF-8"))
}

/// Verifies the inner JWS with the sender's registered key and parses what it signs.
pub(super) fn verify_signed<T: DeserializeOwned>(
    kind: MessageKind,
    token: &str,
    sender: &PublicKeySet,
) -> Result<T, HandshakeError> {
    let verified = jws::verify(token, &sender.signing, kind.typ()).map_err(|e| match e {
        JwsError::BadSignature => HandshakeError::BadSignature(kind),
        _ => malformed(kind, "signed content"),
    })?;
    strict_json::from_value(verified.payload).map_err(|_| malformed(kind, "signed content"))
}

/// The hash of the whole key exchange: length-prefixed wire bytes of the request, M1 and M2.
pub(super) fn transcript_hash(request: &[u8], m1: &[u8], m2: &[u8]) -> [u8; 32] {
    let mut data =
        Vec::with_capacity(TRANSCRIPT_LABEL.len() + 24 + request.len() + m1.len() + m2.len());
    data.extend_from_slice(TRANSCRIPT_LABEL);
    for part in [request, m1, m2] {
        data.extend_from_slice(&(part.len() as u64).to_be_bytes());
        data.extend_from_slice(part);
    }
    hazmat::sha256(&data)
}

/// Checks a registry entry before its keys are used: the expected party, active now, an
/// allowed role.
pub(super) fn registered_keys(
    entry: &VerifiedEntry,
    party: &'static str,
    expected_id: &PartyId,
    roles: &[Role],
    active_at: u64,
) -> Result<PublicKeySet, HandshakeError> {
    if entry.id() != expected_id {
        return Err(HandshakeError::EntryMismatch(party));
    }
    if !entry.entry().is_active(active_at) {
        return Err(HandshakeError::InactiveEntry(party));
    }
    if !roles.contains(&entry.entry().role) {
        return Err(HandshakeError::UnusableEntry {
            party,
            reason: "its role does not take part in this exchange",
        });
    }
    entry
        .public_keys()
        .map_err(|_| HandshakeError::UnusableEntry {
            party,
            reason: "its keys do not parse",
        })
}

pub(super) const REQUESTER_ROLES: &[Role] = &[
    Role::Hospital,
    Role::Doctor,
    Role::Insurer,
    Role::Researcher,
];
pub(super) const ISSUER_ROLES: &[Role] = &[Role::Doctor, Role::Hospital];
