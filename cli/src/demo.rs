//! `emrshare demo`: the visit story of DESIGN section 1 on a sample record, in process. Every
//! step is checked; the command fails if any check does not hold.

use crate::now;
use anyhow::{Result, bail, ensure};
use emrshare_core::ces::{self, IssueOptions, KeyBindingRequirement, SdJwt, VerifyPolicy};
use emrshare_core::jwe::Envelope;
use emrshare_core::keys::{PartyId, RsaBits};
use emrshare_core::record::{Ceas, Record};
use emrshare_core::{PrivateKeySet, b64};
use std::path::PathBuf;
use std::time::Instant;

struct Story {
    keep: Option<PathBuf>,
    started: Instant,
}

impl Story {
    fn step<T>(&self, who: &str, what: &str, action: impl FnOnce() -> Result<T>) -> Result<T> {
        let t = Instant::now();
        let out = action()?;
        println!(
            "  {:>8.1} ms  {who:<9} {what}",
            t.elapsed().as_secs_f64() * 1e3
        );
        Ok(out)
    }

    fn refused<T, E: std::fmt::Display>(
        &self,
        what: &str,
        outcome: std::result::Result<T, E>,
    ) -> Result<()> {
        match outcome {
            Ok(_) => bail!("check failed: {what} was accepted"),
            Err(e) => {
                println!("               refused   {what}: {e}");
                Ok(())
            }
        }
    }

    fn save(&self, name: &str, contents: &str) -> Result<()> {
        if let Some(dir) = &self.keep {
            crate::files::write_private_file(&dir.join(name), contents.as_bytes(), true)?;
        }
        Ok(())
    }
}

pub fn run(keep: Option<PathBuf>) -> Result<()> {
    if let Some(dir) = &keep {
        std::fs::create_dir_all(dir)?;
    }
    let story = Story {
        keep,
        started: Instant::now(),
    };
    println!("emrshare demo: the visit story (DESIGN section 1), on a synthetic BPDS record\n");

    println!("1. Keys (ES256 signing + RSA-3072 OAEP-256 encryption per party)");
    let doctor = story.step("doctor", "generates keys as hospital:st-marys", || {
        Ok(PrivateKeySet::generate(
            Some(PartyId::new("hospital:st-marys")?),
            RsaBits::B3072,
        ))
    })?;
    let patient = story.step(
        "patient",
        "generates keys; ID = RFC 7638 thumbprint",
        || Ok(PrivateKeySet::generate(None, RsaBits::B3072)),
    )?;
    let insurer = story.step("insurer", "generates keys as insurer:acme-health", || {
        Ok(PrivateKeySet::generate(
            Some(PartyId::new("insurer:acme-health")?),
            RsaBits::B3072,
        ))
    })?;
    let (doctor_pub, patient_pub, insurer_pub) =
        (doctor.public(), patient.public(), insurer.public());
    println!("               patient ID {}", patient.id);
    for (name, keys) in [
        ("doctor", &doctor),
        ("patient", &patient),
        ("insurer", &insurer),
    ] {
        story.save(&format!("{name}.key.json"), &keys.to_json())?;
        story.save(&format!("{name}.pub.json"), &keys.public().to_json())?;
    }

    println!(
        "\n2. Visit: the doctor signs the record (SD-JWT, CEAS = gender, age, medical_history)"
    );
    let record = Record::sample_bpds();
    let ceas = Ceas::default_for(&record);
    let signed = story.step(
        "doctor",
        "signs 7 parts: 3 plain (CEAS), 4 selectively disclosable",
        || {
            Ok(ces::issue(
                &doctor,
                &patient_pub,
                &record,
                &ceas,
                IssueOptions {
                    issued_at: now(),
                    decoys: 2,
                },
            )?)
        },
    )?;
    let sealed = story.step(
        "doctor",
        "seals it to the patient (JWE RSA-OAEP-256 + A256CBC-HS512)",
        || {
            Ok(Envelope::seal_to(
                signed.serialize().as_bytes(),
                &[&patient_pub],
                Some("emr+sd-jwt"),
            )?
            .serialize())
        },
    )?;
    story.save("record.sd-jwt", &signed.serialize())?;
    story.save("record.jwe", &sealed)?;
    println!(
        "               {} bytes of SD-JWT, {} bytes of JWE",
        signed.serialize().len(),
        sealed.len()
    );

    println!("\n3. The patient opens, verifies and stores the record");
    let received = story.step(
        "patient",
        "opens the envelope (MAC checked before decryption)",
        || {
            let plaintext = Envelope::parse(sealed.as_bytes())?.open(&patient)?;
            Ok(SdJwt::parse(std::str::from_utf8(&plaintext)?)?)
        },
    )?;
    let verified = story.step(
        "patient",
        "verifies the doctor's signature, digests, CEAS, cnf = own key",
        || {
            let policy = VerifyPolicy {
                holder: Some(&patient_pub),
                ..VerifyPolicy::new(&doctor_pub, now())
            };
            Ok(ces::verify(&received, &policy)?)
        },
    )?;
    ensure!(verified.parts().len() == 7, "expected all 7 parts");
    let stored = story.step(
        "patient",
        "seals the record to itself for the cloud store",
        || {
            Ok(Envelope::seal_to(
                received.serialize().as_bytes(),
                &[&patient_pub],
                Some("emr+sd-jwt"),
            )?
            .serialize())
        },
    )?;
    println!(
        "               blob {} bytes; index hash sha-256 {}",
        stored.len(),
        short_hash(&stored)
    );

    println!(
        "\n4. Sharing: the insurer asks for the record; the patient discloses exam + prescription only"
    );
    let nonce = emrshare_core::make_nonce();
    let presentation = story.step(
        "patient",
        "removes name and id_number, binds to insurer + nonce (KB-JWT)",
        || {
            Ok(received.extract(&["examination", "prescription"])?.bind(
                &patient.signing,
                insurer.id.as_str(),
                &nonce,
                now(),
            ))
        },
    )?;
    let to_insurer = story.step("patient", "seals the presentation to the insurer", || {
        Ok(Envelope::seal_to(
            presentation.serialize().as_bytes(),
            &[&insurer_pub],
            Some("emr+sd-jwt"),
        )?
        .serialize())
    })?;
    story.save("presentation.sd-jwt", &presentation.serialize())?;
    let seen = story.step(
        "insurer",
        "opens, verifies doctor signature, CEAS, patient binding, aud, nonce",
        || {
            let opened = Envelope::parse(to_insurer.as_bytes())?.open(&insurer)?;
            let shown = SdJwt::parse(std::str::from_utf8(&opened)?)?;
            let policy = VerifyPolicy {
                holder: Some(&patient_pub),
                key_binding: Some(KeyBindingRequirement {
                    audience: insurer.id.as_str(),
                    nonce: &nonce,
                }),
                ..VerifyPolicy::new(&doctor_pub, now())
            };
            Ok(ces::verify(&shown, &policy)?)
        },
    )?;
    let mut names: Vec<&str> = seen.parts().keys().map(String::as_str).collect();
    names.sort_unstable();
    println!("               insurer sees: {}", names.join(", "));
    ensure!(
        !seen.parts().contains_key("name") && !seen.parts().contains_key("id_number"),
        "removed parts leaked"
    );
    ensure!(seen.key_bound(), "presentation should be key-bound");

    println!("\n5. What must fail, fails");
    let policy_for = |nonce: &'static str| VerifyPolicy {
        holder: Some(&patient_pub),
        key_binding: Some(KeyBindingRequirement {
            audience: insurer.id.as_str(),
            nonce,
        }),
        ..VerifyPolicy::new(&doctor_pub, now())
    };
    story.refused(
        "a replayed presentation (another nonce)",
        ces::verify(&presentation, &policy_for("other-nonce")),
    )?;
    let tampered =
        presentation
            .serialize()
            .replacen('~', "~WyJzYWx0IiwibmFtZSIsIk1hbGxvcnkiXQ~", 1);
    story.refused(
        "an added disclosure",
        SdJwt::parse(&tampered).and_then(|s| ces::verify(&s, &policy_for("x"))),
    )?;
    let impostor = PrivateKeySet::generate(Some(doctor.id.clone()), RsaBits::B2048);
    story.refused(
        "a doctor key other than the registered one",
        ces::verify(&presentation, &VerifyPolicy::new(&impostor.public(), now())),
    )?;
    story.refused(
        "the envelope opened by the wrong party",
        Envelope::parse(to_insurer.as_bytes())?.open(&doctor),
    )?;
    let mut flipped = to_insurer.into_bytes();
    let middle = flipped.len() / 2;
    flipped[middle] = if flipped[middle] == b'A' { b'B' } else { b'A' };
    story.refused(
        "an envelope with one changed byte",
        Envelope::parse(&flipped).and_then(|e| e.open(&insurer)),
    )?;

    println!(
        "\nall checks held ({:.1} s)",
        story.started.elapsed().as_secs_f64()
    );
    if let Some(dir) = &story.keep {
        println!("files kept in {}", dir.display());
    }
    Ok(())
}

fn short_hash(data: &str) -> String {
    b64::encode(emrshare_core::content_hash(data.as_bytes()))[..16].to_string()
}
