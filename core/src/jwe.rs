//! Envelopes: JWE (RFC 7516) with `RSA-OAEP-256` key wrapping and `A256CBC-HS512` content
//! encryption (RFC 7518 section 5.2: AES-256-CBC, then HMAC-SHA-512/256 over the AAD, IV and
//! ciphertext). Nothing else is accepted.
//!
//! - One recipient: compact serialization, `alg`/`enc`/`kid` in the protected header.
//! - Several: general JSON serialization, `enc` protected, `alg`/`kid` per recipient, one
//!   content key wrapped once per recipient. [`Envelope::add_recipient`] grants a new reader
//!   without re-encrypting the content.
//!
//! Opening checks the MAC in constant time before any decryption, and a failed key unwrap
//! continues with a random key (RFC 7516 section 11.5) so the two failures look alike.

use crate::b64;
use crate::hazmat::{self, a256cbc_hs512};
use crate::keys::{DecryptionKey, EncryptionKey, PrivateKeySet, PublicKeySet};
use crate::strict_json::{self, StrictJsonError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

/// The only key management algorithm: RSA-OAEP with SHA-256.
pub const ALG: &str = "RSA-OAEP-256";
/// The only content encryption: AES-256-CBC with HMAC-SHA-512/256.
pub const ENC: &str = "A256CBC-HS512";

/// Inputs larger than this are refused before parsing (16 MiB of content is about 21.4 MiB
/// of compact JWE; larger attachments use the chunked stream format).
pub const MAX_ENVELOPE_BYTES: usize = 64 * 1024 * 1024;
/// More recipients than this are refused (each costs an RSA decryption attempt).
pub const MAX_RECIPIENTS: usize = 256;
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Why an envelope cannot be parsed, sealed or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JweError {
    /// The text is not a JWE of the accepted form (what is wrong, fixed text).
    #[error("malformed JWE: {0}")]
    Malformed(&'static str),
    /// A required member or header parameter (named) is absent.
    #[error("JWE lacks the {0:?} member")]
    Missing(&'static str),
    /// A header parameter (named) appears in more than one of the headers.
    #[error("JWE header parameter {0:?} appears more than once")]
    DuplicateHeader(String),
    /// A key management algorithm other than [`ALG`] (the one given).
    #[error("unsupported JWE key management algorithm {0:?} (only RSA-OAEP-256)")]
    UnsupportedAlgorithm(String),
    /// A content encryption other than [`ENC`] (the one given).
    #[error("unsupported JWE content encryption {0:?} (only A256CBC-HS512)")]
    UnsupportedEncryption(String),
    /// The envelope asks for compression (`zip`).
    #[error("compressed JWE (zip) is refused")]
    Compressed,
    /// The envelope has critical header parameters (`crit`).
    #[error("JWE with critical header parameters is refused")]
    Critical,
    /// The input is over [`MAX_ENVELOPE_BYTES`] (its length, bytes).
    #[error("JWE of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// More than [`MAX_RECIPIENTS`] recipients.
    #[error("JWE has too many recipients")]
    TooManyRecipients,
    /// No recipient to seal to, or none in the envelope.
    #[error("JWE has no recipients")]
    NoRecipients,
    /// The envelope has several recipients or unprotected parts, so no compact form.
    #[error("this envelope cannot use the compact serialization")]
    NotCompact,
    /// No key of the holder opens it, or it was tampered with: the two look alike.
    #[error("decryption failed: wrong key or tampered envelope")]
    Decrypt,
    /// The content key could not be wrapped to a recipient's key.
    #[error("key wrapping failed")]
    Wrap,
    /// A header or the JSON serialization is not strict JSON of the expected shape.
    #[error("JWE: {0}")]
    Json(#[from] StrictJsonError),
}

/// Who an envelope is sealed to: an RSA-OAEP-256 key and the `kid` that names it.
#[derive(Debug, Clone, Copy)]
pub struct Recipient<'a> {
    /// The `kid` the recipient's key is named by in the envelope.
    pub kid: &'a str,
    /// The recipient's RSA-OAEP-256 public key.
    pub key: &'a EncryptionKey,
}

type Header = Map<String, Value>;

/// An envelope's 64-byte A256CBC-HS512 content key. Zeroized on drop, never printed.
pub struct ContentKey(Zeroizing<[u8; a256cbc_hs512::KEY_LEN]>);

impl std::fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("ContentKey([redacted])")
    }
}

#[derive(Debug, Clone, PartialEq)]
struct RecipientEntry {
    header: Option<Header>,
    encrypted_key: Vec<u8>,
}

/// A parsed, structurally valid JWE. Its contents are unauthenticated until opened.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    protected_b64: String,
    protected: Header,
    unprotected: Option<Header>,
    aad_b64: Option<String>,
    recipients: Vec<RecipientEntry>,
    iv: [u8; a256cbc_hs512::IV_LEN],
    ciphertext: Vec<u8>,
    tag: [u8; a256cbc_hs512::TAG_LEN],
}

fn header(pairs: &[(&str, &str)]) -> Header {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Value::from(*v)))
        .collect()
}

impl Envelope {
    /// Encrypts `plaintext` to every recipient under one fresh content key.
    pub fn seal(
        plaintext: &[u8],
        recipients: &[Recipient],
        content_type: Option<&str>,
    ) -> Result<Self, JweError> {
        let named: Vec<(Option<&str>, &EncryptionKey)> =
            recipients.iter().map(|r| (Some(r.kid), r.key)).collect();
        Self::seal_to_keys(plaintext, &named, content_type)
    }

    /// Encrypts `plaintext` to one key without naming it: the header carries no `kid`, so an
    /// observer of the envelope does not learn whom it is for. The holder opens it with
    /// [`open`](Self::open) as usual (with no `kid` to match, every recipient is tried).
    pub fn seal_unnamed(
        plaintext: &[u8],
        key: &EncryptionKey,
        content_type: Option<&str>,
    ) -> Result<Self, JweError> {
        Self::seal_to_keys(plaintext, &[(None, key)], content_type)
    }

    /// Encrypts `plaintext` to several keys without naming any (a record stored on the
    /// nodes, and its shared versions: nothing in them says whose they are).
    pub fn seal_unnamed_to(
        plaintext: &[u8],
        keys: &[&EncryptionKey],
        content_type: Option<&str>,
    ) -> Result<Self, JweError> {
        let unnamed: Vec<(Option<&str>, &EncryptionKey)> =
            keys.iter().map(|k| (None, *k)).collect();
        Self::seal_to_keys(plaintext, &unnamed, content_type)
    }

    fn seal_to_keys(
        plaintext: &[u8],
        recipients: &[(Option<&str>, &EncryptionKey)],
        content_type: Option<&str>,
    ) -> Result<Self, JweError> {
        let key_header = |kid: Option<&str>| {
            let mut header = header(&[("alg", ALG)]);
            if let Some(kid) = kid {
                header.insert("kid".into(), kid.into());
            }
            header
        };
        if recipients.is_empty() {
            return Err(JweError::NoRecipients);
        }
        if recipients.len() > MAX_RECIPIENTS {
            return Err(JweError::TooManyRecipients);
        }
        let cek = Zeroizing::new(hazmat::random_array::<{ a256cbc_hs512::KEY_LEN }>());
        let mut protected = header(&[("enc", ENC)]);
        if let [(kid, _)] = recipients {
            protected.extend(key_header(*kid));
        }
        if let Some(cty) = content_type {
            protected.insert("cty".into(), cty.into());
        }
        let entries = recipients
            .iter()
            .map(|(kid, key)| {
                let header = (recipients.len() > 1).then(|| key_header(*kid));
                Ok(RecipientEntry {
                    header,
                    encrypted_key: key.wrap_key(cek.as_ref()).map_err(|_| JweError::Wrap)?,
                })
            })
            .collect::<Result<Vec<_>, JweError>>()?;
        let protected_b64 = b64::encode(serde_json::to_vec(&protected).expect("header serializes"));
        let iv = hazmat::random_array();
        let (ciphertext, tag) =
            a256cbc_hs512::encrypt(&cek, &iv, protected_b64.as_bytes(), plaintext);
        Ok(Self {
            protected_b64,
            protected,
            unprotected: None,
            aad_b64: None,
            recipients: entries,
            iv,
            ciphertext,
            tag,
        })
    }

    /// Seals to parties' published encryption keys.
    pub fn seal_to(
        plaintext: &[u8],
        parties: &[&PublicKeySet],
        content_type: Option<&str>,
    ) -> Result<Self, JweError> {
        let kids: Vec<String> = parties.iter().map(|p| p.id.encryption_kid()).collect();
        let recipients: Vec<Recipient> = parties
            .iter()
            .zip(&kids)
            .map(|(p, kid)| Recipient {
                kid,
                key: &p.encryption,
            })
            .collect();
        Self::seal(plaintext, &recipients, content_type)
    }

    /// The authenticated data: the protected header, and the JSON `aad` member if any.
    fn aad(&self) -> Vec<u8> {
        let mut aad = self.protected_b64.as_bytes().to_vec();
        if let Some(extra) = &self.aad_b64 {
            aad.push(b'.');
            aad.extend_from_slice(extra.as_bytes());
        }
        aad
    }

    /// The merged header of one recipient (layers are disjoint, checked at parse time).
    fn merged_header(&self, entry: &RecipientEntry) -> Header {
        let mut merged = self.protected.clone();
        for layer in [&self.unprotected, &entry.header].into_iter().flatten() {
            merged.extend(layer.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        merged
    }

    fn recipient_kid(&self, entry: &RecipientEntry) -> Option<String> {
        self.merged_header(entry)
            .get("kid")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// The `kid` of every recipient, in order (`None` where a recipient has none).
    pub fn recipient_kids(&self) -> Vec<Option<String>> {
        self.recipients
            .iter()
            .map(|r| self.recipient_kid(r))
            .collect()
    }

    /// The names of the protected header's parameters.
    pub fn protected_header_names(&self) -> impl Iterator<Item = &str> {
        self.protected.keys().map(String::as_str)
    }

    /// The `cty` (content type) of the protected header, if any.
    pub fn content_type(&self) -> Option<&str> {
        self.protected.get("cty").and_then(Value::as_str)
    }

    /// Unwraps the content key for `key`: the recipient named `kid` if there is one, else
    /// each recipient in turn. Never tells a wrong key from a tampered envelope: if no
    /// recipient unwraps, the result is a random key that will fail the MAC.
    fn unwrap_cek(&self, key: &DecryptionKey, kid: Option<&str>) -> Zeroizing<[u8; 64]> {
        let named: Vec<&RecipientEntry> = self
            .recipients
            .iter()
            .filter(|r| kid.is_some() && self.recipient_kid(r).as_deref() == kid)
            .collect();
        let candidates = if named.is_empty() {
            self.recipients.iter().collect()
        } else {
            named
        };
        for entry in candidates {
            if let Ok(cek) = key.unwrap_key(&entry.encrypted_key) {
                if let Ok(cek) = <[u8; 64]>::try_from(cek.as_slice()) {
                    return Zeroizing::new(cek);
                }
            }
        }
        Zeroizing::new(hazmat::random_array())
    }

    /// Decrypts with a decryption key, preferring the recipient named `kid`.
    pub fn open_with(
        &self,
        key: &DecryptionKey,
        kid: Option<&str>,
    ) -> Result<Zeroizing<Vec<u8>>, JweError> {
        self.open_with_content_key(&ContentKey(self.unwrap_cek(key, kid)))
    }

    /// Decrypts with a party's keys.
    pub fn open(&self, keys: &PrivateKeySet) -> Result<Zeroizing<Vec<u8>>, JweError> {
        self.open_with(&keys.decryption, Some(&keys.id.encryption_kid()))
    }

    /// The content key, unwrapped with a party's keys: open several times, or re-wrap it for a
    /// grantee, with one RSA operation. A wrong key gives a content key that fails to open.
    pub fn unwrap_content_key(&self, keys: &PrivateKeySet) -> ContentKey {
        ContentKey(self.unwrap_cek(&keys.decryption, Some(&keys.id.encryption_kid())))
    }

    /// Checks the MAC in constant time, then decrypts.
    pub fn open_with_content_key(&self, key: &ContentKey) -> Result<Zeroizing<Vec<u8>>, JweError> {
        a256cbc_hs512::decrypt(&key.0, &self.iv, &self.aad(), &self.ciphertext, &self.tag)
            .map_err(|_| JweError::Decrypt)
    }

    /// Grants `new` access: unwraps the content key with `holder`'s keys (checking the MAC), wraps
    /// it to `new`. The content ciphertext is unchanged. Shared `alg`/`kid` (as in a compact
    /// envelope) move to the per-recipient headers; when they leave the protected header the
    /// AAD changes, so only the 32-byte tag is recomputed.
    pub fn add_recipient(
        &mut self,
        holder: &PrivateKeySet,
        new: Recipient,
    ) -> Result<(), JweError> {
        self.add_recipient_named(holder, Some(new.kid), new.key)
    }

    /// [`add_recipient`](Self::add_recipient) without naming the new reader.
    pub fn add_unnamed_recipient(
        &mut self,
        holder: &PrivateKeySet,
        new: &EncryptionKey,
    ) -> Result<(), JweError> {
        self.add_recipient_named(holder, None, new)
    }

    fn add_recipient_named(
        &mut self,
        holder: &PrivateKeySet,
        kid: Option<&str>,
        key: &EncryptionKey,
    ) -> Result<(), JweError> {
        if self.recipients.len() >= MAX_RECIPIENTS {
            return Err(JweError::TooManyRecipients);
        }
        let cek = self.unwrap_cek(&holder.decryption, Some(&holder.id.encryption_kid()));
        a256cbc_hs512::decrypt(&cek, &self.iv, &self.aad(), &self.ciphertext, &self.tag)
            .map_err(|_| JweError::Decrypt)?;
        let encrypted_key = key.wrap_key(cek.as_ref()).map_err(|_| JweError::Wrap)?;
        // The new reader needs its own alg and kid, so no shared layer may hold them. The
        // unprotected header is not authenticated: fold it into every recipient. The protected
        // one is: moving alg/kid out of it changes the AAD, so recompute the tag.
        let shared = self.unprotected.take().unwrap_or_default();
        let moved: Header = ["alg", "kid"]
            .iter()
            .filter_map(|name| self.protected.remove(*name).map(|v| (name.to_string(), v)))
            .collect();
        for entry in &mut self.recipients {
            let header = entry.header.get_or_insert_with(Header::new);
            header.extend(shared.clone());
            header.extend(moved.clone());
        }
        if !moved.is_empty() {
            self.protected_b64 =
                b64::encode(serde_json::to_vec(&self.protected).expect("header serializes"));
            self.tag = a256cbc_hs512::retag(&cek, &self.iv, &self.aad(), &self.ciphertext);
        }
        let mut new_header = header(&[("alg", ALG)]);
        if let Some(kid) = kid {
            new_header.insert("kid".into(), kid.into());
        }
        self.recipients.push(RecipientEntry {
            header: Some(new_header),
            encrypted_key,
        });
        Ok(())
    }

    /// Compact serialization; only for one recipient with everything in the protected header.
    pub fn to_compact(&self) -> Result<String, JweError> {
        let [only] = self.recipients.as_slice() else {
            return Err(JweError::NotCompact);
        };
        if only.header.is_some() || self.unprotected.is_some() || self.aad_b64.is_some() {
            return Err(JweError::NotCompact);
        }
        let parts: [&[u8]; 4] = [&only.encrypted_key, &self.iv, &self.ciphertext, &self.tag];
        let len = self.protected_b64.len()
            + parts
                .iter()
                .map(|p| 1 + b64::encoded_len(p.len()))
                .sum::<usize>();
        let mut out = String::with_capacity(len);
        out.push_str(&self.protected_b64);
        for part in parts {
            out.push('.');
            b64::encode_into(part, &mut out);
        }
        Ok(out)
    }

    /// General JSON serialization.
    pub fn to_json(&self) -> String {
        let json = GeneralJson {
            protected: Some(self.protected_b64.clone()),
            unprotected: self.unprotected.clone(),
            aad: self.aad_b64.clone(),
            recipients: Some(
                self.recipients
                    .iter()
                    .map(|r| RecipientJson {
                        header: r.header.clone(),
                        encrypted_key: Some(b64::encode(&r.encrypted_key)),
                    })
                    .collect(),
            ),
            header: None,
            encrypted_key: None,
            iv: Some(b64::encode(self.iv)),
            ciphertext: Some(b64::encode(&self.ciphertext)),
            tag: Some(b64::encode(self.tag)),
        };
        serde_json::to_string(&json).expect("JWE serializes")
    }

    /// Compact when possible, else general JSON.
    pub fn serialize(&self) -> String {
        self.to_compact().unwrap_or_else(|_| self.to_json())
    }

    /// Parses either serialization (compact, general or flattened JSON) and validates the
    /// structure and algorithms. Leading and trailing ASCII whitespace is ignored.
    pub fn parse(input: &[u8]) -> Result<Self, JweError> {
        if input.len() > MAX_ENVELOPE_BYTES {
            return Err(JweError::TooLarge(input.len()));
        }
        let trimmed = input.trim_ascii();
        if trimmed.first() == Some(&b'{') {
            Self::parse_json(trimmed)
        } else {
            Self::parse_compact(trimmed)
        }
    }

    fn parse_compact(input: &[u8]) -> Result<Self, JweError> {
        let text = std::str::from_utf8(input).map_err(|_| JweError::Malformed("not ASCII"))?;
        let parts: Vec<&str> = text.split('.').collect();
        let [protected_b64, encrypted_key, iv, ciphertext, tag] = parts[..] else {
            return Err(JweError::Malformed(
                "compact JWE has five dot-separated parts",
            ));
        };
        Self::build(
            protected_b64.to_owned(),
            None,
            None,
            vec![RecipientJson {
                header: None,
                encrypted_key: Some(encrypted_key.to_owned()),
            }],
            iv,
            ciphertext,
            tag,
        )
    }

    fn parse_json(input: &[u8]) -> Result<Self, JweError> {
        let json: GeneralJson = strict_json::parse(input)?;
        let recipients = match (json.recipients, json.header, json.encrypted_key) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(JweError::Malformed("both general and flattened members"));
            }
            (Some(recipients), None, None) => recipients,
            (None, header, encrypted_key) => vec![RecipientJson {
                header,
                encrypted_key,
            }],
        };
        Self::build(
            json.protected.ok_or(JweError::Missing("protected"))?,
            json.unprotected,
            json.aad,
            recipients,
            json.iv.as_deref().ok_or(JweError::Missing("iv"))?,
            json.ciphertext
                .as_deref()
                .ok_or(JweError::Missing("ciphertext"))?,
            json.tag.as_deref().ok_or(JweError::Missing("tag"))?,
        )
    }

    fn build(
        protected_b64: String,
        unprotected: Option<Header>,
        aad_b64: Option<String>,
        recipients: Vec<RecipientJson>,
        iv: &str,
        ciphertext: &str,
        tag: &str,
    ) -> Result<Self, JweError> {
        if recipients.is_empty() {
            return Err(JweError::NoRecipients);
        }
        if recipients.len() > MAX_RECIPIENTS {
            return Err(JweError::TooManyRecipients);
        }
        if protected_b64.len() > MAX_HEADER_BYTES {
            return Err(JweError::Malformed("protected header too large"));
        }
        let protected_json = b64::decode(&protected_b64)
            .map_err(|_| JweError::Malformed("protected header encoding"))?;
        let protected: Header = strict_json::parse(&protected_json)?;
        if let Some(aad) = &aad_b64 {
            b64::decode(aad).map_err(|_| JweError::Malformed("aad encoding"))?;
        }
        let entries = recipients
            .into_iter()
            .map(|r| {
                let encrypted_key = r.encrypted_key.ok_or(JweError::Missing("encrypted_key"))?;
                let encrypted_key = b64::decode(encrypted_key)
                    .map_err(|_| JweError::Malformed("encrypted_key encoding"))?;
                Ok(RecipientEntry {
                    header: r.header,
                    encrypted_key,
                })
            })
            .collect::<Result<Vec<_>, JweError>>()?;
        // Algorithms first: a foreign envelope gets "unsupported", not a size complaint.
        for entry in &entries {
            check_header(&protected, unprotected.as_ref(), entry.header.as_ref())?;
        }
        let envelope = Self {
            protected_b64,
            protected,
            unprotected,
            aad_b64,
            recipients: entries,
            iv: b64::decode_array(iv).map_err(|_| JweError::Malformed("iv must be 16 bytes"))?,
            ciphertext: b64::decode(ciphertext)
                .map_err(|_| JweError::Malformed("ciphertext encoding"))?,
            tag: b64::decode_array(tag).map_err(|_| JweError::Malformed("tag must be 32 bytes"))?,
        };
        if envelope.ciphertext.is_empty() || envelope.ciphertext.len() % 16 != 0 {
            return Err(JweError::Malformed("ciphertext is not whole AES blocks"));
        }
        Ok(envelope)
    }
}

/// One recipient's header layers: disjoint, only our algorithms, no zip, no crit.
fn check_header(
    protected: &Header,
    unprotected: Option<&Header>,
    recipient: Option<&Header>,
) -> Result<(), JweError> {
    let layers = [Some(protected), unprotected, recipient];
    let mut merged = Header::new();
    for (name, value) in layers.into_iter().flatten().flat_map(|layer| layer.iter()) {
        if merged.insert(name.clone(), value.clone()).is_some() {
            return Err(JweError::DuplicateHeader(name.clone()));
        }
    }
    if merged.contains_key("zip") {
        return Err(JweError::Compressed);
    }
    if merged.contains_key("crit") {
        return Err(JweError::Critical);
    }
    let text = |name: &'static str| match merged.get(name) {
        None => Err(JweError::Missing(name)),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(JweError::Malformed("header parameter is not a string")),
    };
    let alg = text("alg")?;
    if alg != ALG {
        return Err(JweError::UnsupportedAlgorithm(alg));
    }
    let enc = text("enc")?;
    if enc != ENC {
        return Err(JweError::UnsupportedEncryption(enc));
    }
    if merged.get("kid").is_some_and(|k| !k.is_string()) {
        return Err(JweError::Malformed("kid is not a string"));
    }
    Ok(())
}
#[derive(Serialize, Deserialize)]
struct RecipientJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    header: Option<Header>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    encrypted_key: Option<String>,
}

/// The general and flattened JSON serializations share these members (RFC 7516 section 7.2).
#[derive(Serialize, Deserialize)]
struct GeneralJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    protected: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unprotected: Option<Header>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aad: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    recipients: Option<Vec<RecipientJson>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    header: Option<Header>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    encrypted_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ciphertext: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tag: Option<String>,
}
