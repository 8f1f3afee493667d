//! Strict JSON parsing for untrusted input: duplicate member names are an error at any depth
//! (RFC 7515/7516 require it for headers; for claims, two parsers picking different duplicates
//! is a classic signature-confusion bug), and the input must be one JSON value with nothing
//! after it.

use serde::de::{self, Deserialize, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// Why a JSON text was refused.
#[derive(Debug, thiserror::Error)]
pub enum StrictJsonError {
    /// Not JSON, trailing data, or a duplicate member name.
    #[error("malformed JSON: {0}")]
    Syntax(String),
    /// Valid JSON of the wrong shape for the expected type.
    #[error("unexpected JSON structure: {0}")]
    Shape(String),
}

/// Parses untrusted bytes into a [`Value`], rejecting duplicate member names at any depth.
pub fn parse_value(bytes: &[u8]) -> Result<Value, StrictJsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = NoDuplicates::deserialize(&mut de)
        .map_err(|e| StrictJsonError::Syntax(e.to_string()))?
        .0;
    de.end()
        .map_err(|e| StrictJsonError::Syntax(e.to_string()))?;
    Ok(value)
}

/// Parses untrusted bytes strictly, then into `T`.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StrictJsonError> {
    from_value(parse_value(bytes)?)
}

/// Converts an already strictly parsed value into `T`.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, StrictJsonError> {
    serde_json::from_value(value).map_err(|e| StrictJsonError::Shape(e.to_string()))
}

struct NoDuplicates(Value);

impl<'de> Deserialize<'de> for NoDuplicates {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(NoDuplicatesVisitor)
            .map(NoDuplicates)
    }
}

struct NoDuplicatesVisitor;

impl<'de> Visitor<'de> for NoDuplicatesVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(NoDuplicates(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let NoDuplicates(value) = map.next_value()?;
            if object.insert(key, value).is_some() {
                return Err(de::Error::custom("duplicate member name"));
            }
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_plain_json() {
        let v = parse_value(br#"{"a":[1,{"b":null}],"c":"d"}"#).unwrap();
        assert_eq!(v["a"][1]["b"], Value::Null);
    }

    #[test]
    fn rejects_duplicates_at_any_depth() {
        for bad in [
            r#"{"a":1,"a":2}"#,
            r#"{"x":{"a":1,"a":1}}"#,
            r#"[{"k":0,"k":0}]"#,
        ] {
            assert!(parse_value(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn rejects_trailing_data_and_garbage() {
        for bad in [r#"{"a":1} x"#, r#"{"a":1}{}"#, "", "{", "nul", "\u{feff}{}"] {
            assert!(parse_value(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    /// Found by the strict_json and record fuzz targets: numbers beyond i64/u64 become floats,
    /// which must survive serialize-then-parse unchanged (serde_json's `float_roundtrip`).
    #[test]
    fn large_numbers_roundtrip_exactly() {
        for text in [
            "[18446744073709551615,-9223867350324775808,1e308]",
            "[-9223867350324775808]",
            r#"{"a":455555555555555555555555555555555555555555555555555555555555555555555555555555552}"#,
            "[0.1,2.2250738585072014e-308,1.7976931348623157e308,5e-324]",
        ] {
            let value = parse_value(text.as_bytes()).unwrap();
            let again = parse_value(&serde_json::to_vec(&value).unwrap()).unwrap();
            assert_eq!(again, value, "{text}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = parse_value(&bytes);
        }

        #[test]
        fn floats_roundtrip(x in any::<f64>().prop_filter("finite", |x| x.is_finite())) {
            let value = parse_value(serde_json::to_string(&x).unwrap().as_bytes()).unwrap();
            prop_assert_eq!(value.as_f64(), Some(x));
        }

        #[test]
        fn agrees_with_serde_json_without_duplicates(n in 0i64..1000, s in "[a-z]{0,8}") {
            let text = serde_json::json!({"n": n, "s": s, "l": [n, s.clone()]}).to_string();
            prop_assert_eq!(parse_value(text.as_bytes()).unwrap(),
                serde_json::from_str::<Value>(&text).unwrap());
        }
    }
}
