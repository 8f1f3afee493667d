//! Writes the fuzz fixtures (test-only key sets) and the seed corpora under `seeds/`.
//!
//!     cd core/fuzz && cargo run --example gen_seeds
//!
//! `cargo run --example gen_seeds -- node_messages` writes only the `node_messages` seeds
//! (signed with the committed fixtures), leaving every other seed as it is.
//!
//! Regenerating replaces the fixture keys, which invalidates every signed or sealed seed, so
//! always regenerate fixtures and seeds together (this program does both). The targets
//! `include_bytes!` the fixtures, so rebuild them afterwards.

#[path = "../fuzz_targets/common/consts.rs"]
mod consts;

use consts::*;
use emrshare_core::ces::{self, IssueOptions};
use emrshare_core::jwe::{Envelope, Recipient};
use emrshare_core::keys::wrap::{self, KdfParams};
use emrshare_core::keys::{Jwk, PartyId, RsaBits};
use emrshare_core::record::{Ceas, Record, BPDS_SCHEMA};
use emrshare_core::Hash;
use emrshare_core::{b64, PrivateKeySet};
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn write(rel: &str, bytes: impl AsRef<[u8]>) {
    let path = root().join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, bytes).unwrap();
    println!("wrote {}", Path::new(rel).display());
}

fn fixture(name: &str, id: Option<&str>) -> PrivateKeySet {
    let rel = format!("fixtures/{name}.json");
    if let Ok(json) = fs::read(root().join(&rel)) {
        return PrivateKeySet::from_json(&json).unwrap();
    }
    let keys = PrivateKeySet::generate(id.map(|id| PartyId::new(id).unwrap()), RsaBits::B2048);
    write(&rel, keys.to_json().as_bytes());
    keys
}

/// The sample BPDS record under a fixed ID, so the seeds are the same on every run.
fn fixed_record() -> Record {
    Record::new(
        BPDS_SCHEMA,
        "rec-fuzz-seed-1",
        Record::sample_bpds().parts().clone(),
    )
    .unwrap()
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("node_messages") {
        node_seeds();
        return;
    }
    // Fixtures: test-only keys, 2048-bit RSA to keep RSA operations cheap. Kept if present
    // (delete fixtures/*.json to rotate them); every seed below is rewritten either way.
    let issuer = fixture("issuer", Some(ISSUER_ID));
    let holder = fixture("holder", None);
    let recipient = fixture("jwe_recipient", None);
    let other = fixture("jwe_other", Some("insurer:other"));

    // jwe: compact to the fixture recipient (opens), compact to someone else (does not),
    // general JSON to two recipients, a compact envelope after add_recipient (alg/kid moved
    // to per-recipient headers), and a flattened JSON form of the first one.
    let plaintext = serde_json::to_vec(fixed_record().parts()).unwrap();
    let rpub = recipient.public();
    let opub = other.public();
    let compact = Envelope::seal_to(&plaintext, &[&rpub], Some("application/json")).unwrap();
    let compact_text = compact.to_compact().unwrap();
    write("fixtures/sealed_compact.jwe", &compact_text);
    write("seeds/jwe_compact/to_fixture.jwe", &compact_text);
    write(
        "seeds/jwe_compact/to_other.jwe",
        Envelope::seal_to(b"x", &[&opub], None)
            .unwrap()
            .to_compact()
            .unwrap(),
    );
    write(
        "seeds/jwe_compact/short_plaintext.jwe",
        Envelope::seal_to(b"", &[&rpub], None)
            .unwrap()
            .to_compact()
            .unwrap(),
    );
    let general = Envelope::seal_to(&plaintext, &[&opub, &rpub], Some("application/json")).unwrap();
    write("seeds/jwe_json/general_two.json", general.to_json());
    // The same envelope in shapes other JOSE libraries write (RFC 7516 7.2): the per-recipient
    // `alg` in the shared unprotected header. Same protected header, so still authentic.
    // Before 7088e47 these crashed jwe_json (add_recipient added a second `alg`, and the result
    // no longer parsed); kept under regressions/ (pass it as an extra corpus dir).
    let g: Value = serde_json::from_str(&general.to_json()).unwrap();
    let mine = &g["recipients"][1];
    assert_eq!(mine["header"]["kid"], json!(rpub.id.encryption_kid()));
    write(
        "regressions/jwe_json/flattened_shared_unprotected.json",
        json!({"protected": g["protected"], "unprotected": mine["header"],
               "encrypted_key": mine["encrypted_key"], "iv": g["iv"],
               "ciphertext": g["ciphertext"], "tag": g["tag"]})
        .to_string(),
    );
    let with_kid = |r: &Value| json!({"header": {"kid": r["header"]["kid"]}, "encrypted_key": r["encrypted_key"]});
    write(
        "regressions/jwe_json/general_unprotected_alg.json",
        json!({"protected": g["protected"], "unprotected": {"alg": "RSA-OAEP-256"},
               "recipients": [with_kid(&g["recipients"][0]), with_kid(mine)],
               "iv": g["iv"], "ciphertext": g["ciphertext"], "tag": g["tag"]})
        .to_string(),
    );
    let mut granted = Envelope::seal_to(b"granted", &[&rpub], None).unwrap();
    let okid = opub.id.encryption_kid();
    granted
        .add_recipient(
            &recipient,
            Recipient {
                kid: &okid,
                key: &opub.encryption,
            },
        )
        .unwrap();
    write("seeds/jwe_json/after_add_recipient.json", granted.to_json());
    write("seeds/jwe_json/compact_as_general.json", compact.to_json());
    let parts: Vec<&str> = compact_text.split('.').collect();
    write(
        "seeds/jwe_json/flattened.json",
        json!({"protected": parts[0], "encrypted_key": parts[1], "iv": parts[2],
               "ciphertext": parts[3], "tag": parts[4]})
        .to_string(),
    );
    write(
        "seeds/jwe_json/flattened_unprotected_aad.json",
        json!({"protected": parts[0], "unprotected": {"x-note": "n", "n": 1.5},
               "header": {"x-r": [true, null]}, "aad": b64::encode("extra"),
               "encrypted_key": parts[1], "iv": parts[2], "ciphertext": parts[3],
               "tag": parts[4]})
        .to_string(),
    );

    // sd_jwt: issued (all disclosures), with decoys, extracted, presented with key binding.
    let record = fixed_record();
    let ceas = Ceas::default_for(&record);
    let hpub = holder.public();
    let options = IssueOptions {
        issued_at: NOW - 60,
        decoys: 0,
    };
    let issued = ces::issue(&issuer, &hpub, &record, &ceas, options).unwrap();
    write("seeds/sd_jwt/issued.sdjwt", issued.serialize());
    let decoyed = ces::issue(
        &issuer,
        &hpub,
        &record,
        &ceas,
        IssueOptions {
            decoys: 3,
            ..options
        },
    )
    .unwrap();
    write("seeds/sd_jwt/issued_decoys.sdjwt", decoyed.serialize());
    let extracted = issued.extract(&["name", "prescription"]).unwrap();
    write("seeds/sd_jwt/extracted.sdjwt", extracted.serialize());
    let presented = extracted.bind(&holder.signing, AUD, NONCE, NOW - 60);
    write("seeds/sd_jwt/presented_kb.sdjwt", presented.serialize());
    let Value::Object(small) = json!({"allergies": ["penicillin"], "blood_type": "0+"}) else {
        unreachable!()
    };
    let small = Record::new("emrshare/parts/v1", "rec-fuzz-seed-2", small).unwrap();
    let small_sd = ces::issue(&issuer, &hpub, &small, &Ceas::new(["blood_type"]), options).unwrap();
    write("seeds/sd_jwt/small_ceas.sdjwt", small_sd.serialize());
    // Every verified seed must verify under the targets' policy.
    let ipub = issuer.public();
    for sd in [&issued, &decoyed, &extracted, &presented, &small_sd] {
        ces::verify(sd, &ces::VerifyPolicy::new(&ipub, NOW)).expect("seed verifies");
    }

    // jws: the issuer JWT and the key-binding JWT alone.
    let s = presented.serialize();
    let comps: Vec<&str> = s.split('~').collect();
    write("seeds/jws/issuer.jwt", comps[0]);
    write("seeds/jws/kb.jwt", comps.last().unwrap());

    // jwk: public and private sets, single JWKs of each kind.
    write("seeds/jwk/issuer.pub.json", ipub.to_json());
    write("seeds/jwk/holder.pub.json", hpub.to_json());
    write("seeds/jwk/holder.priv.json", holder.to_json().as_bytes());
    let jwk = |j: &Jwk| serde_json::to_string(j).unwrap();
    write(
        "seeds/jwk/ec_public.json",
        jwk(&issuer.signing.verifying_key().to_jwk(Some("k".into()))),
    );
    write(
        "seeds/jwk/ec_private.json",
        jwk(&issuer.signing.to_jwk(None)),
    );
    write(
        "seeds/jwk/rsa_public.json",
        jwk(&issuer.decryption.encryption_key().to_jwk(None)),
    );
    write(
        "seeds/jwk/rsa_private.json",
        jwk(&issuer.decryption.to_jwk(Some("r".into()))),
    );

    // pkcs8: DER of both key kinds.
    write("seeds/pkcs8/ec.der", issuer.signing.to_pkcs8().as_slice());
    write(
        "seeds/pkcs8/rsa.der",
        issuer.decryption.to_pkcs8().as_slice(),
    );

    // wrapped_key: minimum-cost KDF so the fuzzer is not starved; a small secret and a
    // wrapped private key set.
    write(
        "seeds/wrapped_key/small_secret.json",
        wrap::wrap(b"master secret", PASSPHRASE, KdfParams::MINIMUM, "test").unwrap(),
    );
    write(
        "seeds/wrapped_key/wrong_passphrase.json",
        wrap::wrap(b"s", b"other", KdfParams::MINIMUM, "t").unwrap(),
    );
    write(
        "seeds/wrapped_key/key_set.json",
        holder
            .wrap_with_passphrase(PASSPHRASE, KdfParams::MINIMUM)
            .unwrap(),
    );

    // record: a BPDS record and a generic one.
    write(
        "seeds/record/bpds.json",
        serde_json::to_vec(record.parts()).unwrap(),
    );
    write(
        "seeds/record/parts.json",
        br#"{"allergies":["penicillin"],"x":{"y":[1,2.5,null,true]}}"#,
    );

    // strict_json: a few shapes.
    write(
        "seeds/strict_json/object.json",
        br#"{"a":[1,{"b":null}],"c":"d\u00e9","e":-1.5e3}"#,
    );
    write("seeds/strict_json/dup.json", br#"{"a":1,"a":2}"#);
    write(
        "seeds/strict_json/big.json",
        br#"[18446744073709551615,-9223372036854775808,1e308,"\ud83d\ude00"]"#,
    );

    ledger_seeds();
    node_seeds();
    b64_seeds();
}

/// Seeds of the `node_messages` target: byte 0 is the message type (keep in sync with the
/// target's `match`), then the JSON text. Answers nesting ledger types are written both as
/// serialized directly and as the node serves them (members sorted, through a `Value`).
fn node_seeds() {
    use emrshare_core::keys::SigningKey;
    use emrshare_core::ledger::bft::{ConsensusProposal, ConsensusVote, Evidence, VoteKind};
    use emrshare_core::ledger::block::{
        certify, CertifiedBlock, Genesis, Header, Timeouts, Validator, ValidatorSet,
    };
    use emrshare_core::ledger::machine::registry_key;
    use emrshare_core::ledger::tx::{Role, Transaction, TxBody};
    use emrshare_core::ledger::wire::*;

    let seed = |mode: u8, name: &str, value: &dyn erased::Json| {
        let mut bytes = vec![mode];
        bytes.extend(value.direct());
        write(&format!("seeds/node_messages/{mode:02}_{name}.bin"), &bytes);
        let sorted = value.sorted();
        if sorted != bytes[1..] {
            let mut bytes = vec![mode];
            bytes.extend(sorted);
            write(
                &format!("seeds/node_messages/{mode:02}_{name}_sorted.bin"),
                bytes,
            );
        }
    };

    // A real signed transaction, by the fixture issuer's keys.
    let issuer = fixture("issuer", Some(ISSUER_ID));
    let tx = Transaction {
        chain_id: "fuzz-chain".into(),
        sender: issuer.id.clone(),
        sequence: 0,
        body: TxBody::RegisterIdentity {
            id: issuer.id.clone(),
            role: Role::Hospital,
            signing_jwk: issuer.signing.verifying_key().to_jwk(None),
            encryption_jwk: issuer.decryption.encryption_key().to_jwk(None),
            valid_from: 0,
            valid_until: u64::MAX,
            voucher: None,
        },
    }
    .sign(&issuer.signing);
    let jws = tx.as_jws().to_owned();

    // The one place the seeds name the header's fields. Its state root is the fixed tree's,
    // so the lookup seed reaches the target's soundness check.
    let tree = ledger::state_tree();
    let voter = SigningKey::generate();
    let header = Header {
        chain_id: "fuzz-chain".into(),
        height: 3,
        round: 0,
        previous: Hash::new([7; 32]),
        time_ms: NOW * 1000,
        proposer: PartyId::new("node:2").unwrap(),
        tx_root: emrshare_core::ledger::block::tx_root(std::slice::from_ref(&tx)),
        state_root: tree.root(),
        validators_hash: Hash::new([9; 32]),
        next_validators_hash: Hash::new([9; 32]),
        last_commit: Vec::new(),
    };
    let voter_id = PartyId::new("node:3").unwrap();
    let certified = certify(header.clone(), 0, &[(&voter_id, &voter)]);
    let vote = |value: u8| {
        ConsensusVote {
            kind: VoteKind::Prevote,
            height: 3,
            round: 1,
            value: Some(Hash::new([value; 32])),
            validator: voter_id.clone(),
        }
        .sign("fuzz-chain", &voter)
    };
    let proposal = ConsensusProposal {
        height: 3,
        round: 0,
        value: header.hash(),
        pol_round: None,
        proposer: PartyId::new("node:2").unwrap(),
    }
    .sign("fuzz-chain", &voter);
    let block = CertifiedBlock {
        header: header.clone(),
        certificate: certified.certificate.clone(),
        txs: vec![jws.clone()],
    };

    let entry = |name: &str, value: Option<String>| {
        let id = PartyId::new(name).unwrap();
        LookupEntry {
            proof: tree.prove(&registry_key(&id)),
            id,
            value,
        }
    };
    let lookup = LookupResponse {
        entries: vec![
            entry("party-0", Some("value-0".into())),
            entry("absent-1", None),
            entry("party-7", Some("value-7".into())),
        ],
        header: certified.clone(),
    };

    seed(0, "submit", &SubmitRequest { jws: jws.clone() });
    seed(1, "submitted", &SubmitResponse { id: tx.id_text() });
    seed(
        2,
        "lookup",
        &LookupRequest {
            ids: vec!["party-0".into(), "absent-1".into()],
        },
    );
    seed(3, "lookup_answer", &lookup);
    seed(
        4,
        "bucket",
        &BucketAnswer {
            header: certified.clone(),
            head: ProvenValue {
                proof: tree.prove(&ledger::keys()[1]),
                value: Some(r#"{"root":"00","count":0}"#.into()),
            },
            proof: tree.prove_prefix(&ledger::keys()[0], 3),
            entries: vec![BucketEntry {
                id: issuer.id.clone(),
                value: "{}".into(),
            }],
        },
    );
    seed(
        5,
        "grant_present",
        &GrantAnswer {
            grant: ProvenValue {
                proof: tree.prove(&ledger::keys()[2]),
                value: Some(r#"{"grantor":"patient-1","revoked":false}"#.into()),
            },
            header: certified.clone(),
        },
    );
    seed(
        5,
        "grant_absent",
        &GrantAnswer {
            grant: ProvenValue {
                proof: tree.prove(&ledger::keys()[20]),
                value: None,
            },
            header: certified.clone(),
        },
    );
    seed(6, "sequence", &SequenceAnswer { next: 12 });
    seed(
        7,
        "health",
        &HealthAnswer {
            chain_id: Some("emrshare-local".into()),
            genesis_hash: Some(Hash::new([0x5a; 32])),
            height: 42,
            id: PartyId::new("node:1").unwrap(),
            status: HealthAnswer::OK.into(),
        },
    );
    seed(8, "block_accepted", &BlockAccepted { height: 3 });
    seed(
        9,
        "blob_stored",
        &BlobStored {
            hash: Hash::from_hex(&"5a".repeat(32)).unwrap(),
        },
    );
    seed(
        10,
        "error",
        &ErrorBody::new("unexpected JSON structure: unknown field `x`"),
    );
    seed(11, "proposal", &proposal);
    seed(12, "block", &block);
    seed(13, "certified_header", &certified);
    seed(14, "vote", &vote(1));
    let genesis = Genesis {
        chain_id: "fuzz-chain".into(),
        validators: ValidatorSet {
            validators: (0..3)
                .map(|i| Validator {
                    id: PartyId::new(format!("node:{i}")).unwrap(),
                    signing_jwk: SigningKey::generate().verifying_key().to_jwk(None),
                    credit: 100,
                })
                .collect(),
            proposers: 2,
            auditors: 1,
        },
        block_ms: 500,
        timeouts: Timeouts::default(),
        start_ms: NOW * 1000,
        governance: None,
        record_voucher_keys: Vec::new(),
    };
    seed(15, "genesis", &genesis);
    seed(
        16,
        "double_vote",
        &Evidence::DoubleVote(Box::new(vote(1)), Box::new(vote(2))),
    );
}

/// Serializing seeds of different types through one closure.
mod erased {
    pub trait Json {
        fn direct(&self) -> Vec<u8>;
        fn sorted(&self) -> Vec<u8>;
    }

    impl<T: serde::Serialize> Json for T {
        fn direct(&self) -> Vec<u8> {
            serde_json::to_vec(self).unwrap()
        }
        fn sorted(&self) -> Vec<u8> {
            serde_json::to_vec(&serde_json::to_value(self).unwrap()).unwrap()
        }
    }
}

/// The fixed trees of the `ledger_proofs` target (keep in sync with it).
fn ledger_seeds() {
    use emrshare_core::ledger::merkle;
    let tree = ledger::state_tree();
    let keys = ledger::keys();
    for (sel, key) in keys.iter().enumerate().step_by(3) {
        let mut seed = vec![0u8, sel as u8];
        seed.extend(serde_json::to_vec(&tree.prove(key)).unwrap());
        write(&format!("seeds/ledger_proofs/state_{sel}.bin"), seed);
    }
    let leaves = ledger::leaves();
    let n = leaves.len() as u64;
    for index in [0usize, 5, 31, 36] {
        let mut seed = vec![1u8];
        seed.extend((index as u64).to_be_bytes());
        seed.extend(n.to_be_bytes());
        seed.extend(leaves[index].as_bytes());
        for h in merkle::inclusion_proof(&leaves, index).unwrap() {
            seed.extend(h.as_bytes());
        }
        write(&format!("seeds/ledger_proofs/inclusion_{index}.bin"), seed);
    }
    for old in [1usize, 8, 20, 37] {
        let mut seed = vec![2u8];
        seed.extend((old as u64).to_be_bytes());
        seed.extend(n.to_be_bytes());
        seed.extend(merkle::root(&leaves[..old]).as_bytes());
        for h in merkle::consistency_proof(&leaves, old).unwrap() {
            seed.extend(h.as_bytes());
        }
        write(&format!("seeds/ledger_proofs/consistency_{old}.bin"), seed);
    }
}

fn b64_seeds() {
    for (name, len) in [("short", 5usize), ("block", 48), ("long", 301)] {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 37 % 256) as u8).collect();
        write(&format!("seeds/b64/{name}.txt"), b64::encode(bytes));
    }
    write("seeds/b64/bad_tail.txt", "QR");
}

#[path = "../fuzz_targets/common/ledger.rs"]
mod ledger;
