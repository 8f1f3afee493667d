//! The `emrshare` command contract, run as a user would: real processes, files, stdin.
//! Every failure must be a non-zero exit with exactly one line on stderr.

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn emrshare(args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_emrshare"));
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.env_remove("EMRSHARE_PASSPHRASE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("emrshare starts");
    let mut input = child.stdin.take().unwrap();
    // The command may refuse its input and exit before reading all of it (a broken pipe):
    // what it says and its exit status are what the tests check.
    if let Err(e) = input.write_all(stdin.unwrap_or_default()) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    drop(input);
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

fn ok(args: &[&str], stdin: Option<&[u8]>) -> String {
    let run = emrshare(args, stdin, &[]);
    assert_eq!(run.code, 0, "emrshare {args:?} failed: {}", run.stderr);
    run.stdout
}

/// A failure: non-zero exit, one stderr line naming the problem, no panic, nothing on stdout.
fn fails(args: &[&str], stdin: Option<&[u8]>, expected: &str) {
    let run = emrshare(args, stdin, &[]);
    assert_ne!(run.code, 0, "emrshare {args:?} should fail");
    assert_eq!(
        run.stderr.lines().count(),
        1,
        "one stderr line expected: {:?}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(
        run.stderr.contains(expected),
        "stderr {:?} lacks {expected:?}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "stdout on failure: {:?}", run.stdout);
}

struct Parties {
    dir: tempfile::TempDir,
}

impl Parties {
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }
}

/// Doctor, patient and insurer key files (private and public), made once.
fn parties() -> &'static Parties {
    static PARTIES: OnceLock<Parties> = OnceLock::new();
    PARTIES.get_or_init(|| {
        let parties = Parties {
            dir: tempfile::tempdir().unwrap(),
        };
        for (name, id) in [
            ("doctor", Some("hospital:st-marys")),
            ("patient", None),
            ("insurer", Some("insurer:acme")),
        ] {
            let key = parties.path(&format!("{name}.key.json"));
            let mut args = vec!["keygen", "--rsa-bits", "2048", "--out", &key];
            if let Some(id) = id {
                args.extend(["--id", id]);
            }
            let public = ok(&args, None);
            std::fs::write(parties.path(&format!("{name}.pub.json")), public).unwrap();
        }
        std::fs::write(parties.path("record.json"), SAMPLE_RECORD).unwrap();
        parties
    })
}

const SAMPLE_RECORD: &str = r#"{"name":"Alice Example","gender":"female","age":42,"id_number":"X1","medical_history":["asthma"],"examination":{"bp":"120/80"},"prescription":["salbutamol"]}"#;

fn p(name: &str) -> String {
    parties().path(name)
}

#[test]
fn keygen_writes_an_owner_only_jwk_set_and_prints_the_public_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("k.json");
    let public: Value = serde_json::from_str(&ok(
        &[
            "keygen",
            "--id",
            "lab:x",
            "--rsa-bits",
            "2048",
            "--out",
            out.to_str().unwrap(),
        ],
        None,
    ))
    .unwrap();
    assert_eq!(public["id"], "lab:x");
    assert!(
        public["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k.get("d").is_none())
    );
    let private: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(private["keys"][0]["kid"], "lab:x#sig");
    assert_eq!(private["keys"][1]["kid"], "lab:x#enc");
    assert!(private["keys"][0].get("d").is_some());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let again: Value =
        serde_json::from_str(&ok(&["pubkey", "--key", out.to_str().unwrap()], None)).unwrap();
    assert_eq!(again, public);
    fails(
        &["keygen", "--id", "lab:x", "--out", out.to_str().unwrap()],
        None,
        "exists",
    );
}

#[test]
fn keygen_refuses_bad_sizes_and_ids() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("k.json");
    fails(
        &[
            "keygen",
            "--rsa-bits",
            "1024",
            "--out",
            out.to_str().unwrap(),
        ],
        None,
        "1024",
    );
    fails(
        &[
            "keygen",
            "--id",
            "has space",
            "--out",
            out.to_str().unwrap(),
        ],
        None,
        "invalid party ID",
    );
    assert!(!out.exists());
}

#[test]
fn patient_id_is_the_thumbprint() {
    let public: Value =
        serde_json::from_slice(&std::fs::read(p("patient.pub.json")).unwrap()).unwrap();
    assert_eq!(public["id"].as_str().unwrap().len(), 43);
}

#[test]
fn seal_and_open_one_and_several_recipients() {
    let compact = ok(
        &["seal", "--to", &p("patient.pub.json")],
        Some(b"blood test"),
    );
    assert_eq!(compact.trim().split('.').count(), 5);
    assert_eq!(
        ok(
            &["open", "--key", &p("patient.key.json")],
            Some(compact.as_bytes())
        ),
        "blood test"
    );
    let json = ok(
        &[
            "seal",
            "--to",
            &p("patient.pub.json"),
            "--to",
            &p("insurer.pub.json"),
        ],
        Some(b"shared"),
    );
    assert!(json.starts_with('{'));
    assert_eq!(
        ok(
            &["open", "--key", &p("insurer.key.json")],
            Some(json.as_bytes())
        ),
        "shared"
    );
    fails(
        &["open", "--key", &p("doctor.key.json")],
        Some(json.as_bytes()),
        "decryption failed",
    );
}

#[test]
fn open_refuses_garbage_and_tampering_with_one_line() {
    fails(
        &["open", "--key", &p("patient.key.json")],
        Some(b"not a jwe"),
        "malformed JWE",
    );
    fails(
        &["open", "--key", &p("patient.key.json")],
        Some(b"{\"protected\":1}"),
        "JWE",
    );
    let mut sealed = ok(&["seal", "--to", &p("patient.pub.json")], Some(b"x")).into_bytes();
    let i = sealed.len() - 10;
    sealed[i] = if sealed[i] == b'A' { b'B' } else { b'A' };
    fails(
        &["open", "--key", &p("patient.key.json")],
        Some(&sealed),
        "decryption failed",
    );
    fails(
        &["open", "--key", "/nonexistent/key.json"],
        Some(b""),
        "cannot open",
    );
    fails(
        &["seal", "--to", &p("patient.key.json")],
        Some(b"x"),
        "private key members",
    );
}

#[test]
fn ces_sign_extract_bind_verify() {
    let signed = ok(
        &[
            "ces",
            "sign",
            "--key",
            &p("doctor.key.json"),
            "--patient",
            &p("patient.pub.json"),
            "--record",
            &p("record.json"),
        ],
        None,
    );
    let verified: Value = serde_json::from_str(&ok(
        &[
            "ces",
            "verify",
            "--issuer",
            &p("doctor.pub.json"),
            "--holder",
            &p("patient.pub.json"),
        ],
        Some(signed.as_bytes()),
    ))
    .unwrap();
    assert_eq!(verified["parts"].as_object().unwrap().len(), 7);
    assert_eq!(verified["iss"], "hospital:st-marys");
    assert_eq!(verified["key_bound"], false);

    let extract_args = [
        "ces",
        "extract",
        "--disclose",
        "prescription",
        "--holder-key",
        &p("patient.key.json"),
        "--aud",
        "insurer:acme",
        "--nonce",
        "n-42",
    ];
    let shown = ok(&extract_args, Some(signed.as_bytes()));
    let verify_args = [
        "ces",
        "verify",
        "--issuer",
        &p("doctor.pub.json"),
        "--aud",
        "insurer:acme",
        "--nonce",
        "n-42",
        "--holder",
        &p("patient.pub.json"),
    ];
    let seen: Value = serde_json::from_str(&ok(&verify_args, Some(shown.as_bytes()))).unwrap();
    let mut names: Vec<&str> = seen["parts"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    names.sort();
    assert_eq!(names, ["age", "gender", "medical_history", "prescription"]);
    assert_eq!(seen["key_bound"], true);

    let wrong_nonce = [
        "ces",
        "verify",
        "--issuer",
        &p("doctor.pub.json"),
        "--aud",
        "insurer:acme",
        "--nonce",
        "n-43",
    ];
    fails(&wrong_nonce, Some(shown.as_bytes()), "nonce");
    // An empty nonce binds a presentation to nothing: refused on both sides.
    let mut empty = extract_args;
    empty[9] = "";
    fails(
        &empty,
        Some(signed.as_bytes()),
        "a nonce has 1 to 512 characters",
    );
    let mut empty = verify_args;
    empty[7] = "";
    fails(
        &empty,
        Some(shown.as_bytes()),
        "a nonce has 1 to 512 characters",
    );
    // `emrshare nonce` makes a fresh 128-bit one each time.
    let (a, b) = (ok(&["nonce"], None), ok(&["nonce"], None));
    assert_eq!(a.trim().len(), 22, "{a}");
    assert_ne!(a, b);
    fails(
        &["ces", "verify", "--issuer", &p("insurer.pub.json")],
        Some(signed.as_bytes()),
        "signature",
    );
    fails(
        &[
            "ces",
            "verify",
            "--issuer",
            &p("doctor.pub.json"),
            "--holder",
            &p("insurer.pub.json"),
        ],
        Some(signed.as_bytes()),
        "another holder",
    );
    fails(
        &["ces", "extract", "--disclose", "diagnosis"],
        Some(signed.as_bytes()),
        "diagnosis",
    );
    fails(
        &["ces", "verify", "--issuer", &p("doctor.pub.json")],
        Some(b"garbage"),
        "SD-JWT",
    );
}

#[test]
fn ces_sign_with_custom_ceas_and_bad_records() {
    let custom = [
        "ces",
        "sign",
        "--key",
        &p("doctor.key.json"),
        "--patient",
        &p("patient.pub.json"),
        "--record",
        &p("record.json"),
        "--ceas",
        "age,prescription",
    ];
    let signed = ok(&custom, None);
    let minimal = ok(&["ces", "extract"], Some(signed.as_bytes()));
    let seen: Value = serde_json::from_str(&ok(
        &["ces", "verify", "--issuer", &p("doctor.pub.json")],
        Some(minimal.as_bytes()),
    ))
    .unwrap();
    let mut names: Vec<&str> = seen["parts"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    names.sort();
    assert_eq!(names, ["age", "prescription"]);
    let bad = parties().path("bad-record.json");
    std::fs::write(&bad, "[1,2]").unwrap();
    fails(
        &[
            "ces",
            "sign",
            "--key",
            &p("doctor.key.json"),
            "--patient",
            &p("patient.pub.json"),
            "--record",
            &bad,
        ],
        None,
        "invalid record",
    );
    let missing_ceas = [
        "ces",
        "sign",
        "--key",
        &p("doctor.key.json"),
        "--patient",
        &p("patient.pub.json"),
        "--record",
        &p("record.json"),
        "--ceas",
        "blood_type",
    ];
    fails(&missing_ceas, None, "blood_type");
}

#[test]
fn wrapped_key_files_need_the_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("w.json");
    let out_s = out.to_str().unwrap();
    let env = [("EMRSHARE_PASSPHRASE", "correct horse")];
    let run = emrshare(
        &["keygen", "--rsa-bits", "2048", "--wrap", "--out", out_s],
        None,
        &env,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let wrapped = std::fs::read_to_string(&out).unwrap();
    assert!(wrapped.contains("protected") && !wrapped.contains("\"d\""));
    assert_eq!(
        emrshare(&["pubkey", "--key", out_s], None, &env).stdout,
        run.stdout
    );
    fails(&["pubkey", "--key", out_s], None, "EMRSHARE_PASSPHRASE");
    let wrong = emrshare(
        &["pubkey", "--key", out_s],
        None,
        &[("EMRSHARE_PASSPHRASE", "wrong")],
    );
    assert_ne!(wrong.code, 0);
    assert!(
        wrong.stderr.contains("wrong passphrase"),
        "{}",
        wrong.stderr
    );
}

#[test]
fn demo_runs_the_three_stories_on_a_local_consortium_and_keeps_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let keep: PathBuf = dir.path().join("kept");
    let out = ok(
        &[
            "demo",
            "--k",
            "4",
            "--nodes",
            "3",
            "--keep",
            keep.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.contains("all checks held"), "{out}");
    for story in ["Story 1", "Story 2", "Story 3", "Governance"] {
        assert!(out.contains(story), "{story} missing: {out}");
    }
    // Governance: a doctor admitted by its hospital, an impostor refused, expulsions.
    for scene in [
        "hospital:st-marys admits doctor:alice",
        "refused: hospital:st-elsewhere registering itself as a hospital",
        "refused: a record doctor:alice signed after her expulsion",
        "refused: the expelled insurer's next transaction",
        "the record shared with the insurer before still verifies",
    ] {
        assert!(out.contains(scene), "{scene} missing: {out}");
    }
    // The lying node is caught, and the lookups succeed anyway.
    assert!(out.contains("(the lying node)"), "{out}");
    assert!(out.contains("(one proven bucket) at 3 nodes"), "{out}");
    for file in ["consortium/genesis.json", "consortium/node-0/config.toml"] {
        assert!(Path::new(&keep).join(file).exists(), "{file}");
    }
    // A second run into the same folder would make new keys over the old data: refused,
    // unless asked for.
    fails(
        &["demo", "--nodes", "3", "--keep", keep.to_str().unwrap()],
        None,
        "pass --force to replace it",
    );
}

/// Output piped to a reader that leaves (`emrshare ... | head`): the command ends quietly,
/// with success, instead of panicking on the broken pipe.
#[test]
fn a_reader_that_leaves_early_is_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_emrshare"))
        .args(["keygen", "--rsa-bits", "4096", "--out"])
        .arg(&key)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes before the command writes (RSA-4096 takes a while).
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A public key file where a private one is needed says so, in plain words.
#[test]
fn a_public_key_given_as_the_private_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.json");
    let public = ok(
        &[
            "keygen",
            "--rsa-bits",
            "2048",
            "--out",
            key.to_str().unwrap(),
        ],
        None,
    );
    let public_file = dir.path().join("k.pub.json");
    std::fs::write(&public_file, public).unwrap();
    fails(
        &["pubkey", "--key", public_file.to_str().unwrap()],
        None,
        "holds public keys only",
    );
}

/// `local-consortium --ready-file` says when every node serves (scripts wait for the file,
/// not a race), and a folder that holds a stopped consortium starts again: same genesis,
/// same ports, its chain kept.
#[test]
fn a_local_consortium_says_when_it_is_ready_and_starts_again_from_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let consortium = dir.path().join("c");
    let ready = dir.path().join("ready.txt");
    let args = [
        "local-consortium",
        "--dir",
        consortium.to_str().unwrap(),
        "--nodes",
        "2",
        "--block-ms",
        "200",
        "--seconds",
        "2",
        "--ready-file",
        ready.to_str().unwrap(),
    ];
    let first = emrshare(&args, None, &[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(first.stdout.contains("ready"), "{}", first.stdout);
    let urls = std::fs::read_to_string(&ready).unwrap();
    assert_eq!(urls.lines().count(), 2, "{urls}");
    let genesis = std::fs::read(consortium.join("genesis.json")).unwrap();
    std::fs::remove_file(&ready).unwrap();

    let again = emrshare(&args, None, &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(std::fs::read_to_string(&ready).unwrap(), urls);
    assert_eq!(
        std::fs::read(consortium.join("genesis.json")).unwrap(),
        genesis
    );
}
