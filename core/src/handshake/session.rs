//! The session key and the channel M3 travels on.

use super::*;
// ---------------------------------------------------------------------------------------
// The session key and the channel M3 travels on.

/// Which way a channel message travels. Part of the GCM nonce and the authenticated data,
/// so a message cannot be turned around.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Direction {
    PatientToRequester,
    RequesterToPatient,
}

impl Direction {
    pub(super) fn label(self) -> &'static str {
        match self {
            Self::PatientToRequester => "patient-to-requester",
            Self::RequesterToPatient => "requester-to-patient",
        }
    }

    pub(super) fn from_label(label: &str) -> Option<Self> {
        [Self::PatientToRequester, Self::RequesterToPatient]
            .into_iter()
            .find(|d| d.label() == label)
    }

    pub(super) fn nonce_prefix(self) -> [u8; 4] {
        match self {
            Self::PatientToRequester => *b"p2a\0",
            Self::RequesterToPatient => *b"a2p\0",
        }
    }
}

/// The 256-bit session key. Zeroized on drop, never printed.
pub(super) struct SessionKey(pub(super) Zeroizing<[u8; aes256_gcm::KEY_LEN]>);

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("SessionKey([redacted])")
    }
}

impl SessionKey {
    /// HKDF-SHA256 over the ECDH shared secret; the salt binds both nonces, the info the
    /// context label and the transcript. Consumes our ephemeral secret.
    pub(super) fn derive(
        ours: EcdhP256Secret,
        theirs: &EcdhP256Public,
        n_p: &[u8; NONCE_LEN],
        n_a: &[u8; NONCE_LEN],
        transcript: &[u8; 32],
        kind: MessageKind,
    ) -> Result<Self, HandshakeError> {
        let mut salt = [0u8; 2 * NONCE_LEN];
        salt[..NONCE_LEN].copy_from_slice(n_p);
        salt[NONCE_LEN..].copy_from_slice(n_a);
        let mut key = Zeroizing::new([0u8; aes256_gcm::KEY_LEN]);
        ours.agree_then_hkdf_sha256(theirs, &salt, &[SESSION_LABEL, transcript], key.as_mut())
            .map_err(|_| HandshakeError::BadEphemeralKey(kind))?;
        Ok(Self(key))
    }

    pub(super) fn nonce(direction: Direction, seq: u64) -> [u8; aes256_gcm::NONCE_LEN] {
        let mut nonce = [0u8; aes256_gcm::NONCE_LEN];
        nonce[..4].copy_from_slice(&direction.nonce_prefix());
        nonce[4..].copy_from_slice(&seq.to_be_bytes());
        nonce
    }

    pub(super) fn aad(direction: Direction, seq: u64) -> Vec<u8> {
        [
            M3_TYP.as_bytes(),
            &[0],
            direction.label().as_bytes(),
            &[0],
            &seq.to_be_bytes(),
        ]
        .concat()
    }

    pub(super) fn seal(&self, direction: Direction, seq: u64, plaintext: &[u8]) -> Vec<u8> {
        let aad = Self::aad(direction, seq);
        aes256_gcm::seal(&self.0, Self::nonce(direction, seq), &aad, plaintext)
    }

    pub(super) fn open(
        &self,
        direction: Direction,
        seq: u64,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, HandshakeError> {
        let aad = Self::aad(direction, seq);
        aes256_gcm::open(&self.0, Self::nonce(direction, seq), &aad, sealed)
            .map_err(|_| HandshakeError::SessionKey(MessageKind::M3))
    }
}

/// Padmé (Nikitin et al., "Reducing metadata leakage from encrypted files and communication
/// with PURBs", PETS 2019): rounds a length up so that only its top ~log2(log2(len)) bits
/// stay, at most about 12% more. M3's length then tells a record's size class, not its size,
/// so two shares of one record (of one patient) are harder to link by length.
pub(super) fn padme_len(len: usize) -> usize {
    if len < 2 {
        return len;
    }
    let exponent = usize::BITS - 1 - len.leading_zeros();
    let exponent_bits = u32::BITS - exponent.leading_zeros();
    let dropped_bits = exponent - exponent_bits;
    let mask = (1usize << dropped_bits) - 1;
    (len + mask) & !mask
}
