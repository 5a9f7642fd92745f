//! The split deployment, as real `ate serve` processes on this machine: a control plane on
//! SQLite, two node daemons and a router, each its own process. Measures activation through
//! the router when the node is across a gRPC hop (to set next to the in-process figure of
//! `ate bench router`), and how long a node killed with SIGKILL leaves its actors unusable:
//! until they are SUSPENDED, and until a request is answered from the other node.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ate_model::ActorRef;
use ate_proto::ateapi::control_client::ControlClient;
use ate_proto::ateapi::{GetActorRequest, SuspendActorRequest};
use ate_proto::bearer::Bearer;
use clap::Args;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::router::{Conn, count_of, fmt, get_request, spread};
use super::store_ops::Scratch;

#[derive(Debug, Args)]
pub struct SplitBenchArgs {
    /// Activations measured (each: suspend, untimed, then one request through the router).
    #[arg(long, default_value_t = 500)]
    pub activations: usize,
    /// demo/counter actors, used round-robin.
    #[arg(long, default_value_t = 4)]
    pub actors: usize,
    /// Node deaths measured.
    #[arg(long, default_value_t = 3)]
    pub deaths: usize,
}

const ATESPACE: &str = "bench";
const COUNTER: &[u8] = include_bytes!("../../../../demo/counter/counter.wat");

/// An `ate serve` process; killed when dropped.
pub(super) struct Process {
    child: Child,
    printed: HashMap<String, String>,
}

impl Process {
    fn serve(args: &[&str]) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find the ate binary")?;
        let mut child = Command::new(exe)
            .arg("serve")
            .args(args)
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start ate serve")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut printed = HashMap::new();
        loop {
            let Some(line) = lines.next() else {
                bail!("ate serve {args:?} exited before it was up");
            };
            let line = line?;
            let line = line.trim();
            for field in ["control API", "router", "metrics"] {
                if let Some(rest) = line.strip_prefix(field) {
                    let value = rest.split_whitespace().next().unwrap_or_default();
                    printed.insert(field.to_string(), value.to_string());
                }
            }
            if printed.contains_key("metrics") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Ok(Self { child, printed })
    }

    pub fn addr(&self, field: &str) -> anyhow::Result<String> {
        self.printed
            .get(field)
            .map(|a| a.trim_start_matches("http://").to_string())
            .with_context(|| format!("ate serve printed no {field} address"))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn node(dir: &Path, name: &str, control: &str) -> anyhow::Result<Process> {
    let snapshots = format!("file://{}", dir.join("snapshots").display());
    let data = dir.join(name).display().to_string();
    Process::serve(&[
        "--roles",
        "node",
        "--node-name",
        name,
        "--control",
        control,
        "--snapshots",
        &snapshots,
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--data-dir",
        &data,
    ])
}

/// The bootstrap admin token the replica wrote, once [`run`] has read it.
static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Runs a client command against `endpoint` as the bootstrap admin; its stdout.
fn ate(endpoint: &str, args: &[&str]) -> anyhow::Result<String> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe)
        .args(args)
        .env("ATE_ENDPOINT", format!("http://{endpoint}"))
        .env(
            "ATE_TOKEN",
            TOKEN.get().map(String::as_str).unwrap_or_default(),
        )
        .output()?;
    if !out.status.success() {
        bail!(
            "ate {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `(node, actor)` for each busy worker, from `ate get workers -A`.
fn placements(endpoint: &str) -> anyhow::Result<Vec<(String, String)>> {
    Ok(ate(endpoint, &["get", "workers", "-A"])?
        .lines()
        .skip(1)
        .filter_map(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            (c.len() >= 6 && c[5] != "<none>").then(|| (c[3].to_string(), c[5].to_string()))
        })
        .collect())
}

fn free_workers(endpoint: &str, node: &str) -> anyhow::Result<usize> {
    Ok(ate(endpoint, &["get", "workers", "-A"])?
        .lines()
        .filter(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            c.get(3) == Some(&node) && c.get(4) == Some(&"FREE")
        })
        .count())
}

async fn wait_for(
    what: &str,
    mut done: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let start = Instant::now();
    while !done()? {
        if start.elapsed() > Duration::from_secs(60) {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

async fn status(
    client: &mut ControlClient<InterceptedService<Channel, Bearer>>,
    actor: &ActorRef,
) -> anyhow::Result<String> {
    let a = client
        .get_actor(GetActorRequest {
            actor_ref: Some(ate_proto::convert::actor_ref(actor)),
        })
        .await?
        .into_inner()
        .actor
        .unwrap_or_default();
    Ok(ate_proto::convert::actor_from_pb(&a)
        .status
        .as_str()
        .to_string())
}

/// A split deployment on this machine: a control plane on SQLite, two node daemons and a
/// router, each an `ate serve` process (killed when dropped), with a pool of wasm workers,
/// the counter template and `actors` counters in atespace `bench`.
pub(super) struct Cluster {
    pub api: Process,
    pub nodes: Vec<Process>,
    pub router: Process,
    /// The control API's `host:port`.
    pub endpoint: String,
    /// The bootstrap admin token.
    pub token: String,
    pub actors: Vec<ActorRef>,
}

impl Cluster {
    pub async fn start(dir: &Path, replicas: usize, actors: usize) -> anyhow::Result<Self> {
        let db = format!("sqlite://{}", dir.join("ate.db").display());
        let api_dir = dir.join("api").display().to_string();
        let api = Process::serve(&[
            "--roles",
            "api",
            "--store",
            &db,
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--data-dir",
            &api_dir,
        ])?;
        let endpoint = api.addr("control API")?;
        let token_file = Path::new(&api_dir).join("admin.token");
        let token = std::fs::read_to_string(&token_file)
            .with_context(|| format!("cannot read {}", token_file.display()))?;
        let _ = TOKEN.set(token.trim().to_string());
        let nodes = vec![node(dir, "n1", &endpoint)?, node(dir, "n2", &endpoint)?];
        let router_dir = dir.join("router").display().to_string();
        let router = Process::serve(&[
            "--roles",
            "router",
            "--control",
            &endpoint,
            "--router-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--data-dir",
            &router_dir,
            "--token-file",
            &token_file.display().to_string(),
        ])?;
        let module = dir.join("counter.wat");
        std::fs::write(&module, COUNTER)?;
        let manifest = dir.join("manifest.yaml");
        std::fs::write(
            &manifest,
            format!(
                "apiVersion: ate.dev/v1alpha1\nkind: Atespace\nmetadata:\n  name: {ATESPACE}\n---\n\
                 apiVersion: ate.dev/v1alpha1\nkind: WorkerPool\nmetadata:\n  namespace: default\n  name: wasm\n\
                 spec:\n  replicas: {replicas}\n  sandboxClass: wasm\n---\n\
                 apiVersion: ate.dev/v1alpha1\nkind: ActorTemplate\nmetadata:\n  namespace: demo\n  name: counter\n\
                 spec:\n  sandboxClass: wasm\n  module: {}\n",
                module.display()
            ),
        )?;
        ate(&endpoint, &["apply", "-f", &manifest.display().to_string()])?;
        wait_for("workers on both nodes", || {
            let (n1, n2) = (
                free_workers(&endpoint, "n1")?,
                free_workers(&endpoint, "n2")?,
            );
            Ok(n1 > 0 && n2 > 0 && n1 + n2 >= replicas)
        })
        .await?;
        let actors: Vec<ActorRef> = (0..actors.max(1))
            .map(|i| ActorRef::new(ATESPACE, format!("c{i}")))
            .collect();
        for a in &actors {
            ate(
                &endpoint,
                &[
                    "create",
                    "actor",
                    &a.id,
                    "-t",
                    "demo/counter",
                    "-a",
                    ATESPACE,
                ],
            )?;
        }
        Ok(Self {
            api,
            nodes,
            router,
            endpoint,
            token: token.trim().to_string(),
            actors,
        })
    }
}

pub async fn run(args: SplitBenchArgs) -> anyhow::Result<()> {
    let scratch = Scratch::new("ate-bench-split")?;
    let dir = scratch.0.as_path();
    let Cluster {
        api,
        mut nodes,
        router,
        endpoint,
        token,
        actors,
    } = Cluster::start(dir, 4 * args.actors.max(1), args.actors).await?;
    let mut client = ControlClient::with_interceptor(
        ate_seam::endpoint(&endpoint)?.connect().await?,
        Bearer::new(Some(token.trim()))?,
    );
    let router_addr = router.addr("router")?.parse()?;
    let mut conn = Conn::open(router_addr).await?;
    let requests: Vec<Vec<u8>> = actors.iter().map(get_request).collect();
    println!(
        "store: SQLite; control plane, 2 node daemons (wasm) and the router in separate processes; {} demo/counter actors round-robin",
        actors.len()
    );

    // 1. Activation across the gRPC hop.
    for r in &requests {
        count_of(&conn.get(r).await?)?;
    }
    let n = args.activations.max(1);
    let mut activation = Vec::with_capacity(n);
    for i in 0..n {
        let k = i % actors.len();
        client
            .suspend_actor(SuspendActorRequest {
                actor_ref: Some(ate_proto::convert::actor_ref(&actors[k])),
            })
            .await
            .with_context(|| format!("cannot suspend {}", actors[k]))?;
        // Let the route's retraction reach the router, as it has by the next request as a rule.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let r = conn.get(&requests[k]).await?;
        count_of(&r)?;
        activation.push(r.first_byte);
    }
    let (p50, p95, p99, max) = spread(activation);
    println!();
    println!("activation (suspended -> first byte through the router, node over gRPC), {n} runs");
    println!("| p50 | p95 | p99 | max |");
    println!("|---|---|---|---|");
    println!(
        "| {} | {} | {} | {} |",
        fmt(p50),
        fmt(p95),
        fmt(p99),
        fmt(max)
    );

    // 2. Node death.
    println!();
    println!("node killed with SIGKILL -> its actors SUSPENDED / first answer from the other node");
    println!("| death | actors on it | all SUSPENDED after | first answer after |");
    println!("|---|---|---|---|");
    for d in 0..args.deaths {
        for r in &requests {
            count_of(&conn.get(r).await?)?;
        }
        let on = placements(&endpoint)?;
        let victim = if on.iter().filter(|(n, _)| n == "n1").count()
            >= on.iter().filter(|(n, _)| n == "n2").count()
        {
            0
        } else {
            1
        };
        let name = ["n1", "n2"][victim];
        let hosted: Vec<usize> = actors
            .iter()
            .enumerate()
            .filter(|(_, a)| on.iter().any(|(n, key)| n == name && *key == a.key()))
            .map(|(k, _)| k)
            .collect();
        let Some(&first) = hosted.first() else {
            bail!("no actor ran on {name}");
        };
        let mut dead = nodes.remove(victim);
        let t0 = Instant::now();
        dead.child.kill()?;
        let _ = dead.child.wait();
        drop(dead);
        loop {
            let mut all = true;
            for &k in &hosted {
                all &= status(&mut client, &actors[k]).await? == "SUSPENDED";
            }
            if all {
                break;
            }
            if t0.elapsed() > Duration::from_secs(60) {
                bail!("the actors of {name} were never suspended");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let suspended = t0.elapsed();
        count_of(&conn.get(&requests[first]).await?)?;
        let served = t0.elapsed();
        println!(
            "| {} | {} | {} | {} |",
            d + 1,
            hosted.len(),
            fmt(suspended),
            fmt(served)
        );
        nodes.insert(victim, node(dir, name, &endpoint)?);
        wait_for("the restarted node's workers", || {
            Ok(free_workers(&endpoint, name)? > args.actors)
        })
        .await?;
    }
    drop(conn);
    drop(router);
    drop(nodes);
    drop(api);
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
