#!/usr/bin/env python3
"""Interop tests: the emrshare CLI against jwcrypto (JWE) and sd-jwt (SD-JWT, RFC 9901).

Usage: interop.py PATH/TO/emrshare

Each case runs in its own temporary directory and prints `ok NAME` or `FAIL NAME: reason`.
The last line is `interop: N passed, N failed`; the exit code is 0 only if none failed.
Key pairs are made once per run with `emrshare keygen` and shared by the cases.
"""

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

from jwcrypto import jwe, jwk
from sd_jwt.common import SDObj
from sd_jwt.holder import SDJWTHolder
from sd_jwt.issuer import SDJWTIssuer
from sd_jwt.verifier import SDJWTVerifier

CLI_TIMEOUT = 120  # seconds for one CLI call (RSA-3072 keygen included)

RECORD = {
    "name": "Zoë Example",
    "gender": "female",
    "age": 42,
    "id_number": "110101198001011234",
    "medical_history": ["asthma", "penicillin allergy"],
    "examination": {"blood_pressure": "120/80", "hba1c": 5.4},
    "prescription": "salbutamol 100ug, 2 puffs as needed",
}
DEFAULT_CEAS = ["gender", "age", "medical_history"]
OPTIONAL_PARTS = [p for p in RECORD if p not in DEFAULT_CEAS]
PLAINTEXT = json.dumps({"record": RECORD, "padding": "x" * 5000}, ensure_ascii=False).encode()

ENC_OK, ALG_OK = "A256CBC-HS512", "RSA-OAEP-256"


# ---------------------------------------------------------------- small utilities

def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64e(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def one_line(text):
    return " | ".join(line for line in str(text).strip().splitlines() if line.strip())


def write_file(directory, name, content):
    path = os.path.join(directory, name)
    mode = "wb" if isinstance(content, bytes) else "w"
    with open(path, mode) as f:
        f.write(content if isinstance(content, (str, bytes)) else json.dumps(content))
    return path


def expect_raises(fn, what):
    """Passes if fn() raises; fails (AssertionError) if it returns."""
    try:
        result = fn()
    except AssertionError:
        raise
    except Exception:  # noqa: BLE001 - any rejection by the third-party library is fine
        return
    raise AssertionError(f"{what} was accepted (returned {str(result)[:120]!r})")


# ---------------------------------------------------------------- the CLI under test

class CliError(AssertionError):
    pass


class Cli:
    def __init__(self, binary):
        self.binary = os.path.abspath(binary)

    def _run(self, args, stdin, cwd):
        return subprocess.run([self.binary, *args], input=stdin, cwd=cwd,
                              capture_output=True, timeout=CLI_TIMEOUT)

    def ok(self, args, stdin=None, cwd=None):
        """Runs a command that must succeed; returns its stdout (bytes)."""
        p = self._run(args, stdin, cwd)
        if p.returncode != 0:
            raise CliError(f"`emrshare {' '.join(args[:2])}` exited {p.returncode}: "
                           f"{one_line(p.stderr.decode(errors='replace'))}")
        return p.stdout

    def rejects(self, args, stdin=None, cwd=None):
        """Runs a command that must fail cleanly: non-zero exit, one stderr line, no stdout."""
        p = self._run(args, stdin, cwd)
        err = p.stderr.decode(errors="replace")
        if p.returncode == 0:
            raise AssertionError(f"`emrshare {' '.join(args[:2])}` accepted it "
                                 f"(stdout {p.stdout[:80]!r})")
        if p.returncode < 0 or "panicked" in err:
            raise AssertionError(f"crashed (exit {p.returncode}): {one_line(err)}")
        if p.stdout:
            raise AssertionError(f"exit {p.returncode} but wrote to stdout: {p.stdout[:80]!r}")
        if len(err.strip().splitlines()) != 1:
            raise AssertionError(f"expected one stderr line, got: {one_line(err) or '(none)'}")
        return err.strip()


# ---------------------------------------------------------------- parties and keys

class Party:
    """A key pair made by `emrshare keygen`: private set in key_path, public set in pub_path."""

    def __init__(self, name, key_path, pub_path):
        self.name, self.key_path, self.pub_path = name, key_path, pub_path
        with open(key_path) as f:
            self.private_set = json.load(f)
        with open(pub_path) as f:
            self.public_set = json.load(f)
        self.id = self.private_set["id"]
        self.jwkset = jwk.JWKSet.from_json(json.dumps(self.private_set))
        self.sig = self.key("sig")
        self.enc = self.key("enc")

    def key(self, use):
        matches = [k for k in self.private_set["keys"] if k.get("use") == use]
        assert len(matches) == 1, f"{self.name}: expected one '{use}' key, got {len(matches)}"
        return jwk.JWK(**matches[0])

    def sig_public(self):
        return jwk.JWK(**self.sig.export_public(as_dict=True))


class Fixtures:
    """Lazily made, shared key pairs (a keygen failure is re-raised by every case using it)."""

    PARTIES = {  # name: keygen arguments
        "doctor": ["--id", "hospital:st-marys"],            # default RSA size (3072)
        "mallory": ["--id", "hospital:mallory", "--rsa-bits", "2048"],
        "patient": ["--rsa-bits", "2048"],                   # no --id: thumbprint ID
        "other_patient": ["--rsa-bits", "2048"],
        "insurer": ["--id", "insurer:acme", "--rsa-bits", "2048"],
    }

    def __init__(self, cli, directory):
        self.cli, self.dir = cli, directory
        self._made = {}
        self._our_schema = None

    def party(self, name):
        if name not in self._made:
            try:
                self._made[name] = self._keygen(name)
            except Exception as e:  # noqa: BLE001 - remembered and re-raised
                self._made[name] = e
        made = self._made[name]
        if isinstance(made, Exception):
            raise AssertionError(f"keygen for {name} failed: {made}")
        return made

    def _keygen(self, name):
        key_path = os.path.join(self.dir, f"{name}.key.json")
        stdout = self.cli.ok(["keygen", *self.PARTIES[name], "--out", key_path])
        pub_path = write_file(self.dir, f"{name}.pub.json", stdout.decode())
        return Party(name, key_path, pub_path)

    def our_schema(self, case_dir):
        """The emr_schema value our own `ces sign` writes, reused for python-issued tokens."""
        if self._our_schema is None:
            try:
                token = our_sign(self, case_dir)
                self._our_schema = jwt_payload(split_sdjwt(token)[0])["emr_schema"]
            except Exception:  # noqa: BLE001 - our signing is tested elsewhere
                self._our_schema = "bpds"
        return self._our_schema


# ---------------------------------------------------------------- JWE helpers

def our_seal(fx, d, plaintext, recipients, via_stdin=False):
    args = ["seal"]
    for r in recipients:
        args += ["--to", r.pub_path]
    if via_stdin:
        return fx.cli.ok(args, stdin=plaintext, cwd=d).decode().strip()
    return fx.cli.ok(args + ["--in", write_file(d, "plain.bin", plaintext)], cwd=d).decode().strip()


def open_args(d, party, token):
    return ["open", "--key", party.key_path, "--in", write_file(d, "token.jwe", token)]


def jc_decrypt(token, key):
    """key: a party's JWKSet from KEY.json (jwcrypto picks the key by kid) or one bare JWK."""
    e = jwe.JWE()
    e.deserialize(token, key)
    return e.plaintext


def jc_encrypt(recipients, alg=ALG_OK, enc=ENC_OK, extra=None, compact=True, plaintext=PLAINTEXT):
    """A jwcrypto JWE to our recipients' public encryption keys."""
    protected = {"enc": enc, **(extra or {})}
    if compact:
        protected.update(alg=alg, kid=recipients[0].enc.kid)
    e = jwe.JWE(plaintext, protected=json.dumps(protected))
    e.allowed_algs = [alg, enc]
    for r in recipients:
        public = jwk.JWK(**r.enc.export_public(as_dict=True))
        header = None if compact else json.dumps({"alg": alg, "kid": r.enc.kid})
        e.add_recipient(public, header=header)
    return e.serialize(compact=compact)


def tamper_jwe(token, field, index=-1):
    """Flips one bit of one byte of a base64url field ("ciphertext", "tag", "iv")."""
    def flip(segment):
        raw = bytearray(b64d(segment))
        raw[index] ^= 0x01
        return b64e(bytes(raw))

    if token.startswith("{"):
        obj = json.loads(token)
        obj[field] = flip(obj[field])
        return json.dumps(obj)
    parts = token.split(".")
    position = {"encrypted_key": 1, "iv": 2, "ciphertext": 3, "tag": 4}[field]
    parts[position] = flip(parts[position])
    return ".".join(parts)


def protected_header(token):
    segment = json.loads(token)["protected"] if token.startswith("{") else token.split(".")[0]
    return json.loads(b64d(segment))


# ---------------------------------------------------------------- SD-JWT helpers

def split_sdjwt(token):
    """-> (issuer JWT, [disclosures], KB-JWT or '')."""
    jwt, *disclosures, kb = token.split("~")
    return jwt, disclosures, kb


def join_sdjwt(jwt, disclosures, kb=""):
    return "~".join([jwt, *disclosures, kb])


def jwt_header(jwt):
    return json.loads(b64d(jwt.split(".")[0]))


def jwt_payload(jwt):
    return json.loads(b64d(jwt.split(".")[1]))


def decode_disclosure(d):
    return json.loads(b64d(d))


def our_sign(fx, d, ceas=None):
    args = ["ces", "sign", "--key", fx.party("doctor").key_path,
            "--patient", fx.party("patient").pub_path,
            "--record", write_file(d, "record.json", RECORD)]
    if ceas is not None:
        args += ["--ceas", ",".join(ceas)]
    return fx.cli.ok(args, cwd=d).decode().strip()


def our_extract(fx, d, token, disclose, holder=None, aud=None, nonce=None):
    args = ["ces", "extract", "--in", write_file(d, "in.sdjwt", token)]
    if disclose:
        args += ["--disclose", ",".join(disclose)]
    if holder:
        args += ["--holder-key", holder.key_path, "--aud", aud, "--nonce", nonce]
    return fx.cli.ok(args, cwd=d).decode().strip()


def verify_args(d, token, issuer, aud=None, nonce=None, holder=None):
    args = ["ces", "verify", "--in", write_file(d, "in.sdjwt", token), "--issuer", issuer.pub_path]
    if aud is not None:
        args += ["--aud", aud, "--nonce", nonce, "--holder", holder.pub_path]
    return args


def our_verify(fx, d, token, issuer, **kb):
    return json.loads(fx.cli.ok(verify_args(d, token, issuer, **kb), cwd=d))


def py_verify(token, issuer_key, aud=None, nonce=None):
    """The sd-jwt library's verifier; it is handed the issuer key through its callback."""
    seen = {}

    def issuer_key_callback(iss, header):
        seen.update(iss=iss, header=header)
        return issuer_key

    v = SDJWTVerifier(token, issuer_key_callback, expected_aud=aud, expected_nonce=nonce)
    payload = v.get_verified_payload()
    return payload, seen


def py_claims(fx, d, record_id, ceas=DEFAULT_CEAS, sd_parts=None):
    """Our payload layout: CEAS parts plain, the others (or sd_parts) selectively disclosable."""
    sd_parts = [p for p in RECORD if p not in ceas] if sd_parts is None else sd_parts
    return {
        "iss": fx.party("doctor").id,
        "sub": fx.party("patient").id,
        "iat": int(time.time()),
        "emr_id": record_id,
        "emr_schema": fx.our_schema(d),
        "emr_ceas": list(ceas),
        "parts": {(SDObj(k) if k in sd_parts else k): v for k, v in RECORD.items()},
    }


def py_issue(fx, d, signer="doctor", typ="emr+sd-jwt", decoys=False, **claims):
    key = fx.party(signer).sig
    return SDJWTIssuer(py_claims(fx, d, **claims), key,
                       holder_key=fx.party("patient").sig_public(),
                       add_decoy_claims=decoys,
                       extra_header_parameters={"typ": typ, "kid": key.kid}).sd_jwt_issuance


def py_present(issuance, disclose, holder=None, aud=None, nonce=None, kb_typ=None):
    h = SDJWTHolder(issuance)
    if kb_typ:
        h.KB_JWT_TYP_HEADER = kb_typ
    h.create_presentation({"parts": {p: True for p in disclose}}, nonce=nonce, aud=aud,
                          holder_key=holder.sig if holder else None)
    return h.sd_jwt_presentation


def assert_parts(parts, names):
    assert set(parts) == set(names), f"parts {sorted(parts)} != expected {sorted(names)}"
    for n in names:
        assert parts[n] == RECORD[n], f"part {n}: {parts[n]!r} != {RECORD[n]!r}"


def assert_our_verify_output(out, fx, record_id, names, key_bound):
    assert out.get("iss") == fx.party("doctor").id, f"iss {out.get('iss')!r}"
    assert out.get("sub") == fx.party("patient").id, f"sub {out.get('sub')!r}"
    assert out.get("record_id") == record_id, f"record_id {out.get('record_id')!r}"
    assert "schema" in out, "no schema"
    assert out.get("key_bound") is key_bound, f"key_bound {out.get('key_bound')!r}"
    assert_parts(out.get("parts", {}), names)


# ---------------------------------------------------------------- cases

CASES = []  # (name, positive?, fn(fx, case_dir))


def positive(fn):
    CASES.append((fn.__name__, True, fn))
    return fn


def negative(fn):
    CASES.append((fn.__name__, False, fn))
    return fn


# --- keys

@positive
def keygen_key_set_format(fx, d):
    doctor = fx.party("doctor")
    assert doctor.id == "hospital:st-marys", f"id {doctor.id!r}"
    expect = {"sig": ("EC", "ES256", "#sig"), "enc": ("RSA", "RSA-OAEP-256", "#enc")}
    for use, (kty, alg, suffix) in expect.items():
        k = doctor.key(use)
        assert (k.kty, k.get("alg"), k.kid) == (kty, alg, doctor.id + suffix), \
            f"{use} key: {(k.kty, k.get('alg'), k.kid)}"
        assert k.has_private, f"{use} key in KEY.json has no private part"
    assert doctor.sig.get("crv") == "P-256"
    assert doctor.enc.get_op_key("encrypt").key_size == 3072, "default RSA size is not 3072"
    assert doctor.public_set["id"] == doctor.id
    for k in doctor.public_set["keys"]:
        leaked = {"d", "p", "q", "dp", "dq", "qi"} & set(k)
        assert not leaked, f"public set printed by keygen has private members {leaked}"


@positive
def keygen_patient_id_is_thumbprint(fx, d):
    patient = fx.party("patient")
    assert patient.id == patient.sig.thumbprint(), \
        f"id {patient.id!r} != RFC 7638 thumbprint {patient.sig.thumbprint()!r}"
    assert patient.sig.kid == patient.id + "#sig"


@positive
def pubkey_matches_keygen(fx, d):
    patient = fx.party("patient")
    out = json.loads(fx.cli.ok(["pubkey", "--key", patient.key_path], cwd=d))
    assert out == patient.public_set, "pubkey output differs from keygen's stdout"


# --- JWE: ours opened by jwcrypto

@positive
def jwcrypto_opens_our_compact_jwe(fx, d):
    patient = fx.party("patient")
    token = our_seal(fx, d, PLAINTEXT, [patient])
    assert token.count(".") == 4, "one recipient must give compact serialization"
    h = protected_header(token)
    assert (h.get("alg"), h.get("enc"), h.get("kid")) == (ALG_OK, ENC_OK, patient.enc.kid), h
    assert jc_decrypt(token, patient.jwkset) == PLAINTEXT


@positive
def jwcrypto_opens_our_json_jwe_each_recipient(fx, d):
    patient, insurer = fx.party("patient"), fx.party("insurer")
    token = our_seal(fx, d, PLAINTEXT, [patient, insurer], via_stdin=True)
    obj = json.loads(token)
    assert protected_header(token).get("enc") == ENC_OK
    headers = [r.get("header", {}) for r in obj["recipients"]]
    assert headers == [{"alg": ALG_OK, "kid": p.enc.kid} for p in (patient, insurer)], headers
    for p in (patient, insurer):
        assert jc_decrypt(token, p.jwkset) == PLAINTEXT, f"{p.name} got other plaintext"


def jc_rejects_tampered(token, key, field, index=-1):
    """jwcrypto opens `token` with the bare `key`, and refuses it once one byte is flipped."""
    assert jc_decrypt(token, key) == PLAINTEXT, "control: untampered token does not decrypt"
    tampered = tamper_jwe(token, field, index)
    expect_raises(lambda: jc_decrypt(tampered, key), f"flipped {field} byte")


@negative
def jwcrypto_rejects_our_compact_jwe_flipped_ciphertext(fx, d):
    patient = fx.party("patient")
    jc_rejects_tampered(our_seal(fx, d, PLAINTEXT, [patient]), patient.enc, "ciphertext", 5)


@negative
def jwcrypto_rejects_our_json_jwe_flipped_tag(fx, d):
    patient, insurer = fx.party("patient"), fx.party("insurer")
    jc_rejects_tampered(our_seal(fx, d, PLAINTEXT, [patient, insurer]), insurer.enc, "tag")


@negative
def jwcrypto_rejects_our_jwe_for_someone_else(fx, d):
    token = our_seal(fx, d, PLAINTEXT, [fx.party("patient")])
    expect_raises(lambda: jc_decrypt(token, fx.party("other_patient").enc), "wrong recipient key")


# --- JWE: jwcrypto's opened by us

@positive
def open_jwcrypto_compact_jwe(fx, d):
    patient = fx.party("patient")
    out = fx.cli.ok(open_args(d, patient, jc_encrypt([patient])), cwd=d)
    assert out == PLAINTEXT, "plaintext differs"


@positive
def open_jwcrypto_json_jwe_stdin(fx, d):
    patient, insurer = fx.party("patient"), fx.party("insurer")
    token = jc_encrypt([insurer, patient], compact=False)
    for p in (patient, insurer):
        out = fx.cli.ok(["open", "--key", p.key_path], stdin=token.encode(), cwd=d)
        assert out == PLAINTEXT, f"{p.name}: plaintext differs"


def open_rejects(fx, d, token):
    fx.cli.rejects(open_args(d, fx.party("patient"), token), cwd=d)


@negative
def open_rejects_enc_a128gcm(fx, d):
    open_rejects(fx, d, jc_encrypt([fx.party("patient")], enc="A128GCM"))


@negative
def open_rejects_enc_a128cbc_hs256(fx, d):
    open_rejects(fx, d, jc_encrypt([fx.party("patient")], enc="A128CBC-HS256"))


@negative
def open_rejects_alg_rsa_oaep_sha1(fx, d):
    open_rejects(fx, d, jc_encrypt([fx.party("patient")], alg="RSA-OAEP"))


@negative
def open_rejects_alg_rsa1_5(fx, d):
    open_rejects(fx, d, jc_encrypt([fx.party("patient")], alg="RSA1_5"))


@negative
def open_rejects_json_recipient_alg_rsa1_5(fx, d):
    open_rejects(fx, d, jc_encrypt([fx.party("patient")], alg="RSA1_5", compact=False))


@negative
def open_rejects_zip_def(fx, d):
    open_rejects(fx, d, jc_encrypt([fx.party("patient")], extra={"zip": "DEF"}))


@negative
def open_rejects_unknown_crit(fx, d):
    open_rejects(fx, d, jc_encrypt([fx.party("patient")], extra={"crit": ["exp"], "exp": 1}))


@negative
def open_rejects_flipped_ciphertext(fx, d):
    token = jc_encrypt([fx.party("patient")])
    open_rejects(fx, d, tamper_jwe(token, "ciphertext", 0))


@negative
def open_rejects_flipped_last_ciphertext_byte(fx, d):
    # the last CBC block holds the padding: a padding oracle would show up here
    token = jc_encrypt([fx.party("patient")])
    open_rejects(fx, d, tamper_jwe(token, "ciphertext", -1))


@negative
def open_rejects_flipped_tag(fx, d):
    open_rejects(fx, d, tamper_jwe(jc_encrypt([fx.party("patient")]), "tag"))


@negative
def open_rejects_json_flipped_iv(fx, d):
    token = jc_encrypt([fx.party("insurer"), fx.party("patient")], compact=False)
    open_rejects(fx, d, tamper_jwe(token, "iv", 0))


@negative
def open_rejects_jwe_for_someone_else(fx, d):
    open_rejects(fx, d, jc_encrypt([fx.party("other_patient")]))


# --- SD-JWT: ours verified by the sd-jwt library

@positive
def sdjwt_lib_verifies_our_full_sdjwt(fx, d):
    doctor, patient = fx.party("doctor"), fx.party("patient")
    token = our_sign(fx, d)
    jwt, disclosures, kb = split_sdjwt(token)
    assert kb == "", "issuance must end with '~' and carry no KB-JWT"
    header, raw = jwt_header(jwt), jwt_payload(jwt)
    assert (header.get("alg"), header.get("typ"), header.get("kid")) == \
        ("ES256", "emr+sd-jwt", doctor.sig.kid), f"header {header}"
    assert raw.get("_sd_alg") == "sha-256"
    assert set(DEFAULT_CEAS) <= set(raw["parts"]), "CEAS parts must be plain"
    assert not set(OPTIONAL_PARTS) & set(raw["parts"]), "non-CEAS parts must not be plain"
    assert len(raw["parts"].get("_sd", [])) >= len(OPTIONAL_PARTS)
    names = sorted(decode_disclosure(x)[1] for x in disclosures)
    assert names == sorted(OPTIONAL_PARTS), f"disclosures for {names}"
    assert all(len(decode_disclosure(x)) == 3 for x in disclosures), "object disclosures"
    payload, seen = py_verify(token, doctor.sig_public())
    assert seen["iss"] == doctor.id and seen["header"].get("kid") == doctor.sig.kid
    assert (payload["iss"], payload["sub"]) == (doctor.id, patient.id)
    assert isinstance(payload.get("iat"), int) and payload.get("emr_id")
    assert sorted(payload["emr_ceas"]) == sorted(DEFAULT_CEAS), f"emr_ceas {payload['emr_ceas']}"
    assert jwk.JWK(**payload["cnf"]["jwk"]).thumbprint() == patient.id, "cnf.jwk is not the patient key"
    assert_parts(payload["parts"], RECORD)


@positive
def sdjwt_lib_verifies_our_custom_ceas(fx, d):
    ceas = ["name", "gender"]
    token = our_sign(fx, d, ceas=ceas)
    raw = jwt_payload(split_sdjwt(token)[0])
    assert sorted(raw["emr_ceas"]) == sorted(ceas), f"emr_ceas {raw['emr_ceas']}"
    assert set(ceas) <= set(raw["parts"]), "CEAS parts must be plain"
    assert "age" not in raw["parts"]
    payload, _ = py_verify(token, fx.party("doctor").sig_public())
    assert_parts(payload["parts"], RECORD)


@positive
def sdjwt_lib_verifies_our_extraction(fx, d):
    token = our_extract(fx, d, our_sign(fx, d), ["examination"])
    _, disclosures, kb = split_sdjwt(token)
    assert kb == "" and len(disclosures) == 1, f"{len(disclosures)} disclosures, kb {kb[:20]!r}"
    payload, _ = py_verify(token, fx.party("doctor").sig_public())
    assert_parts(payload["parts"], DEFAULT_CEAS + ["examination"])


@positive
def sdjwt_lib_verifies_our_extraction_with_kb(fx, d):
    patient = fx.party("patient")
    token = our_extract(fx, d, our_sign(fx, d), ["prescription"],
                        holder=patient, aud="insurer:acme", nonce="n-0S6_WzA2Mj")
    kb = split_sdjwt(token)[2]
    kb_header, kb_payload = jwt_header(kb), jwt_payload(kb)
    assert (kb_header.get("alg"), kb_header.get("typ")) == ("ES256", "kb+jwt"), kb_header
    assert abs(kb_payload.get("iat", 0) - time.time()) < 300, f"KB iat {kb_payload.get('iat')}"
    payload, _ = py_verify(token, fx.party("doctor").sig_public(),
                           aud="insurer:acme", nonce="n-0S6_WzA2Mj")
    assert_parts(payload["parts"], DEFAULT_CEAS + ["prescription"])


def our_kb_presentation(fx, d):
    return our_extract(fx, d, our_sign(fx, d), ["examination", "prescription"],
                       holder=fx.party("patient"), aud="insurer:acme", nonce="nonce-1")


@negative
def sdjwt_lib_rejects_our_tampered_disclosure(fx, d):
    # sd-jwt 0.10.4 silently ignores disclosures whose digest is not in the JWT (it does not
    # raise), so "rejected" here means: the tampered value never reaches the verified payload.
    jwt, disclosures, _ = split_sdjwt(our_sign(fx, d))
    salt, name, _ = decode_disclosure(disclosures[0])
    forged = b64e(json.dumps([salt, name, "FORGED"]).encode())
    token = join_sdjwt(jwt, [forged, *disclosures[1:]])
    try:
        payload, _ = py_verify(token, fx.party("doctor").sig_public())
    except Exception:  # noqa: BLE001
        return
    assert payload["parts"].get(name) != "FORGED", "tampered disclosure accepted"


@negative
def sdjwt_lib_rejects_our_sdjwt_wrong_issuer_key(fx, d):
    token = our_sign(fx, d)
    expect_raises(lambda: py_verify(token, fx.party("mallory").sig_public()), "wrong issuer key")


@negative
def sdjwt_lib_rejects_our_sdjwt_tampered_payload(fx, d):
    jwt, disclosures, kb = split_sdjwt(our_sign(fx, d))
    h, p, s = jwt.split(".")
    payload = jwt_payload(jwt)
    payload["parts"]["age"] = 18
    token = join_sdjwt(".".join([h, b64e(json.dumps(payload).encode()), s]), disclosures, kb)
    expect_raises(lambda: py_verify(token, fx.party("doctor").sig_public()), "tampered JWT")


@negative
def sdjwt_lib_rejects_our_kb_wrong_nonce(fx, d):
    token = our_kb_presentation(fx, d)
    expect_raises(lambda: py_verify(token, fx.party("doctor").sig_public(),
                                    aud="insurer:acme", nonce="nonce-2"), "wrong nonce")


@negative
def sdjwt_lib_rejects_our_kb_wrong_aud(fx, d):
    token = our_kb_presentation(fx, d)
    expect_raises(lambda: py_verify(token, fx.party("doctor").sig_public(),
                                    aud="hospital:mallory", nonce="nonce-1"), "wrong aud")


@negative
def sdjwt_lib_rejects_our_kb_after_disclosure_dropped(fx, d):
    jwt, disclosures, kb = split_sdjwt(our_kb_presentation(fx, d))
    token = join_sdjwt(jwt, disclosures[:1], kb)
    expect_raises(lambda: py_verify(token, fx.party("doctor").sig_public(),
                                    aud="insurer:acme", nonce="nonce-1"), "stale sd_hash")


# --- SD-JWT: the sd-jwt library's verified by us

@positive
def ces_verify_accepts_lib_issued(fx, d):
    issuance = py_issue(fx, d, record_id="emr-py-1")
    out = our_verify(fx, d, issuance, fx.party("doctor"))
    assert_our_verify_output(out, fx, "emr-py-1", RECORD, key_bound=False)


@positive
def ces_verify_accepts_lib_presentation(fx, d):
    token = py_present(py_issue(fx, d, record_id="emr-py-2"), ["name"])
    out = our_verify(fx, d, token, fx.party("doctor"))
    assert_our_verify_output(out, fx, "emr-py-2", DEFAULT_CEAS + ["name"], key_bound=False)


@positive
def ces_verify_accepts_lib_presentation_with_kb(fx, d):
    patient = fx.party("patient")
    token = py_present(py_issue(fx, d, record_id="emr-py-3"), ["examination"],
                       holder=patient, aud="insurer:acme", nonce="py-nonce-1")
    out = our_verify(fx, d, token, fx.party("doctor"),
                     aud="insurer:acme", nonce="py-nonce-1", holder=patient)
    assert_our_verify_output(out, fx, "emr-py-3", DEFAULT_CEAS + ["examination"], key_bound=True)


@positive
def ces_verify_accepts_lib_issued_with_decoys(fx, d):
    # RFC 9901 4.2.5: decoy digests (here also in the top level and nested objects) are ignored
    token = py_present(py_issue(fx, d, decoys=True, record_id="emr-py-4"), ["prescription"])
    out = our_verify(fx, d, token, fx.party("doctor"))
    assert_our_verify_output(out, fx, "emr-py-4", DEFAULT_CEAS + ["prescription"],
                             key_bound=False)


def lib_kb_presentation(fx, d, **kw):
    return py_present(py_issue(fx, d, record_id="emr-py-kb"), ["examination", "name"],
                      aud="insurer:acme", nonce="py-nonce-2", **{"holder": fx.party("patient"), **kw})


def ces_verify_rejects(fx, d, token, issuer="doctor", **kb):
    fx.cli.rejects(verify_args(d, token, fx.party(issuer), **kb), cwd=d)


def kb_args(fx, nonce="py-nonce-2", aud="insurer:acme"):
    return {"aud": aud, "nonce": nonce, "holder": fx.party("patient")}


@negative
def ces_verify_rejects_lib_issued_by_other_key(fx, d):
    ces_verify_rejects(fx, d, py_issue(fx, d, signer="mallory", record_id="emr-py-5"))


@negative
def ces_verify_rejects_unreferenced_disclosure(fx, d):
    # RFC 9901 7.1: a disclosure whose digest is not in the SD-JWT must make it invalid
    jwt, disclosures, kb = split_sdjwt(py_present(py_issue(fx, d, record_id="emr-py-6"), ["name"]))
    extra = b64e(json.dumps([b64e(os.urandom(16)), "diagnosis", "fabricated"]).encode())
    ces_verify_rejects(fx, d, join_sdjwt(jwt, [*disclosures, extra], kb))


@negative
def ces_verify_rejects_tampered_disclosure(fx, d):
    jwt, disclosures, kb = split_sdjwt(py_issue(fx, d, record_id="emr-py-7"))
    salt, name, _ = decode_disclosure(disclosures[0])
    forged = b64e(json.dumps([salt, name, "FORGED"]).encode())
    ces_verify_rejects(fx, d, join_sdjwt(jwt, [forged, *disclosures[1:]], kb))


@negative
def ces_verify_rejects_duplicate_disclosure(fx, d):
    jwt, disclosures, kb = split_sdjwt(py_issue(fx, d, record_id="emr-py-8"))
    ces_verify_rejects(fx, d, join_sdjwt(jwt, [*disclosures, disclosures[0]], kb))


@negative
def ces_verify_rejects_lib_kb_wrong_nonce(fx, d):
    ces_verify_rejects(fx, d, lib_kb_presentation(fx, d), **kb_args(fx, nonce="py-nonce-3"))


@negative
def ces_verify_rejects_lib_kb_wrong_aud(fx, d):
    ces_verify_rejects(fx, d, lib_kb_presentation(fx, d), **kb_args(fx, aud="hospital:mallory"))


@negative
def ces_verify_rejects_lib_kb_signed_by_other_holder(fx, d):
    token = lib_kb_presentation(fx, d, holder=fx.party("other_patient"))
    ces_verify_rejects(fx, d, token, **kb_args(fx))


@negative
def ces_verify_rejects_lib_kb_wrong_typ(fx, d):
    ces_verify_rejects(fx, d, lib_kb_presentation(fx, d, kb_typ="JWT"), **kb_args(fx))


@negative
def ces_verify_rejects_lib_kb_after_disclosure_dropped(fx, d):
    jwt, disclosures, kb = split_sdjwt(lib_kb_presentation(fx, d))
    ces_verify_rejects(fx, d, join_sdjwt(jwt, disclosures[:1], kb), **kb_args(fx))


@negative
def ces_verify_rejects_missing_kb_when_required(fx, d):
    token = py_present(py_issue(fx, d, record_id="emr-py-9"), ["name"])
    ces_verify_rejects(fx, d, token, **kb_args(fx))


@negative
def ces_verify_rejects_lib_issued_wrong_typ(fx, d):
    # the library's default typ; our issuer JWTs are explicitly typed emr+sd-jwt
    ces_verify_rejects(fx, d, py_issue(fx, d, typ="example+sd-jwt", record_id="emr-py-10"))


@negative
def ces_verify_rejects_withheld_ceas_part(fx, d):
    # a part listed in emr_ceas must be present in every extraction
    issuance = py_issue(fx, d, record_id="emr-py-11", sd_parts=["gender", "name"])
    ces_verify_rejects(fx, d, py_present(issuance, ["name"]))


# ---------------------------------------------------------------- runner

def failed_line(e):
    frame = traceback.extract_tb(e.__traceback__)[-1]
    return f"assertion failed at line {frame.lineno}: {frame.line}"


def run_case(fx, name, fn, root):
    d = tempfile.mkdtemp(prefix=name[:40] + ".", dir=root)
    try:
        fn(fx, d)
        return None
    except AssertionError as e:
        return one_line(e) or failed_line(e)
    except subprocess.TimeoutExpired as e:
        return f"timed out after {e.timeout}s: {' '.join(e.cmd[1:3])}"
    except Exception as e:  # noqa: BLE001 - a bug in a case, or a library refusing our output
        return f"{type(e).__name__}: {one_line(e)}"
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main(argv):
    if len(argv) != 2:
        print("usage: interop.py PATH/TO/emrshare", file=sys.stderr)
        return 2
    if not os.access(argv[1], os.X_OK):
        print(f"interop: {argv[1]} is not an executable", file=sys.stderr)
        return 2
    root = tempfile.mkdtemp(prefix="emrshare-interop.")
    try:
        fx = Fixtures(Cli(argv[1]), root)
        passed = failed = 0
        for name, _, fn in CASES:
            reason = run_case(fx, name, fn, root)
            if reason is None:
                passed += 1
                print(f"ok {name}", flush=True)
            else:
                failed += 1
                print(f"FAIL {name}: {reason}", flush=True)
        print(f"interop: {passed} passed, {failed} failed")
        return 0 if failed == 0 else 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
