//! The chaos run's history and its checker. Invariant: a verdict is drawn only from what
//! the clients saw (each answer's count, when its request was sent and when the answer
//! came) and what the control plane recorded (`StateLost` conditions and their times), and
//! a history a correct deployment can produce is never called a violation, whatever
//! requests failed: a failed request may or may not have been counted, so it may account
//! for one skipped count, never for a count going back.
//!
//! One client asks each actor, one request at a time, so an actor's answers are totally
//! ordered by the clients' clock, which is the clock the control plane stamps conditions
//! with (one machine). A correct counter answers strictly increasing counts; it may go back
//! only after a `StateLost` condition recorded since the previous rollback (it then resumed
//! from its last durable snapshot), and an answer the old incarnation gave to a request
//! sent after that loss was recorded is one no condition covers.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch, on the clock the control plane stamps conditions with.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or_default()
}

/// One request to one actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub sent_us: u64,
    pub recv_us: u64,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 200 with the count.
    Count(u64),
    /// Anything else (a status, a timeout, a broken connection): maybe counted, maybe not.
    Failed(String),
}

impl Op {
    pub fn count(&self) -> Option<u64> {
        match self.outcome {
            Outcome::Count(n) => Some(n),
            Outcome::Failed(_) => None,
        }
    }
}

/// A `StateLost` condition seen on the actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loss {
    pub time_us: u64,
    pub reason: String,
    pub message: String,
}

/// One finding, with what shows it.
#[derive(Debug, Clone)]
pub struct Violation {
    pub actor: String,
    /// When it showed (microseconds since the epoch), to quote what was seen around it.
    pub at_us: u64,
    pub what: String,
    pub evidence: Vec<String>,
}

/// Conditions carry milliseconds, stamped in another process just before the write that
/// records them; answers are stamped here. This covers the truncation and the stamping
/// order with room to spare, and is far below any interval the checks care about.
const CLOCK_SLACK_US: u64 = 10_000;
/// Answers (and losses) quoted as evidence around a finding.
const EVIDENCE: usize = 4;
/// Losses quoted with a rollback no loss explains: those recorded this close to it.
const LOSSES_AROUND_US: u64 = 10_000_000;

/// `+S.mmm s` since the run's start.
pub fn at(us: u64, start_us: u64) -> String {
    let d = us as i64 - start_us as i64;
    format!("{:+.3}s", d as f64 / 1e6)
}

pub fn answer(op: &Op, start: u64) -> String {
    let what = match &op.outcome {
        Outcome::Count(n) => format!("answer {n}"),
        Outcome::Failed(why) => format!("failed ({why})"),
    };
    format!(
        "{what}: sent {} received {}",
        at(op.sent_us, start),
        at(op.recv_us, start)
    )
}

/// Checks one actor's history (`ops` in the order they were sent).
pub fn check(actor: &str, ops: &[Op], losses: &[Loss], start: u64) -> Vec<Violation> {
    let mut losses = losses.to_vec();
    losses.sort_by_key(|l| l.time_us);
    let mut found = Vec::new();
    let mut violation = |at_us: u64, what: String, evidence: Vec<String>| {
        found.push(Violation {
            actor: actor.to_string(),
            at_us,
            what,
            evidence,
        })
    };
    // Losses before this index explain earlier rollbacks.
    let mut next_loss = 0;
    let (mut failed, mut skipped) = (0u64, 0u64);
    // The last answer, and the first of the current run of increasing counts.
    let (mut last, mut run_start): (Option<usize>, usize) = (None, 0);
    for (i, op) in ops.iter().enumerate() {
        let Some(n) = op.count() else {
            failed += 1;
            continue;
        };
        let prev = last.and_then(|p| ops[p].count()).unwrap_or(0);
        last = Some(i);
        if n > prev {
            skipped += n - prev - 1;
            if skipped > failed {
                let mut evidence: Vec<String> = last_answers(ops, i, EVIDENCE)
                    .map(|o| answer(o, start))
                    .collect();
                evidence.push(format!(
                    "{skipped} counts skipped so far, {failed} failed requests to account for them"
                ));
                violation(
                    op.recv_us,
                    format!(
                        "count jumped from {prev} to {n}: a request was counted twice, or answered by an incarnation no client saw"
                    ),
                    evidence,
                );
                skipped = failed;
            }
            continue;
        }
        // Back (or the same count again): only from a loss recorded since the last one.
        let rolled: Vec<&Op> = ops[run_start..i]
            .iter()
            .filter(|o| o.count().is_some_and(|c| c >= n))
            .collect();
        let explaining = losses[next_loss..]
            .iter()
            .rposition(|l| l.time_us <= op.recv_us + CLOCK_SLACK_US)
            .map(|k| k + next_loss);
        run_start = i;
        let Some(k) = explaining else {
            let what = match n == prev {
                true => format!("answered {n} twice, with no StateLost recorded in between"),
                false => format!(
                    "went back from {prev} to {n} with no StateLost recorded since the last rollback: two incarnations answered"
                ),
            };
            let mut evidence: Vec<String> = rolled
                .iter()
                .take(EVIDENCE)
                .map(|o| answer(o, start))
                .collect();
            evidence.push(answer(op, start));
            let near: Vec<&Loss> = losses
                .iter()
                .filter(|l| l.time_us.abs_diff(op.recv_us) <= LOSSES_AROUND_US)
                .collect();
            match near.is_empty() {
                true => evidence.push("no StateLost recorded near it".into()),
                false => evidence.extend(
                    near.iter()
                        .rev()
                        .take(EVIDENCE)
                        .rev()
                        .map(|l| loss_line(l, start)),
                ),
            }
            violation(op.recv_us, what, evidence);
            continue;
        };
        next_loss = k + 1;
        let loss = &losses[k];
        // Answered by the old incarnation after the loss was recorded: no condition covers it.
        let late: Vec<&&Op> = rolled
            .iter()
            .filter(|o| o.sent_us > loss.time_us + CLOCK_SLACK_US)
            .collect();
        if let Some(first) = late.first() {
            let mut evidence = vec![loss_line(loss, start)];
            evidence.extend(late.iter().take(EVIDENCE).map(|o| answer(o, start)));
            evidence.push(format!("then, from the snapshot: {}", answer(op, start)));
            violation(
                first.recv_us,
                format!(
                    "{} answer(s) from an incarnation already declared lost, the first {} ms after the loss was recorded, later rolled back",
                    late.len(),
                    (first.sent_us - loss.time_us) / 1000
                ),
                evidence,
            );
        }
    }
    found
}

fn loss_line(l: &Loss, start: u64) -> String {
    format!(
        "StateLost at {} ({}: {})",
        at(l.time_us, start),
        l.reason,
        l.message
    )
}

/// Up to `n` answers before and including `i`.
fn last_answers(ops: &[Op], i: usize, n: usize) -> impl Iterator<Item = &Op> {
    let mut idx: Vec<usize> = (0..=i)
        .rev()
        .filter(|&j| ops[j].count().is_some())
        .take(n)
        .collect();
    idx.reverse();
    idx.into_iter().map(move |j| &ops[j])
}

/// The longest time the actor went without a successful answer, between `start` and `end`
/// (the workload's first request and the end of the run), and when that time began.
pub fn longest_gap(ops: &[Op], start: u64, end: u64) -> (Duration, u64) {
    let mut best = (0, start);
    let mut since = start;
    for op in ops.iter().filter(|o| o.count().is_some()) {
        if op.recv_us.saturating_sub(since) > best.0 {
            best = (op.recv_us - since, since);
        }
        since = since.max(op.recv_us);
    }
    if end.saturating_sub(since) > best.0 {
        best = (end - since, since);
    }
    (Duration::from_micros(best.0), best.1)
}

/// A violation as printed: the finding, then its evidence indented.
pub fn describe(v: &Violation) -> String {
    let mut s = format!("{}: {}", v.actor, v.what);
    for e in &v.evidence {
        let _ = write!(s, "\n      {e}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Times in tenths of a second, well apart from the clock slack.
    const TICK: u64 = 100_000;

    fn ok(t: u64, n: u64) -> Op {
        Op {
            sent_us: t * TICK,
            recv_us: t * TICK + TICK / 2,
            outcome: Outcome::Count(n),
        }
    }

    fn failed(t: u64) -> Op {
        Op {
            sent_us: t * TICK,
            recv_us: t * TICK + TICK / 2,
            outcome: Outcome::Failed("503".into()),
        }
    }

    fn loss(t: u64) -> Loss {
        Loss {
            time_us: t * TICK,
            reason: "NodeLost".into(),
            message: "node n1 lost".into(),
        }
    }

    fn verdicts(ops: &[Op], losses: &[Loss]) -> Vec<String> {
        check("a/c", ops, losses, 0)
            .into_iter()
            .map(|v| v.what)
            .collect()
    }

    #[test]
    fn a_clean_history_passes_and_failures_may_have_counted() {
        assert!(verdicts(&[ok(1, 1), ok(2, 2), ok(3, 3)], &[]).is_empty());
        // Two failed requests, counted or not: skips of up to two are explained.
        let ops = [ok(1, 1), failed(2), failed(3), ok(4, 4), ok(5, 5)];
        assert!(verdicts(&ops, &[]).is_empty());
        // A failed request early may be counted late (it waited in the router's queue).
        let ops = [failed(1), ok(2, 1), ok(3, 3)];
        assert!(verdicts(&ops, &[]).is_empty());
    }

    #[test]
    fn a_skip_no_failure_explains_is_a_violation() {
        let v = verdicts(&[ok(1, 1), failed(2), ok(3, 4)], &[]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("jumped from 1 to 4"), "{v:?}");
        // Reported once, not for every answer after it.
        let v = verdicts(&[ok(1, 1), ok(2, 3), ok(3, 4), ok(4, 5)], &[]);
        assert_eq!(v.len(), 1, "{v:?}");
    }

    #[test]
    fn going_back_needs_a_loss_recorded_before_it() {
        let ops = [ok(1, 1), ok(2, 2), ok(3, 3), ok(10, 2), ok(11, 3)];
        assert!(verdicts(&ops, &[loss(5)]).is_empty());
        let v = verdicts(&ops, &[]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("went back from 3 to 2"), "{v:?}");
        // A loss recorded after the rollback was answered explains nothing.
        assert_eq!(verdicts(&ops, &[loss(30)]).len(), 1);
        // The same count twice is a rollback too.
        let v = verdicts(&[ok(1, 1), ok(2, 1)], &[]);
        assert!(v[0].contains("answered 1 twice"), "{v:?}");
    }

    #[test]
    fn one_loss_explains_one_rollback() {
        // Two incarnations interleaved: 2 from the snapshot, then 4 from the old one, then
        // 3 from the new one; one loss covers the first going back, not the second.
        let ops = [
            ok(1, 1),
            ok(2, 2),
            ok(3, 3),
            ok(10, 2),
            ok(11, 4),
            ok(12, 3),
        ];
        let v = verdicts(&ops, &[loss(5)]);
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v[0].contains("jumped from 2 to 4"), "{v:?}");
        assert!(v[1].contains("went back from 4 to 3"), "{v:?}");
        // Two losses, two rollbacks: fine.
        let ops = [
            ok(1, 1),
            ok(2, 2),
            ok(3, 3),
            ok(10, 2),
            ok(11, 3),
            ok(20, 2),
        ];
        assert!(verdicts(&ops, &[loss(5), loss(15)]).is_empty());
    }

    #[test]
    fn an_answer_after_the_loss_was_recorded_is_not_covered() {
        // Declared lost at 5, yet the old incarnation answered 3 to a request sent at 6.
        let ops = [ok(1, 1), ok(2, 2), ok(6, 3), ok(10, 2)];
        let v = verdicts(&ops, &[loss(5)]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("already declared lost"), "{v:?}");
    }

    #[test]
    fn the_longest_gap_counts_the_edges() {
        let ops = [ok(10, 1), failed(20), ok(50, 2)];
        let (gap, from) = longest_gap(&ops, 0, 60 * TICK);
        assert_eq!((gap, from), (Duration::from_secs(4), 10 * TICK + TICK / 2));
        let (gap, from) = longest_gap(&ops, 0, 200 * TICK);
        assert_eq!(
            (gap.as_micros() as u64, from),
            (200 * TICK - 50 * TICK - TICK / 2, 50 * TICK + TICK / 2)
        );
        assert_eq!(longest_gap(&[], 0, 7).0, Duration::from_micros(7));
    }
}
