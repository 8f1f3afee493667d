#!/usr/bin/env bash
# Runs the README's demo N times in a row (default 50) and stops at the first failure: the
# evidence that the demo is not flaky. Not part of CI (about 10 s a run in release).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-50}
cargo build --release --locked -q -p emrshare-cli
passed=0
for i in $(seq "$runs"); do
  if out=$(target/release/emrshare demo 2>&1); then
    passed=$((passed + 1))
  else
    echo "run $i failed:"
    echo "$out" | tail -20
    echo "$passed passed, 1 failed"
    exit 1
  fi
done
echo "$passed passed, 0 failed"
