//! `ate bench chaos`: the split deployment on this machine (PostgreSQL, two control-plane
//! replicas, three node daemons, a router, each its own `ate serve` process, every link
//! through a fault proxy in this process) under a steady workload of counters, while faults
//! are injected on a schedule drawn from `--seed`: processes killed and restarted, frozen
//! and thawed, the store restarted, a node partitioned from the replicas while the router
//! still reaches it, links slowed. Afterwards everything is healed and left to settle, and
//! the history is checked. Invariant: the run's verdict is the list of violations it prints
//! with their evidence; it fails (nonzero exit) exactly when that list is not empty.

mod checks;
mod cluster;
mod history;
mod inject;
mod proxy;
mod report;
mod schedule;
mod workload;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;

use super::store_ops::Scratch;
use checks::{answer_again, consistent};
use cluster::{ATESPACE, Cluster, NODES, REPLICAS};
use history::{at, now_us};
use inject::{describe, hold, inject};
use report::{Run, report, write_history};
use schedule::{Kind, Schedule};
use workload::{Clients, Observer};

#[derive(Debug, Args)]
pub struct ChaosBenchArgs {
    /// Minutes of faults.
    #[arg(long, default_value_t = 1)]
    pub minutes: u64,
    /// Seconds of faults, instead of --minutes (for short runs).
    #[arg(long)]
    pub seconds: Option<u64>,
    /// Seed of the fault schedule: the same seed, the same faults in the same order.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// demo/counter actors, each asked by a client of its own.
    #[arg(long, default_value_t = 8)]
    pub actors: usize,
    /// wasm workers over the three nodes; fewer than actors, so actors are evicted and
    /// resumed all the time, faults or not.
    #[arg(long, default_value_t = 6)]
    pub workers: usize,
    /// Pause of each client between an answer and its next request, in milliseconds.
    #[arg(long, default_value_t = 20)]
    pub think_ms: u64,
    /// Log level of the components (`RUST_LOG`), written to their logs.
    #[arg(long, default_value = "warn")]
    pub log: String,
    /// Keep the components' logs and data when the run passes too (a failed run keeps them).
    #[arg(long)]
    pub keep: bool,
}

/// After the last fault is healed, the workload goes on this long before it stops: longer
/// than a node's liveness timeout and the replicas' lease, so recovery has run.
const SETTLE: Duration = Duration::from_secs(10);

pub async fn run(args: ChaosBenchArgs) -> anyhow::Result<()> {
    let scratch = Scratch::new("ate-bench-chaos")?;
    let dir = scratch.0.clone();
    let outcome = chaos(&args, &dir).await;
    // Keep the logs and the data of a failed run for whoever looks into it.
    if args.keep || !matches!(outcome, Ok(0)) {
        std::mem::forget(scratch);
        println!("logs and data kept in {}", dir.display());
    }
    match outcome? {
        0 => Ok(()),
        n => bail!("{n} violations; logs and data kept in {}", dir.display()),
    }
}

/// The run in `dir`: the number of violations it found.
async fn chaos(args: &ChaosBenchArgs, dir: &std::path::Path) -> anyhow::Result<usize> {
    let span = Duration::from_secs(args.seconds.unwrap_or(args.minutes * 60));
    let net = proxy::Network::new();
    let mut cluster = Cluster::start(dir, &net, &args.log, args.workers, args.actors).await?;
    println!(
        "chaos: seed {}, {} s of faults; PostgreSQL, {} replicas, {} nodes (liveness {} s), a router, each its own process, every link through a fault proxy; {} demo/counter actors on {} workers, one client each",
        args.seed,
        span.as_secs(),
        REPLICAS.len(),
        NODES.len(),
        cluster::LIVENESS.as_secs(),
        cluster.actors.len(),
        args.workers,
    );
    println!("logs: {}", dir.join("logs").display());
    let observer = Observer::start(
        cluster.api.clone(),
        &cluster.store_url,
        cluster.actors.clone(),
    )
    .await?;
    let start = now_us();
    let clients = Clients::start(
        cluster.router_addr,
        &cluster.actors,
        Duration::from_millis(args.think_ms),
    );

    let mut schedule = Schedule::new(args.seed, NODES.len(), REPLICAS.len());
    let mut faults: BTreeMap<&str, usize> = Kind::ALL.iter().map(|k| (k.name(), 0)).collect();
    let began = Instant::now();
    loop {
        let (gap, fault) = schedule.next_fault();
        if began.elapsed() + gap + hold(&fault) > span {
            break;
        }
        tokio::time::sleep(gap).await;
        println!("{}  {}", at(now_us(), start), describe(&fault));
        inject(&mut cluster, &fault).await?;
        *faults.entry(fault.kind().name()).or_default() += 1;
    }
    cluster.heal_all().await?;
    println!(
        "{}  healed; settling for {} s",
        at(now_us(), start),
        SETTLE.as_secs()
    );
    tokio::time::sleep(SETTLE).await;
    let stopped = now_us();
    let mut histories = clients.stop().await;
    // Unavailability is measured over the workload's span, before the final asks.
    let gaps: Vec<_> = histories
        .iter()
        .map(|ops| history::longest_gap(ops, start, stopped))
        .collect();

    let (finals, mut violations) = answer_again(&cluster, &histories, start).await;
    violations.extend(consistent(&cluster).await);
    let observed = observer.stop().await;
    for (i, actor) in cluster.actors.iter().enumerate() {
        histories[i].extend(finals[i].iter().cloned());
        violations.extend(history::check(
            &actor.to_string(),
            &histories[i],
            &observed.losses[i],
            start,
        ));
    }
    let run = Run {
        start,
        stopped,
        gaps,
        finals,
        faults,
    };
    report(&cluster, &histories, &observed, &run, &violations);
    if args.keep || !violations.is_empty() {
        let actors: Vec<String> = cluster.actors.iter().map(|a| a.to_string()).collect();
        write_history(&dir.join("history.tsv"), &actors, &histories, start)?;
        println!("every request is in {}", dir.join("history.tsv").display());
    }
    Ok(violations.len())
}
