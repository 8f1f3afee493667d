//! The requester's side: the request, M2, then the record from M3.

use super::*;
// ---------------------------------------------------------------------------------------
// The requester's side.

/// The requester, before its request: holds the configuration.
#[derive(Debug)]
pub struct RequesterStart {
    pub(super) config: HandshakeConfig,
}

/// What the requester asked for; carried to the [`SharedRecord`].
pub(super) struct Asked {
    pub(super) requester: PartyId,
    pub(super) purpose: String,
    pub(super) requested_parts: Vec<String>,
    pub(super) request_bytes: Vec<u8>,
}

impl fmt::Debug for Asked {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("Asked")
            .field("requester", &self.requester)
            .field("requested_parts", &self.requested_parts)
            .finish_non_exhaustive()
    }
}

/// The request is sent; waiting for M1.
#[derive(Debug)]
pub struct RequesterAwaitingM1 {
    pub(super) config: HandshakeConfig,
    pub(super) asked: Asked,
}

/// M1 opened and matched to our request; its signature is checked once the patient it names
/// has been looked up: [`verify_patient`](Self::verify_patient).
pub struct RequesterAwaitingPatientKeys {
    pub(super) config: HandshakeConfig,
    pub(super) asked: Asked,
    pub(super) m1: Vec<u8>,
    pub(super) m1_token: String,
    pub(super) claimed_patient: PartyId,
}

impl fmt::Debug for RequesterAwaitingPatientKeys {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("RequesterAwaitingPatientKeys")
            .field("asked", &self.asked)
            .field("claimed_patient", &self.claimed_patient)
            .finish_non_exhaustive()
    }
}

/// M2 is sent; waiting for the record.
#[derive(Debug)]
pub struct RequesterAwaitingM3 {
    pub(super) config: HandshakeConfig,
    pub(super) asked: Asked,
    pub(super) patient: PublicKeySet,
    pub(super) n_a: [u8; NONCE_LEN],
    pub(super) session: SessionKey,
    pub(super) session_id: [u8; 32],
}

/// M3 opened under the session key; the record is checked once its issuer (the doctor) has
/// been looked up: [`verify_record`](Self::verify_record).
pub struct RequesterAwaitingIssuerKeys {
    pub(super) config: HandshakeConfig,
    pub(super) asked: Asked,
    pub(super) patient: PublicKeySet,
    pub(super) n_a: [u8; NONCE_LEN],
    pub(super) session_id: [u8; 32],
    pub(super) presentation: SdJwt,
    pub(super) claimed_issuer: PartyId,
    pub(super) content_key_grant: Option<ContentKeyGrant>,
}

impl fmt::Debug for RequesterAwaitingIssuerKeys {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("RequesterAwaitingIssuerKeys")
            .field("asked", &self.asked)
            .field("patient", &self.patient.id)
            .field("claimed_issuer", &self.claimed_issuer)
            .field("content_key_grant", &self.content_key_grant)
            .finish_non_exhaustive()
    }
}

/// A content key granted with the record. Zeroized on drop, never printed.
pub(super) struct ContentKeyGrant(pub(super) Zeroizing<Vec<u8>>);

impl fmt::Debug for ContentKeyGrant {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("ContentKeyGrant([redacted])")
    }
}

impl RequesterStart {
    /// A requester ready to send a request, under `config`.
    pub fn new(config: HandshakeConfig) -> Self {
        Self { config }
    }

    /// Makes the request, signed with our signing key (the patient checks it against our
    /// registry entry). It carries no secret and names no patient: anyone may read it.
    pub fn send_request(
        self,
        requester: &PrivateKeySet,
        purpose: &str,
        requested_parts: &[&str],
        now: u64,
    ) -> Result<(RequesterAwaitingM1, Vec<u8>), HandshakeError> {
        let requested_parts: Vec<String> = requested_parts.iter().map(|p| p.to_string()).collect();
        check_request_fields(purpose, &requested_parts)?;
        let claims = RequestClaims {
            iss: requester.id.clone(),
            jti: b64::encode(hazmat::random_array::<REQUEST_ID_LEN>()),
            purpose: purpose.into(),
            requested_parts: requested_parts.clone(),
            iat: now,
        };
        let payload = serde_json::to_value(&claims).expect("handshake messages serialize");
        let header = jws::Header::es256(REQUEST_TYP, Some(requester.id.signing_kid()));
        let bytes = jws::sign(&requester.signing, &header, &payload).into_bytes();
        if bytes.len() > MAX_REQUEST_BYTES {
            return Err(HandshakeError::TooLarge {
                kind: MessageKind::Request,
                size: bytes.len(),
                limit: MAX_REQUEST_BYTES,
            });
        }
        let state = RequesterAwaitingM1 {
            config: self.config,
            asked: Asked {
                requester: requester.id.clone(),
                purpose: purpose.into(),
                requested_parts,
                request_bytes: bytes.clone(),
            },
        };
        Ok((state, bytes))
    }
}

impl RequesterAwaitingM1 {
    /// Receives M1: opens it with our keys and checks that it answers this request, names us,
    /// and is recent. The signature is checked by the next step, with the patient's
    /// registered key.
    pub fn receive_m1(
        self,
        m1: &[u8],
        requester: &PrivateKeySet,
        now: u64,
    ) -> Result<RequesterAwaitingPatientKeys, HandshakeError> {
        const KIND: MessageKind = MessageKind::M1;
        let token = open_sealed(m1, KIND, requester)?;
        // Unverified until the patient's key is known; only used to decide what to look up
        // and to drop foreign messages early. The next step acts on the verified payload.
        let content: M1Content = jws::unverified_payload(&token)
            .ok()
            .and_then(|payload| strict_json::from_value(payload).ok())
            .ok_or(malformed(KIND, "signed content"))?;
        if content.id_a != self.asked.requester {
            return Err(HandshakeError::WrongId {
                kind: KIND,
                party: "requester",
            });
        }
        if content.request_hash != b64::encode(hazmat::sha256(&self.asked.request_bytes)) {
            return Err(HandshakeError::Replayed(KIND));
        }
        self.config.check_time(KIND, content.time, now)?;
        Ok(RequesterAwaitingPatientKeys {
            config: self.config,
            asked: self.asked,
            m1: m1.to_vec(),
            m1_token: token,
            claimed_patient: content.id_p,
        })
    }
}

impl RequesterAwaitingPatientKeys {
    /// The patient M1 claims to come from: look this ID up in the registry.
    pub fn patient(&self) -> &PartyId {
        &self.claimed_patient
    }

    /// Checks M1's signature with the patient's registered key (the entry must be the
    /// patient's, active, and self-certifying: its ID is its signing key's thumbprint), then
    /// sends M2, encrypted to the patient's registered key, and derives the session key.
    pub fn verify_patient(
        self,
        patient_entry: &VerifiedEntry,
        requester: &PrivateKeySet,
        now: u64,
    ) -> Result<(RequesterAwaitingM3, Vec<u8>), HandshakeError> {
        const KIND: MessageKind = MessageKind::M1;
        let patient = registered_keys(
            patient_entry,
            "patient",
            &self.claimed_patient,
            &[Role::Patient],
            now,
        )?;
        // A patient's ID is the thumbprint of its *first* key (kept across rotations).
        if !patient_entry.entry().is_well_formed() {
            return Err(HandshakeError::UnusableEntry {
                party: "patient",
                reason: "a patient's ID must be its first signing key's thumbprint",
            });
        }
        // The same bytes whose IDs, request hash and time `receive_m1` checked, now verified.
        let content: M1Content = verify_signed(KIND, &self.m1_token, &patient)?;
        let n_p = decode_nonce(KIND, &content.n_p)?;
        let e_p = decode_point(KIND, &content.e_p)?;
        let n_a = hazmat::random_array::<NONCE_LEN>();
        let (e_a_secret, e_a) = EcdhP256Secret::generate();
        let reply = M2Content {
            id_a: requester.id.clone(),
            id_p: patient.id.clone(),
            n_a: b64::encode(n_a),
            n_p: content.n_p,
            e_a: b64::encode(e_a),
            time: now,
            m1_hash: b64::encode(hazmat::sha256(&self.m1)),
        };
        let m2 = sign_and_seal(MessageKind::M2, &reply, requester, &patient)?;
        let session_id = transcript_hash(&self.asked.request_bytes, &self.m1, &m2);
        let session = SessionKey::derive(e_a_secret, &e_p, &n_p, &n_a, &session_id, KIND)?;
        let state = RequesterAwaitingM3 {
            config: self.config,
            asked: self.asked,
            patient,
            n_a,
            session,
            session_id,
        };
        Ok((state, m2))
    }
}

impl RequesterAwaitingM3 {
    /// Receives M3: direction and sequence number, then the session key (tag checked before
    /// any plaintext), then our nonce.
    ///
    /// M3 has no time of its own: its freshness is the key-binding JWT's, checked with the
    /// record.
    pub fn receive_m3(self, m3: &[u8]) -> Result<RequesterAwaitingIssuerKeys, HandshakeError> {
        const KIND: MessageKind = MessageKind::M3;
        let wire: M3Wire = parse_wire(m3, KIND)?;
        match Direction::from_label(&wire.direction) {
            Some(Direction::PatientToRequester) => {}
            Some(Direction::RequesterToPatient) => return Err(HandshakeError::Reflected(KIND)),
            None => return Err(malformed(KIND, "unknown direction")),
        }
        if wire.seq != M3_SEQUENCE {
            return Err(HandshakeError::Sequence {
                kind: KIND,
                expected: M3_SEQUENCE,
                found: wire.seq,
            });
        }
        let sealed = b64::decode(&wire.ciphertext).map_err(|_| malformed(KIND, "ciphertext"))?;
        let plaintext = self
            .session
            .open(Direction::PatientToRequester, M3_SEQUENCE, &sealed)?;
        let content: M3Content =
            strict_json::parse(&plaintext).map_err(|_| malformed(KIND, "content"))?;
        // Owned after parsing: wrap the grant at once so it is wiped whatever happens next.
        let grant_b64 = content
            .content_key_grant
            .map(|g| Zeroizing::new(g.into_owned()));
        if decode_nonce(KIND, &content.n_a)? != self.n_a {
            return Err(HandshakeError::WrongNonce(KIND));
        }
        let content_key_grant = grant_b64
            .map(|g| b64::decode(g.as_str()).map(|key| ContentKeyGrant(Zeroizing::new(key))))
            .transpose()
            .map_err(|_| malformed(KIND, "content key grant"))?;
        let presentation = SdJwt::parse(&content.presentation)?;
        let claimed_issuer = presentation.claimed_issuer()?;
        Ok(RequesterAwaitingIssuerKeys {
            config: self.config,
            asked: self.asked,
            patient: self.patient,
            n_a: self.n_a,
            session_id: self.session_id,
            presentation,
            claimed_issuer,
            content_key_grant,
        })
    }
}

impl RequesterAwaitingIssuerKeys {
    /// The doctor the record claims to be signed by: look this ID up in the registry.
    pub fn issuer(&self) -> &PartyId {
        &self.claimed_issuer
    }

    /// Verifies the record with the doctor's registered key: the doctor's signature, the
    /// disclosures, the CEAS, that it is the session patient's record, and its key-binding
    /// JWT (signed by the patient's registered key, aud = us, nonce = n_a, recent). The
    /// doctor and its hospital (`hospital_entry`: the doctor's affiliation, or the issuer
    /// itself when a hospital issued the record) must both have been admitted and active
    /// when the record was issued, and the signature must be by the doctor's key in force
    /// then ([`ces::verify_registered`]).
    pub fn verify_record(
        self,
        issuer_entry: &VerifiedEntry,
        hospital_entry: &VerifiedEntry,
        now: u64,
    ) -> Result<SharedRecord, HandshakeError> {
        if issuer_entry.id() != &self.claimed_issuer {
            return Err(HandshakeError::EntryMismatch("issuer"));
        }
        if !ISSUER_ROLES.contains(&issuer_entry.entry().role) {
            return Err(HandshakeError::UnusableEntry {
                party: "issuer",
                reason: "its role does not issue records",
            });
        }
        let nonce = b64::encode(self.n_a);
        let policy = ces::RegistryPolicy {
            holder: Some(&self.patient),
            key_binding: Some(KeyBindingRequirement {
                audience: self.asked.requester.as_str(),
                nonce: &nonce,
            }),
            now,
            max_skew: self.config.max_skew,
        };
        let record =
            ces::verify_registered_with(&self.presentation, issuer_entry, hospital_entry, policy)
                .map_err(|e| match e {
                CesError::InactiveAtIssue(who) => HandshakeError::InactiveEntry(who),
                other => other.into(),
            })?;
        Ok(SharedRecord {
            record,
            patient: self.patient.id,
            requester: self.asked.requester,
            purpose: self.asked.purpose,
            requested_parts: self.asked.requested_parts,
            received_at: now,
            session_id: self.session_id,
            content_key_grant: self.content_key_grant,
        })
    }
}

/// The outcome on the requester's side: a verified record, who shared it with whom, when,
/// and in which session. [`access_log`](Self::access_log) gives the AccessLog transaction
/// body the requester submits (BPDST step 7).
pub struct SharedRecord {
    pub(super) record: VerifiedRecord,
    pub(super) patient: PartyId,
    pub(super) requester: PartyId,
    pub(super) purpose: String,
    pub(super) requested_parts: Vec<String>,
    pub(super) received_at: u64,
    pub(super) session_id: [u8; 32],
    pub(super) content_key_grant: Option<ContentKeyGrant>,
}

impl SharedRecord {
    /// The record, verified against its issuer's registry entry and bound to this session.
    pub fn record(&self) -> &VerifiedRecord {
        &self.record
    }

    /// The verified record, taking it out (a content key granted with it is wiped).
    pub fn into_record(self) -> VerifiedRecord {
        self.record
    }

    /// The patient, authenticated in the handshake and holder of the record.
    pub fn patient(&self) -> &PartyId {
        &self.patient
    }

    /// Us: the accessor.
    pub fn requester(&self) -> &PartyId {
        &self.requester
    }

    /// The purpose our request stated.
    pub fn purpose(&self) -> &str {
        &self.purpose
    }

    /// What was asked for; [`VerifiedRecord::parts`] is what was disclosed.
    pub fn requested_parts(&self) -> &[String] {
        &self.requested_parts
    }

    /// When the record was received and verified (the `now` given to `verify_record`).
    pub fn received_at(&self) -> u64 {
        self.received_at
    }

    /// The transcript hash: names this handshake; both sides derive the same.
    pub fn session_id(&self) -> &[u8; 32] {
        &self.session_id
    }

    /// The content key the patient granted with the record, if any.
    pub fn content_key_grant(&self) -> Option<&[u8]> {
        self.content_key_grant.as_ref().map(|g| g.0.as_slice())
    }
}

impl fmt::Debug for SharedRecord {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("SharedRecord")
            .field("record_id", &self.record.record_id())
            .field("issuer", self.record.issuer())
            .field("patient", &self.patient)
            .field("requester", &self.requester)
            .field("parts", &self.record.parts().keys().collect::<Vec<_>>())
            .field("received_at", &self.received_at)
            .field("content_key_grant", &self.content_key_grant)
            .finish_non_exhaustive()
    }
}
