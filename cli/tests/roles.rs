//! Each role's CLI steps against a running consortium, as real processes: `emrshare
//! local-consortium --tls` serves 3 nodes over HTTPS on loopback (a CA generated for the
//! test; clients trust only it, as a phone would its consortium's), and parties join (the
//! council, whose node keys the consortium's folder holds, admits the institutions; the
//! patient registers with the hospital's voucher); a
//! doctor's record is stored and indexed, granted, fetched under the grant, revoked, refused,
//! and audited.

use std::path::Path;

mod common;
use common::{Consortium, emrshare, ok};

fn fails(args: &[&str], expected: &str) {
    let run = emrshare(args);
    assert_ne!(run.code, 0, "emrshare {args:?} should fail");
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(
        run.stderr.contains(expected),
        "{args:?}: expected {expected:?} in {:?}",
        run.stderr
    );
}

fn keygen(c: &Consortium, name: &str, id: Option<&str>) -> String {
    let key = c.path(&format!("{name}.key.json"));
    let mut args = vec!["keygen", "--rsa-bits", "2048", "--out", &key];
    if let Some(id) = id {
        args.extend(["--id", id]);
    }
    let public = ok(&args);
    std::fs::write(c.path(&format!("{name}.pub.json")), public).unwrap();
    key
}

#[test]
fn roles_store_grant_fetch_revoke_and_audit_on_a_running_consortium() {
    let c = Consortium::start(true);
    let consortium = c.consortium();
    let with = |args: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend(["--consortium".into(), consortium.clone()]);
        all
    };
    let run_ok = |args: &[&str]| {
        let args = with(args);
        ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let run_fails = |args: &[&str], expected: &str| {
        let args = with(args);
        fails(
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            expected,
        )
    };

    let doctor = keygen(&c, "doctor", Some("hospital:st-marys"));
    let patient = keygen(&c, "patient", None);
    let insurer = keygen(&c, "insurer", Some("insurer:acme"));
    let decoys: Vec<String> = (0..3)
        .map(|i| {
            keygen(
                &c,
                &format!("decoy{i}"),
                Some(&format!("insurer:decoy-{i}")),
            )
        })
        .collect();
    run_ok(&["register", "--key", &doctor, "--role", "hospital"]);
    // The patient registers with a voucher of the hospital, which signs it blind.
    run_fails(
        &["register", "--key", &patient, "--role", "patient"],
        "registers with a voucher",
    );
    run_ok(&[
        "register",
        "--key",
        &patient,
        "--role",
        "patient",
        "--hospital-key",
        &doctor,
    ]);
    let registered = run_ok(&["register", "--key", &insurer, "--role", "insurer"]);
    assert!(
        registered.contains("insurer:acme registered"),
        "{registered}"
    );
    for decoy in &decoys {
        run_ok(&["register", "--key", decoy, "--role", "insurer"]);
    }
    run_fails(
        &["register", "--key", &insurer, "--role", "insurer"],
        "registered already",
    );
    run_fails(
        &["register", "--key", &doctor, "--role", "wizard"],
        "unknown role",
    );

    let entry = run_ok(&[
        "lookup",
        "--id",
        "insurer:acme",
        "--role",
        "insurer",
        "--k",
        "3",
        "--key",
        &patient,
    ]);
    assert!(entry.contains("\"id\": \"insurer:acme\""), "{entry}");
    run_fails(
        &[
            "lookup",
            "--id",
            "insurer:nobody",
            "--role",
            "insurer",
            "--k",
            "3",
            "--key",
            &patient,
        ],
        "not registered",
    );
    // Drift fixed: a party registered in another role is not found in this one.
    run_fails(
        &[
            "lookup",
            "--id",
            "insurer:acme",
            "--role",
            "hospital",
            "--k",
            "1",
            "--key",
            &patient,
        ],
        "not registered as Hospital",
    );
    // Never a silently smaller lookup: 4 insurers cannot hide a target among 10.
    run_fails(
        &[
            "lookup",
            "--id",
            "insurer:acme",
            "--role",
            "insurer",
            "--k",
            "10",
            "--key",
            &patient,
        ],
        "only 4 registered IDs",
    );
    run_ok(&[
        "lookup",
        "--id",
        "insurer:acme",
        "--role",
        "insurer",
        "--k",
        "all",
        "--key",
        &patient,
    ]);

    // The doctor signs and seals a record to the patient (offline steps).
    let record = c.path("record.json");
    std::fs::write(
        &record,
        r#"{"name":"Ada","gender":"f","age":"36","id_number":"X1","medical_history":"none","examination":"ok","prescription":"rest"}"#,
    )
    .unwrap();
    let sd_jwt = ok(&[
        "ces",
        "sign",
        "--key",
        &doctor,
        "--patient",
        &c.path("patient.pub.json"),
        "--record",
        &record,
    ]);
    std::fs::write(c.path("record.sd-jwt"), sd_jwt.trim()).unwrap();
    let jwe = ok(&[
        "seal",
        "--to",
        &c.path("patient.pub.json"),
        "--in",
        &c.path("record.sd-jwt"),
    ]);
    std::fs::write(c.path("record.jwe"), jwe.trim()).unwrap();

    let blob = run_ok(&[
        "patient",
        "store",
        "--key",
        &patient,
        "--in",
        &c.path("record.jwe"),
    ]);
    assert_eq!(blob.trim().len(), 64, "{blob}");
    run_fails(
        &[
            "patient",
            "store",
            "--key",
            &insurer,
            "--in",
            &c.path("record.jwe"),
        ],
        "not a record sealed to this patient",
    );
    let granted = run_ok(&[
        "patient",
        "grant",
        "--key",
        &patient,
        "--in",
        &c.path("record.jwe"),
        "--to",
        "insurer:acme",
        "--parts",
        "examination",
        "--k",
        "3",
    ]);
    let granted: serde_json::Value = serde_json::from_str(&granted).unwrap();
    let (grant, shared) = (
        granted["grant"].as_str().unwrap().to_owned(),
        granted["blob"].as_str().unwrap().to_owned(),
    );
    let fetched = run_ok(&["requester", "fetch", "--key", &insurer, "--grant", &grant]);
    // Drift fixed: a grant of parts shares those parts (and the mandatory ones), not the
    // whole record.
    let disclosed: Vec<String> = fetched
        .trim()
        .split('~')
        .skip(1)
        .filter(|d| !d.is_empty())
        .map(|d| String::from_utf8(emrshare_core::b64::decode(d).unwrap()).unwrap())
        .collect();
    assert!(
        disclosed.iter().any(|d| d.contains("examination")),
        "{disclosed:?}"
    );
    for withheld in ["prescription", "Ada", "id_number"] {
        assert!(
            disclosed.iter().all(|d| !d.contains(withheld)),
            "{withheld} shared: {disclosed:?}"
        );
    }
    std::fs::write(c.path("fetched.sd-jwt"), fetched.trim()).unwrap();
    ok(&[
        "ces",
        "verify",
        "--in",
        &c.path("fetched.sd-jwt"),
        "--issuer",
        &c.path("doctor.pub.json"),
        "--holder",
        &c.path("patient.pub.json"),
    ]);
    // Not the grantee; a grant that does not exist.
    run_fails(
        &["requester", "fetch", "--key", &decoys[0], "--grant", &grant],
        "for another party",
    );
    run_fails(
        &[
            "requester",
            "fetch",
            "--key",
            &insurer,
            "--grant",
            "grant-none",
        ],
        "no such grant",
    );

    let revoked = run_ok(&["patient", "revoke", "--key", &patient, "--grant", &grant]);
    assert!(revoked.contains("revoked"), "{revoked}");
    run_fails(
        &["requester", "fetch", "--key", &insurer, "--grant", &grant],
        "revoked or expired",
    );

    let audit = run_ok(&["patient", "audit", "--key", &patient]);
    let accesses: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(accesses.len(), 1, "{audit}");
    assert_eq!(accesses[0]["accessor"], "insurer:acme");
    assert_eq!(accesses[0]["grant"], grant.as_str());
    assert_eq!(accesses[0]["record"], shared.as_str());
    assert!(Path::new(&c.consortium()).join("ca.pem").exists());
    // A client that does not trust the consortium's CA gets no answer at all.
    let stranger = c.path("stranger-ca.pem");
    std::fs::write(&stranger, include_str!("data/unrelated-ca.pem")).unwrap();
    fails(
        &[
            "lookup",
            "--id",
            "insurer:acme",
            "--role",
            "insurer",
            "--key",
            &patient,
            "--consortium",
            &consortium,
            "--ca",
            &stranger,
        ],
        "certificate not trusted",
    );
}
