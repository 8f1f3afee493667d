#!/usr/bin/env bash
# Generates the Kotlin and Swift bindings of emrshare-ffi (uniffi library mode) into
# OUT/kotlin and OUT/swift (default OUT: target/bindings). Builds what it needs: the pinned
# uniffi-bindgen (debug: same output, faster to build) and the library (release), into
# $CARGO_TARGET_DIR when set (else target/).
#   scripts/gen-bindings.sh [OUT]
# Library mode reads the exported API from the built library itself, and bindings/uniffi.toml
# for the package and module names (Kotlin checksums omitted: uniffi-rs #2740).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-target}
OUT=${1:-$TARGET/bindings}
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}

cargo build --locked -q -p uniffi-bindgen
cargo build --locked -q --release -p emrshare-ffi
case "$(uname -s)" in
  Darwin) LIB=$TARGET/release/libemrshare_ffi.dylib ;;
  *) LIB=$TARGET/release/libemrshare_ffi.so ;;
esac
rm -rf "$OUT/kotlin" "$OUT/swift"
for language in kotlin swift; do
  "$TARGET/debug/uniffi-bindgen" generate --no-format --language "$language" \
    --out-dir "$OUT/$language" "$LIB"
done
echo "bindings generated from $LIB:"
find "$OUT/kotlin" "$OUT/swift" -type f | sort
