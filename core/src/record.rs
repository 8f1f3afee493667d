//! The medical record model (DESIGN section 9): a JSON object of named parts with a schema
//! tag and a record ID, and the content extraction access structure (CEAS): the parts that
//! must stay in every extraction.

use crate::strict_json::{self, StrictJsonError};
use crate::{b64, hazmat};
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;

/// The seven-part record of BPDS.
pub const BPDS_SCHEMA: &str = "emrshare/bpds-7/v1";
/// Any other object of named parts.
pub const PARTS_SCHEMA: &str = "emrshare/parts/v1";
/// The seven part names of a BPDS record.
pub const BPDS_PARTS: [&str; 7] = [
    "name",
    "gender",
    "age",
    "id_number",
    "medical_history",
    "examination",
    "prescription",
];
/// The BPDS default CEAS.
pub const BPDS_CEAS: [&str; 3] = ["gender", "age", "medical_history"];

/// The most parts a record may have.
pub const MAX_PARTS: usize = 256;
const MAX_DEPTH: usize = 32;
const MAX_NAME_LEN: usize = 128;

/// Why a record or its CEAS is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The record has no part.
    #[error("a record needs at least one part")]
    Empty,
    /// The record has more than [`MAX_PARTS`] parts.
    #[error("a record has at most {MAX_PARTS} parts")]
    TooManyParts,
    /// A part name (given) is empty, over 128 bytes, or an SD-JWT reserved name.
    #[error("part name {0:?} is reserved or invalid")]
    InvalidPartName(String),
    /// The JSON is not an object.
    #[error("record must be a JSON object of named parts")]
    NotAnObject,
    /// The CEAS names a part (given) the record does not have.
    #[error("CEAS names part {0:?}, which the record does not have")]
    CeasPartMissing(String),
    /// A part value holds an SD-JWT reserved member name (given) at some depth.
    #[error("a part value uses the SD-JWT reserved name {0:?}")]
    ReservedNameInValue(String),
    /// A part value is nested more than 32 levels deep.
    #[error("a part value is nested too deeply")]
    TooDeep,
    /// The record ID or schema tag is not 1 to 128 visible ASCII characters (no spaces).
    #[error("invalid record ID or schema tag")]
    InvalidTag,
    /// The record is not strict JSON.
    #[error("record: {0}")]
    Json(#[from] StrictJsonError),
}

fn valid_tag(tag: &str) -> bool {
    (1..=128).contains(&tag.len()) && tag.bytes().all(|b| b.is_ascii_graphic())
}

/// SD-JWT gives these member names meaning; in signed data they would be read as structure.
fn is_reserved(name: &str) -> bool {
    matches!(name, "_sd" | "..." | "_sd_alg")
}

fn check_part_name(name: &str) -> Result<(), RecordError> {
    if is_reserved(name) || name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(RecordError::InvalidPartName(name.to_owned()));
    }
    Ok(())
}

/// Part values must not contain SD-JWT's reserved names at any depth: the verifier would read
/// a nested `_sd` as digests (letting whoever wrote the record plant a digest and later show
/// a disclosure as if the doctor had signed it) and drop `{"...": x}` array elements.
fn check_part_value(value: &Value, depth: usize) -> Result<(), RecordError> {
    if depth > MAX_DEPTH {
        return Err(RecordError::TooDeep);
    }
    match value {
        Value::Object(members) => members.iter().try_for_each(|(name, inner)| {
            if is_reserved(name) {
                return Err(RecordError::ReservedNameInValue(name.clone()));
            }
            check_part_value(inner, depth + 1)
        }),
        Value::Array(items) => items
            .iter()
            .try_for_each(|item| check_part_value(item, depth + 1)),
        _ => Ok(()),
    }
}

/// A record of named parts, ready to be signed.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    schema: String,
    record_id: String,
    parts: Map<String, Value>,
}

impl Record {
    /// A record of `parts` tagged `schema` with ID `record_id`: tags of 1 to 128 visible
    /// ASCII characters, 1 to [`MAX_PARTS`] parts, no SD-JWT reserved names in them.
    pub fn new(
        schema: &str,
        record_id: &str,
        parts: Map<String, Value>,
    ) -> Result<Self, RecordError> {
        if !valid_tag(schema) || !valid_tag(record_id) {
            return Err(RecordError::InvalidTag);
        }
        if parts.is_empty() {
            return Err(RecordError::Empty);
        }
        if parts.len() > MAX_PARTS {
            return Err(RecordError::TooManyParts);
        }
        for (name, value) in &parts {
            check_part_name(name)?;
            check_part_value(value, 0)?;
        }
        Ok(Self {
            schema: schema.into(),
            record_id: record_id.into(),
            parts,
        })
    }

    /// From a JSON object whose members are the parts. The schema is BPDS when the parts are
    /// exactly the seven BPDS parts; the record ID is random when not given.
    pub fn from_json(bytes: &[u8], record_id: Option<&str>) -> Result<Self, RecordError> {
        let Value::Object(parts) = strict_json::parse_value(bytes)? else {
            return Err(RecordError::NotAnObject);
        };
        let is_bpds =
            parts.len() == BPDS_PARTS.len() && BPDS_PARTS.iter().all(|p| parts.contains_key(*p));
        let schema = if is_bpds { BPDS_SCHEMA } else { PARTS_SCHEMA };
        let id = record_id.map(str::to_owned).unwrap_or_else(new_record_id);
        Self::new(schema, &id, parts)
    }

    /// A sample BPDS record (synthetic data) for demos and tests.
    pub fn sample_bpds() -> Self {
        let Value::Object(parts) = json!({
            "name": "Alice Example",
            "gender": "female",
            "age": 42,
            "id_number": "X1234567",
            "medical_history": ["asthma (2009)", "appendectomy (2015)"],
            "examination": {"blood_pressure": "128/82", "hba1c_percent": 5.4},
            "prescription": [{"drug": "salbutamol", "dose": "100 ug", "when": "as needed"}]
        }) else {
            unreachable!()
        };
        Self::new(BPDS_SCHEMA, &new_record_id(), parts).expect("sample record is valid")
    }

    /// The schema tag ([`BPDS_SCHEMA`], [`PARTS_SCHEMA`] or another).
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The record's ID (its `emr_id` once signed).
    pub fn record_id(&self) -> &str {
        &self.record_id
    }

    /// The named parts.
    pub fn parts(&self) -> &Map<String, Value> {
        &self.parts
    }
}

/// A fresh random record ID (`rec-` + 128 random bits).
pub fn new_record_id() -> String {
    format!("rec-{}", b64::encode(hazmat::random_array::<16>()))
}

/// The content extraction access structure: parts every extraction must keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ceas(BTreeSet<String>);

impl Ceas {
    /// The BPDS default: gender, age, medical history.
    pub fn bpds_default() -> Self {
        Self(BPDS_CEAS.iter().map(|s| s.to_string()).collect())
    }

    /// A CEAS of the parts `names`.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(names: I) -> Self {
        Self(names.into_iter().map(Into::into).collect())
    }

    /// The default for a record: the BPDS CEAS for BPDS records, nothing otherwise.
    pub fn default_for(record: &Record) -> Self {
        if record.schema == BPDS_SCHEMA {
            Self::bpds_default()
        } else {
            Self(BTreeSet::new())
        }
    }

    /// Every CEAS part must exist in the record.
    pub fn check(&self, record: &Record) -> Result<(), RecordError> {
        match self.0.iter().find(|name| !record.parts.contains_key(*name)) {
            Some(missing) => Err(RecordError::CeasPartMissing(missing.clone())),
            None => Ok(()),
        }
    }

    /// Whether the part `name` must stay in every extraction.
    pub fn contains(&self, name: &str) -> bool {
        self.0.contains(name)
    }

    /// The parts every extraction must keep, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpds_json_gets_bpds_schema_and_ceas() {
        let r = Record::sample_bpds();
        let json = serde_json::to_vec(r.parts()).unwrap();
        let back = Record::from_json(&json, Some("r1")).unwrap();
        assert_eq!(back.schema(), BPDS_SCHEMA);
        assert_eq!(back.record_id(), "r1");
        assert!(Ceas::default_for(&back).check(&back).is_ok());
    }

    #[test]
    fn other_objects_are_generic_parts() {
        let r = Record::from_json(br#"{"allergies":["penicillin"]}"#, None).unwrap();
        assert_eq!(r.schema(), PARTS_SCHEMA);
        assert!(r.record_id().starts_with("rec-"));
        assert_eq!(Ceas::default_for(&r), Ceas::new(Vec::<String>::new()));
    }

    #[test]
    fn refuses_bad_records() {
        for bad in [
            &b"[]"[..],
            b"{}",
            b"1",
            br#"{"_sd":1}"#,
            br#"{"...":1}"#,
            br#"{"":1}"#,
            br#"{"a":1,"a":2}"#,
        ] {
            assert!(
                Record::from_json(bad, None).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut many = Map::new();
        for i in 0..=MAX_PARTS {
            many.insert(format!("p{i}"), Value::Null);
        }
        assert!(matches!(
            Record::new(PARTS_SCHEMA, "r", many),
            Err(RecordError::TooManyParts)
        ));
        let one: Map<String, Value> = [("a".to_string(), Value::Null)].into_iter().collect();
        assert!(matches!(
            Record::new("bad schema", "r", one.clone()),
            Err(RecordError::InvalidTag)
        ));
        assert!(matches!(
            Record::new(PARTS_SCHEMA, "", one),
            Err(RecordError::InvalidTag)
        ));
    }

    /// Found by the record fuzz target: reserved SD-JWT names nested inside part values.
    #[test]
    fn refuses_reserved_names_at_any_depth() {
        for bad in [
            r#"{"a":{"_sd":["x"]}}"#,
            r#"{"a":[{"...":"x"}]}"#,
            r#"{"a":{"_sd":1}}"#,
            r#"{"a":{"b":[{"c":{"_sd_alg":"sha-256"}}]}}"#,
        ] {
            assert!(
                matches!(
                    Record::from_json(bad.as_bytes(), None),
                    Err(RecordError::ReservedNameInValue(_))
                ),
                "{bad}"
            );
        }
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(40), "]".repeat(40));
        assert!(matches!(
            Record::from_json(deep.as_bytes(), None),
            Err(RecordError::TooDeep)
        ));
        assert!(Record::from_json(br#"{"a":{"sd":["x"],"dots":"..."}}"#, None).is_ok());
    }

    #[test]
    fn ceas_must_name_existing_parts() {
        let r = Record::from_json(br#"{"a":1}"#, None).unwrap();
        assert!(matches!(
            Ceas::new(["b"]).check(&r),
            Err(RecordError::CeasPartMissing(_))
        ));
        assert!(Ceas::new(["a"]).check(&r).is_ok());
    }
}
