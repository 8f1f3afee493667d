#!/usr/bin/env bash
# Interop suite: the emrshare CLI against Python jwcrypto and sd-jwt.
# Usage: core/tests/interop/run.sh [PATH/TO/emrshare]   (default target/release/emrshare)
# Makes or reuses the venv .venv at the repository root; installs requirements.txt into it
# only when the pinned packages are not importable at the pinned versions.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"

bin="${1:-target/release/emrshare}"
# a path that exists from the caller's directory wins; otherwise it is taken from the repo root
if [[ -e "$bin" ]]; then bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"; fi
cd "$root"

venv="$root/.venv"
py="$venv/bin/python"
[[ -x "$py" ]] || python3 -m venv "$venv"

deps_ok() {
    "$py" - "$here/requirements.txt" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
import jwcrypto, sd_jwt  # noqa: F401
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if line:
        name, pinned = line.split("==")
        if version(name) != pinned:
            sys.exit(1)
EOF
}
deps_ok || "$py" -m pip install -q --disable-pip-version-check -r "$here/requirements.txt"

exec "$py" "$here/interop.py" "$bin"
