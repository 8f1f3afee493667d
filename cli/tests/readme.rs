//! README's steps, as a newcomer runs them: the offline block makes keys in a fresh folder,
//! then every command of the online block runs in order against a live consortium, and its
//! first line of output must match the first `#>` line under it in README, with its exit code
//! (1 for an `emrshare: error:` line, else 0). In an expected line, IDs and hashes (16 or more
//! base64url or hex characters) and numbers stand for whatever this run makes, and `...` for
//! anything; an ID matched once stands for the same value in the commands after it (a grant ID
//! printed by `grant` is the one `fetch` and `revoke` are given).

mod common;

use regex::Regex;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap()
}

/// The fenced block of `lang` whose first line starts with `first`.
fn block<'a>(readme: &'a str, lang: &str, first: &str) -> &'a str {
    let fence = format!("```{lang}\n");
    readme
        .split(fence.as_str())
        .skip(1)
        .map(|rest| &rest[..rest.find("```").unwrap()])
        .find(|body| body.starts_with(first))
        .unwrap_or_else(|| panic!("README has no {lang} block starting with {first:?}"))
}

/// A command of README and the `#>` lines under it.
struct Step {
    command: String,
    expected: Vec<String>,
}

/// The commands of a block (continuation lines joined), each with its `#>` lines.
fn steps(block: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut pending = String::new();
    for line in block.lines() {
        if let Some(expected) = line.strip_prefix("#>") {
            steps
                .last_mut()
                .expect("an expected line follows a command")
                .expected
                .push(expected.trim().to_owned());
        } else if line.starts_with('#') || line.trim().is_empty() {
            continue;
        } else if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
        } else {
            pending.push_str(line);
            steps.push(Step {
                command: std::mem::take(&mut pending),
                expected: Vec::new(),
            });
        }
    }
    steps
}

/// `expected` as a regex: IDs and hashes become capture groups, numbers any number, `...`
/// anything, a trailing `(exit 1)`-like note nothing; the rest is literal.
fn pattern(expected: &str) -> (Regex, Vec<String>) {
    let expected = Regex::new(r"\s{2,}\([^)]*\)$")
        .unwrap()
        .replace(expected, "");
    let token = Regex::new(r"[A-Za-z0-9_-]{16,}|\d+|\.\.\.").unwrap();
    let mut regex = String::from("^");
    let mut tokens = Vec::new();
    let mut at = 0;
    for m in token.find_iter(&expected) {
        regex.push_str(&regex::escape(&expected[at..m.start()]));
        match m.as_str() {
            "..." => regex.push_str(".*?"),
            t if t.bytes().all(|b| b.is_ascii_digit()) => regex.push_str(r"\d+"),
            t => {
                regex.push_str("([A-Za-z0-9_-]{16,})");
                tokens.push(t.to_owned());
            }
        }
        at = m.end();
    }
    regex.push_str(&regex::escape(&expected[at..]));
    regex.push('$');
    (Regex::new(&regex).unwrap(), tokens)
}

#[test]
fn readme_online_steps_print_what_readme_says() {
    let c = common::Consortium::start(true);
    let work = tempfile::tempdir().unwrap();
    let text = readme();
    std::fs::write(
        work.path().join("record.json"),
        block(&text, "json", "{\"name\""),
    )
    .unwrap();
    let shell = |command: &str| {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "emrshare() {{ \"$EMRSHARE\" \"$@\"; }}\n{{ {command}\n}} 2>&1"
            ))
            .env("EMRSHARE", env!("CARGO_BIN_EXE_emrshare"))
            .current_dir(work.path())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };

    let offline = block(&text, "sh", "emrshare keygen");
    let (code, printed) = shell(&format!("set -e\n{offline}"));
    assert_eq!(code, 0, "README's offline steps failed:\n{printed}");

    let online = block(&text, "sh", "# 5 nodes in one process");
    let mut same: BTreeMap<String, String> = BTreeMap::new();
    let mut checked = 0;
    let into_file = Regex::new(r"^\(([^)]+)\) (.*)$").unwrap();
    for step in steps(online) {
        // The consortium is the test's own: README's commands that start one are not run.
        if step.command.contains("local-consortium") || step.command.starts_with("while ") {
            continue;
        }
        let mut command = step.command.replace("/tmp/c", &c.consortium());
        for (readme_value, ours) in &same {
            command = command.replace(readme_value, ours);
        }
        let (code, printed) = shell(&command);
        let Some(first) = step.expected.first() else {
            assert_eq!(code, 0, "{command}\n{printed}");
            continue;
        };
        // `(file) text`: the command wrote its answer to that file.
        let (first, printed) = match into_file.captures(first) {
            Some(m) => (
                m[2].to_owned(),
                std::fs::read_to_string(work.path().join(&m[1])).unwrap(),
            ),
            None => (first.clone(), printed),
        };
        let want_code = if first.starts_with("emrshare: error:") {
            1
        } else {
            0
        };
        assert_eq!(code, want_code, "{command}\nprinted:\n{printed}");
        let line = printed.lines().next().unwrap_or_default();
        let (regex, tokens) = pattern(&first);
        let m = regex
            .captures(line)
            .unwrap_or_else(|| panic!("{command}\nREADME says: {first}\nit printed:  {line}"));
        for (i, token) in tokens.into_iter().enumerate() {
            same.entry(token).or_insert_with(|| m[i + 1].to_owned());
        }
        checked += 1;
    }
    assert!(
        checked >= 10,
        "only {checked} README steps had expected output"
    );
}

#[test]
fn expected_lines_match_only_their_shape() {
    let (regex, tokens) = pattern("grant-aR_7kLiUBZf47DvbL4rEvQ revoked (proven at height 9)");
    assert!(regex.is_match("grant-Zx_9kLiUBZf47DvbL4rEvq revoked (proven at height 12)"));
    assert!(!regex.is_match("grant-Zx_9kLiUBZf47DvbL4rEvq refused (proven at height 12)"));
    assert!(!regex.is_match("short revoked (proven at height 12)"));
    assert_eq!(tokens, ["grant-aR_7kLiUBZf47DvbL4rEvQ"]);
    let (regex, _) = pattern("emrshare: error: the grant is revoked    (exit 1)");
    assert!(regex.is_match("emrshare: error: the grant is revoked"));
    let (regex, _) = pattern("asked 1 IDs; verified by https://127.0.0.1:40161, ... at height 5");
    assert!(regex.is_match("asked 1 IDs; verified by https://127.0.0.1:1, https://x at height 7"));
    assert!(!regex.is_match("asked 1 IDs; verified by nobody"));
}

#[test]
fn commands_join_their_continuation_lines_and_keep_their_expected_lines() {
    let steps = steps("# a comment\nemrshare a \\\n    --b c\n#> one\n#> two\n\nemrshare d\n");
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0].command, "emrshare a     --b c");
    assert_eq!(steps[0].expected, ["one", "two"]);
    assert!(steps[1].expected.is_empty());
}
