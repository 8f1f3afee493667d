//! `b64::decode` / `decode_array` / `encode` (SIMD, `base64-simd`) against the `base64`
//! crate's strict URL-safe no-padding engine as a reference: the same inputs accepted, the
//! same bytes out; an accepted text is the canonical encoding of its bytes; encoding agrees.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use emrshare_core::b64;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ours = b64::decode(data);
    let reference = URL_SAFE_NO_PAD.decode(data);
    match (&ours, &reference) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "b64 and base64 decode to different bytes"),
        (Ok(_), Err(e)) => panic!("b64 accepts what base64 refuses ({e}): {:?}", String::from_utf8_lossy(data)),
        (Err(_), Ok(_)) => panic!("b64 refuses canonical base64url: {:?}", String::from_utf8_lossy(data)),
        (Err(_), Err(_)) => {}
    }
    if let Ok(bytes) = &ours {
        assert_eq!(b64::encode(bytes).as_bytes(), data, "accepted a non-canonical encoding");
        assert_eq!(b64::decode_array::<32>(data).is_ok(), bytes.len() == 32);
    }
    let encoded = b64::encode(data);
    assert_eq!(encoded, URL_SAFE_NO_PAD.encode(data), "encodings differ");
    assert_eq!(b64::decode(&encoded).expect("own encoding decodes"), data);
});
