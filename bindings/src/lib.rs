//! emrshare-ffi
