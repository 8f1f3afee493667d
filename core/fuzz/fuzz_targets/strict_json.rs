//! `strict_json::parse_value`: never panics; accepts only what serde_json accepts, with the
//! same value; what it accepts re-serializes to JSON it accepts again, unchanged.
#![no_main]

use emrshare_core::strict_json;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = strict_json::parse_value(data) else {
        return;
    };
    let loose: Value = serde_json::from_slice(data)
        .unwrap_or_else(|e| panic!("strict parser accepted what serde_json refuses: {e}"));
    assert_eq!(value, loose);
    let text = serde_json::to_vec(&value).unwrap();
    let again = strict_json::parse_value(&text)
        .unwrap_or_else(|e| panic!("re-serialized JSON refused: {e}"));
    assert_eq!(again, value, "JSON value changed on a serialize/parse round trip");
});
