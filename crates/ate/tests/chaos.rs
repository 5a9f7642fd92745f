//! `ate bench chaos` for about a minute with a fixed seed, through the built binary: the
//! split deployment on PostgreSQL (two replicas, three nodes, a router, every link through
//! the bench's fault proxy) under every kind of fault the harness has must answer, lose no
//! acknowledged answer and never run an actor twice. Like the store tests, it needs
//! PostgreSQL's binaries (`scripts/test.sh` installs them; `ATE_PG_BIN` points elsewhere).
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

/// The seed of the schedule: its first round of faults (one of each kind) ends well within
/// the minute, so every kind is injected.
const SEED: &str = "1";
/// Seconds of faults; settling and the final checks add about ten more.
const SECONDS: &str = "60";

/// The value after `key` on the line that starts with `prefix`, e.g. `answers: 12`.
fn figure(out: &str, prefix: &str, key: &str) -> Option<u64> {
    let line = out.lines().find(|l| l.starts_with(prefix))?;
    let rest = &line[line.find(key)? + key.len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[test]
fn a_minute_of_faults_loses_nothing_and_runs_no_actor_twice() {
    let out = Command::new(common::ATE)
        .args(["bench", "chaos", "--seconds", SECONDS, "--seed", SEED])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        figure(&stdout, "violations:", "violations: "),
        Some(0),
        "{report}"
    );
    assert!(out.status.success(), "{report}");
    let answers = figure(&stdout, "run:", "answers: ").unwrap_or(0);
    assert!(answers > 100, "{report}");
    let faults = stdout
        .lines()
        .find_map(|l| l.strip_prefix("faults: "))
        .unwrap_or_else(|| panic!("no faults line in\n{report}"));
    let kinds: Vec<(&str, u64)> = faults
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k, v.parse().unwrap()))
        .collect();
    assert_eq!(kinds.len(), 7, "{report}");
    for (kind, n) in kinds {
        assert!(n >= 1, "no {kind} fault was injected:\n{report}");
    }
}
