//! `uniffi-bindgen`, built from the same uniffi version as `emrshare-ffi` (workspace pin), so
//! generated Kotlin and Swift always match the library's scaffolding. Library mode:
//! `uniffi-bindgen generate --library target/release/libemrshare_ffi.so --language kotlin ...`.

fn main() {
    uniffi::uniffi_bindgen_main()
}
