#!/usr/bin/env bash
# The whole test suite: what README calls "run the tests" and what CI runs (.ci/run).
# Installs what it needs when missing (idempotent), runs every suite even if one fails,
# and ends with one line "suites: N passed, N failed"; exits non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
# A 2-core machine shared with other builds: one compile job at a time.
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}

passed=0
failed=0
failures=()
# Each suite's output is also kept, so the closing summary can repeat the end of a failed one:
# a CI log that shows only its last lines then still says why.
LOGS=$(mktemp -d)
trap 'rm -rf "$LOGS"' EXIT

suite() {
  local name=$1
  shift
  echo
  echo "=== $name"
  local started=$SECONDS
  local log=$LOGS/$((passed + failed)).log
  "$@" 2>&1 | tee "$log"
  if [ "${PIPESTATUS[0]}" -eq 0 ]; then
    passed=$((passed + 1))
    echo "=== $name: ok ($((SECONDS - started)) s)"
  else
    failed=$((failed + 1))
    failures+=("$name|$log")
    echo "=== $name: FAILED ($((SECONDS - started)) s)"
  fi
}

suite "format (cargo fmt --check)" cargo fmt --all -- --check
suite "lints (cargo clippy -D warnings)" cargo clippy --workspace --all-targets --locked -- -D warnings
# Built first and flushed to disk: the tests that run nodes (each fsyncs every block) then do
# not wait behind gigabytes of fresh build output being written back.
built_then_tested() {
  cargo test --workspace --locked --no-run && sync && cargo test --workspace --locked
}
suite "unit, integration, property and KAT tests (cargo test)" built_then_tested
suite "the node's OpenAPI document as a contract (schemathesis, all checks, live node)" \
  scripts/test-openapi.sh
suite "release build of the emrshare CLI" cargo build --release --locked -p emrshare-cli
suite "interop with Python jwcrypto and sd-jwt" bash core/tests/interop/run.sh target/release/emrshare
if [ -f core/fuzz/Cargo.toml ]; then
  suite "fuzz targets compile (cargo check)" cargo check --manifest-path core/fuzz/Cargo.toml --bins
fi
suite "Kotlin host tests of the bindings and the Android demo's logic, against live nodes" \
  scripts/test-kotlin.sh
suite "generated Swift and Kotlin bindings carry the whole exported API" scripts/check-swift.sh
suite "Android target check (cargo check --target aarch64-linux-android -p emrshare-ffi)" \
  scripts/check-android.sh
suite "the README demo command" cargo run --release --locked -q -p emrshare-cli -- demo

echo
if [ "$failed" -gt 0 ]; then
  for failure in "${failures[@]}"; do
    echo "--- the last 40 lines of: ${failure%%|*}"
    tail -n 40 "${failure#*|}"
  done
  printf 'failed suites:\n'
  for failure in "${failures[@]}"; do echo "  - ${failure%%|*}"; done
fi
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
