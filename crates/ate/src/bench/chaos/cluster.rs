//! The chaos deployment: PostgreSQL, two control-plane replicas, three node daemons and a
//! router, each `ate serve` its own process, every link between them through the fault
//! proxy. Invariant: a component keeps its address for the whole run (it listens on a port
//! chosen once, and is started again with the same flags), so the proxies in front of it
//! and everyone's `--control` lists stay right across kills and restarts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ate_model::ActorRef;
use ate_proto::ateapi::control_client::ControlClient;
use ate_proto::ateapi::{
    Actor, ActorTemplate, ActorTemplateSpec, ApplyActorTemplateRequest, ApplyWorkerPoolRequest,
    CreateActorRequest, CreateAtespaceRequest, ListActorsRequest, ListWorkersRequest, Worker,
    WorkerPool, WorkerPoolSpec,
};
use ate_proto::bearer::Bearer;
use ate_testkit::PostgresServer;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::proxy::{Caller, Network};

/// The atespace of the counters.
pub const ATESPACE: &str = "chaos";
pub const REPLICAS: [&str; 2] = ["api-a", "api-b"];
pub const NODES: [&str; 3] = ["n1", "n2", "n3"];
pub const ROUTER: &str = "router";
const COUNTER: &[u8] = include_bytes!("../../../../../demo/counter/counter.wat");

/// A node's liveness timeout: short, so that freezes and partitions of a few seconds get
/// nodes declared lost (and fenced when they come back) within a short run.
pub const LIVENESS: Duration = Duration::from_secs(3);
/// The replicas' actor lease: as short, so work a killed replica held is settled quickly.
const LEASE_TTL: &str = "3s";
/// How long the router holds a request for a resume or a worker: under the clients'
/// timeout, so most failures come back as a status rather than a cut connection.
const QUEUE_WAIT: &str = "5s";
/// How long a started process may take to print its addresses (a debug build, two busy
/// cores, a store restarting).
const START_LIMIT: Duration = Duration::from_secs(60);
/// How long one control API call may take before the other replica is asked.
const API_TIMEOUT: Duration = Duration::from_secs(2);

/// One `ate serve` process, started again with the same flags after a kill.
#[derive(Debug)]
pub struct Member {
    pub name: String,
    args: Vec<String>,
    /// `RUST_LOG` of the process.
    level: String,
    log: PathBuf,
    child: Option<Child>,
}

impl Member {
    /// `ate serve --roles ROLE` with its data dir, its admin port anywhere, and `flags`.
    fn new(name: &str, dir: &Path, level: &str, role: &str, flags: &[(&str, &str)]) -> Self {
        let data = dir.join(name).display().to_string();
        let common = [
            ("--roles", role),
            ("--data-dir", &data),
            ("--admin-listen", "127.0.0.1:0"),
        ];
        Self {
            name: name.to_string(),
            args: common
                .iter()
                .chain(flags)
                .flat_map(|(flag, value)| [flag.to_string(), value.to_string()])
                .collect(),
            level: level.to_string(),
            log: dir.join("logs").join(format!("{name}.log")),
            child: None,
        }
    }

    /// Starts the process and waits until it has printed its addresses (it serves then).
    pub async fn start(&mut self, net: &Network) -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("cannot find the ate binary")?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("cannot open {}", self.log.display()))?;
        let mut child = Command::new(exe)
            .arg("serve")
            .args(&self.args)
            .env("RUST_LOG", &self.level)
            .stdout(Stdio::piped())
            .stderr(log.try_clone()?)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", self.name))?;
        if let Some(pid) = child.id() {
            net.own(pid, &self.name);
        }
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(START_LIMIT, async {
            while let Some(line) = lines.next_line().await? {
                if line.trim_start().starts_with("metrics") {
                    return Ok(true);
                }
            }
            Ok::<_, std::io::Error>(false)
        })
        .await;
        if !matches!(ready, Ok(Ok(true))) {
            bail!(
                "{} did not start (see {}): {ready:?}",
                self.name,
                self.log.display()
            );
        }
        // The rest of its stdout goes to its log, so a full pipe never blocks it.
        let mut log = tokio::fs::File::from_std(log);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = log.write_all(format!("{line}\n").as_bytes()).await;
            }
        });
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL, and waits for the process to be gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Sends `signal` (`STOP`, `CONT`) to the process.
    pub async fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let Some(pid) = self.child.as_ref().and_then(Child::id) else {
            bail!("{} is not running", self.name);
        };
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .await?;
        if !status.success() {
            bail!("kill -{signal} {} failed", self.name);
        }
        Ok(())
    }
}

/// The bench's own control API client: either replica, whichever answers.
#[derive(Debug, Clone)]
pub struct Api {
    clients: Vec<ControlClient<InterceptedService<Channel, Bearer>>>,
}

impl Api {
    fn new(endpoints: &[SocketAddr], token: &str) -> anyhow::Result<Self> {
        let mut clients = Vec::new();
        for e in endpoints {
            let channel = ate_seam::endpoint(&e.to_string())?.connect_lazy();
            clients.push(ControlClient::with_interceptor(
                channel,
                Bearer::new(Some(token))?,
            ));
        }
        Ok(Self { clients })
    }

    /// Runs `call` against every replica at once; the first answer within [`API_TIMEOUT`]
    /// wins. At once, not in turn: a frozen replica would otherwise cost every call the
    /// whole timeout, and the observer would read the actors that much less often.
    async fn call<T, F, Fut>(&self, call: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: Fn(ControlClient<InterceptedService<Channel, Bearer>>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>> + Send + 'static,
    {
        let mut calls = tokio::task::JoinSet::new();
        for (i, client) in self.clients.iter().enumerate() {
            let reply = tokio::time::timeout(API_TIMEOUT, call(client.clone()));
            calls.spawn(async move { (i, reply.await) });
        }
        let mut errors = Vec::new();
        while let Some(done) = calls.join_next().await {
            match done {
                Ok((_, Ok(Ok(r)))) => return Ok(r.into_inner()),
                Ok((i, Ok(Err(e)))) => errors.push(format!("{}: {}", REPLICAS[i], e.message())),
                Ok((i, Err(_))) => errors.push(format!("{}: timed out", REPLICAS[i])),
                Err(e) => errors.push(e.to_string()),
            }
        }
        bail!("no replica answered: {}", errors.join("; "))
    }

    /// Every actor of the chaos atespace.
    pub async fn actors(&self) -> anyhow::Result<Vec<Actor>> {
        let r = self
            .call(|mut c| async move {
                c.list_actors(ListActorsRequest {
                    page_size: 1000,
                    atespace: ATESPACE.into(),
                    ..Default::default()
                })
                .await
            })
            .await?;
        Ok(r.actors)
    }

    pub async fn workers(&self) -> anyhow::Result<Vec<Worker>> {
        let r = self
            .call(|mut c| async move { c.list_workers(ListWorkersRequest::default()).await })
            .await?;
        Ok(r.workers)
    }
}

/// The running deployment.
#[derive(Debug)]
pub struct Cluster {
    pub store: Arc<Mutex<PostgresServer>>,
    /// The store was stopped and not started again yet.
    pub store_down: bool,
    pub store_url: String,
    pub replicas: Vec<Member>,
    pub nodes: Vec<Member>,
    pub router: Member,
    pub router_addr: SocketAddr,
    pub net: Network,
    pub api: Api,
    pub actors: Vec<ActorRef>,
}

fn loopback_port() -> anyhow::Result<SocketAddr> {
    Ok(SocketAddr::from((
        [127, 0, 0, 1],
        ate_testkit::free_port().context("no free port")?,
    )))
}

impl Cluster {
    /// Starts everything under `dir`, with a pool of `workers` wasm workers over the nodes
    /// and `actors` counters, each asked nothing yet.
    pub async fn start(
        dir: &Path,
        net: &Network,
        level: &str,
        workers: usize,
        actors: usize,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir.join("logs"))?;
        let store = tokio::task::spawn_blocking(PostgresServer::start)
            .await?
            .context("cannot start PostgreSQL (the tests' convention: ATE_PG_BIN or initdb on PATH or in /usr/lib/postgresql)")?;
        let url = store.url();
        let kek = dir.join("kek").display().to_string();
        let mut replicas = Vec::new();
        let mut api_addrs = Vec::new();
        for name in REPLICAS {
            let listen = loopback_port()?;
            let listen_at = listen.to_string();
            let mut m = Member::new(
                name,
                dir,
                level,
                "api",
                &[
                    ("--store", &url),
                    ("--listen", &listen_at),
                    ("--kek-file", &kek),
                    ("--lease-ttl", LEASE_TTL),
                ],
            );
            // One after the other: the first makes the key-encryption key the second reads.
            m.start(net).await?;
            replicas.push(m);
            api_addrs.push(listen);
        }
        let token_file = dir.join(REPLICAS[0]).join("admin.token");
        let token = std::fs::read_to_string(&token_file)
            .with_context(|| format!("cannot read {}", token_file.display()))?;
        let api = Api::new(&api_addrs, token.trim())?;

        // A proxy per caller in front of each replica, so each link can be cut alone.
        let controls = async |caller: &str| -> anyhow::Result<String> {
            let mut list = Vec::new();
            for (name, addr) in REPLICAS.iter().zip(&api_addrs) {
                let p = net.proxy(Caller::Is(caller.into()), name, *addr).await?;
                list.push(p.to_string());
            }
            Ok(list.join(","))
        };
        let snapshots = format!("file://{}", dir.join("snapshots").display());
        let liveness = format!("{}s", LIVENESS.as_secs());
        let mut nodes = Vec::new();
        for name in NODES {
            let listen = loopback_port()?;
            // Replicas and the router dial the one address a node advertises.
            let advertise = net.proxy(Caller::Owner, name, listen).await?;
            let (listen_at, advertised) = (listen.to_string(), advertise.to_string());
            let control = controls(name).await?;
            let mut m = Member::new(
                name,
                dir,
                level,
                "node",
                &[
                    ("--node-name", name),
                    ("--listen", &listen_at),
                    ("--advertise", &advertised),
                    ("--control", &control),
                    ("--snapshots", &snapshots),
                    ("--liveness-timeout", &liveness),
                    ("--runc", "off"),
                    ("--criu", "off"),
                ],
            );
            m.start(net).await?;
            nodes.push(m);
        }
        let router_addr = loopback_port()?;
        let (control, listen_at) = (controls(ROUTER).await?, router_addr.to_string());
        let token_path = token_file.display().to_string();
        let mut router = Member::new(
            ROUTER,
            dir,
            level,
            "router",
            &[
                ("--control", &control),
                ("--router-listen", &listen_at),
                ("--token-file", &token_path),
                ("--queue-wait", QUEUE_WAIT),
            ],
        );
        router.start(net).await?;
        let mut cluster = Self {
            store: Arc::new(Mutex::new(store)),
            store_down: false,
            store_url: url,
            replicas,
            nodes,
            router,
            router_addr,
            net: net.clone(),
            api,
            actors: Vec::new(),
        };
        cluster.populate(dir, workers, actors).await?;
        Ok(cluster)
    }

    /// The atespace, the pool, the counter template and the actors, once workers are on
    /// every node.
    async fn populate(&mut self, dir: &Path, workers: usize, actors: usize) -> anyhow::Result<()> {
        let module = dir.join("counter.wat");
        std::fs::write(&module, COUNTER)?;
        let module = module.display().to_string();
        self.api
            .call(|mut c| async move {
                c.create_atespace(CreateAtespaceRequest {
                    name: ATESPACE.into(),
                })
                .await
            })
            .await?;
        self.api
            .call(|mut c| async move {
                let spec = WorkerPoolSpec {
                    replicas: workers as u32,
                    sandbox_class: "wasm".into(),
                    ..Default::default()
                };
                let pool = WorkerPool {
                    namespace: "default".into(),
                    name: "wasm".into(),
                    spec: Some(spec),
                    ..Default::default()
                };
                c.apply_worker_pool(ApplyWorkerPoolRequest { pool: Some(pool) })
                    .await
            })
            .await?;
        self.api
            .call(|mut c| {
                let module = module.clone();
                async move {
                    let spec = ActorTemplateSpec {
                        sandbox_class: "wasm".into(),
                        module,
                        ..Default::default()
                    };
                    let template = ActorTemplate {
                        namespace: "demo".into(),
                        name: "counter".into(),
                        spec: Some(spec),
                        ..Default::default()
                    };
                    c.apply_actor_template(ApplyActorTemplateRequest {
                        template: Some(template),
                    })
                    .await
                }
            })
            .await?;
        let start = Instant::now();
        loop {
            let ws = self.api.workers().await.unwrap_or_default();
            let on_every_node = NODES.iter().all(|n| ws.iter().any(|w| w.node_name == *n));
            if on_every_node && ws.len() >= workers {
                break;
            }
            if start.elapsed() > START_LIMIT {
                bail!("the pool's {workers} workers never spread over the nodes: {ws:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for i in 0..actors.max(1) {
            let actor = ActorRef::new(ATESPACE, format!("c{i}"));
            let a = actor.clone();
            self.api
                .call(|mut c| {
                    let a = a.clone();
                    async move {
                        c.create_actor(CreateActorRequest {
                            actor_ref: Some(ate_proto::convert::actor_ref(&a)),
                            actor_template_namespace: "demo".into(),
                            actor_template_name: "counter".into(),
                            worker_selector: None,
                        })
                        .await
                    }
                })
                .await
                .with_context(|| format!("cannot create {actor}"))?;
            self.actors.push(actor);
        }
        Ok(())
    }

    /// Stops the store at once, as a crash would (`up` false), or starts it again.
    pub async fn store(&mut self, up: bool) -> anyhow::Result<()> {
        if self.store_down != up {
            return Ok(());
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let mut pg = store.lock().unwrap_or_else(PoisonError::into_inner);
            match up {
                true => pg.start_again(),
                false => pg.kill(),
            }
        })
        .await??;
        self.store_down = !up;
        Ok(())
    }

    /// Starts again every process that is down, thaws the rest, heals every link and
    /// starts the store if it is down: the end of the faults.
    pub async fn heal_all(&mut self) -> anyhow::Result<()> {
        self.net.heal_all();
        self.store(true).await?;
        let net = self.net.clone();
        let everyone = self.replicas.iter_mut().chain(&mut self.nodes);
        for m in everyone.chain(std::iter::once(&mut self.router)) {
            match m.is_running() {
                true => m.signal("CONT").await?,
                false => m.start(&net).await?,
            }
        }
        Ok(())
    }
}
