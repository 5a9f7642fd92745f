//! The HTTP router: activation latency (a suspended actor to the first byte of its answer)
//! and the cost of forwarding to a running actor, next to nginx `proxy_pass` in front of a
//! plain HTTP server that hands requests straight to the actor (the data plane with no
//! router logic). Everything runs in this process on the local data plane of `ate up`
//! (one node, four wasm workers, SQLite store), but for nginx. Each activation is paired
//! with a resume through the lifecycle alone, timed with its store calls, to show where an
//! activation's time goes.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ate_control::PHASE_READY;
use ate_model::{
    Actor, ActorRef, ActorStatus, ActorTemplate, Assignment, Atespace, FieldSelector, Kind,
    NamespacedName,
};
use ate_seam::{Body, BodyError, NodeDirectory, NodeExecutor, Route, WorkerId, full_body};
use ate_store::{Lease, ListOptions, Page, Record, RecordWrite, Store, StoreError};
use clap::Args;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::in_process::InProcess;
use super::machine::{percentile, rate};
use super::store_ops::Scratch;
use crate::{local, stores};

#[derive(Debug, Args)]
pub struct RouterBenchArgs {
    /// Store URL (an empty store); defaults to a fresh SQLite file in a temporary directory.
    #[arg(long)]
    pub store: Option<String>,
    /// Activations measured (each: suspend, untimed, then one request through the router;
    /// paired with a suspend and a resume through the lifecycle alone).
    #[arg(long, default_value_t = 1000)]
    pub activations: usize,
    /// demo/counter actors, used round-robin; at most the pool's 4 workers.
    #[arg(long, default_value_t = 4)]
    pub actors: usize,
    /// Concurrent keep-alive connections of the load generator, one run per value.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 16])]
    pub connections: Vec<usize>,
    /// Measured seconds per target and connection count.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Warm-up seconds before each measurement.
    #[arg(long, default_value_t = 1)]
    pub warmup: u64,
    /// nginx `worker_processes` settings to measure, e.g. `1,auto`.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub nginx_workers: Vec<String>,
    /// The nginx binary (default: `nginx` on PATH or in /usr/sbin).
    #[arg(long)]
    pub nginx: Option<PathBuf>,
}

const ATESPACE: &str = "bench";
const TEMPLATE: (&str, &str) = ("demo", "counter");

pub(super) fn fmt(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}

/// `| p50 | p95 | p99 | max |` of unsorted samples.
pub(super) fn spread(mut samples: Vec<Duration>) -> (Duration, Duration, Duration, Duration) {
    samples.sort();
    (
        percentile(&samples, 50.0),
        percentile(&samples, 95.0),
        percentile(&samples, 99.0),
        samples.last().copied().unwrap_or_default(),
    )
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One keep-alive HTTP/1.1 connection, speaking just enough of the protocol to send a GET
/// and read a response (Content-Length or chunked).
pub(super) struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// A response and when its parts arrived, counted from the start of the request's write.
pub(super) struct Reply {
    pub(super) first_byte: Duration,
    total: Duration,
    pub(super) status: u16,
    body: Vec<u8>,
}

impl Reply {
    pub(super) fn body(&self) -> &[u8] {
        &self.body
    }
}

impl Conn {
    pub(super) async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        self.buf.reserve(4096);
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            bail!("the server closed the connection");
        }
        Ok(())
    }

    async fn line(&mut self) -> anyhow::Result<usize> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                return Ok(i);
            }
            self.fill().await?;
        }
    }

    pub(super) async fn get(&mut self, request: &[u8]) -> anyhow::Result<Reply> {
        let start = Instant::now();
        self.stream.write_all(request).await?;
        while self.buf.is_empty() {
            self.fill().await?;
        }
        let first_byte = start.elapsed();
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).context("response head")?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .with_context(|| format!("bad status line {status_line:?}"))?;
        let (mut length, mut chunked) = (0usize, false);
        for l in lines {
            let Some((k, v)) = l.split_once(':') else {
                continue;
            };
            let v = v.trim();
            if k.eq_ignore_ascii_case("content-length") {
                length = v.parse().context("content-length")?;
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.to_ascii_lowercase().contains("chunked");
            }
        }
        self.buf.drain(..head_end);
        let body = if chunked {
            self.chunked().await?
        } else {
            while self.buf.len() < length {
                self.fill().await?;
            }
            self.buf.drain(..length).collect()
        };
        Ok(Reply {
            first_byte,
            total: start.elapsed(),
            status,
            body,
        })
    }

    async fn chunked(&mut self) -> anyhow::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let end = self.line().await?;
            let size = std::str::from_utf8(&self.buf[..end])
                .ok()
                .and_then(|s| s.split(';').next())
                .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
                .context("bad chunk size")?;
            self.buf.drain(..end + 2);
            if size == 0 {
                // Trailers, up to an empty line.
                loop {
                    let end = self.line().await?;
                    self.buf.drain(..end + 2);
                    if end == 0 {
                        return Ok(body);
                    }
                }
            }
            while self.buf.len() < size + 2 {
                self.fill().await?;
            }
            body.extend_from_slice(&self.buf[..size]);
            self.buf.drain(..size + 2);
        }
    }
}

pub(super) fn get_request(actor: &ActorRef) -> Vec<u8> {
    format!(
        "GET /a/{}/{}/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        actor.atespace, actor.id
    )
    .into_bytes()
}

pub(super) fn count_of(reply: &Reply) -> anyhow::Result<u64> {
    if reply.status != 200 {
        bail!(
            "status {}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body).trim()
        );
    }
    std::str::from_utf8(&reply.body)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .with_context(|| {
            format!(
                "not a count: {:?}",
                String::from_utf8_lossy(&reply.body).trim()
            )
        })
}

pub(super) async fn wait_golden(store: &Arc<dyn Store>) -> anyhow::Result<Duration> {
    let key = NamespacedName::new(TEMPLATE.0, TEMPLATE.1).key();
    let start = Instant::now();
    loop {
        let t: ActorTemplate = store.get(&key).await?;
        if t.status.phase == PHASE_READY {
            return Ok(start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(120) {
            bail!(
                "the golden snapshot of {key} is not ready after 120 s: {}",
                t.status.message
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(super) async fn create_actors(
    store: &Arc<dyn Store>,
    n: usize,
) -> anyhow::Result<Vec<ActorRef>> {
    match store
        .create(Atespace {
            name: ATESPACE.into(),
            version: 0,
        })
        .await
    {
        Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
        Err(e) => return Err(e).context("cannot create the bench atespace"),
    }
    let mut actors = Vec::with_capacity(n);
    for i in 0..n {
        let aref = ActorRef::new(ATESPACE, format!("counter-{i}"));
        let actor = Actor {
            atespace: aref.atespace.clone(),
            id: aref.id.clone(),
            template: NamespacedName::new(TEMPLATE.0, TEMPLATE.1),
            status: ActorStatus::Suspended,
            ..Default::default()
        };
        store
            .create(actor)
            .await
            .with_context(|| format!("cannot create actor {aref} (the store must be empty)"))?;
        actors.push(aref);
    }
    Ok(actors)
}

/// A store that notes when each of its calls started and ended while switched on: the
/// store's share of a resume, without touching the lifecycle.
struct TimedStore {
    inner: Arc<dyn Store>,
    on: AtomicBool,
    calls: Mutex<Vec<(Instant, Instant)>>,
    /// What each call of the last window was (`get actors`, `claim workers`, ...).
    names: Mutex<Vec<(Instant, String)>>,
}

impl TimedStore {
    async fn time<T>(&self, what: &str, kind: Kind, call: impl Future<Output = T>) -> T {
        if !self.on.load(Ordering::Relaxed) {
            return call.await;
        }
        let start = Instant::now();
        let out = call.await;
        let end = Instant::now();
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((start, end));
        self.names
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((start, format!("{what} {kind}")));
        out
    }

    /// The calls of the last window, in start order.
    fn names(&self) -> Vec<String> {
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner()).clone();
        names.sort();
        names.into_iter().map(|(_, n)| n).collect()
    }

    fn start(&self) {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.names.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.on.store(true, Ordering::Relaxed);
    }

    /// The calls since [`Self::start`], in start order.
    fn stop(&self) -> Vec<(Instant, Instant)> {
        self.on.store(false, Ordering::Relaxed);
        let mut calls = std::mem::take(&mut *self.calls.lock().unwrap_or_else(|p| p.into_inner()));
        calls.sort();
        calls
    }
}

#[async_trait::async_trait]
impl Store for TimedStore {
    async fn create_record(&self, kind: Kind, rec: RecordWrite) -> ate_store::Result<u64> {
        self.time("create", kind, self.inner.create_record(kind, rec))
            .await
    }
    async fn get_record(&self, kind: Kind, key: &str) -> ate_store::Result<Record> {
        self.time("get", kind, self.inner.get_record(kind, key))
            .await
    }
    async fn update_record(
        &self,
        kind: Kind,
        rec: RecordWrite,
        expected_version: u64,
    ) -> ate_store::Result<u64> {
        self.time(
            "update",
            kind,
            self.inner.update_record(kind, rec, expected_version),
        )
        .await
    }
    async fn delete_record(
        &self,
        kind: Kind,
        key: &str,
        expected_version: Option<u64>,
    ) -> ate_store::Result<()> {
        self.time(
            "delete",
            kind,
            self.inner.delete_record(kind, key, expected_version),
        )
        .await
    }
    async fn list_records(
        &self,
        kind: Kind,
        opts: &ListOptions,
    ) -> ate_store::Result<Page<Record>> {
        self.time("list", kind, self.inner.list_records(kind, opts))
            .await
    }
    async fn claim_worker(
        &self,
        selector: &FieldSelector,
        assignment: &Assignment,
    ) -> ate_store::Result<Option<Record>> {
        self.time(
            "claim",
            Kind::Worker,
            self.inner.claim_worker(selector, assignment),
        )
        .await
    }
    async fn acquire_lease(
        &self,
        key: &str,
        owner: &str,
        ttl: Duration,
    ) -> ate_store::Result<Lease> {
        self.time(
            "acquire lease",
            Kind::Actor,
            self.inner.acquire_lease(key, owner, ttl),
        )
        .await
    }
    async fn release_lease(&self, key: &str, owner: &str) -> ate_store::Result<()> {
        self.time(
            "release lease",
            Kind::Actor,
            self.inner.release_lease(key, owner),
        )
        .await
    }

    async fn retire_lease(&self, key: &str, owner: &str) -> ate_store::Result<()> {
        self.time(
            "retire lease",
            Kind::Actor,
            self.inner.retire_lease(key, owner),
        )
        .await
    }
    async fn watch(&self, kind: Kind) -> ate_store::Result<ate_store::Watch> {
        self.inner.watch(kind).await
    }
}

/// One resume split by where its time went.
struct Split {
    total: Duration,
    store_calls: usize,
    store: Duration,
    node: Duration,
}

/// `calls` are the store calls of one resume from `t0` to `t1`. The node's start (restore
/// from the warm image, install, adverts, route) is the one long stretch with no store
/// call in flight, between recording the worker and recording RUNNING.
fn split(t0: Instant, t1: Instant, calls: &[(Instant, Instant)]) -> Split {
    let mut store = Duration::ZERO;
    let mut busy_until = t0;
    let mut longest_gap = Duration::ZERO;
    for &(start, end) in calls {
        if start > busy_until {
            longest_gap = longest_gap.max(start - busy_until);
        }
        // Overlapping calls (none in a resume, as a rule) count once.
        if end > busy_until {
            store += end - start.max(busy_until);
            busy_until = end;
        }
    }
    Split {
        total: t1 - t0,
        store_calls: calls.len(),
        store,
        node: longest_gap,
    }
}

/// p50 of each tenth of a run, in order.
fn tenths(samples: &[Duration]) -> String {
    let n = samples.len();
    (0..10)
        .filter_map(|d| {
            let mut part = samples[d * n / 10..(d + 1) * n / 10].to_vec();
            if part.is_empty() {
                return None;
            }
            part.sort();
            Some(fmt(percentile(&part, 50.0)))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn run(args: RouterBenchArgs) -> anyhow::Result<()> {
    if args.actors == 0 || args.actors > local::DEFAULT_POOL_REPLICAS as usize {
        bail!(
            "--actors must be 1..={} (one per worker of the default pool)",
            local::DEFAULT_POOL_REPLICAS
        );
    }
    let scratch = Scratch::new("ate-bench-router")?;
    let url = args
        .store
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", scratch.0.join("ate.db").display()));
    let timed = Arc::new(TimedStore {
        inner: stores::open(&url, stores::DEFAULT_PATIENCE).await?,
        on: AtomicBool::new(false),
        calls: Mutex::default(),
        names: Mutex::default(),
    });
    let store: Arc<dyn Store> = timed.clone();
    let InProcess {
        plane,
        router: routes,
        handle,
    } = InProcess::start(&store, &scratch.0).await?;
    let golden = wait_golden(&store).await?;
    let actors = create_actors(&store, args.actors).await?;
    let nodes = plane.control.nodes.clone();
    let router_addr = handle.local_addr();
    println!(
        "store: {}; node: {} wasm workers in process; {} demo/counter actors round-robin; golden snapshot ready after {}",
        stores::redact(&url),
        local::DEFAULT_POOL_REPLICAS,
        args.actors,
        fmt(golden)
    );

    // 1. Activation.
    let mut conn = Conn::open(router_addr).await?;
    let requests: Vec<Vec<u8>> = actors.iter().map(get_request).collect();
    let mut counts = vec![0u64; actors.len()];
    let mut check = |k: usize, reply: &Reply| -> anyhow::Result<()> {
        let n = count_of(reply).with_context(|| format!("request to {}", actors[k]))?;
        if n != counts[k] + 1 {
            bail!(
                "{} answered {n} after {}: the count did not survive suspend and resume",
                actors[k],
                counts[k]
            );
        }
        counts[k] = n;
        Ok(())
    };
    let suspend = |k: usize| {
        let (l, a, routes) = (
            plane.control.lifecycle.clone(),
            actors[k].clone(),
            routes.clone(),
        );
        let running = actors.len() - 1;
        async move {
            let t = Instant::now();
            l.suspend(&a)
                .await
                .with_context(|| format!("cannot suspend {a}"))?;
            let took = t.elapsed();
            // The router has seen the route go (it has by now, as a rule).
            let deadline = Instant::now() + Duration::from_secs(2);
            while routes.routes() > running && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            anyhow::Ok(took)
        }
    };
    // Warm-up: each actor from the golden snapshot, then once from its own snapshot.
    for (k, request) in requests.iter().enumerate() {
        let r = conn.get(request).await?;
        check(k, &r)?;
    }
    for (k, request) in requests.iter().enumerate() {
        suspend(k).await?;
        let r = conn.get(request).await?;
        check(k, &r)?;
    }
    let n = args.activations.max(1);
    let (mut activation, mut running, mut suspends, mut resumes) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for i in 0..n {
        let k = i % actors.len();
        // Through the router.
        suspends.push(suspend(k).await?);
        let r = conn.get(&requests[k]).await?;
        check(k, &r)?;
        activation.push(r.first_byte);
        let r = conn.get(&requests[k]).await?;
        check(k, &r)?;
        running.push(r.first_byte);
        // The lifecycle's resume alone, no HTTP and no router, with its store calls.
        suspend(k).await?;
        timed.start();
        let t0 = Instant::now();
        let resumed = plane.control.lifecycle.resume(&actors[k], false).await;
        let t1 = Instant::now();
        let calls = timed.stop();
        resumed.with_context(|| format!("cannot resume {}", actors[k]))?;
        resumes.push(split(t0, t1, &calls));
        let r = conn.get(&requests[k]).await?;
        check(k, &r)?;
    }
    drop(conn);
    println!();
    println!(
        "Activation: {n} activations over {} actors round-robin, each answer checked: every count followed the one before it (last counts: {counts:?}).",
        actors.len()
    );
    println!();
    println!("| measurement | p50 | p95 | p99 | max |");
    println!("|---|---|---|---|---|");
    let activation_tenths = tenths(&activation);
    let suspend_tenths = tenths(&suspends);
    let part = |f: fn(&Split) -> Duration| resumes.iter().map(f).collect::<Vec<_>>();
    let node_tenths = tenths(&part(|s| s.node));
    let rows = [
        (
            "activation through the router: suspended → first response byte",
            activation,
        ),
        (
            "lifecycle resume alone (no HTTP, no router)",
            part(|s| s.total),
        ),
        ("  of which store calls", part(|s| s.store)),
        (
            "  of which node start (warm image → instance, adverts, route)",
            part(|s| s.node),
        ),
        (
            "  of which the rest (lifecycle, scheduling, thread hand-offs)",
            part(|s| s.total.saturating_sub(s.store + s.node)),
        ),
        (
            "running actor through the router (the request after each activation)",
            running,
        ),
        ("suspend (untimed in the activation loop)", suspends),
    ];
    let mut activation_p = (Duration::ZERO, Duration::ZERO);
    for (i, (name, samples)) in rows.into_iter().enumerate() {
        let (p50, p95, p99, max) = spread(samples);
        if i == 0 {
            activation_p = (p50, p95);
        }
        println!(
            "| {name} | {} | {} | {} | {} |",
            fmt(p50),
            fmt(p95),
            fmt(p99),
            fmt(max)
        );
    }
    let mut calls: Vec<usize> = resumes.iter().map(|s| s.store_calls).collect();
    calls.sort_unstable();
    println!();
    println!(
        "Store calls per resume: {} (median; each component's percentiles are its own, they do not add up).",
        calls.get(calls.len() / 2).copied().unwrap_or_default()
    );
    println!(
        "Store calls of the last resume, in order (other tasks' calls in the same window, e.g. the fleet recording the node's advert, included): {}.",
        timed.names().join(", ")
    );
    println!("Activation p50 by tenth of the run: {activation_tenths}.");
    println!("Node start p50 by tenth of the run: {node_tenths}.");
    println!("Suspend p50 by tenth of the run: {suspend_tenths}.");
    let met = |ok: bool| if ok { "met" } else { "MISSED" };
    println!();
    println!(
        "target activation p50 ≤ 2 ms: {} ({}); p95 ≤ 5 ms: {} ({})",
        met(activation_p.0 <= Duration::from_millis(2)),
        fmt(activation_p.0),
        met(activation_p.1 <= Duration::from_millis(5)),
        fmt(activation_p.1)
    );

    // 2. Running actors: backend, nginx → backend, router. Before each run every actor is
    // asked once through the router, which resumes any suspended for idleness meanwhile
    // (demo/counter idles out quickly), and the backend learns where each one runs.
    let touch = async |backend: Option<&Backend>| -> anyhow::Result<()> {
        let mut c = Conn::open(router_addr).await?;
        for (k, req) in requests.iter().enumerate() {
            count_of(&c.get(req).await?).with_context(|| format!("request to {}", actors[k]))?;
        }
        if let Some(b) = backend {
            b.refresh(&nodes, &actors)?;
        }
        Ok(())
    };
    touch(None).await?;
    let backend = Backend::start(&nodes, &actors).await?;
    // (name, address, requests, an nginx proxy to compare the router with)
    let mut targets: Vec<(String, SocketAddr, Vec<Vec<u8>>, bool)> = Vec::new();
    let direct = (
        "backend direct (hyper → executor)".to_string(),
        backend.addr,
        requests.clone(),
        false,
    );
    let mut guards = Vec::new();
    match nginx_binary(args.nginx.as_deref()) {
        Some(bin) => {
            println!();
            println!("nginx: {} ({})", bin.display(), nginx_version(&bin));
            for (i, w) in args.nginx_workers.iter().enumerate() {
                let nginx = Nginx::start(&bin, &scratch.0, w, backend.addr).await?;
                if i == 0 {
                    targets.push((
                        format!("nginx `return 200`, no backend (worker_processes {w}): the client's ceiling"),
                        nginx.addr,
                        vec![b"GET /ceiling HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec()],
                        false,
                    ));
                    targets.push(direct.clone());
                }
                targets.push((
                    format!("nginx proxy_pass → backend (worker_processes {w})"),
                    nginx.addr,
                    requests.clone(),
                    true,
                ));
                guards.push(nginx);
            }
        }
        None => {
            println!();
            println!("nginx: not found, skipped (apt-get install -y nginx-light, or --nginx PATH)");
        }
    }
    if guards.is_empty() {
        targets.push(direct);
    }
    targets.push((
        "ate router → actor".into(),
        router_addr,
        requests.clone(),
        false,
    ));
    println!();
    println!(
        "Running actors: {} s per run after {} s of warm-up; connection i asks actor i mod {}; latency is request write → whole response read; client: one thread, raw HTTP/1.1, same machine.",
        args.seconds,
        args.warmup,
        actors.len()
    );
    println!();
    println!("| target | connections | requests/s | p50 | p99 | errors |");
    println!("|---|---|---|---|---|---|");
    let mut results: HashMap<(usize, usize), Load> = HashMap::new();
    let mut errors = Vec::new();
    for &c in &args.connections {
        for (t, (name, addr, reqs, _)) in targets.iter().enumerate() {
            touch(Some(&backend)).await?;
            let load = load(
                *addr,
                c.max(1),
                reqs.clone(),
                Duration::from_secs(args.warmup),
                Duration::from_secs(args.seconds.max(1)),
            )
            .await
            .with_context(|| format!("load on {name}"))?;
            println!(
                "| {name} | {c} | {:.0} | {} | {} | {} |",
                load.rps,
                fmt(load.p50),
                fmt(load.p99),
                load.errors
            );
            if let Some(e) = &load.first_error {
                errors.push(format!("{name}, {c} connections: {e}"));
            }
            results.insert((c, t), load);
        }
    }
    for e in &errors {
        println!("first error: {e}");
    }
    let router_t = targets.len() - 1;
    if !guards.is_empty() {
        println!();
        println!(
            "| ratio router / nginx | connections | requests/s | p50 | p99 | p50 within 1.3x |"
        );
        println!("|---|---|---|---|---|---|");
    }
    for &c in &args.connections {
        for (t, (name, _, _, nginx)) in targets.iter().enumerate() {
            if !nginx {
                continue;
            }
            let (Some(r), Some(x)) = (results.get(&(c, router_t)), results.get(&(c, t))) else {
                continue;
            };
            let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
            let p50 = ratio(r.p50, x.p50);
            println!(
                "| router / {name} | {c} | {:.2} | {p50:.2} | {:.2} | {} |",
                r.rps / x.rps.max(f64::EPSILON),
                ratio(r.p99, x.p99),
                met(p50 <= 1.3)
            );
        }
    }
    drop(guards);
    drop(backend);
    handle.shutdown().await;
    Ok(())
}

/// What one load run measured.
#[derive(Debug)]
struct Load {
    rps: f64,
    p50: Duration,
    p99: Duration,
    errors: usize,
    /// The first answer that was not a 200.
    first_error: Option<String>,
}

/// `conns` keep-alive connections, each sending one request at a time (connection i to
/// actor i mod n), from one thread of its own, so the client's scheduling does not mix
/// with the servers' tasks.
async fn load(
    addr: SocketAddr,
    conns: usize,
    requests: Vec<Vec<u8>>,
    warmup: Duration,
    measure: Duration,
) -> anyhow::Result<Load> {
    tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let begin = Instant::now() + Duration::from_millis(50);
            let (from, to) = (begin + warmup, begin + warmup + measure);
            let mut tasks = tokio::task::JoinSet::new();
            let requests = Arc::new(requests);
            for i in 0..conns {
                let mut conn = Conn::open(addr).await?;
                let requests = requests.clone();
                tasks.spawn(async move {
                    let request = &requests[i % requests.len()];
                    let (mut lat, mut errors, mut first_error) = (Vec::new(), 0usize, None);
                    tokio::time::sleep_until(begin.into()).await;
                    loop {
                        let r = conn.get(request).await?;
                        let now = Instant::now();
                        if now > to {
                            break;
                        }
                        if now >= from {
                            lat.push(r.total);
                            if r.status != 200 {
                                errors += 1;
                                first_error.get_or_insert_with(|| {
                                    format!(
                                        "{} {}",
                                        r.status,
                                        String::from_utf8_lossy(&r.body).trim()
                                    )
                                });
                            }
                        }
                    }
                    anyhow::Ok((lat, errors, first_error))
                });
            }
            let (mut lat, mut errors, mut first_error) = (Vec::new(), 0, None);
            while let Some(done) = tasks.join_next().await {
                let (l, e, f) = done??;
                lat.extend(l);
                errors += e;
                first_error = first_error.or(f);
            }
            lat.sort();
            Ok(Load {
                rps: rate(lat.len(), measure),
                p50: percentile(&lat, 50.0),
                p99: percentile(&lat, 99.0),
                errors,
                first_error,
            })
        })
    })
    .await?
}

/// A plain HTTP/1.1 server that hands each request to its actor through the node
/// executor: what the router does for a running actor, minus the router.
struct Backend {
    addr: SocketAddr,
    targets: Arc<std::sync::RwLock<Targets>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Targets = HashMap<ActorRef, (Arc<dyn NodeExecutor>, WorkerId)>;

impl Backend {
    /// Where each actor runs now, from the routes its node asserts. Read before each run:
    /// an actor no connection asked for may have been suspended for idleness and resumed
    /// on another worker since.
    fn locate(nodes: &Arc<dyn NodeDirectory>, actors: &[ActorRef]) -> anyhow::Result<Targets> {
        let mut targets = Targets::new();
        for a in actors {
            let route: Route = nodes
                .dataspace()
                .get(&ate_seam::actor_key(a))
                .with_context(|| format!("no route to {a}: it is not running"))?;
            let exec = nodes.executor(&route.node)?;
            targets.insert(a.clone(), (exec, route.worker));
        }
        Ok(targets)
    }

    fn refresh(&self, nodes: &Arc<dyn NodeDirectory>, actors: &[ActorRef]) -> anyhow::Result<()> {
        let fresh = Self::locate(nodes, actors)?;
        *self.targets.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    async fn start(nodes: &Arc<dyn NodeDirectory>, actors: &[ActorRef]) -> anyhow::Result<Self> {
        let targets = Arc::new(std::sync::RwLock::new(Self::locate(nodes, actors)?));
        let shared = targets.clone();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let targets = shared.clone();
                let service = service_fn(move |req: Request<Incoming>| {
                    let targets = targets.clone();
                    async move { Ok::<_, Infallible>(deliver(&targets, req).await) }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self {
            addr,
            targets,
            task,
        })
    }
}

fn plain(status: StatusCode, message: String) -> Response<Body> {
    let mut r = Response::new(full_body(message));
    *r.status_mut() = status;
    r
}

async fn deliver(targets: &std::sync::RwLock<Targets>, req: Request<Incoming>) -> Response<Body> {
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let (actor, path) = match ate_net::parse_path(pq) {
        Some(Ok(t)) => t,
        _ => return plain(StatusCode::NOT_FOUND, format!("no actor in {pq}")),
    };
    let found = targets
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(&actor)
        .cloned();
    let Some((exec, worker)) = found else {
        return plain(StatusCode::NOT_FOUND, format!("unknown actor {actor}"));
    };
    let Ok(uri) = path.parse::<Uri>() else {
        return plain(StatusCode::BAD_REQUEST, format!("bad path {path}"));
    };
    let mut req = req.map(|b| b.map_err(|e| Box::new(e) as BodyError).boxed());
    *req.uri_mut() = uri;
    match exec.invoke(&worker, &actor, req).await {
        Ok(resp) => resp,
        Err(e) => plain(StatusCode::BAD_GATEWAY, e.error.to_string()),
    }
}

fn nginx_binary(given: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = given {
        return Some(p.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file())
}

fn nginx_version(bin: &Path) -> String {
    Command::new(bin)
        .arg("-v")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
        .unwrap_or_else(|e| format!("version unknown: {e}"))
}

/// nginx in the foreground with a generated configuration; stopped when dropped.
struct Nginx {
    child: Child,
    addr: SocketAddr,
}

impl Nginx {
    async fn start(
        bin: &Path,
        scratch: &Path,
        workers: &str,
        backend: SocketAddr,
    ) -> anyhow::Result<Self> {
        let dir = scratch.join(format!("nginx-{workers}"));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let d = dir.display();
        let conf = format!(
            r#"worker_processes {workers};
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    keepalive_requests 100000000;
    upstream backend {{
        server {backend};
        keepalive 64;
        keepalive_requests 100000000;
    }}
    server {{
        listen {addr};
        location = /ceiling {{
            return 200 "1";
        }}
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"#
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf)
            .with_context(|| format!("cannot write {}", conf_path.display()))?;
        let err_path = dir.join("error.log");
        let child = Command::new(bin)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(&err_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let mut nginx = Self { child, addr };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = nginx.child.try_wait()? {
                let log = std::fs::read_to_string(&err_path).unwrap_or_default();
                bail!("nginx exited ({status}): {}", log.trim());
            }
            if TcpStream::connect(addr).await.is_ok() {
                return Ok(nginx);
            }
            if Instant::now() > deadline {
                bail!("nginx did not listen on {addr} within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its workers; SIGKILL only if it does not.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
