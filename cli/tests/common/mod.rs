//! What the CLI process tests share: a 3-node `emrshare local-consortium` on loopback,
//! killed by its PID when dropped, and `emrshare` runs with their exit code and output.
#![allow(dead_code)] // each test binary uses part of it

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Consortium {
    child: Child,
    pub dir: tempfile::TempDir,
}

impl Drop for Consortium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Consortium {
    /// Three nodes in folder `c` of a temporary folder (HTTPS with `tls`), ready.
    pub fn start(tls: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_emrshare"));
        command.arg("local-consortium");
        if tls {
            command.arg("--tls");
        }
        let mut child = command
            .args(["--nodes", "3", "--block-ms", "300", "--seconds", "300"])
            .arg("--dir")
            .arg(dir.path().join("c"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let started = Instant::now();
        let mut lines = BufReader::new(stdout).lines();
        loop {
            let line = lines.next().expect("the consortium prints ready").unwrap();
            if line == "ready" {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "no consortium");
        }
        Self { child, dir }
    }

    /// A file in the test's temporary folder.
    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }

    /// The consortium's folder.
    pub fn consortium(&self) -> String {
        self.path("c")
    }

    /// The council members' key files (every node is one).
    pub fn member_keys(&self) -> Vec<String> {
        (0..3)
            .map(|i| self.path(&format!("c/node-{i}/node.key.json")))
            .collect()
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `emrshare args` with no input.
pub fn emrshare(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_emrshare"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `emrshare args`, which must succeed; its stdout.
pub fn ok(args: &[&str]) -> String {
    let run = emrshare(args);
    assert_eq!(run.code, 0, "emrshare {args:?} failed: {}", run.stderr);
    run.stdout
}
