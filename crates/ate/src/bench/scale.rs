//! Many suspended actors: the data plane of `ate up` in this process (SQLite store, one
//! node with the default wasm pool, the router, the control API over gRPC with an admin
//! token), filled with suspended `demo/counter` actors through `CreateActor` as users
//! create them. At each checkpoint (by default 1,000, 10,000, 100,000 and 1,000,000
//! actors) it records the process's resident memory (the control plane lives here), the
//! store's size on disk, and the latency of what should not grow with the actor count: a
//! page of `ate get actors`, a worker claim as the scheduler makes it, and the activation
//! of an actor picked at random through the router.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ate_model::{ActorRef, Assignment, FieldSelector, NamespacedName, Worker};
use ate_proto::ateapi::control_client::ControlClient;
use ate_proto::ateapi::{
    ActorRef as PbActorRef, CreateActorRequest, CreateAtespaceRequest, ListActorsRequest,
};
use ate_proto::bearer::Bearer;
use ate_store::{Store, StoreError};
use clap::Args;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::in_process::InProcess;
use super::machine::rate;
use super::router::{Conn, count_of, fmt, get_request, spread, wait_golden};
use super::store_ops::Scratch;
use crate::{local, stores};

#[derive(Debug, Args)]
pub struct ScaleBenchArgs {
    /// Suspended demo/counter actors to create in all.
    #[arg(long, default_value_t = 1_000_000)]
    pub actors: usize,
    /// Actor counts at which to measure, comma-separated; counts above --actors are
    /// skipped and --actors itself is always measured.
    #[arg(
        long,
        value_delimiter = ',',
        default_values_t = [1_000usize, 10_000, 100_000, 1_000_000]
    )]
    pub checkpoints: Vec<usize>,
    /// Samples per measurement and checkpoint.
    #[arg(long, default_value_t = 50)]
    pub samples: usize,
    /// Concurrent gRPC clients creating actors, each on a connection of its own.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Atespaces the actors are spread over, round-robin.
    #[arg(long, default_value_t = 4)]
    pub atespaces: usize,
}

type Client = ControlClient<InterceptedService<Channel, Bearer>>;

const TEMPLATE: (&str, &str) = ("demo", "counter");
const ATESPACE_PREFIX: &str = "scale";
/// The largest page the control API serves, and the one `ate get actors` asks for.
const PAGE: i32 = 1000;
/// Time given to the process after a creation phase before its memory is read, so that
/// connection buffers and tasks of the phase are gone.
const SETTLE: Duration = Duration::from_secs(2);
/// How long a suspended actor's route may take to leave the router's table.
const ROUTE_GONE: Duration = Duration::from_secs(2);
/// Conditional updates tried when giving a claimed worker back.
const RELEASE_TRIES: usize = 8;
/// Creations between two progress lines on stderr (a million creations take minutes).
const PROGRESS_EVERY: usize = 100_000;
/// Seed of the actor picks: the same actors are activated on every run.
const SEED: u64 = 0x5ca1_ab1e;

/// The i-th actor: atespaces round-robin, ids unique over all of them.
fn actor_at(i: usize, spaces: &[String]) -> ActorRef {
    ActorRef::new(&spaces[i % spaces.len()], format!("counter-{i:07}"))
}

fn pb_ref(a: &ActorRef) -> PbActorRef {
    PbActorRef {
        atespace: a.atespace.clone(),
        name: a.id.clone(),
    }
}

/// Resident memory of this process, from `/proc/self/status`, in bytes.
fn rss() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")
        .context("cannot read /proc/self/status (Linux only)")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .context("no VmRSS in /proc/self/status")
}

/// Bytes of the SQLite file with its write-ahead log.
fn on_disk(db: &Path) -> u64 {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    [db.to_path_buf(), wal.into()]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// `1234567` as `1,234,567`.
fn grouped(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// SplitMix64: a few random picks need no dependency, and a fixed seed keeps runs alike.
struct Picks(u64);

impl Picks {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z % n.max(1) as u64) as usize
    }
}

/// Creates actors `from..to` through `CreateActor`, the clients taking the next index as
/// they finish one, so the slowest client does not hold the others back.
async fn create_range(
    clients: &[Client],
    spaces: &Arc<Vec<String>>,
    from: usize,
    to: usize,
) -> anyhow::Result<Duration> {
    let next = Arc::new(AtomicUsize::new(from));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for client in clients {
        let (mut client, next, spaces) = (client.clone(), next.clone(), spaces.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= to {
                    return anyhow::Ok(());
                }
                let a = actor_at(i, &spaces);
                client
                    .create_actor(CreateActorRequest {
                        actor_ref: Some(pb_ref(&a)),
                        actor_template_namespace: TEMPLATE.0.into(),
                        actor_template_name: TEMPLATE.1.into(),
                        worker_selector: None,
                    })
                    .await
                    .with_context(|| format!("cannot create actor {a}"))?;
                if i > 0 && i % PROGRESS_EVERY == 0 {
                    eprintln!(
                        "created {} actors ({:.0} s into this phase)",
                        grouped(i),
                        start.elapsed().as_secs_f64()
                    );
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(start.elapsed())
}

/// `samples` timed calls of one `ListActors` page; the rows of the last answer.
async fn time_list(
    client: &mut Client,
    request: &ListActorsRequest,
    samples: usize,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    let (mut lat, mut rows) = (Vec::with_capacity(samples), 0);
    for _ in 0..samples {
        let t = Instant::now();
        let page = client
            .list_actors(request.clone())
            .await
            .with_context(|| format!("ListActors {request:?}"))?
            .into_inner();
        lat.push(t.elapsed());
        rows = page.actors.len();
    }
    Ok((lat, rows))
}

/// Frees `worker` again if it still holds `actor`, as the lifecycle does on suspend.
async fn release(store: &Arc<dyn Store>, key: &str, actor: &ActorRef) -> anyhow::Result<()> {
    for _ in 0..RELEASE_TRIES {
        let mut w: Worker = store.get(key).await?;
        if w.assignment.as_ref().map(|a| &a.actor) != Some(actor) {
            return Ok(());
        }
        w.assignment = None;
        match store.update(w).await {
            Ok(_) => return Ok(()),
            // The fleet wrote the worker in between: read it again.
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    bail!("cannot release {key}: it kept changing under {RELEASE_TRIES} updates")
}

/// One checkpoint's samples: (measurement, rows answered, samples).
type Rows = Vec<(String, Option<usize>, Vec<Duration>)>;

pub async fn run(args: ScaleBenchArgs) -> anyhow::Result<()> {
    if args.actors == 0 || args.clients == 0 || args.atespaces == 0 || args.samples == 0 {
        bail!("--actors, --clients, --atespaces and --samples must be at least 1");
    }
    let mut checkpoints: Vec<usize> = args
        .checkpoints
        .iter()
        .copied()
        .filter(|&c| c > 0 && c < args.actors)
        .chain([args.actors])
        .collect();
    checkpoints.sort_unstable();
    checkpoints.dedup();
    if args.samples > checkpoints[0] {
        bail!(
            "--samples ({}) must not exceed the first checkpoint ({}): each activation takes an actor never activated before",
            args.samples,
            checkpoints[0]
        );
    }

    let scratch = Scratch::new("ate-bench-scale")?;
    let db = scratch.0.join("ate.db");
    let url = format!("sqlite://{}", db.display());
    let store = stores::open(&url, stores::DEFAULT_PATIENCE).await?;
    let InProcess {
        plane,
        router: routes,
        handle,
    } = InProcess::start(&store, &scratch.0).await?;
    let golden = wait_golden(&store).await?;
    let router_addr = handle.local_addr();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api_addr = listener.local_addr()?;
    let token = plane.control.admin_token("bench").await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(ate_control::serve(
        listener,
        plane.control.control_service(),
        async {
            let _ = stopped.await;
        },
    ));
    let bearer = Bearer::new(Some(&token))?;
    let endpoint = format!("http://{api_addr}");
    let mut clients = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        let channel = ate_seam::endpoint(&endpoint)?
            .connect()
            .await
            .with_context(|| format!("cannot connect to the control API at {endpoint}"))?;
        clients.push(ControlClient::with_interceptor(channel, bearer.clone()));
    }
    let mut client = clients[0].clone();
    let spaces: Arc<Vec<String>> = Arc::new(
        (0..args.atespaces)
            .map(|s| format!("{ATESPACE_PREFIX}-{s}"))
            .collect(),
    );
    for s in spaces.iter() {
        client
            .create_atespace(CreateAtespaceRequest { name: s.clone() })
            .await
            .with_context(|| format!("cannot create atespace {s}"))?;
    }
    println!(
        "store: SQLite in a temporary directory; node: {} wasm workers in process; control API over gRPC on loopback with an admin token; router on loopback; golden snapshot ready after {}",
        local::DEFAULT_POOL_REPLICAS,
        fmt(golden)
    );
    println!(
        "{} demo/counter actors created suspended through CreateActor by {} clients (one connection each) over {} atespaces; {} samples per measurement at {}",
        grouped(args.actors),
        args.clients,
        args.atespaces,
        args.samples,
        checkpoints
            .iter()
            .map(|c| grouped(*c))
            .collect::<Vec<_>>()
            .join(", ")
    );
    tokio::time::sleep(SETTLE).await;
    let baseline = rss()?;
    println!(
        "resident memory before any actor: {} (store on disk {})",
        mib(baseline),
        mib(on_disk(&db))
    );

    let claim_selector = FieldSelector::eq([
        ("namespace", local::DEFAULT_POOL.0),
        ("pool", local::DEFAULT_POOL.1),
        ("actor_id", ""),
    ]);
    let space0 = spaces[0].clone();
    let lists = [
        (
            "`ate get actors -A`: first page (1,000) over every atespace",
            ListActorsRequest {
                page_size: PAGE,
                ..Default::default()
            },
        ),
        (
            "`ate get actors -a scale-0 --field-selector status=SUSPENDED`: first page",
            ListActorsRequest {
                page_size: PAGE,
                atespace: space0.clone(),
                field_selector: "status=SUSPENDED".into(),
                ..Default::default()
            },
        ),
        (
            "`ate get actors -A --field-selector status=RUNNING` (none running)",
            ListActorsRequest {
                page_size: PAGE,
                field_selector: "status=RUNNING".into(),
                ..Default::default()
            },
        ),
    ];
    let mut picks = Picks(SEED);
    let mut activated = std::collections::HashSet::new();
    let mut memory = Vec::new();
    let mut all_rows: Vec<(usize, Rows)> = Vec::new();
    let mut created = 0;
    let whole = Instant::now();
    for &target in &checkpoints {
        let took = create_range(&clients, &spaces, created, target).await?;
        let made = target - created;
        created = target;
        println!(
            "{} actors: {} created in {:.1} s, {:.0} creates/s",
            grouped(created),
            grouped(made),
            took.as_secs_f64(),
            rate(made, took)
        );
        tokio::time::sleep(SETTLE).await;
        let settled = rss()?;
        let disk = on_disk(&db);

        let mut rows: Rows = Vec::new();
        for (name, request) in &lists {
            let (lat, n) = time_list(&mut client, request, args.samples).await?;
            rows.push((name.to_string(), Some(n), lat));
        }

        // Claims as the scheduler makes them (the `any free worker` tier), each given back
        // at once so the next finds the pool as free as the first did.
        let mut lat = Vec::with_capacity(args.samples);
        for _ in 0..args.samples {
            let aref = actor_at(picks.below(created), &spaces);
            let assignment = Assignment {
                actor: aref.clone(),
                template: NamespacedName::new(TEMPLATE.0, TEMPLATE.1),
                lease_generation: 0,
            };
            let t = Instant::now();
            let claimed = store.claim(&claim_selector, &assignment).await?;
            lat.push(t.elapsed());
            let w = claimed.context("no free worker to claim: is an actor still running?")?;
            release(&store, &w.key(), &aref).await?;
        }
        rows.push((
            "worker claim `namespace=default,pool=wasm,actor_id=` (then released)".into(),
            None,
            lat,
        ));

        // Activations of actors never run before (each answers 1), suspended again after.
        let mut conn = Conn::open(router_addr).await?;
        let mut lat = Vec::with_capacity(args.samples);
        for _ in 0..args.samples {
            let k = loop {
                let k = picks.below(created);
                if activated.insert(k) {
                    break k;
                }
            };
            let aref = actor_at(k, &spaces);
            let reply = conn.get(&get_request(&aref)).await?;
            let n = count_of(&reply).with_context(|| format!("request to {aref}"))?;
            if n != 1 {
                bail!("{aref} answered {n} to its first request, not 1");
            }
            lat.push(reply.first_byte);
            plane
                .control
                .lifecycle
                .suspend(&aref)
                .await
                .with_context(|| format!("cannot suspend {aref}"))?;
            // The next request must find no route left behind by this one.
            let deadline = Instant::now() + ROUTE_GONE;
            while routes.routes() > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
        drop(conn);
        rows.push((
            "activation of a random suspended actor: request → first response byte".into(),
            None,
            lat,
        ));
        let measured = rss()?;
        memory.push((created, made, took, settled, measured, disk));
        all_rows.push((created, rows));
    }
    let elapsed = whole.elapsed();

    println!();
    println!(
        "Memory: resident set of this process (control plane, node, router, gRPC clients), {SETTLE:?} after the creations and again after the measurements; {} before any actor.",
        mib(baseline)
    );
    println!();
    println!(
        "| suspended actors | creates/s (since previous row) | resident memory | after measurements | store on disk |"
    );
    println!("|---|---|---|---|---|");
    for (n, made, took, settled, measured, disk) in &memory {
        println!(
            "| {} | {:.0} | {} | {} | {} |",
            grouped(*n),
            rate(*made, *took),
            mib(*settled),
            mib(*measured),
            mib(*disk)
        );
    }
    println!();
    println!("| suspended actors | measurement | rows | p50 | p95 | p99 | max |");
    println!("|---|---|---|---|---|---|---|");
    for (n, rows) in all_rows {
        for (name, answered, lat) in rows {
            let (p50, p95, p99, max) = spread(lat);
            println!(
                "| {} | {name} | {} | {} | {} | {} | {} |",
                grouped(n),
                answered.map_or_else(|| "".to_string(), grouped),
                fmt(p50),
                fmt(p95),
                fmt(p99),
                fmt(max)
            );
        }
    }
    println!();
    println!(
        "Whole run after start-up: {:.0} s; {} actors activated once each and suspended again.",
        elapsed.as_secs_f64(),
        activated.len()
    );

    let _ = stop.send(());
    server.await??;
    handle.shutdown().await;
    Ok(())
}
