#!/usr/bin/env bash
# No Swift compiler exists here: generate the Swift bindings and check that every exported
# type and function of emrshare-ffi is in them (async ones as `async`), and the same of the
# Kotlin bindings (async ones as `suspend`). Swift is compiled and tested on macOS
# (ios-demo/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${CARGO_TARGET_DIR:-target}/bindings-check
scripts/gen-bindings.sh "$OUT" >/dev/null
python3 scripts/check-bindings-api.py bindings/src \
  --swift "$OUT/swift/EmrshareFFI.swift" \
  --kotlin "$(find "$OUT/kotlin" -name '*.kt' | head -1)"
