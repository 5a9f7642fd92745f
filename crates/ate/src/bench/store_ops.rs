//! Store operation throughput and latency: create, get, conditional update and claim, with
//! one client and with several concurrent clients.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use ate_model::{Actor, ActorRef, Assignment, Atespace, FieldSelector, NamespacedName, Worker};
use ate_store::Store;
use clap::Args;

use super::machine::{percentile, rate};
use crate::stores;

#[derive(Debug, Args)]
pub struct StoreBenchArgs {
    /// Store URL; defaults to a fresh SQLite file in a temporary directory.
    #[arg(long)]
    pub store: Option<String>,
    /// Operations per phase.
    #[arg(long, default_value_t = 20_000)]
    pub ops: usize,
    /// Concurrent clients for the concurrent run.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
}

/// A scratch directory removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(prefix: &str) -> anyhow::Result<Self> {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let suffix: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let dir = std::env::temp_dir().join(format!("{prefix}-{suffix}"));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Creates `n` objects made by `make(i)` over eight concurrent tasks, to fill a store fast.
pub async fn fill<T, F>(store: &Arc<dyn Store>, n: usize, make: F) -> anyhow::Result<()>
where
    T: ate_store::Object + 'static,
    F: Fn(usize) -> T + Send + Sync + 'static,
{
    const TASKS: usize = 8;
    let make = Arc::new(make);
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let (store, make) = (store.clone(), make.clone());
            tokio::spawn(async move {
                for i in (t..n).step_by(TASKS) {
                    store.create(make(i)).await?;
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(())
}

struct Stats {
    ops_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

/// Runs `ops` calls of `op(i)` spread over `clients` tasks.
async fn measure<F, Fut>(clients: usize, ops: usize, op: F) -> anyhow::Result<Stats>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(ops / clients + 1);
                for i in (c..ops).step_by(clients) {
                    let t = Instant::now();
                    op(i).await?;
                    lat.push(t.elapsed());
                }
                Ok::<_, anyhow::Error>(lat)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(ops);
    for t in tasks {
        all.extend(t.await??);
    }
    let took = start.elapsed();
    all.sort();
    Ok(Stats {
        ops_per_sec: rate(ops, took),
        p50: percentile(&all, 50.0),
        p99: percentile(&all, 99.0),
    })
}

fn actor(atespace: &str, i: usize) -> Actor {
    Actor {
        atespace: atespace.into(),
        id: format!("actor-{i:07}"),
        template: NamespacedName::new("bench", "t"),
        ..Default::default()
    }
}

async fn run_once(
    store: Arc<dyn Store>,
    clients: usize,
    ops: usize,
) -> anyhow::Result<Vec<(String, Stats)>> {
    let ns = format!("bench-{clients}");
    store
        .create(Atespace {
            name: ns.clone(),
            version: 0,
        })
        .await?;
    let mut out = Vec::new();

    let (s, n) = (store.clone(), ns.clone());
    let created: Arc<Vec<Mutex<Option<Actor>>>> =
        Arc::new((0..ops).map(|_| Mutex::new(None)).collect());
    let slots = created.clone();
    out.push((
        "create".into(),
        measure(clients, ops, move |i| {
            let (s, n, slots) = (s.clone(), n.clone(), slots.clone());
            async move {
                let a = s.create(actor(&n, i)).await?;
                if let Ok(mut slot) = slots[i].lock() {
                    *slot = Some(a);
                }
                Ok(())
            }
        })
        .await?,
    ));

    let (s, n) = (store.clone(), ns.clone());
    out.push((
        "get".into(),
        measure(clients, ops, move |i| {
            let (s, key) = (s.clone(), format!("{n}/actor-{:07}", (i * 7919) % ops));
            async move {
                s.get::<Actor>(&key).await?;
                Ok(())
            }
        })
        .await?,
    ));

    let s = store.clone();
    out.push((
        "conditional update".into(),
        measure(clients, ops, move |i| {
            let (s, slots) = (s.clone(), created.clone());
            async move {
                let current = slots[i]
                    .lock()
                    .ok()
                    .and_then(|g| g.clone())
                    .context("no actor")?;
                let mut next = current;
                next.in_progress_snapshot = format!("snap-{i}");
                let stored = s.update(next).await?;
                if let Ok(mut slot) = slots[i].lock() {
                    *slot = Some(stored);
                }
                Ok(())
            }
        })
        .await?,
    ));

    let pool = format!("pool-{clients}");
    for i in 0..ops {
        store
            .create(Worker {
                namespace: "bench".into(),
                pool: pool.clone(),
                name: format!("w-{i:07}"),
                node_name: format!("node-{}", i % 16),
                sandbox_class: "wasm".into(),
                ..Default::default()
            })
            .await?;
    }
    let s = store.clone();
    let sel = FieldSelector::eq([("pool", pool.as_str()), ("actor_id", "")]);
    out.push((
        "claim (pool selector)".into(),
        measure(clients, ops, move |i| {
            let (s, sel, n) = (s.clone(), sel.clone(), ns.clone());
            async move {
                let a = Assignment {
                    actor: ActorRef::new(n, format!("actor-{i:07}")),
                    template: NamespacedName::new("bench", "t"),
                    lease_generation: 0,
                };
                s.claim(&sel, &a).await?.context("no free worker")?;
                Ok(())
            }
        })
        .await?,
    ));
    Ok(out)
}

pub async fn run(args: StoreBenchArgs) -> anyhow::Result<()> {
    let scratch = Scratch::new("ate-bench")?;
    let url = args
        .store
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", scratch.0.join("bench.db").display()));
    let store = stores::open(&url, stores::DEFAULT_PATIENCE).await?;
    println!("store: {url}; {} operations per phase", args.ops);
    println!();
    println!("| operation | clients | ops/s | p50 | p99 |");
    println!("|---|---|---|---|---|");
    for clients in [1, args.clients.max(2)] {
        for (name, s) in run_once(store.clone(), clients, args.ops).await? {
            println!(
                "| {name} | {clients} | {:.0} | {:.1} µs | {:.1} µs |",
                s.ops_per_sec,
                s.p50.as_secs_f64() * 1e6,
                s.p99.as_secs_f64() * 1e6
            );
        }
    }
    Ok(())
}
