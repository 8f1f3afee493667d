#!/usr/bin/env bash
# Builds ios-demo/build/EmrshareFFI.xcframework on macOS (Xcode and rustup needed):
# libemrshare_ffi.a for iOS devices (aarch64-apple-ios), the simulator (aarch64-apple-ios-sim
# and x86_64-apple-ios, merged with lipo) and macOS (for `swift test` on the Mac), plus the
# Swift bindings into Sources/EmrshareSDK. Run from anywhere: ios-demo/scripts/build-xcframework.sh
set -euo pipefail
[ "$(uname -s)" = Darwin ] || { echo "build-xcframework.sh: needs macOS with Xcode" >&2; exit 1; }
HERE=$(cd "$(dirname "$0")/.." && pwd)
ROOT=$(cd "$HERE/.." && pwd)
cd "$ROOT"
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-4}
TARGETS="aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios aarch64-apple-darwin x86_64-apple-darwin"
rustup target add $TARGETS
for t in $TARGETS; do
  cargo build --locked --release -p emrshare-ffi --target "$t"
done

# Bindings: Swift source, C header, module map (library mode, from the macOS build).
GEN=$HERE/build/generated
rm -rf "$GEN" && mkdir -p "$GEN"
cargo build --locked -p uniffi-bindgen
target/debug/uniffi-bindgen generate --language swift --out-dir "$GEN" \
  target/aarch64-apple-darwin/release/libemrshare_ffi.dylib
cp "$GEN/EmrshareFFI.swift" "$HERE/Sources/EmrshareSDK/EmrshareFFI.swift"
HEADERS=$HERE/build/headers
rm -rf "$HEADERS" && mkdir -p "$HEADERS"
cp "$GEN/EmrshareFFIFFI.h" "$HEADERS/"
cp "$GEN/EmrshareFFIFFI.modulemap" "$HEADERS/module.modulemap"

# Fat libraries where one platform has two architectures.
FAT=$HERE/build/fat
rm -rf "$FAT" && mkdir -p "$FAT/ios-sim" "$FAT/macos"
lipo -create target/aarch64-apple-ios-sim/release/libemrshare_ffi.a \
  target/x86_64-apple-ios/release/libemrshare_ffi.a -output "$FAT/ios-sim/libemrshare_ffi.a"
lipo -create target/aarch64-apple-darwin/release/libemrshare_ffi.a \
  target/x86_64-apple-darwin/release/libemrshare_ffi.a -output "$FAT/macos/libemrshare_ffi.a"

rm -rf "$HERE/build/EmrshareFFI.xcframework"
xcodebuild -create-xcframework \
  -library target/aarch64-apple-ios/release/libemrshare_ffi.a -headers "$HEADERS" \
  -library "$FAT/ios-sim/libemrshare_ffi.a" -headers "$HEADERS" \
  -library "$FAT/macos/libemrshare_ffi.a" -headers "$HEADERS" \
  -output "$HERE/build/EmrshareFFI.xcframework"
echo "built $HERE/build/EmrshareFFI.xcframework"
