//! The JWK (RFC 7517) members we read and write, RFC 7638 thumbprints, and the conversion
//! between RSA JWK members and PKCS#8 (aws-lc takes and gives only PKCS#8).

use super::KeyError;
use crate::{b64, hazmat};
use pkcs1::der::{Decode, Encode};
use serde::{Deserialize, Serialize};
use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// One JSON Web Key. Unknown members are ignored (RFC 7517 section 4); duplicate members are
/// refused by the strict parser. Private members zeroize on drop and never print.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct Jwk {
    /// The key type: `EC` or `RSA`.
    pub kty: String,
    /// The intended use (`use`): `sig` or `enc`.
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// The algorithm the key is for, e.g. `ES256` or `RSA-OAEP-256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// The key ID (`kid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// The EC curve: `P-256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// EC: the x coordinate, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// EC: the y coordinate, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// RSA: the modulus, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA: the public exponent, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// The private member: EC private scalar, or RSA private exponent, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d: Option<String>,
    /// RSA private: the first prime factor, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<String>,
    /// RSA private: the second prime factor, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// RSA private: the first factor's CRT exponent, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dp: Option<String>,
    /// RSA private: the second factor's CRT exponent, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dq: Option<String>,
    /// RSA private: the first CRT coefficient, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qi: Option<String>,
    /// Multi-prime RSA ("oth") is refused; kept only to detect it.
    #[serde(default, skip_serializing)]
    #[zeroize(skip)]
    pub oth: Option<serde_json::Value>,
}

impl fmt::Debug for Jwk {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("Jwk")
            .field("kty", &self.kty)
            .field("kid", &self.kid)
            .field("crv", &self.crv)
            .field("private", &self.has_private_members())
            .finish_non_exhaustive()
    }
}

fn decode_member(value: &Option<String>, what: &'static str) -> Result<Vec<u8>, KeyError> {
    let text = value.as_ref().ok_or(KeyError::InvalidJwk(what))?;
    b64::decode(text).map_err(|_| KeyError::InvalidJwk(what))
}

fn decode_secret(
    value: &Option<String>,
    what: &'static str,
) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    decode_member(value, what).map(Zeroizing::new)
}

impl Jwk {
    fn public_of_type(kty: &str, kid: Option<String>, usage: &str, alg: &str) -> Self {
        let mut jwk = Self::default();
        jwk.kty = kty.into();
        jwk.use_ = kid.as_ref().map(|_| usage.into());
        jwk.alg = kid.as_ref().map(|_| alg.into());
        jwk.kid = kid;
        jwk
    }

    pub(crate) fn ec_public(x: &[u8], y: &[u8], kid: Option<String>) -> Self {
        let mut jwk = Self::public_of_type("EC", kid, "sig", "ES256");
        jwk.crv = Some("P-256".into());
        jwk.x = Some(b64::encode(x));
        jwk.y = Some(b64::encode(y));
        jwk
    }

    pub(crate) fn ec_private(x: &[u8], y: &[u8], d: &[u8], kid: Option<String>) -> Self {
        let mut jwk = Self::ec_public(x, y, kid);
        jwk.d = Some(b64::encode(d));
        jwk
    }

    pub(crate) fn rsa_public(n: &[u8], e: &[u8], kid: Option<String>) -> Self {
        let mut jwk = Self::public_of_type("RSA", kid, "enc", "RSA-OAEP-256");
        jwk.n = Some(b64::encode(n));
        jwk.e = Some(b64::encode(e));
        jwk
    }

    /// True if any private-key member is present.
    pub fn has_private_members(&self) -> bool {
        [&self.d, &self.p, &self.q, &self.dp, &self.dq, &self.qi]
            .iter()
            .any(|m| m.is_some())
            || self.oth.is_some()
    }

    fn check_alg_and_use(&self, alg: &str, usage: &str) -> Result<(), KeyError> {
        if self.alg.as_deref().is_some_and(|a| a != alg) {
            return Err(KeyError::Unsupported("JWK alg does not fit the key"));
        }
        if self.use_.as_deref().is_some_and(|u| u != usage) {
            return Err(KeyError::Unsupported("JWK use does not fit the key"));
        }
        Ok(())
    }

    pub(crate) fn ec_public_coordinates(&self) -> Result<([u8; 32], [u8; 32]), KeyError> {
        if self.kty != "EC" {
            return Err(KeyError::Unsupported("expected an EC key"));
        }
        if self.crv.as_deref() != Some("P-256") {
            return Err(KeyError::Unsupported("only the P-256 curve"));
        }
        self.check_alg_and_use("ES256", "sig")?;
        let coordinate = |m: &Option<String>, what| {
            decode_member(m, what)?
                .try_into()
                .map_err(|_| KeyError::InvalidJwk(what))
        };
        Ok((coordinate(&self.x, "x")?, coordinate(&self.y, "y")?))
    }

    pub(crate) fn ec_private_scalar(&self) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let d = decode_secret(&self.d, "d")?;
        if d.len() != 32 {
            return Err(KeyError::InvalidJwk("d"));
        }
        Ok(d)
    }

    pub(crate) fn rsa_public_components(&self) -> Result<(Vec<u8>, Vec<u8>), KeyError> {
        if self.kty != "RSA" {
            return Err(KeyError::Unsupported("expected an RSA key"));
        }
        self.check_alg_and_use("RSA-OAEP-256", "enc")?;
        Ok((decode_member(&self.n, "n")?, decode_member(&self.e, "e")?))
    }

    /// RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order.
    pub fn thumbprint(&self) -> String {
        let canonical = match self.kty.as_str() {
            "EC" => format!(
                r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                self.crv.as_deref().unwrap_or_default(),
                self.x.as_deref().unwrap_or_default(),
                self.y.as_deref().unwrap_or_default()
            ),
            _ => format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                self.e.as_deref().unwrap_or_default(),
                self.n.as_deref().unwrap_or_default()
            ),
        };
        b64::encode(hazmat::sha256(canonical.as_bytes()))
    }
}

/// The eight big-endian integers of a two-prime RSA private key (RFC 8017 RSAPrivateKey).
pub(crate) struct RsaPrivateComponents {
    pub n: Vec<u8>,
    pub e: Vec<u8>,
    d: Zeroizing<Vec<u8>>,
    p: Zeroizing<Vec<u8>>,
    q: Zeroizing<Vec<u8>>,
    dp: Zeroizing<Vec<u8>>,
    dq: Zeroizing<Vec<u8>>,
    qi: Zeroizing<Vec<u8>>,
}

impl RsaPrivateComponents {
    pub(crate) fn from_pkcs8(der: &[u8]) -> Result<Self, KeyError> {
        let info = pkcs8::PrivateKeyInfo::try_from(der).map_err(|_| KeyError::InvalidPkcs8)?;
        if info.algorithm.oid != pkcs1::ALGORITHM_OID {
            return Err(KeyError::InvalidPkcs8);
        }
        let key =
            pkcs1::RsaPrivateKey::from_der(info.private_key).map_err(|_| KeyError::InvalidPkcs8)?;
        if key.other_prime_infos.is_some() {
            return Err(KeyError::Unsupported("multi-prime RSA"));
        }
        let secret = |u: pkcs1::UintRef| Zeroizing::new(u.as_bytes().to_vec());
        Ok(Self {
            n: key.modulus.as_bytes().to_vec(),
            e: key.public_exponent.as_bytes().to_vec(),
            d: secret(key.private_exponent),
            p: secret(key.prime1),
            q: secret(key.prime2),
            dp: secret(key.exponent1),
            dq: secret(key.exponent2),
            qi: secret(key.coefficient),
        })
    }

    pub(crate) fn from_jwk(jwk: &Jwk) -> Result<Self, KeyError> {
        let (n, e) = jwk.rsa_public_components()?;
        if jwk.oth.is_some() {
            return Err(KeyError::Unsupported("multi-prime RSA"));
        }
        Ok(Self {
            n,
            e,
            d: decode_secret(&jwk.d, "d")?,
            p: decode_secret(&jwk.p, "p")?,
            q: decode_secret(&jwk.q, "q")?,
            dp: decode_secret(&jwk.dp, "dp")?,
            dq: decode_secret(&jwk.dq, "dq")?,
            qi: decode_secret(&jwk.qi, "qi")?,
        })
    }

    pub(crate) fn to_jwk(&self, kid: Option<String>) -> Jwk {
        let secret = |v: &Zeroizing<Vec<u8>>| Some(b64::encode(v.as_slice()));
        let mut jwk = Jwk::rsa_public(&self.n, &self.e, kid);
        jwk.d = secret(&self.d);
        jwk.p = secret(&self.p);
        jwk.q = secret(&self.q);
        jwk.dp = secret(&self.dp);
        jwk.dq = secret(&self.dq);
        jwk.qi = secret(&self.qi);
        jwk
    }

    /// PKCS#8 DER; aws-lc checks the components' consistency when it parses it.
    pub(crate) fn to_pkcs8(&self) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        fn uint(bytes: &[u8]) -> Result<pkcs1::UintRef<'_>, KeyError> {
            pkcs1::UintRef::new(bytes).map_err(|_| KeyError::InvalidJwk("RSA integer"))
        }
        let key = pkcs1::RsaPrivateKey {
            modulus: uint(&self.n)?,
            public_exponent: uint(&self.e)?,
            private_exponent: uint(&self.d)?,
            prime1: uint(&self.p)?,
            prime2: uint(&self.q)?,
            exponent1: uint(&self.dp)?,
            exponent2: uint(&self.dq)?,
            coefficient: uint(&self.qi)?,
            other_prime_infos: None,
        };
        let pkcs1_der = Zeroizing::new(
            key.to_der()
                .map_err(|_| KeyError::InvalidJwk("RSA integers"))?,
        );
        let info = pkcs8::PrivateKeyInfo::new(pkcs1::ALGORITHM_ID, &pkcs1_der);
        info.to_der()
            .map(Zeroizing::new)
            .map_err(|_| KeyError::InvalidJwk("RSA integers"))
    }
}
