//! What a chaos run prints and keeps. Invariant: every figure comes from the recorded
//! histories and observations, and every violation is printed with its evidence.

use std::collections::BTreeMap;
use std::time::Duration;

use super::cluster::Cluster;
use super::history::{self, Op, Outcome, Violation, at};
use super::schedule::Kind;
use super::workload::Observed;
use crate::bench::router::fmt;

/// Placements quoted with a violation: those seen this close to it, at most so many.
const PLACEMENTS_AROUND_US: u64 = 3_000_000;
const PLACEMENTS_QUOTED: usize = 16;

/// What the report needs besides the histories.
pub struct Run {
    pub start: u64,
    /// When the workload was told to stop.
    pub stopped: u64,
    /// Per actor, the longest time without an answer during the workload, and its start.
    pub gaps: Vec<(Duration, u64)>,
    /// Per actor, the final asks after everything settled.
    pub finals: Vec<Vec<Op>>,
    pub faults: BTreeMap<&'static str, usize>,
}

/// Every request of the run, one a line: actor, sent and received (seconds since the
/// start), then the count or why it failed.
pub fn write_history(
    path: &std::path::Path,
    actors: &[String],
    histories: &[Vec<Op>],
    start: u64,
) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    let mut out = String::from("actor\tsent\treceived\toutcome\n");
    for (actor, ops) in actors.iter().zip(histories) {
        for o in ops {
            let outcome = match &o.outcome {
                Outcome::Count(n) => n.to_string(),
                Outcome::Failed(why) => why.clone(),
            };
            let _ = writeln!(
                out,
                "{actor}\t{}\t{}\t{outcome}",
                at(o.sent_us, start),
                at(o.recv_us, start)
            );
        }
    }
    Ok(std::fs::write(path, out)?)
}

pub fn report(
    cluster: &Cluster,
    histories: &[Vec<Op>],
    observed: &Observed,
    run: &Run,
    violations: &[Violation],
) {
    let start = run.start;
    let all: Vec<&Op> = histories.iter().flatten().collect();
    let answers = all.iter().filter(|o| o.count().is_some()).count();
    let mut failures: BTreeMap<&str, usize> = BTreeMap::new();
    for o in &all {
        if let Outcome::Failed(why) = &o.outcome {
            *failures.entry(why.as_str()).or_default() += 1;
        }
    }
    let losses: usize = observed.losses.iter().map(Vec::len).sum();
    println!();
    println!(
        "run: {:.1} s of workload; requests: {}; answers: {answers}; failed: {} ({})",
        (run.stopped - start) as f64 / 1e6,
        all.len(),
        all.len() - answers,
        failures
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "faults: {}",
        Kind::ALL
            .iter()
            .map(|k| format!(
                "{}={}",
                k.name(),
                run.faults.get(k.name()).copied().unwrap_or(0)
            ))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "StateLost conditions seen: {losses}; actor writes watched: {} ({} resyncs); observer polls: {} ({} failed)",
        observed.writes, observed.resyncs, observed.polls, observed.failed_polls
    );
    println!(
        "connections through the proxies: {}",
        cluster
            .net
            .connections()
            .iter()
            .map(|(link, n)| format!("{link} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!();
    println!(
        "| actor | requests | answers | StateLost seen | longest without an answer | from | final answer after |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (i, actor) in cluster.actors.iter().enumerate() {
        let ops = &histories[i];
        let (gap, from) = run.gaps[i];
        let ok = ops.iter().filter(|o| o.count().is_some()).count();
        let last = run.finals[i].last().filter(|o| o.count().is_some());
        let first = run.finals[i].first().map_or(0, |o| o.sent_us);
        println!(
            "| {} | {} | {ok} | {} | {} | {} | {} |",
            actor.id,
            ops.len(),
            observed.losses[i].len(),
            fmt(gap),
            at(from, start),
            last.map_or("never".into(), |o| fmt(Duration::from_micros(
                o.recv_us - first
            )))
        );
    }
    println!();
    println!("violations: {}", violations.len());
    for (k, v) in violations.iter().enumerate() {
        println!("  {}. {}", k + 1, history::describe(v));
        let i = cluster.actors.iter().position(|a| a.to_string() == v.actor);
        if let Some(samples) = i.map(|i| &observed.samples[i]) {
            let mut near: Vec<_> = samples
                .iter()
                .filter(|s| s.at_us.abs_diff(v.at_us) <= PLACEMENTS_AROUND_US)
                .collect();
            near.sort_by_key(|s| s.at_us.abs_diff(v.at_us));
            near.truncate(PLACEMENTS_QUOTED);
            near.sort_by_key(|s| s.at_us);
            let seen: Vec<String> = near
                .iter()
                .map(|s| format!("{} {} {}", at(s.at_us, start), s.status, s.worker))
                .collect();
            println!("      placements seen around it: {}", seen.join(", "));
        }
    }
}
