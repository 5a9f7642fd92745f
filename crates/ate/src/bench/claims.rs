//! Claim cost against pool size: `claim_worker` with a pool selector and with a
//! `cached_snapshot` selector, answered from indexes, next to the baseline a scheduler without
//! selectors has to run (list every worker, filter in memory, then a conditional update).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ate_model::{ActorRef, Assignment, FieldSelector, NamespacedName, Worker};
use ate_store::{ListOptions, Store, StoreError};
use clap::Args;

use super::machine::percentile;
use super::store_ops::{Scratch, fill};
use crate::stores;

#[derive(Debug, Args)]
pub struct ClaimBenchArgs {
    /// Store URL; defaults to a fresh SQLite file in a temporary directory.
    #[arg(long)]
    pub store: Option<String>,
    /// Pool sizes to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    pub workers: Vec<usize>,
    /// Claims measured per selector and size.
    #[arg(long, default_value_t = 500)]
    pub claims: usize,
    /// Baseline claims per size (each lists every worker).
    #[arg(long, default_value_t = 5)]
    pub baseline: usize,
}

/// Workers that hold one snapshot hot.
const HOT_PER_SNAPSHOT: usize = 4;

async fn seed(store: &Arc<dyn Store>, pool: &str, n: usize) -> anyhow::Result<()> {
    let pool = pool.to_string();
    fill(store, n, move |i| Worker {
        namespace: "bench".into(),
        pool: pool.clone(),
        name: format!("w-{i:07}"),
        node_name: format!("node-{}", i % 32),
        sandbox_class: "wasm".into(),
        cached_snapshots: vec![format!("{pool}-snap-{}", i / HOT_PER_SNAPSHOT)],
        ..Default::default()
    })
    .await
}

fn assignment(i: usize) -> Assignment {
    Assignment {
        actor: ActorRef::new("bench", format!("actor-{i:07}")),
        template: NamespacedName::new("bench", "t"),
        lease_generation: 0,
    }
}

fn summary(mut lat: Vec<Duration>) -> String {
    lat.sort();
    let total: Duration = lat.iter().sum();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    format!(
        "{:.0} µs | {:.0} µs | {:.0}/s",
        us(percentile(&lat, 50.0)),
        us(percentile(&lat, 99.0)),
        lat.len() as f64 / total.as_secs_f64().max(f64::EPSILON)
    )
}

/// One claim the way a scheduler without selectors does it.
async fn baseline_claim(store: &Arc<dyn Store>, pool: &str, a: &Assignment) -> anyhow::Result<()> {
    loop {
        let all = store.list_all::<Worker>(&ListOptions::default()).await?;
        let mut free = all
            .into_iter()
            .find(|w| w.pool == pool && w.is_free())
            .context("no free worker")?;
        free.assignment = Some(a.clone());
        match store.update(free).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

pub async fn run(args: ClaimBenchArgs) -> anyhow::Result<()> {
    let scratch = Scratch::new("ate-bench-claims")?;
    let url = args
        .store
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", scratch.0.join("bench.db").display()));
    let store = stores::open(&url, stores::DEFAULT_PATIENCE).await?;
    println!(
        "store: {}; {} claims per selector",
        stores::redact(&url),
        args.claims
    );
    println!();
    println!("| workers | selector | p50 | p99 | throughput |");
    println!("|---|---|---|---|---|");
    let mut next_actor = 0;
    for &n in &args.workers {
        let pool = format!("pool-{n}");
        let t = Instant::now();
        seed(&store, &pool, n).await?;
        tracing::info!(workers = n, seconds = t.elapsed().as_secs_f64(), "seeded");

        let by_pool = FieldSelector::eq([("pool", pool.as_str())]);
        let mut lat = Vec::new();
        let snapshots = n / HOT_PER_SNAPSHOT;
        for i in 0..args.claims.min(snapshots / 2) {
            // Each snapshot once, before any other claim: all its workers are free.
            let snap = format!("{pool}-snap-{}", snapshots - 1 - i);
            let sel = by_pool.clone().and_eq("cached_snapshot", &snap);
            let a = assignment(next_actor);
            next_actor += 1;
            let t = Instant::now();
            store.claim(&sel, &a).await?.context("no hot worker")?;
            lat.push(t.elapsed());
        }
        println!(
            "| {n} | `pool=P,actor_id=,cached_snapshot=S` | {} |",
            summary(lat)
        );

        let mut lat = Vec::new();
        for _ in 0..args.claims.min(n / 2) {
            let a = assignment(next_actor);
            next_actor += 1;
            let t = Instant::now();
            store.claim(&by_pool, &a).await?.context("no free worker")?;
            lat.push(t.elapsed());
        }
        println!("| {n} | `pool=P,actor_id=` | {} |", summary(lat));

        let mut lat = Vec::new();
        for _ in 0..args.baseline {
            let a = assignment(next_actor);
            next_actor += 1;
            let t = Instant::now();
            baseline_claim(&store, &pool, &a).await?;
            lat.push(t.elapsed());
        }
        println!(
            "| {n} | baseline: list all, filter in memory | {} |",
            summary(lat)
        );
    }
    Ok(())
}
