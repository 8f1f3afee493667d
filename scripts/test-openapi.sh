#!/usr/bin/env bash
# The OpenAPI document as a contract: schemathesis, with all its checks, against a running
# node (a 2-node consortium on free 127.0.0.1 ports, in a temporary folder, stopped on exit).
# Installs schemathesis into .venv when missing. Ends with "N passed, N failed" (operations).
# MAX_EXAMPLES (default 100) bounds the examples per operation and phase; SEED fixes them.
set -euo pipefail
cd "$(dirname "$0")/.."
SCHEMATHESIS_VERSION=4.32.5
VENV=${VENV:-.venv}
MAX_EXAMPLES=${MAX_EXAMPLES:-100}
SEED=${SEED:-1}
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}

if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q " $SCHEMATHESIS_VERSION\$"; then
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
fi

cargo build -q --locked -p emrshare-node
bin=${CARGO_TARGET_DIR:-target}/debug/emrshare-node

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

# Two consecutive free ports (a race with another program shows as a start error).
base_port=$("$VENV/bin/python" - <<'PY'
import os, random, socket
random.seed(os.getpid())
for _ in range(200):
    base = random.randrange(30000, 60000)
    try:
        socks = []
        for p in (base, base + 1):
            s = socket.socket()
            s.bind(("127.0.0.1", p))
            socks.append(s)
        print(base)
        break
    except OSError:
        pass
    finally:
        for s in socks:
            s.close()
PY
)

"$bin" init --dir "$work/c" --nodes 2 --proposers 1 --auditors 1 --base-port "$base_port" \
  --block-ms 300 --chain-id openapi-chain >/dev/null
for i in 0 1; do
  # Bounded lifetime, whatever happens to this script.
  timeout 900 "$bin" run --config "$work/c/node-$i/config.toml" 2>"$work/node-$i.log" &
  pids+=($!)
done
url="http://127.0.0.1:$base_port"

# Up, with a first block (so that the proof routes answer 200, not "no block yet").
"$VENV/bin/python" - "$url" <<'PY'
import json, sys, time, urllib.request
url = sys.argv[1]
for _ in range(300):
    try:
        with urllib.request.urlopen(url + "/v1/health", timeout=2) as r:
            if json.load(r)["height"] >= 1:
                sys.exit(0)
    except Exception:
        pass
    time.sleep(0.1)
sys.exit("the node did not come up with a block within 30 s")
PY

started=$SECONDS
status=0
"$VENV/bin/schemathesis" --config-file scripts/schemathesis.toml run "$url/v1/openapi.json" \
  --checks all --max-examples "$MAX_EXAMPLES" --seed "$SEED" --workers 2 \
  --request-timeout 10 --report junit --report-junit-path "$work/junit.xml" \
  --no-color >"$work/schemathesis.out" 2>&1 || status=$?
echo "schemathesis: $((SECONDS - started)) s, max $MAX_EXAMPLES examples per operation and phase"
grep -E -A1 "^(Test cases|API Operations):" "$work/schemathesis.out" | grep -v "^--" | paste -sd " " | tr -s " " || true
if [ "$status" -ne 0 ]; then
  cat "$work/schemathesis.out"
fi

# Per operation, from the JUnit report.
"$VENV/bin/python" - "$work/junit.xml" "$status" <<'PY'
import sys, xml.etree.ElementTree as ET
cases = ET.parse(sys.argv[1]).getroot().iter("testcase")
passed = failed = 0
for case in cases:
    bad = case.find("failure") is not None or case.find("error") is not None
    failed += bad
    passed += not bad
if int(sys.argv[2]) != 0 and failed == 0:
    failed = 1  # schemathesis failed outside any operation
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
