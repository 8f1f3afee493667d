//! `Record::from_json`, then the whole doctor-to-verifier path on whatever it accepts: issue
//! an SD-JWT with the fixture keys (default CEAS), serialize, parse, verify; the verifier must
//! see exactly the record's parts.
#![no_main]

mod common;

use emrshare_core::ces::{self, IssueOptions, VerifyPolicy};
use emrshare_core::record::{Ceas, Record, BPDS_SCHEMA};
use emrshare_core::SdJwt;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(record) = Record::from_json(data, Some("rec-fuzz")) else {
        return;
    };
    let json = serde_json::to_vec(record.parts()).unwrap();
    let again = Record::from_json(&json, Some("rec-fuzz")).expect("re-serialized record parses");
    assert_eq!(again, record, "record JSON round trip changed the record");
    let ceas = Ceas::default_for(&record);
    if record.schema() == BPDS_SCHEMA {
        ceas.check(&record).expect("BPDS default CEAS fits a BPDS record");
    }
    let options = IssueOptions { issued_at: common::NOW - 60, decoys: 1 };
    let sd = ces::issue(common::issuer(), common::holder_public(), &record, &ceas, options)
        .expect("issue() refused a valid record");
    let parsed = SdJwt::parse(&sd.serialize()).expect("issued SD-JWT parses");
    let verified = ces::verify(&parsed, &VerifyPolicy::new(common::issuer_public(), common::NOW))
        .expect("issued SD-JWT verifies");
    assert_eq!(verified.parts(), record.parts(), "verifier sees other parts than were signed");
    assert_eq!(verified.schema(), record.schema());
});
