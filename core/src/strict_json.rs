//! Strict JSON parsing for untrusted input: duplicate member names are an error at any depth
//! (RFC 7515/7516 require it for headers; for claims, two parsers picking different duplicates
//! is a classic signature-confusion bug), and the input must be one JSON value with nothing
//! after it.

use serde::de::{self, Deserialize, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// Why a JSON text was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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

/// Converts an already strictly parsed value into `T`. A struct (or a struct variant) must
/// come from a JSON object: serde's derive also takes an array of the fields in order
/// (`["x"]` as `{"jws": "x"}`), a second spelling of every message that no sender uses.
///
/// Not covered: the fields of an internally tagged enum's variant (`#[serde(tag = ...)]`),
/// which serde reads through its own buffer after the tag.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, StrictJsonError> {
    T::deserialize(Strict(value)).map_err(|e| StrictJsonError::Shape(e.to_string()))
}

/// A [`Value`] as a deserializer that reads structs from objects only (at any depth).
struct Strict(Value);

fn unexpected(value: &Value) -> de::Unexpected<'_> {
    match value {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => de::Unexpected::Unsigned(u),
            (_, Some(i), _) => de::Unexpected::Signed(i),
            (_, _, Some(f)) => de::Unexpected::Float(f),
            _ => de::Unexpected::Other("number"),
        },
        Value::String(s) => de::Unexpected::Str(s),
        Value::Array(_) => de::Unexpected::Seq,
        Value::Object(_) => de::Unexpected::Map,
    }
}

fn visit_array<'de, V: Visitor<'de>>(
    items: Vec<Value>,
    visitor: V,
) -> Result<V::Value, serde_json::Error> {
    let len = items.len();
    let mut seq = StrictSeq(items.into_iter());
    let value = visitor.visit_seq(&mut seq)?;
    if seq.0.len() == 0 {
        Ok(value)
    } else {
        Err(de::Error::invalid_length(len, &"fewer elements in array"))
    }
}

fn visit_object<'de, V: Visitor<'de>>(
    object: Map<String, Value>,
    visitor: V,
) -> Result<V::Value, serde_json::Error> {
    let len = object.len();
    let mut map = StrictMap {
        entries: object.into_iter(),
        value: None,
    };
    let value = visitor.visit_map(&mut map)?;
    if map.entries.len() == 0 {
        Ok(value)
    } else {
        Err(de::Error::invalid_length(len, &"fewer elements in map"))
    }
}

macro_rules! delegate {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
                self.0.$method(visitor)
            }
        )*
    };
}

impl<'de> Deserializer<'de> for Strict {
    type Error = serde_json::Error;

    delegate! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_str
        deserialize_string deserialize_bytes deserialize_byte_buf deserialize_unit
        deserialize_identifier
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Array(items) => visit_array(items, visitor),
            Value::Object(object) => visit_object(object, visitor),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            other => visitor.visit_some(Strict(other)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_unit_struct(name, visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Array(items) => visit_array(items, visitor),
            other => other.deserialize_seq(visitor),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(object) => visit_object(object, visitor),
            other => other.deserialize_map(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(object) => visit_object(object, visitor),
            other => Err(de::Error::invalid_type(
                unexpected(&other),
                &"a JSON object",
            )),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::String(variant) => visitor.visit_enum(StrictEnum {
                variant,
                value: None,
            }),
            Value::Object(object) if object.len() == 1 => {
                let (variant, value) = object.into_iter().next().expect("one member");
                visitor.visit_enum(StrictEnum {
                    variant,
                    value: Some(value),
                })
            }
            other => other.deserialize_enum(name, variants, visitor),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_unit()
    }
}

struct StrictSeq(std::vec::IntoIter<Value>);

impl<'de> SeqAccess<'de> for StrictSeq {
    type Error = serde_json::Error;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        self.0
            .next()
            .map(|value| seed.deserialize(Strict(value)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct StrictMap {
    entries: serde_json::map::IntoIter,
    value: Option<Value>,
}

impl<'de> MapAccess<'de> for StrictMap {
    type Error = serde_json::Error;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        match self.entries.next() {
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(Value::String(key)).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        match self.value.take() {
            Some(value) => seed.deserialize(Strict(value)),
            None => Err(de::Error::custom("value is missing")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct StrictEnum {
    variant: String,
    value: Option<Value>,
}

impl<'de> de::EnumAccess<'de> for StrictEnum {
    type Error = serde_json::Error;
    type Variant = StrictVariant;

    fn variant_seed<V: de::DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, StrictVariant), Self::Error> {
        let variant = seed.deserialize(Value::String(self.variant))?;
        Ok((variant, StrictVariant(self.value)))
    }
}

struct StrictVariant(Option<Value>);

impl<'de> de::VariantAccess<'de> for StrictVariant {
    type Error = serde_json::Error;

    fn unit_variant(self) -> Result<(), Self::Error> {
        match self.0 {
            None | Some(Value::Null) => Ok(()),
            Some(other) => Err(de::Error::invalid_type(unexpected(&other), &"unit variant")),
        }
    }

    fn newtype_variant_seed<T: de::DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, Self::Error> {
        match self.0 {
            Some(value) => seed.deserialize(Strict(value)),
            None => Err(de::Error::invalid_type(
                de::Unexpected::UnitVariant,
                &"newtype variant",
            )),
        }
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            Some(value) => Strict(value).deserialize_seq(visitor),
            None => Err(de::Error::invalid_type(
                de::Unexpected::UnitVariant,
                &"tuple variant",
            )),
        }
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            Some(value) => Strict(value).deserialize_struct("", fields, visitor),
            None => Err(de::Error::invalid_type(
                de::Unexpected::UnitVariant,
                &"struct variant",
            )),
        }
    }
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

    #[derive(Debug, PartialEq, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Submit {
        jws: String,
    }

    #[derive(Debug, PartialEq, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Lookup {
        ids: Vec<String>,
        #[serde(default)]
        inner: Option<Submit>,
    }

    #[derive(Debug, PartialEq, serde::Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Shape {
        Point,
        Circle { r: u32 },
        Pair(u8, u8),
    }

    /// serde's derive reads a struct from an array of its fields too: `["x"]` was a
    /// `{"jws": "x"}` and `[["node:0"]]` a lookup. Only objects make structs now, at any depth.
    #[test]
    fn structs_come_only_from_objects() {
        for (bad, what) in [
            (&br#"["x"]"#[..], "submit"),
            (br#"[]"#, "submit"),
            (br#"[["node:0"]]"#, "lookup"),
            (br#"{"ids":[],"inner":["x"]}"#, "nested"),
            (br#"{"circle":[1]}"#, "struct variant"),
        ] {
            let refused = match what {
                "submit" => parse::<Submit>(bad).is_err(),
                "lookup" | "nested" => parse::<Lookup>(bad).is_err(),
                _ => parse::<Shape>(bad).is_err(),
            };
            assert!(refused, "{what}: {}", String::from_utf8_lossy(bad));
        }
        assert!(parse::<Vec<Submit>>(br#"[["x"]]"#).is_err());
        assert!(parse::<Option<Submit>>(br#"["x"]"#).is_err());
        assert!(matches!(
            parse::<Submit>(br#"["x"]"#),
            Err(StrictJsonError::Shape(e)) if e.contains("a JSON object")
        ));

        // What an object spells is read as before.
        assert_eq!(
            parse::<Submit>(br#"{"jws":"x"}"#).unwrap(),
            Submit { jws: "x".into() }
        );
        assert_eq!(
            parse::<Lookup>(br#"{"ids":["a"],"inner":{"jws":"y"}}"#).unwrap(),
            Lookup {
                ids: vec!["a".into()],
                inner: Some(Submit { jws: "y".into() })
            }
        );
        assert!(parse::<Lookup>(br#"{"ids":["a"],"jws":"y"}"#).is_err());
        assert!(parse::<Lookup>(br#"{"ids":["a"],"inner":null}"#).is_ok());
        assert_eq!(parse::<Shape>(br#""point""#).unwrap(), Shape::Point);
        assert_eq!(
            parse::<Shape>(br#"{"circle":{"r":2}}"#).unwrap(),
            Shape::Circle { r: 2 }
        );
        assert_eq!(
            parse::<Shape>(br#"{"pair":[1,2]}"#).unwrap(),
            Shape::Pair(1, 2)
        );
        assert!(parse::<Shape>(br#"{"pair":[1,2,3]}"#).is_err());
        assert_eq!(
            parse::<(u8, String)>(br#"[1,"a"]"#).unwrap(),
            (1, "a".into())
        );
        assert!(parse::<(u8, String)>(br#"[1,"a",2]"#).is_err());
        assert_eq!(parse::<Value>(br#"[{"a":[1]}]"#).unwrap()[0]["a"][0], 1);
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
