//! `Envelope::parse` on raw bytes that look like the JSON serializations (general or
//! flattened); other inputs are skipped so the fuzzer spends its time in the JSON path.
//! Then open with the fixture keys, re-serialize, re-parse, and grant a new reader.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.trim_ascii().first() != Some(&b'{') {
        return;
    }
    common::check_envelope(data);
});
