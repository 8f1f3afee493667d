//! Structured JWE JSON: the fuzzer picks, member by member, between the real values of the
//! committed envelope sealed to the fixture key (`fixtures/sealed_compact.jwe`), bit-flipped
//! copies of them, and arbitrary values; headers are built from the parameters that matter.
//! Beyond the checks of `common::check_envelope`: an envelope whose authenticated members
//! (protected header, aad, iv, ciphertext, tag) differ from the sealed ones must not open.
#![no_main]

mod common;

use emrshare_core::b64;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Number, Value};

/// One base64url member of the envelope.
#[derive(Arbitrary, Debug)]
enum Field {
    Missing,
    /// The sealed envelope's own value for this member.
    Real,
    /// The sealed value with one bit flipped.
    Flip(u16),
    /// The sealed value truncated or extended.
    Resize(u16),
    Bytes(Vec<u8>),
    Text(String),
    Null,
    Int(i64),
}

/// One header parameter.
#[derive(Arbitrary, Debug)]
enum Param {
    /// The value core writes (`RSA-OAEP-256`, `A256CBC-HS512`, the fixture `kid`, ...).
    Ours,
    /// The value core writes for the other party (a kid naming someone else).
    Theirs,
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
    List(Vec<String>),
    Object(Vec<(String, String)>),
}

#[derive(Arbitrary, Debug)]
struct HeaderSpec {
    alg: Option<Param>,
    enc: Option<Param>,
    kid: Option<Param>,
    cty: Option<Param>,
    zip: Option<Param>,
    crit: Option<Param>,
    extra: Vec<(String, Param)>,
}

#[derive(Arbitrary, Debug)]
enum Protected {
    Real,
    Built(HeaderSpec),
    Field(Field),
}

#[derive(Arbitrary, Debug)]
struct RecipientSpec {
    header: Option<HeaderSpec>,
    header_not_object: Option<Param>,
    encrypted_key: Field,
}

#[derive(Arbitrary, Debug)]
struct Input {
    flattened: bool,
    protected: Protected,
    unprotected: Option<HeaderSpec>,
    aad: Option<Field>,
    recipients: Vec<RecipientSpec>,
    iv: Field,
    ciphertext: Field,
    tag: Field,
    extra_members: Vec<(String, Param)>,
}

struct Real {
    protected: &'static str,
    protected_json: Vec<u8>,
    encrypted_key: Vec<u8>,
    iv: Vec<u8>,
    ciphertext: Vec<u8>,
    tag: Vec<u8>,
}

fn real() -> &'static Real {
    static R: std::sync::OnceLock<Real> = std::sync::OnceLock::new();
    R.get_or_init(|| {
        let [protected, ek, iv, ct, tag] = common::sealed_compact_parts();
        let d = |s: &str| b64::decode(s).expect("fixture is base64url");
        Real { protected, protected_json: d(protected), encrypted_key: d(ek), iv: d(iv), ciphertext: d(ct), tag: d(tag) }
    })
}

/// The JSON value of a field, and whether it differs from the sealed value.
fn field(f: &Field, real: &[u8]) -> (Option<Value>, bool) {
    match f {
        Field::Missing => (None, true),
        Field::Real => (Some(b64::encode(real).into()), false),
        Field::Flip(bit) => {
            let mut v = real.to_vec();
            if v.is_empty() {
                return (Some("".into()), false);
            }
            let bit = *bit as usize % (v.len() * 8);
            v[bit / 8] ^= 1 << (bit % 8);
            (Some(b64::encode(v).into()), true)
        }
        Field::Resize(n) => {
            let mut v = real.to_vec();
            v.resize(*n as usize % (real.len() + 33), 0);
            let changed = v != real;
            (Some(b64::encode(v).into()), changed)
        }
        Field::Bytes(b) => (Some(b64::encode(b).into()), b != real),
        Field::Text(s) => (Some(s.clone().into()), b64::decode(s).ok().as_deref() != Some(real)),
        Field::Null => (Some(Value::Null), true),
        Field::Int(i) => (Some((*i).into()), true),
    }
}

fn param(name: &str, p: &Param) -> Value {
    let ours = common::jwe_keys().id.encryption_kid();
    let theirs = common::jwe_other().id.encryption_kid();
    match p {
        Param::Ours => match name {
            "alg" => "RSA-OAEP-256".into(),
            "enc" => "A256CBC-HS512".into(),
            "kid" => ours.into(),
            "cty" => "application/json".into(),
            "zip" => "DEF".into(),
            "crit" => json!(["exp"]),
            _ => "".into(),
        },
        Param::Theirs => match name {
            "kid" => theirs.into(),
            "alg" => "RSA-OAEP".into(),
            "enc" => "A128GCM".into(),
            _ => Value::Null,
        },
        Param::Str(s) => s.clone().into(),
        Param::Int(i) => (*i).into(),
        Param::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Param::Bool(b) => (*b).into(),
        Param::Null => Value::Null,
        Param::List(l) => l.clone().into(),
        Param::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect()),
    }
}

fn header(spec: &HeaderSpec) -> Map<String, Value> {
    let mut h = Map::new();
    for (name, p) in [
        ("alg", &spec.alg),
        ("enc", &spec.enc),
        ("kid", &spec.kid),
        ("cty", &spec.cty),
        ("zip", &spec.zip),
        ("crit", &spec.crit),
    ] {
        if let Some(p) = p {
            h.insert(name.into(), param(name, p));
        }
    }
    for (name, p) in &spec.extra {
        h.insert(name.clone(), param(name, p));
    }
    h
}

fn build(input: &Input) -> (Value, bool) {
    let real = real();
    let mut obj = Map::new();
    let mut tampered = false;
    let protected = match &input.protected {
        Protected::Real => Some(Value::from(real.protected)),
        Protected::Built(spec) => {
            let text = b64::encode(Value::Object(header(spec)).to_string());
            tampered |= text != real.protected;
            Some(text.into())
        }
        Protected::Field(f) => {
            let (v, _) = field(f, &real.protected_json);
            tampered |= v.as_ref().and_then(Value::as_str) != Some(real.protected);
            v
        }
    };
    if let Some(p) = protected {
        obj.insert("protected".into(), p);
    }
    if let Some(spec) = &input.unprotected {
        obj.insert("unprotected".into(), Value::Object(header(spec)));
    }
    if let Some(aad) = &input.aad {
        let (v, _) = field(aad, b"");
        // `"aad": null` is the same as no aad; any other value is refused or changes the AAD.
        tampered |= v.as_ref().is_some_and(|v| !v.is_null());
        if let Some(v) = v {
            obj.insert("aad".into(), v);
        }
    }
    let recipients: Vec<Value> = input
        .recipients
        .iter()
        .take(8)
        .map(|r| {
            let mut m = Map::new();
            if let Some(p) = &r.header_not_object {
                m.insert("header".into(), param("header", p));
            } else if let Some(h) = &r.header {
                m.insert("header".into(), Value::Object(header(h)));
            }
            if let (Some(v), _) = field(&r.encrypted_key, &real.encrypted_key) {
                m.insert("encrypted_key".into(), v);
            }
            Value::Object(m)
        })
        .collect();
    if input.flattened {
        if let Some(Value::Object(first)) = recipients.into_iter().next() {
            obj.extend(first);
        }
    } else {
        obj.insert("recipients".into(), recipients.into());
    }
    for (name, f, real_bytes) in [
        ("iv", &input.iv, &real.iv),
        ("ciphertext", &input.ciphertext, &real.ciphertext),
        ("tag", &input.tag, &real.tag),
    ] {
        let (v, changed) = field(f, real_bytes);
        tampered |= changed;
        if let Some(v) = v {
            obj.insert(name.into(), v);
        }
    }
    for (name, p) in &input.extra_members {
        obj.entry(name.clone()).or_insert_with(|| param(name, p));
    }
    (Value::Object(obj), tampered)
}

fuzz_target!(|input: Input| {
    let (value, tampered) = build(&input);
    let bytes = serde_json::to_vec(&value).expect("JSON serializes");
    let opened = common::check_envelope(&bytes);
    if tampered {
        assert!(
            opened.is_none(),
            "an envelope with changed authenticated members opened: {}",
            String::from_utf8_lossy(&bytes)
        );
    }
});
