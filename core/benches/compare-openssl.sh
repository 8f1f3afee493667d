#!/usr/bin/env bash
# Runs the criterion benchmarks of emrshare-core and `openssl speed` for the same primitives
# in one command, and prints our speed as a ratio of openssl's (>1 means faster than openssl).
# Usage: core/benches/compare-openssl.sh [--quick]   (--quick: 1 s openssl runs)
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=3
[ "${1:-}" = "--quick" ] && seconds=1

command -v openssl >/dev/null || { echo "openssl not found (apt-get install openssl)"; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

speed() { openssl speed -seconds "$seconds" "$@" 2>/dev/null; }
echo "openssl $(openssl version | cut -d' ' -f2): measuring (${seconds} s per primitive)..." >&2
speed -bytes 1048576 -evp aes-256-cbc >"$out/aes-enc"
speed -bytes 1048576 -decrypt -evp aes-256-cbc >"$out/aes-dec"
speed -bytes 1048576 -hmac sha512 >"$out/hmac"
speed -bytes 1048576 -evp sha512 >"$out/sha512"
speed rsa3072 >"$out/rsa"
speed ecdsap256 >"$out/ecdsa"

echo "criterion: cargo bench -p emrshare-core --bench core ..." >&2
cargo bench -q -p emrshare-core --bench core -- --noplot >"$out/criterion.log" 2>&1 || {
  cat "$out/criterion.log"; exit 1; }

python3 - "$out" target/criterion <<'PY'
import json, re, sys
from pathlib import Path
tmp, crit = Path(sys.argv[1]), Path(sys.argv[2])

def kbytes_per_s(name):            # openssl prints 1000s of bytes per second, e.g. 658505.73k
    return float(re.findall(r"([\d.]+)k\s*$", (tmp / name).read_text().strip().splitlines()[-1])[0]) * 1e3

def ops_per_s(name, pattern):      # last two numbers on the matching line: sign/s verify/s
    line = next(l for l in (tmp / name).read_text().splitlines() if re.search(pattern, l))
    sign, verify = map(float, line.split()[-2:])
    return sign, verify

def median_ns(path):
    return json.loads((crit / path / "new" / "estimates.json").read_text())["median"]["point_estimate"]

aes_enc, aes_dec, hmac = kbytes_per_s("aes-enc"), kbytes_per_s("aes-dec"), kbytes_per_s("hmac")
combined = lambda a, b: 1 / (1 / a + 1 / b)        # two passes over the data, one after the other
rsa_private, rsa_public = ops_per_s("rsa", r"^rsa\s+3072")
ec_sign, ec_verify = ops_per_s("ecdsa", r"nistp256")

rows = []
def add(what, ours_ns, baseline_name, baseline_ns, target):
    ratio = baseline_ns / ours_ns
    rows.append((what, ours_ns, baseline_name, baseline_ns, ratio, target))

MiB = 1 << 20
add("seal 1 MiB (whole JWE: RSA wrap, encrypt, MAC, base64)", median_ns("envelope/seal/1MiB"), "AES-256-CBC enc + HMAC-SHA512", MiB / combined(aes_enc, hmac) * 1e9, ">= 0.9")
add("open 1 MiB (content: parse, MAC, decrypt)", median_ns("envelope/open_content/1MiB"), "HMAC-SHA512 + AES-256-CBC dec", MiB / combined(aes_dec, hmac) * 1e9, ">= 0.9")
add("open 1 MiB (whole JWE, with RSA-3072 unwrap)", median_ns("envelope/open/1MiB"), "HMAC-SHA512 + AES-256-CBC dec + RSA private op", MiB / combined(aes_dec, hmac) * 1e9 + 1e9 / rsa_private, "-")
add("RSA-3072 OAEP unwrap", median_ns("primitive/rsa3072_oaep_unwrap"), "RSA-3072 private op", 1e9 / rsa_private, ">= 0.91")
add("RSA-3072 OAEP wrap", median_ns("primitive/rsa3072_oaep_wrap"), "RSA-3072 public op", 1e9 / rsa_public, "-")
add("ES256 sign", median_ns("primitive/es256_sign"), "ECDSA P-256 sign", 1e9 / ec_sign, ">= 0.91")
add("ES256 verify", median_ns("primitive/es256_verify"), "ECDSA P-256 verify", 1e9 / ec_verify, ">= 0.91")

def fmt(ns):
    return f"{ns / 1e6:.2f} ms" if ns >= 1e6 else f"{ns / 1e3:.1f} µs"

print("| operation | emrshare (median) | openssl baseline | openssl | ratio (openssl time / ours) | target |")
print("|---|---|---|---|---|---|")
for what, ours, name, base, ratio, target in rows:
    print(f"| {what} | {fmt(ours)} | {name} | {fmt(base)} | {ratio:.2f} | {target} |")
print()
print(f"openssl on this run: AES-256-CBC enc {aes_enc/1e6:.0f} MB/s, dec {aes_dec/1e6:.0f} MB/s, "
      f"HMAC-SHA512 {hmac/1e6:.0f} MB/s, SHA-512 {kbytes_per_s('sha512')/1e6:.0f} MB/s")
print()
print("| emrshare only | median |")
print("|---|---|")
for path, label in [("envelope/seal/1KiB", "seal 1 KiB"), ("envelope/open/1KiB", "open 1 KiB"),
                    ("envelope/seal/64KiB", "seal 64 KiB"), ("envelope/open/64KiB", "open 64 KiB"),
                    ("envelope/seal/16MiB", "seal 16 MiB"), ("envelope/open/16MiB", "open 16 MiB"),
                    ("envelope/open_content/16MiB", "open 16 MiB, content key already unwrapped"),
                    ("ces/sign_bpds7", "CES sign, 7-part BPDS record"),
                    ("ces/extract_and_bind", "CES extract 2 parts + KB-JWT"),
                    ("ces/verify_presentation", "CES verify presentation with KB-JWT")]:
    print(f"| {label} | {fmt(median_ns(path))} |")
PY
