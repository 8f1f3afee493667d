//! The patient's side: reading a request, M1, then M3 under the session key.

use super::*;
// ---------------------------------------------------------------------------------------
// The patient's side.

/// The patient, before a request: holds the configuration.
#[derive(Debug)]
pub struct PatientStart {
    pub(super) config: HandshakeConfig,
}

/// A request as received: well-formed and recent, but its signature is not checked yet, so
/// nothing in it is trusted and nothing of it can be shown. It only tells whom to look up:
/// [`requester`](Self::requester); then [`verify_requester`](Self::verify_requester).
pub struct Request {
    pub(super) token: String,
    pub(super) requester: PartyId,
}

/// A request signed by the requester's registered, active signing key, recent, and not one
/// the patient already answered. Only [`Request::verify_requester`] makes one; its contents
/// are what may be shown to the patient, and [`PatientStart::send_m1`] requires it.
pub struct VerifiedRequest {
    pub(super) token: String,
    pub(super) registered: PublicKeySet,
    pub(super) request_id: [u8; REQUEST_ID_LEN],
    pub(super) purpose: String,
    pub(super) requested_parts: Vec<String>,
    pub(super) time: u64,
}

/// The requests a patient has answered, so that none is answered twice: a replayed request
/// is as authentic as the original, only memory tells it apart. Keep one per patient for as
/// long as the app runs (or persist it) and pass it to every handshake.
///
/// Bounded: a request older than the time window is refused as stale anyway, so its entry is
/// dropped once it is; and at most `capacity` requests are remembered within one window, past
/// which new requests are refused ([`HandshakeError::TooManyAnswered`]) until old ones age out.
#[derive(Debug, Clone)]
pub struct AnsweredRequests {
    pub(super) capacity: usize,
    /// (requester, request ID) -> the request's own time, which decides when it is stale.
    pub(super) answered: HashMap<(PartyId, [u8; REQUEST_ID_LEN]), u64>,
}

impl Default for AnsweredRequests {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

impl AnsweredRequests {
    /// Far more than a patient answers in one time window.
    pub const DEFAULT_CAPACITY: usize = 1024;

    /// A guard that remembers at most `capacity` requests within one time window.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            answered: HashMap::new(),
        }
    }

    /// How many requests are remembered.
    pub fn len(&self) -> usize {
        self.answered.len()
    }

    /// Whether no request is remembered.
    pub fn is_empty(&self) -> bool {
        self.answered.is_empty()
    }

    pub(super) fn contains(&self, requester: &PartyId, request_id: &[u8; REQUEST_ID_LEN]) -> bool {
        self.answered
            .contains_key(&(requester.clone(), *request_id))
    }

    /// Remembers a request as answered, or refuses it if it was; forgets those that have
    /// left the time window first.
    pub(super) fn record(
        &mut self,
        request: &VerifiedRequest,
        config: &HandshakeConfig,
        now: u64,
    ) -> Result<(), HandshakeError> {
        let requester = &request.registered.id;
        if self.contains(requester, &request.request_id) {
            return Err(HandshakeError::Replayed(MessageKind::Request));
        }
        self.answered
            .retain(|_, time| time.saturating_add(config.max_skew) >= now);
        if self.answered.len() >= self.capacity {
            return Err(HandshakeError::TooManyAnswered {
                capacity: self.capacity,
            });
        }
        self.answered
            .insert((requester.clone(), request.request_id), request.time);
        Ok(())
    }
}

/// The patient has sent M1 and waits for M2.
pub struct PatientAwaitingM2 {
    pub(super) config: HandshakeConfig,
    pub(super) patient: PartyId,
    pub(super) requester: PublicKeySet,
    pub(super) request_bytes: Vec<u8>,
    pub(super) m1: Vec<u8>,
    pub(super) n_p: [u8; NONCE_LEN],
    pub(super) e_p: EcdhP256Public,
    pub(super) e_p_secret: EcdhP256Secret,
}

impl fmt::Debug for PatientAwaitingM2 {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("PatientAwaitingM2")
            .field("patient", &self.patient)
            .field("requester", &self.requester.id)
            .field("e_p_secret", &self.e_p_secret)
            .finish_non_exhaustive()
    }
}

/// Both sides are authenticated and share a session key: the patient may send the record.
#[derive(Debug)]
pub struct PatientSessionEstablished {
    pub(super) requester: PartyId,
    pub(super) n_a: [u8; NONCE_LEN],
    pub(super) session: SessionKey,
}

impl PatientStart {
    /// A patient ready to read a request, under `config`.
    pub fn new(config: HandshakeConfig) -> Self {
        Self { config }
    }

    /// Reads a request: size, format, fields, and time within the window, all before its
    /// signature can be checked (that needs the requester's registry entry): the result tells
    /// only whom to look up.
    pub fn read_request(&self, bytes: &[u8], now: u64) -> Result<Request, HandshakeError> {
        const KIND: MessageKind = MessageKind::Request;
        let (token, claims) = parse_request(bytes)?;
        self.config.check_time(KIND, claims.iat, now)?;
        Ok(Request {
            token,
            requester: claims.iss,
        })
    }

    /// Sends M1: encrypted to the requester's registered key, signed by the patient. Records
    /// the request in `answered` first, and refuses one that is there already (read twice,
    /// or replayed since it was verified).
    pub fn send_m1(
        self,
        request: VerifiedRequest,
        answered: &mut AnsweredRequests,
        patient: &PrivateKeySet,
        now: u64,
    ) -> Result<(PatientAwaitingM2, Vec<u8>), HandshakeError> {
        // Recorded before sealing: if sealing to the registered key fails, it would fail
        // again, so the request counts as answered either way.
        answered.record(&request, &self.config, now)?;
        let VerifiedRequest {
            token, registered, ..
        } = request;
        let n_p = hazmat::random_array::<NONCE_LEN>();
        let (e_p_secret, e_p) = EcdhP256Secret::generate();
        let content = M1Content {
            id_p: patient.id.clone(),
            id_a: registered.id.clone(),
            n_p: b64::encode(n_p),
            e_p: b64::encode(e_p),
            time: now,
            request_hash: b64::encode(hazmat::sha256(token.as_bytes())),
        };
        let m1 = sign_and_seal(MessageKind::M1, &content, patient, &registered)?;
        let state = PatientAwaitingM2 {
            config: self.config,
            patient: patient.id.clone(),
            requester: registered,
            request_bytes: token.into_bytes(),
            m1: m1.clone(),
            n_p,
            e_p,
            e_p_secret,
        };
        Ok((state, m1))
    }
}

/// Checks a request's size and format, and parses what it claims (unverified).
pub(super) fn parse_request(bytes: &[u8]) -> Result<(String, RequestClaims), HandshakeError> {
    pub(super) const KIND: MessageKind = MessageKind::Request;
    if bytes.len() > KIND.max_bytes() {
        return Err(HandshakeError::TooLarge {
            kind: KIND,
            size: bytes.len(),
            limit: KIND.max_bytes(),
        });
    }
    let typ = match compact_jws_typ(bytes) {
        Some(typ) => typ,
        // Another handshake message (JSON with a typ) is reflected or out of order.
        None => {
            let value = strict_json::parse_value(bytes)
                .map_err(|_| malformed(KIND, "not a compact JWS"))?;
            match value.get("typ").and_then(Value::as_str) {
                Some(typ) => typ.to_owned(),
                None => return Err(malformed(KIND, "not a compact JWS")),
            }
        }
    };
    check_kind(&typ, KIND)?;
    let token = String::from_utf8(bytes.to_vec()).map_err(|_| malformed(KIND, "not text"))?;
    let claims: RequestClaims = jws::unverified_payload(&token)
        .ok()
        .and_then(|payload| strict_json::from_value(payload).ok())
        .ok_or(malformed(KIND, "signed content"))?;
    check_request_fields(&claims.purpose, &claims.requested_parts)?;
    b64::decode_array::<REQUEST_ID_LEN>(&claims.jti)
        .map_err(|_| malformed(KIND, "request ID is not 16 bytes of base64url"))?;
    Ok((token, claims))
}

pub(super) fn check_request_fields(purpose: &str, parts: &[String]) -> Result<(), HandshakeError> {
    let bad = |reason| Err(malformed(MessageKind::Request, reason));
    if purpose.len() > MAX_PURPOSE_BYTES {
        return bad("purpose too long");
    }
    if parts.len() > MAX_PARTS {
        return bad("too many requested parts");
    }
    if parts
        .iter()
        .any(|p| p.is_empty() || p.len() > MAX_PART_NAME_BYTES)
    {
        return bad("invalid part name");
    }
    Ok(())
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("Request")
            .field("claimed_requester", &self.requester)
            .finish_non_exhaustive()
    }
}

impl Request {
    /// The requester the request claims to come from: look this ID up in the registry.
    pub fn requester(&self) -> &PartyId {
        &self.requester
    }

    /// Checks the request against the requester's registry entry (from the k-anonymous
    /// lookup): the entry is the requester's, active now, of an institution's role; the
    /// request is signed by its registered signing key; and it is not in `answered`.
    pub fn verify_requester(
        self,
        entry: &VerifiedEntry,
        answered: &AnsweredRequests,
        now: u64,
    ) -> Result<VerifiedRequest, HandshakeError> {
        const KIND: MessageKind = MessageKind::Request;
        let registered =
            registered_keys(entry, "requester", &self.requester, REQUESTER_ROLES, now)?;
        // The verified payload is parsed again: from here on nothing unverified is used.
        let claims: RequestClaims = verify_signed(KIND, &self.token, &registered)?;
        if claims.iss != registered.id {
            return Err(HandshakeError::WrongId {
                kind: KIND,
                party: "requester",
            });
        }
        check_request_fields(&claims.purpose, &claims.requested_parts)?;
        let request_id = b64::decode_array(&claims.jti)
            .map_err(|_| malformed(KIND, "request ID is not 16 bytes of base64url"))?;
        if answered.contains(&registered.id, &request_id) {
            return Err(HandshakeError::Replayed(KIND));
        }
        Ok(VerifiedRequest {
            token: self.token,
            registered,
            request_id,
            purpose: claims.purpose,
            requested_parts: claims.requested_parts,
            time: claims.iat,
        })
    }
}

impl fmt::Debug for VerifiedRequest {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("VerifiedRequest")
            .field("requester", &self.registered.id)
            .field("purpose", &self.purpose)
            .field("requested_parts", &self.requested_parts)
            .field("time", &self.time)
            .finish_non_exhaustive()
    }
}

impl VerifiedRequest {
    /// The requester, whose registered key signed the request.
    pub fn requester(&self) -> &PartyId {
        &self.registered.id
    }

    /// The purpose the requester states, as it signed it (at most [`MAX_PURPOSE_BYTES`] bytes).
    pub fn purpose(&self) -> &str {
        &self.purpose
    }

    /// The parts the requester asks for, as it signed them (at most [`MAX_PARTS`]).
    pub fn requested_parts(&self) -> &[String] {
        &self.requested_parts
    }

    /// When the requester made the request (its clock, within the window of ours).
    pub fn time(&self) -> u64 {
        self.time
    }

    /// The request ID the requester chose; the patient answers each one once.
    pub fn request_id(&self) -> &[u8; REQUEST_ID_LEN] {
        &self.request_id
    }
}

impl PatientAwaitingM2 {
    /// Receives M2: opens it, checks the requester's signature with its registered key, the
    /// IDs, that it answers our M1 with our nonce, and its time; then derives the session key.
    pub fn receive_m2(
        self,
        m2: &[u8],
        patient: &PrivateKeySet,
        now: u64,
    ) -> Result<PatientSessionEstablished, HandshakeError> {
        const KIND: MessageKind = MessageKind::M2;
        let token = open_sealed(m2, KIND, patient)?;
        let content: M2Content = verify_signed(KIND, &token, &self.requester)?;
        if content.id_a != self.requester.id {
            return Err(HandshakeError::WrongId {
                kind: KIND,
                party: "requester",
            });
        }
        if content.id_p != self.patient {
            return Err(HandshakeError::WrongId {
                kind: KIND,
                party: "patient",
            });
        }
        if content.m1_hash != b64::encode(hazmat::sha256(&self.m1)) {
            return Err(HandshakeError::Replayed(KIND));
        }
        if decode_nonce(KIND, &content.n_p)? != self.n_p {
            return Err(HandshakeError::WrongNonce(KIND));
        }
        self.config.check_time(KIND, content.time, now)?;
        let n_a = decode_nonce(KIND, &content.n_a)?;
        let e_a = decode_point(KIND, &content.e_a)?;
        if n_a == self.n_p || e_a == self.e_p {
            return Err(HandshakeError::ReusedNonce(KIND));
        }
        let transcript = transcript_hash(&self.request_bytes, &self.m1, m2);
        let session =
            SessionKey::derive(self.e_p_secret, &e_a, &self.n_p, &n_a, &transcript, KIND)?;
        Ok(PatientSessionEstablished {
            requester: self.requester.id,
            n_a,
            session,
        })
    }
}

impl PatientSessionEstablished {
    /// The authenticated requester.
    pub fn requester(&self) -> &PartyId {
        &self.requester
    }

    /// Sends M3: the extraction of `record` keeping the `disclose` parts (CEAS parts always
    /// stay), bound to this session with a key-binding JWT (aud = requester, nonce = n_a),
    /// and optionally a content-key grant, under the session key. Ends the handshake, also
    /// on error (e.g. a part name the record does not have).
    pub fn send_record(
        self,
        record: &SdJwt,
        disclose: &[&str],
        content_key_grant: Option<&[u8]>,
        patient: &PrivateKeySet,
        now: u64,
    ) -> Result<Vec<u8>, HandshakeError> {
        let nonce = b64::encode(self.n_a);
        let presentation =
            record
                .extract(disclose)?
                .bind(&patient.signing, self.requester.as_str(), &nonce, now);
        Ok(self.seal_m3(&nonce, &presentation.serialize(), content_key_grant))
    }

    pub(super) fn seal_m3(&self, n_a: &str, presentation: &str, grant: Option<&[u8]>) -> Vec<u8> {
        let grant = grant.map(|g| Zeroizing::new(b64::encode(g)));
        let content = M3Content {
            n_a: n_a.into(),
            presentation: presentation.into(),
            content_key_grant: grant.as_deref().map(|g| Cow::Borrowed(g.as_str())),
        };
        // Sized up front so the buffer holding the grant is not reallocated (and copied).
        let mut plaintext = Zeroizing::new(Vec::with_capacity(padme_len(
            presentation.len() + grant.as_ref().map_or(0, |g| g.len()) + 256,
        )));
        serde_json::to_writer(&mut *plaintext, &content).expect("M3 serializes");
        // Trailing JSON whitespace: the parser skips it, the length is rounded up.
        let padded_len = padme_len(plaintext.len());
        plaintext.resize(padded_len, b' ');
        let direction = Direction::PatientToRequester;
        to_json(&M3Wire {
            typ: M3_TYP.into(),
            direction: direction.label().into(),
            seq: M3_SEQUENCE,
            ciphertext: b64::encode(self.session.seal(direction, M3_SEQUENCE, &plaintext)),
        })
    }
}
