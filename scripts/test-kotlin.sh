#!/usr/bin/env bash
# Host JVM tests of the generated Kotlin bindings and of android-demo's logic classes, against
# a live local consortium on loopback. Installs what is missing (idempotent): the npm package
# kotlin-compiler (into .tools/), Debian libjna-java and junit5. Builds into $CARGO_TARGET_DIR
# when set (else target/). Ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}
KOTLIN_VERSION=2.4.20
TOOLS=$ROOT/.tools
KH=$TOOLS/node_modules/kotlin-compiler
J=/usr/share/java
TARGET=${CARGO_TARGET_DIR:-target}
case "$TARGET" in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
WORK=$TARGET/kotlin-tests
CONSORTIUM_PID=
step() { echo "--- $*"; }
fail() { echo "kotlin tests: $*" >&2; echo "0 passed, 1 failed"; exit 1; }

cleanup() {
  if [ -n "$CONSORTIUM_PID" ] && kill -0 "$CONSORTIUM_PID" 2>/dev/null; then
    kill "$CONSORTIUM_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$CONSORTIUM_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$CONSORTIUM_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT

# 1. Tools.
missing=()
[ -f $J/jna.jar ] || missing+=(libjna-java)
[ -f $J/junit-platform-console-standalone.jar ] || missing+=(junit5)
if [ ${#missing[@]} -gt 0 ]; then
  step "installing ${missing[*]} (apt)"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
    || fail "cannot install ${missing[*]}"
fi
if [ ! -x "$KH/bin/kotlinc" ]; then
  step "installing kotlin-compiler@$KOTLIN_VERSION (npm, into .tools/)"
  mkdir -p "$TOOLS"
  (cd "$TOOLS" && npm install --silent --no-audit --no-fund "kotlin-compiler@$KOTLIN_VERSION" >/dev/null) \
    || fail "cannot install kotlin-compiler"
fi

# 2. The library, its bindings, and the emrshare command (to run nodes).
step "building the library and generating bindings"
scripts/gen-bindings.sh "$WORK/bindings" >/dev/null || fail "bindings generation failed"
cargo build --locked -q --release -p emrshare-cli || fail "cannot build the emrshare command"

# 3. Compile: generated bindings + the Android demo's logic classes + the tests.
CP=$J/jna.jar:$J/junit-jupiter-api.jar:$J/apiguardian-api.jar:$J/opentest4j.jar:$J/junit-platform-commons.jar
CP=$CP:$KH/lib/kotlin-test.jar:$KH/lib/kotlin-test-junit5.jar:$KH/lib/kotlinx-coroutines-core-jvm.jar
step "compiling Kotlin (kotlinc $KOTLIN_VERSION)"
mkdir -p "$WORK"
rm -f "$WORK/tests.jar"
started=$SECONDS
"$KH/bin/kotlinc" -nowarn -jvm-target 17 -cp "$CP" \
  $(find "$WORK/bindings/kotlin" -name '*.kt') \
  android-demo/app/src/main/java/org/emrshare/demo/logic/*.kt \
  bindings/kotlin/tests/*.kt \
  -d "$WORK/tests.jar" 2>&1 | grep -v '^warning:' || true
[ -f "$WORK/tests.jar" ] || fail "Kotlin compilation failed"
echo "compiled in $((SECONDS - started)) s"

# 4. A live consortium. The builds above leave gigabytes of writes in the page cache; flushed
# now, they do not stall the nodes' fsyncs (one per block) while the tests run.
sync
# A live consortium: 3 nodes in one process on loopback, bounded to 16 minutes (the tests
# take about 4; the bound leaves room for a loaded machine).
step "starting a local consortium (emrshare local-consortium, 3 nodes)"
rm -rf "$WORK/consortium"
"$TARGET/release/emrshare" local-consortium --dir "$WORK/consortium" --nodes 3 --block-ms 200 --seconds 960 \
  > "$WORK/consortium.out" 2> "$WORK/consortium.err" &
CONSORTIUM_PID=$!
for _ in $(seq 300); do
  grep -qx ready "$WORK/consortium.out" 2>/dev/null && break
  kill -0 "$CONSORTIUM_PID" 2>/dev/null || { cat "$WORK/consortium.err" >&2; fail "the consortium did not start"; }
  sleep 0.1
done
grep -qx ready "$WORK/consortium.out" || fail "the consortium was not ready within 30 s"
NODES=$(grep -v '^ready$' "$WORK/consortium.out" | paste -sd, -)
echo "nodes: $NODES (pid $CONSORTIUM_PID)"

# 5. Run.
step "running the JUnit 5 tests"
RUNTIME_CP=$WORK/tests.jar:$J/jna.jar:$KH/lib/kotlin-stdlib.jar:$KH/lib/kotlin-test.jar
RUNTIME_CP=$RUNTIME_CP:$KH/lib/kotlin-test-junit5.jar:$KH/lib/kotlinx-coroutines-core-jvm.jar
rm -rf "$WORK/reports"
timeout 900 java -Djna.library.path="$TARGET/release" \
  -Demrshare.nodes="$NODES" -Demrshare.genesis="$WORK/consortium/genesis.json" \
  -Demrshare.consortium="$WORK/consortium" \
  -jar $J/junit-platform-console-standalone.jar \
  -cp "$RUNTIME_CP" --select-class StoriesTest \
  --reports-dir "$WORK/reports" \
  --disable-banner --details=tree --disable-ansi-colors 2>&1 | tee "$WORK/junit.out"
status=${PIPESTATUS[0]}
[ "$status" -eq 124 ] && echo "kotlin tests: stopped after 900 s"
# The slowest tests and every failure again, last, where a truncated log still shows them.
python3 - "$WORK/reports" <<'PY' || true
import glob, sys, xml.etree.ElementTree as ET
cases = [c for f in glob.glob(sys.argv[1] + "/*.xml") for c in ET.parse(f).iter("testcase")]
for c in sorted(cases, key=lambda c: -float(c.get("time", 0)))[:5]:
    print(f"slow: {float(c.get('time', 0)):6.1f} s  {c.get('name')}")
for c in cases:
    for bad in list(c.findall("failure")) + list(c.findall("error")):
        kind = (bad.get('type') or '').rsplit('.', 1)[-1]
        print(f"FAILED: {c.get('name')}: {kind}: {(bad.get('message') or '').strip()[:300]}")
PY
passed=$(sed -n 's/^\[ *\([0-9]*\) tests successful *\]$/\1/p' "$WORK/junit.out")
failed=$(sed -n 's/^\[ *\([0-9]*\) tests failed *\]$/\1/p' "$WORK/junit.out")
if [ -z "$passed" ] || [ -z "$failed" ]; then
  echo "kotlin tests: no JUnit summary (exit $status)"
  passed=${passed:-0}
  failed=$((${failed:-0} + 1))
fi
echo "$passed passed, $failed failed"
[ "$status" -eq 0 ] && [ "$failed" -eq 0 ]
