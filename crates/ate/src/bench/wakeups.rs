//! `ate bench wakeups`: many more actors than workers, asked by concurrent keep-alive
//! clients, so that most requests wake an actor that was evicted and evict another. The
//! clients pick actors uniformly, then with a Zipf skew; every answer is checked against
//! the count the actor must have reached (a client holds an actor while it asks it, so
//! each count is known exactly). Run on the data plane of `ate up` in this process and on
//! the split deployment (real `ate serve` processes, as `ate bench split` starts them).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ate_dataspace::{Assertion, Dataspace};
use ate_model::ActorRef;
use ate_seam::{Route, actor_key};
use ate_store::Store;
use clap::Args;
use tokio::sync::Mutex;

use super::in_process::InProcess;
use super::machine::percentile;
use super::router::{Conn, count_of, create_actors, fmt, get_request, wait_golden};
use super::split::Cluster;
use super::store_ops::Scratch;
use crate::stores;

#[derive(Debug, Args)]
pub struct WakeupsBenchArgs {
    /// Actors per worker (4 workers in process, as `ate up` has; 4 over two nodes split).
    #[arg(long, default_value_t = 10)]
    pub actors_per_worker: usize,
    /// Concurrent keep-alive clients.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Unmeasured seconds before each run.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Exponent of the skewed runs' Zipf distribution over the actors.
    #[arg(long, default_value_t = 1.0)]
    pub zipf: f64,
    /// Deployments to measure: `local` (in this process) and `split` (separate processes).
    #[arg(long, value_delimiter = ',', default_value = "local,split")]
    pub deployments: Vec<String>,
}

/// Workers in either deployment.
const WORKERS: usize = 4;

/// How clients pick the next actor.
#[derive(Debug, Clone)]
enum Pick {
    Uniform,
    /// Cumulative weights of ranks 1..=n, each 1/rank^s.
    Zipf(Arc<Vec<f64>>),
}

impl Pick {
    fn zipf(n: usize, s: f64) -> Self {
        let mut total = 0.0;
        let cdf = (1..=n)
            .map(|k| {
                total += 1.0 / (k as f64).powf(s);
                total
            })
            .collect::<Vec<_>>();
        Pick::Zipf(Arc::new(cdf.into_iter().map(|c| c / total).collect()))
    }

    fn name(&self) -> &'static str {
        match self {
            Pick::Uniform => "uniform",
            Pick::Zipf(_) => "zipf",
        }
    }

    fn next(&self, rng: &mut Rng, n: usize) -> usize {
        match self {
            Pick::Uniform => (rng.next() % n as u64) as usize,
            Pick::Zipf(cdf) => {
                let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
                cdf.partition_point(|c| *c < u).min(n - 1)
            }
        }
    }
}

/// xorshift64*: enough randomness to spread requests, no dependency for it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Where the load goes, and how to tell whether an actor has a route before asking it.
struct Target {
    router: SocketAddr,
    actors: Vec<ActorRef>,
    /// Routes as the router sees them.
    routes: Dataspace,
    metrics: Metrics,
}

/// Where the deployment's counters are read.
enum Metrics {
    /// The recorder of this process.
    Local(metrics_exporter_prometheus::PrometheusHandle),
    /// The admin ports of the control plane and of the router.
    Split { api: SocketAddr, router: SocketAddr },
}

impl Metrics {
    async fn counters(&self) -> anyhow::Result<Counters> {
        match self {
            Metrics::Local(h) => Ok(counters_of(&h.render())),
            Metrics::Split { api, router } => Ok(Counters {
                activations: counters_of(&scrape(*router).await?).activations,
                evictions: counters_of(&scrape(*api).await?).evictions,
            }),
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    activations: f64,
    evictions: f64,
}

fn counter(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

fn counters_of(page: &str) -> Counters {
    Counters {
        activations: counter(page, r#"ate_router_activations_total{outcome="ok"}"#),
        evictions: counter(page, r#"ate_actor_evictions_total{outcome="ok"}"#),
    }
}

/// What one run measured.
#[derive(Debug, Default)]
struct Run {
    requests: usize,
    errors: usize,
    first_error: Option<String>,
    activation: Vec<Duration>,
    running: Vec<Duration>,
    counters: Counters,
    elapsed: Duration,
}

async fn client(
    target: Arc<Target>,
    counts: Arc<Vec<Mutex<u64>>>,
    pick: Pick,
    seed: u64,
    measure_from: Instant,
    until: Instant,
) -> anyhow::Result<Run> {
    let mut conn = Conn::open(target.router).await?;
    let mut rng = Rng(seed | 1);
    let mut run = Run::default();
    let n = target.actors.len();
    while Instant::now() < until {
        let mut k = pick.next(&mut rng, n);
        // Another client is asking that actor: take another, so no count is ambiguous.
        let mut tries = 0;
        let mut count = loop {
            match counts[k].try_lock() {
                Ok(c) => break c,
                Err(_) if tries < 8 => {
                    tries += 1;
                    k = pick.next(&mut rng, n);
                }
                Err(_) => break counts[k].lock().await,
            }
        };
        let actor = &target.actors[k];
        let routed = target.routes.get::<Route>(&actor_key(actor)).is_some();
        let reply = conn.get(&get_request(actor)).await?;
        let measured = Instant::now() >= measure_from;
        match count_of(&reply) {
            Ok(c) if c == *count + 1 => *count = c,
            Ok(c) => {
                run.errors += 1;
                run.first_error.get_or_insert(format!(
                    "{actor} answered {c} after {}: state lost or doubled",
                    *count
                ));
                *count = c;
            }
            Err(e) => {
                run.errors += 1;
                run.first_error.get_or_insert(format!("{actor}: {e}"));
            }
        }
        if measured {
            run.requests += 1;
            if routed {
                run.running.push(reply.first_byte);
            } else {
                run.activation.push(reply.first_byte);
            }
        }
    }
    Ok(run)
}

async fn load(
    target: &Arc<Target>,
    counts: &Arc<Vec<Mutex<u64>>>,
    pick: &Pick,
    args: &WakeupsBenchArgs,
) -> anyhow::Result<Run> {
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(args.warmup);
    let until = measure_from + Duration::from_secs(args.seconds);
    let mut before = Counters::default();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..args.clients.max(1) {
        tasks.spawn(client(
            target.clone(),
            counts.clone(),
            pick.clone(),
            0x9E37_79B9_7F4A_7C15u64.wrapping_mul(c as u64 + 1),
            measure_from,
            until,
        ));
    }
    tokio::time::sleep_until(measure_from.into()).await;
    if let Ok(c) = target.metrics.counters().await {
        before = c;
    }
    let mut total = Run::default();
    for r in tasks.join_all().await {
        let r = r?;
        total.requests += r.requests;
        total.errors += r.errors;
        if total.first_error.is_none() {
            total.first_error = r.first_error;
        }
        total.activation.extend(r.activation);
        total.running.extend(r.running);
    }
    total.elapsed = until.duration_since(measure_from);
    let after = target.metrics.counters().await?;
    total.counters = Counters {
        activations: after.activations - before.activations,
        evictions: after.evictions - before.evictions,
    };
    Ok(total)
}

fn report(deployment: &str, pick: &Pick, args: &WakeupsBenchArgs, mut run: Run) {
    let secs = run.elapsed.as_secs_f64();
    run.activation.sort();
    let p = |q: f64| {
        if run.activation.is_empty() {
            "-".to_string()
        } else {
            fmt(percentile(&run.activation, q))
        }
    };
    println!(
        "| {deployment} | {} | {} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} |",
        pick.name(),
        args.clients,
        run.requests as f64 / secs,
        run.counters.activations / secs,
        run.counters.evictions / secs,
        p(50.0),
        p(95.0),
        p(99.0),
        run.errors
    );
    if let Some(e) = run.first_error {
        println!("  first error: {e}");
    }
}

fn header() {
    println!(
        "| deployment | actors picked | clients | requests/s | activations/s | evictions/s | activation p50 | p95 | p99 | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
}

async fn local(args: &WakeupsBenchArgs, picks: &[Pick]) -> anyhow::Result<()> {
    let scratch = Scratch::new("ate-bench-wakeups")?;
    let url = format!("sqlite://{}", scratch.0.join("ate.db").display());
    let store: Arc<dyn Store> = stores::open(&url, stores::DEFAULT_PATIENCE).await?;
    let local = InProcess::start(&store, &scratch.0).await?;
    let metrics = crate::edge::metrics_handle()?;
    wait_golden(&store).await?;
    let actors = create_actors(&store, WORKERS * args.actors_per_worker).await?;
    let counts = Arc::new((0..actors.len()).map(|_| Mutex::new(0)).collect::<Vec<_>>());
    let target = Arc::new(Target {
        router: local.router_addr(),
        actors,
        routes: local.plane.control.nodes.dataspace().clone(),
        metrics: Metrics::Local(metrics),
    });
    for pick in picks {
        let run = load(&target, &counts, pick, args).await?;
        report("in process", pick, args, run);
    }
    drop(local);
    Ok(())
}

/// `GET /metrics` of an admin port.
async fn scrape(addr: SocketAddr) -> anyhow::Result<String> {
    let mut conn = Conn::open(addr).await?;
    let reply = conn
        .get(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await?;
    if reply.status != 200 {
        bail!("metrics: status {}", reply.status);
    }
    Ok(String::from_utf8_lossy(reply.body()).into_owned())
}

async fn split(args: &WakeupsBenchArgs, picks: &[Pick]) -> anyhow::Result<()> {
    let scratch = Scratch::new("ate-bench-wakeups-split")?;
    let cluster = Cluster::start(&scratch.0, WORKERS, WORKERS * args.actors_per_worker).await?;
    let (routes, follower) =
        ate_seam::follow_control(vec![cluster.endpoint.clone()], &[Route::TYPE]);
    let _follower = follower;
    let host_port = |a: String| -> anyhow::Result<SocketAddr> {
        let a = a.split('/').next().unwrap_or_default();
        a.parse()
            .with_context(|| format!("not an admin address: {a:?}"))
    };
    let api_metrics = host_port(cluster.api.addr("metrics")?)?;
    let router_metrics = host_port(cluster.router.addr("metrics")?)?;
    let counts = Arc::new(
        (0..cluster.actors.len())
            .map(|_| Mutex::new(0))
            .collect::<Vec<_>>(),
    );
    let target = Arc::new(Target {
        router: cluster.router.addr("router")?.parse()?,
        actors: cluster.actors.clone(),
        routes,
        metrics: Metrics::Split {
            api: api_metrics,
            router: router_metrics,
        },
    });
    for pick in picks {
        let run = load(&target, &counts, pick, args).await?;
        report("split", pick, args, run);
    }
    drop(cluster);
    Ok(())
}

pub async fn run(args: WakeupsBenchArgs) -> anyhow::Result<()> {
    if args.actors_per_worker == 0 {
        bail!("--actors-per-worker must be at least 1");
    }
    let n = WORKERS * args.actors_per_worker;
    let picks = [Pick::Uniform, Pick::zipf(n, args.zipf)];
    println!(
        "{n} demo/counter actors on {WORKERS} wasm workers, {} keep-alive clients, {} s measured after {} s of warm-up per run; zipf exponent {}",
        args.clients, args.seconds, args.warmup, args.zipf
    );
    println!(
        "activation: first byte of a request whose actor had no route when it was sent (as the router's own route table saw it)"
    );
    header();
    for d in &args.deployments {
        match d.as_str() {
            "local" => local(&args, &picks).await?,
            "split" => split(&args, &picks).await?,
            other => bail!("--deployments: unknown deployment {other:?} (local, split)"),
        }
    }
    Ok(())
}
