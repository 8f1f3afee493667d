//! Start errors (issue #10, points 11 and 14): a damaged store, a missing key file, a
//! read-only data dir, a genesis file changed under existing data, an unparsable config.
//! Each stops `emrshare-node` with exit code 1 and one stderr line naming the file and what
//! to do; none panics.

use emrshare_node::testkit;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use testkit::{Provisioned, height, wait_until};

/// Runs `emrshare-node args`; it must exit with code 1 within 20 s, printing one line on
/// stderr that starts with `emrshare-node: ` and contains each of `expected`. Returns it.
fn fails_with(args: &[&str], expected: &[&str], drop_dac_override: bool) -> String {
    let mut command = Command::new(testkit::node_binary());
    command
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if drop_dac_override {
        // Root ignores file modes: without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH in its
        // bounding set, the node's permission checks are those of any user.
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                for cap in [1, 2] {
                    // CAP_DAC_OVERRIDE = 1, CAP_DAC_READ_SEARCH = 2
                    if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 {
                        let e = std::io::Error::last_os_error();
                        // Not root (no CAP_SETPCAP): file modes apply anyway.
                        if e.raw_os_error() != Some(libc::EPERM) {
                            return Err(e);
                        }
                    }
                }
                Ok(())
            });
        }
    }
    let mut child = command.spawn().unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("emrshare-node {args:?} still running after 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(status.code(), Some(1), "{args:?}: {stderr}");
    assert_eq!(lines.len(), 1, "{args:?}: not one line: {stderr}");
    let line = lines[0];
    assert!(line.starts_with("emrshare-node: "), "{line}");
    for bad in ["panicked", "Error:", "Caused by", "RUST_BACKTRACE"] {
        assert!(!line.contains(bad), "{line}");
    }
    for want in expected {
        assert!(line.contains(want), "wanted {want:?} in: {line}");
    }
    eprintln!("{line}");
    line.to_owned()
}

fn run_fails(config: &Path, expected: &[&str]) -> String {
    fails_with(
        &["run", "--config", config.to_str().unwrap()],
        expected,
        false,
    )
}

fn s(path: &Path) -> String {
    path.display().to_string()
}

/// A node's store made by the node itself: a 2-node consortium runs until height 2.
fn consortium_with_blocks() -> Provisioned {
    let c = Provisioned::init(2, "faults-chain");
    let a = c.start(0);
    let b = c.start(1);
    wait_until(Duration::from_secs(20), "two blocks", || {
        height(c.port(0)) >= 2
    });
    drop(a);
    drop(b);
    c
}

#[test]
fn a_truncated_store_is_refused_without_a_panic() {
    let c = consortium_with_blocks();
    let db = c.node_dir(0).join("data/node.redb");
    let full = std::fs::read(&db).unwrap();
    for len in [full.len() / 2, 600, 1] {
        std::fs::write(&db, &full[..len]).unwrap();
        let line = run_fails(&c.config(0), &[&s(&db)]);
        assert!(
            line.contains("restore") && line.contains("move"),
            "no way out in: {line}"
        );
    }
    // Back in place, it starts again (nothing else was touched).
    std::fs::write(&db, &full).unwrap();
    let _node = c.start(0);
    wait_until(Duration::from_secs(20), "restarted", || {
        testkit::health(c.port(0)).is_some()
    });
}

#[test]
fn a_missing_key_file_is_named() {
    let c = Provisioned::init(2, "faults-chain");
    let key = c.node_dir(0).join("node.key.json");
    std::fs::remove_file(&key).unwrap();
    run_fails(&c.config(0), &[&s(&key), "No such file"]);
    std::fs::write(&key, "{\"not\": \"a key\"}").unwrap();
    run_fails(&c.config(0), &[&s(&key)]);
}

#[test]
fn a_missing_damaged_or_foreign_record_voucher_key_is_named() {
    let c = Provisioned::init(2, "faults-chain");
    let key = c.node_dir(0).join("record-voucher.pk8");
    let original = std::fs::read(&key).unwrap();
    std::fs::remove_file(&key).unwrap();
    run_fails(&c.config(0), &[&s(&key), "No such file"]);
    std::fs::write(&key, b"not a key").unwrap();
    run_fails(&c.config(0), &[&s(&key)]);
    // A valid key that genesis does not list.
    let foreign = emrshare_core::voucher::VoucherSecretKey::generate(2048)
        .unwrap()
        .to_pkcs8()
        .unwrap();
    std::fs::write(&key, &*foreign).unwrap();
    run_fails(&c.config(0), &[&s(&key), "not in genesis"]);
    std::fs::write(&key, &original).unwrap();
}

#[test]
fn a_missing_or_damaged_genesis_file_is_named() {
    let c = Provisioned::init(2, "faults-chain");
    let genesis = c.dir.path().join("genesis.json");
    let text = std::fs::read(&genesis).unwrap();
    std::fs::write(&genesis, &text[..text.len() / 2]).unwrap();
    run_fails(&c.config(0), &[&s(&genesis)]);
    std::fs::remove_file(&genesis).unwrap();
    run_fails(&c.config(0), &[&s(&genesis), "No such file"]);
}

#[test]
fn a_read_only_data_dir_is_named() {
    let c = consortium_with_blocks();
    let data = c.node_dir(0).join("data");
    let set_mode = |path: &Path, mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    set_mode(&data.join("node.redb"), 0o444);
    set_mode(&data, 0o555);
    let line = fails_with(
        &["run", "--config", c.config(0).to_str().unwrap()],
        &[&s(&data)],
        true,
    );
    assert!(line.contains("ermission"), "{line}");
    set_mode(&data, 0o755);
    set_mode(&data.join("node.redb"), 0o644);
}

#[test]
fn a_genesis_changed_under_existing_data_is_refused() {
    let c = consortium_with_blocks();
    let genesis = c.dir.path().join("genesis.json");
    let original = std::fs::read_to_string(&genesis).unwrap();
    let mut tampered: serde_json::Value = serde_json::from_str(&original).unwrap();
    tampered["block_ms"] = 250.into();
    std::fs::write(&genesis, tampered.to_string()).unwrap();
    let line = run_fails(
        &c.config(0),
        &[&s(&genesis), &s(&c.node_dir(0).join("data"))],
    );
    assert!(line.contains("move"), "{line}");
    // Reformatting the same genesis is not a change.
    let same: serde_json::Value = serde_json::from_str(&original).unwrap();
    std::fs::write(&genesis, serde_json::to_string(&same).unwrap()).unwrap();
    let _node = c.start(0);
    wait_until(Duration::from_secs(20), "restarted", || {
        height(c.port(0)) >= 2
    });
}

#[test]
fn an_unparsable_or_invalid_config_is_named() {
    let c = Provisioned::init(2, "faults-chain");
    let config = c.config(0);
    let original = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{original}\n[limits\nmax_body_bytes = 1\n"),
    )
    .unwrap();
    run_fails(&config, &[&s(&config)]);
    std::fs::write(&config, original.replace("listen = ", "listen_on = ")).unwrap();
    run_fails(&config, &[&s(&config), "listen"]);
    std::fs::write(&config, &original).unwrap();
    testkit::edit_config(&config, |t| {
        t["limits"]
            .as_table_mut()
            .unwrap()
            .insert("max_connections".into(), 0.into());
    });
    run_fails(&config, &[&s(&config), "max_connections"]);
    let missing = c.dir.path().join("nowhere.toml");
    run_fails(&missing, &[&s(&missing)]);
}

#[test]
fn init_refuses_a_folder_with_a_consortium_unless_forced() {
    let c = Provisioned::init(2, "faults-chain");
    let dir = c.dir.path().to_str().unwrap().to_owned();
    let genesis = std::fs::read(c.dir.path().join("genesis.json")).unwrap();
    std::fs::create_dir_all(c.node_dir(0).join("data")).unwrap();
    std::fs::write(c.node_dir(0).join("data/marker"), "x").unwrap();
    fails_with(
        &[
            "init",
            "--dir",
            &dir,
            "--nodes",
            "2",
            "--proposers",
            "1",
            "--auditors",
            "1",
        ],
        &[&dir, "--force"],
        false,
    );
    assert_eq!(
        std::fs::read(c.dir.path().join("genesis.json")).unwrap(),
        genesis,
        "genesis overwritten"
    );
    let status = Command::new(testkit::node_binary())
        .args(["init", "--dir", &dir, "--nodes", "2", "--proposers", "1"])
        .args(["--auditors", "1", "--force"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert_ne!(
        std::fs::read(c.dir.path().join("genesis.json")).unwrap(),
        genesis
    );
    assert!(
        !c.node_dir(0).join("data").exists(),
        "old data kept under a new genesis"
    );
}
