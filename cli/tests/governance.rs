//! Governance on the command line, as real processes against `emrshare local-consortium` (3
//! nodes on loopback, every node a council member, threshold 3): `admit prepare | approve |
//! submit`, `voucher issue | redeem`, `rotate-keys`, `expel propose | submit | doctor`, each
//! with the refusals the chain must make (t-1 approvals, a non-member's approval, a reused
//! voucher, a rotation signed by a key that is not the registered one, a hospital expelling
//! another hospital's doctor).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

mod common;
use common::{Consortium, Run, emrshare, ok};

fn fails(args: &[&str], expected: &str) {
    let run = emrshare(args);
    assert_ne!(run.code, 0, "emrshare {args:?} should fail");
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert_eq!(
        run.stderr.trim().lines().count(),
        1,
        "one line: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains(expected),
        "{args:?}: expected {expected:?} in {:?}",
        run.stderr
    );
}

/// `args` and `--consortium DIR`.
fn on(c: &Consortium, args: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    all.extend(["--consortium".into(), c.path("c")]);
    all
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn keygen(c: &Consortium, name: &str, id: Option<&str>) -> String {
    let key = c.path(&format!("{name}.key.json"));
    let mut args = vec!["keygen", "--rsa-bits", "2048", "--out", &key];
    if let Some(id) = id {
        args.extend(["--id", id]);
    }
    ok(&args);
    key
}

/// Every member's approval of `proposal`, as files; returns their paths.
fn approvals(c: &Consortium, proposal: &str, name: &str) -> Vec<String> {
    c.member_keys()
        .iter()
        .enumerate()
        .map(|(i, member)| {
            let out = c.path(&format!("{name}.approval-{i}.json"));
            let said = ok(&[
                "admit",
                "approve",
                "--proposal",
                proposal,
                "--member-key",
                member,
                "--out",
                &out,
            ]);
            assert!(said.contains(&format!("node:{i} approves")), "{said}");
            out
        })
        .collect()
}

fn with_approvals(mut args: Vec<String>, approvals: &[String]) -> Vec<String> {
    for a in approvals {
        args.extend(["--approval".into(), a.clone()]);
    }
    args
}

/// The council admits `key`'s institution as `role`; returns the proposal file.
fn admit(c: &Consortium, key: &str, role: &str, name: &str) -> String {
    let proposal = c.path(&format!("{name}.proposal.json"));
    let said = ok(&strs(&on(
        c,
        &[
            "admit", "prepare", "--key", key, "--role", role, "--out", &proposal,
        ],
    )));
    assert!(said.starts_with("admit "), "{said}");
    let all = approvals(c, &proposal, name);
    let submit = on(
        c,
        &["admit", "submit", "--key", key, "--proposal", &proposal],
    );
    let said = ok(&strs(&with_approvals(submit, &all)));
    assert!(said.contains("registered as"), "{said}");
    proposal
}

/// `voucher redeem` for `patient` with the hospital `hospital` (key file `hospital_key`):
/// the patient's process prints the blinded request, `voucher issue` signs it, the patient
/// reads the signature and registers. Returns its output.
fn redeem(c: &Consortium, patient: &str, hospital: &str, hospital_key: &str, out: &str) -> Run {
    let args = on(
        c,
        &[
            "voucher",
            "redeem",
            "--key",
            patient,
            "--hospital",
            hospital,
            "--voucher-out",
            out,
        ],
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_emrshare"))
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut blinded = String::new();
    stdout.read_line(&mut blinded).unwrap();
    let signature = ok(&[
        "voucher",
        "issue",
        "--hospital-key",
        hospital_key,
        "--request",
        blinded.trim(),
    ]);
    child
        .stdin
        .take()
        .unwrap()
        .write_all(signature.as_bytes())
        .unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: rest,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn admissions_vouchers_rotation_and_expulsion_on_a_running_consortium() {
    let c = Consortium::start(false);

    // --- admission: t approvals of one proposal, and nothing less.
    let hospital = keygen(&c, "hospital", Some("hospital:st-marys"));
    let proposal = c.path("hospital.proposal.json");
    let said = ok(&strs(&on(
        &c,
        &[
            "admit", "prepare", "--key", &hospital, "--role", "hospital", "--out", &proposal,
        ],
    )));
    assert!(
        said.contains("admit hospital:st-marys as Hospital") && said.contains("voucher key"),
        "{said}"
    );
    assert!(std::path::Path::new(&c.path("hospital.key.json.voucher.pk8")).exists());
    let all = approvals(&c, &proposal, "hospital");
    let submit = on(
        &c,
        &[
            "admit",
            "submit",
            "--key",
            &hospital,
            "--proposal",
            &proposal,
        ],
    );
    // t - 1 approvals: refused by the chain.
    fails(
        &strs(&with_approvals(submit.clone(), &all[..2])),
        "fewer approvals than the council's threshold",
    );
    // A non-member's approval in place of a member's: refused.
    let stranger = keygen(&c, "stranger", Some("node:9"));
    let forged = c.path("forged.approval.json");
    ok(&[
        "admit",
        "approve",
        "--proposal",
        &proposal,
        "--member-key",
        &stranger,
        "--out",
        &forged,
    ]);
    fails(
        &strs(&with_approvals(
            submit.clone(),
            &[all[0].clone(), all[1].clone(), forged],
        )),
        "an approval by a non-member",
    );
    fails(
        &strs(&on(
            &c,
            &[
                "admit", "prepare", "--key", &hospital, "--role", "doctor", "--out", &proposal,
            ],
        )),
        "the council admits a hospital, insurer or researcher",
    );
    let said = ok(&strs(&with_approvals(submit.clone(), &all)));
    assert!(
        said.contains("hospital:st-marys registered as Hospital"),
        "{said}"
    );
    // The same proposal again: the party is registered already.
    fails(&strs(&with_approvals(submit, &all)), "registered already");
    // Registering an institution by itself is refused (no council approvals).
    let impostor = keygen(&c, "impostor", Some("insurer:impostor"));
    let run = emrshare(&[
        "register",
        "--key",
        &impostor,
        "--role",
        "insurer",
        "--node",
        "http://127.0.0.1:9",
        "--genesis",
        &c.path("c/genesis.json"),
    ]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("admitted by the council"),
        "{}",
        run.stderr
    );

    // --- vouchers: the hospital signs blind; one voucher registers one patient.
    let patient = keygen(&c, "patient", None);
    let voucher = c.path("patient.voucher.json");
    let run = redeem(&c, &patient, "hospital:st-marys", &hospital, &voucher);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("registered as Patient"),
        "{}",
        run.stdout
    );
    // Reused: by the same patient (registered already) or another one (bound to the first).
    fails(
        &strs(&on(
            &c,
            &[
                "voucher",
                "redeem",
                "--key",
                &patient,
                "--voucher",
                &voucher,
            ],
        )),
        "registered already",
    );
    let other = keygen(&c, "other", None);
    fails(
        &strs(&on(
            &c,
            &["voucher", "redeem", "--key", &other, "--voucher", &voucher],
        )),
        "registration voucher refused",
    );
    fails(
        &[
            "voucher",
            "issue",
            "--hospital-key",
            &patient,
            "--request",
            "AAAA",
        ],
        "no voucher key beside",
    );
    fails(
        &[
            "voucher",
            "issue",
            "--hospital-key",
            &hospital,
            "--request",
            "!",
        ],
        "not base64url",
    );

    // --- rotation: signed by the registered key, or refused.
    let wrong = keygen(&c, "wrong", Some("hospital:st-marys"));
    let wrong_out = c.path("wrong.next.json");
    fails(
        &strs(&on(
            &c,
            &[
                "rotate-keys",
                "--key",
                &wrong,
                "--out",
                &wrong_out,
                "--rsa-bits",
                "2048",
            ],
        )),
        "refused",
    );
    assert!(
        !std::path::Path::new(&wrong_out).exists(),
        "a refused rotation leaves no new key file"
    );
    let rotated = c.path("hospital.next.json");
    let said = ok(&strs(&on(
        &c,
        &[
            "rotate-keys",
            "--key",
            &hospital,
            "--out",
            &rotated,
            "--rsa-bits",
            "2048",
        ],
    )));
    assert!(
        said.contains("hospital:st-marys rotated its keys"),
        "{said}"
    );
    // The old key no longer signs for the hospital.
    fails(
        &strs(&on(
            &c,
            &[
                "rotate-keys",
                "--key",
                &hospital,
                "--out",
                &wrong_out,
                "--rsa-bits",
                "2048",
            ],
        )),
        "refused",
    );
    // The new key does: it admits a doctor; its voucher key went beside the new file.
    assert!(std::path::Path::new(&c.path("hospital.next.json.voucher.pk8")).exists());
    let doctor = keygen(&c, "doctor", Some("doctor:alice"));
    let said = ok(&strs(&on(
        &c,
        &[
            "register",
            "--key",
            &doctor,
            "--role",
            "doctor",
            "--hospital-key",
            &rotated,
        ],
    )));
    assert!(said.contains("doctor:alice registered as Doctor"), "{said}");

    // --- expulsion: a hospital expels its own doctor only; the council an institution.
    let other_hospital = keygen(&c, "other-hospital", Some("hospital:other"));
    admit(&c, &other_hospital, "hospital", "other-hospital");
    fails(
        &strs(&on(
            &c,
            &[
                "expel",
                "doctor",
                "--key",
                &other_hospital,
                "--id",
                "doctor:alice",
            ],
        )),
        "a hospital governs only its own doctors",
    );
    let said = ok(&strs(&on(
        &c,
        &["expel", "doctor", "--key", &rotated, "--id", "doctor:alice"],
    )));
    assert!(said.contains("doctor:alice Expelled at height"), "{said}");

    let insurer = keygen(&c, "insurer", Some("insurer:acme"));
    admit(&c, &insurer, "insurer", "insurer");
    let expulsion = c.path("expel.proposal.json");
    let said = ok(&strs(&on(
        &c,
        &[
            "expel",
            "propose",
            "--id",
            "insurer:acme",
            "--out",
            &expulsion,
        ],
    )));
    assert!(said.contains("set insurer:acme Expelled"), "{said}");
    let all = approvals(&c, &expulsion, "expel");
    let member = &c.member_keys()[0];
    let submit = on(
        &c,
        &[
            "expel",
            "submit",
            "--member-key",
            member,
            "--proposal",
            &expulsion,
        ],
    );
    fails(
        &strs(&with_approvals(submit.clone(), &all[..2])),
        "fewer approvals than the council's threshold",
    );
    let said = ok(&strs(&with_approvals(submit, &all)));
    assert!(said.contains("insurer:acme Expelled at height"), "{said}");
    // Expelled: the insurer's own transactions are refused from then on.
    let next = c.path("insurer.next.json");
    fails(
        &strs(&on(
            &c,
            &[
                "rotate-keys",
                "--key",
                &insurer,
                "--out",
                &next,
                "--rsa-bits",
                "2048",
            ],
        )),
        "revoked or outside its validity",
    );
}

#[test]
fn governance_commands_document_their_options_and_refuse_bad_input_in_one_line() {
    for (args, words) in [
        (
            vec!["admit", "--help"],
            vec!["prepare", "approve", "submit"],
        ),
        (
            vec!["admit", "prepare", "--help"],
            vec!["--key", "--role", "--days", "--expires-days", "--out"],
        ),
        (
            vec!["admit", "approve", "--help"],
            vec!["--proposal", "--member-key", "--out"],
        ),
        (vec!["expel", "--help"], vec!["propose", "submit", "doctor"]),
        (
            vec!["rotate-keys", "--help"],
            vec!["--key", "--out", "--rsa-bits", "--wrap"],
        ),
        (
            vec!["voucher", "redeem", "--help"],
            vec!["--hospital", "--voucher", "--voucher-out", "--days"],
        ),
        (
            vec!["voucher", "issue", "--help"],
            vec!["--hospital-key", "--request"],
        ),
    ] {
        let help = ok(&args);
        for word in words {
            assert!(help.contains(word), "{args:?} --help lacks {word}: {help}");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    let missing = missing.to_str().unwrap();
    fails(
        &[
            "admit",
            "approve",
            "--proposal",
            missing,
            "--member-key",
            missing,
            "--out",
            missing,
        ],
        "cannot open",
    );
    let not_json = dir.path().join("p.json");
    std::fs::write(&not_json, "{\"chain_id\": 1}").unwrap();
    fails(
        &[
            "admit",
            "approve",
            "--proposal",
            not_json.to_str().unwrap(),
            "--member-key",
            missing,
            "--out",
            missing,
        ],
        "is not a governance proposal",
    );
    fails(&["voucher", "redeem", "--key", missing], "--hospital");
}
