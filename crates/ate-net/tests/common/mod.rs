//! The router test harness: a real node (real wasm guests) on a `LocalSeam`, a real
//! `Router` on a loopback port in front of it, and a test `Activator` that runs actors on
//! the node's workers and can be told to stall or fail.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ate_dataspace::Dataspace;
use ate_model::{ActorRef, EnvVar, NamespacedName, TemplateSpec};
use ate_net::{ActivateError, Activator, Router, RouterConfig, RouterHandle};
use ate_node::{Node, NodeConfig};
use ate_seam::{LocalSeam, NodeDirectory, NodeExecutor, RunRequest, SeamError, WorkerId, Workload};
use ate_testkit::http::{self as client, Answer};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::sync::watch;

/// The guest that echoes the raw request it received (`/slow` sleeps 1 s first, `/trap`
/// traps).
pub const ECHO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/guests/echo.wat");
/// demo/counter: answers with the number of requests it has handled.
pub const COUNTER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../demo/counter/counter.wat"
);
/// demo/ticker: a server-sent-events stream of `data: tick N`.
pub const TICKER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../demo/ticker/ticker.wat");

/// The domain the test router serves actors under.
pub const DOMAIN: &str = "ate.test";
/// The atespace of every test actor.
pub const ATESPACE: &str = "team-a";
const NODE: &str = "node-a";

/// Longest a test waits for one answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// A wasm workload running `module` (a path), as template `tests/<name>`.
pub fn workload(name: &str, module: &str) -> Workload {
    Workload {
        template: NamespacedName::new("tests", name),
        spec: TemplateSpec {
            sandbox_class: "wasm".into(),
            module: module.into(),
            ..Default::default()
        },
    }
}

/// The echo guest with a route timeout (0: none).
pub fn echo(name: &str, route_timeout_ms: u64) -> Workload {
    let mut w = workload(name, ECHO);
    w.spec.route_timeout = ate_model::Duration(Duration::from_millis(route_timeout_ms));
    w
}

/// The ticker: `count` events, `interval_ms` apart.
pub fn ticker(name: &str, count: u32, interval_ms: u32) -> Workload {
    let mut w = workload(name, TICKER);
    w.spec.env = vec![
        EnvVar {
            name: "TICK_COUNT".into(),
            value: count.to_string(),
        },
        EnvVar {
            name: "TICK_INTERVAL_MS".into(),
            value: interval_ms.to_string(),
        },
    ];
    w
}

pub fn actor(id: &str) -> ActorRef {
    ActorRef::new(ATESPACE, id)
}

/// Holds activations until opened.
#[derive(Debug)]
struct Gate(watch::Sender<bool>);

/// An activator over one node: knows a fixed set of actors, counts its calls, and runs an
/// actor on a worker of its own small pool (the same worker every time for one actor).
/// Tests can make it wait at a gate, sleep, or fail with a chosen error.
#[derive(Debug)]
pub struct TestActivator {
    seam: LocalSeam,
    actors: HashMap<ActorRef, (Workload, AtomicUsize)>,
    unknown_calls: AtomicUsize,
    workers: Vec<WorkerId>,
    placed: Mutex<HashMap<ActorRef, WorkerId>>,
    gate: Gate,
    delay: Mutex<Duration>,
    fail: Mutex<Option<ActivateError>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TestActivator {
    fn new(seam: LocalSeam, actors: Vec<(ActorRef, Workload)>, workers: usize) -> Self {
        Self {
            seam,
            actors: actors
                .into_iter()
                .map(|(a, w)| (a, (w, AtomicUsize::new(0))))
                .collect(),
            unknown_calls: AtomicUsize::new(0),
            workers: (0..workers)
                .map(|i| WorkerId::new("default", "wasm", &format!("w{i}")))
                .collect(),
            placed: Mutex::default(),
            gate: Gate(watch::channel(true).0),
            delay: Mutex::default(),
            fail: Mutex::default(),
        }
    }

    /// `activate` calls for a known actor so far.
    pub fn calls(&self, actor: &ActorRef) -> usize {
        self.actors
            .get(actor)
            .map_or(0, |(_, n)| n.load(Ordering::SeqCst))
    }

    /// `activate` calls for every known actor together.
    pub fn known_calls(&self) -> usize {
        self.actors
            .values()
            .map(|(_, n)| n.load(Ordering::SeqCst))
            .sum()
    }

    /// `activate` calls for actors it does not know (answered `NotFound`).
    pub fn unknown_calls(&self) -> usize {
        self.unknown_calls.load(Ordering::SeqCst)
    }

    /// Activations wait here until [`Self::open_gate`].
    pub fn close_gate(&self) {
        self.gate.0.send_replace(false);
    }

    pub fn open_gate(&self) {
        self.gate.0.send_replace(true);
    }

    /// Each activation sleeps this long first.
    pub fn set_delay(&self, d: Duration) {
        *lock(&self.delay) = d;
    }

    /// Each activation fails with `e` (after the gate and the delay); `None` runs again.
    pub fn set_fail(&self, e: Option<ActivateError>) {
        *lock(&self.fail) = e;
    }

    /// Stops the actor on its worker and frees the worker for another, as a suspend
    /// would: the node retracts its route.
    pub async fn release(&self, actor: &ActorRef) {
        let worker = lock(&self.placed).remove(actor).expect("actor placed");
        let exec = self.seam.executor(NODE).expect("node");
        exec.stop(ate_seam::StopRequest {
            worker,
            actor: actor.clone(),
        })
        .await
        .expect("stop");
    }

    /// The worker the actor was placed on, once activated.
    pub fn worker_of(&self, actor: &ActorRef) -> Option<WorkerId> {
        lock(&self.placed).get(actor).cloned()
    }

    pub fn workload_of(&self, actor: &ActorRef) -> Option<Workload> {
        self.actors.get(actor).map(|(w, _)| w.clone())
    }

    /// The actor's worker: its own from before, else a free one.
    fn place(&self, actor: &ActorRef) -> Result<WorkerId, ActivateError> {
        let mut placed = lock(&self.placed);
        if let Some(w) = placed.get(actor) {
            return Ok(w.clone());
        }
        let free = self
            .workers
            .iter()
            .find(|w| !placed.values().any(|p| p == *w))
            .cloned()
            .ok_or_else(|| ActivateError::NoCapacity(format!("no free worker for {actor}")))?;
        placed.insert(actor.clone(), free.clone());
        Ok(free)
    }
}

#[async_trait::async_trait]
impl Activator for TestActivator {
    /// Names no route: the router waits for the node's route to reach its table.
    async fn activate(&self, actor: &ActorRef) -> Result<Option<ate_seam::Route>, ActivateError> {
        let Some((workload, calls)) = self.actors.get(actor) else {
            self.unknown_calls.fetch_add(1, Ordering::SeqCst);
            return Err(ActivateError::NotFound(format!("no actor {actor}")));
        };
        calls.fetch_add(1, Ordering::SeqCst);
        let mut gate = self.gate.0.subscribe();
        let _ = gate.wait_for(|open| *open).await;
        let delay = *lock(&self.delay);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if let Some(e) = lock(&self.fail).clone() {
            return Err(e);
        }
        let worker = self.place(actor)?;
        let exec = self
            .seam
            .executor(NODE)
            .map_err(|e| ActivateError::Unavailable(e.to_string()))?;
        let run = RunRequest {
            worker,
            actor: actor.clone(),
            actor_uid: None,
            workload: workload.clone(),
        };
        exec.run(run).await.map_err(|e| match e {
            SeamError::WorkerBusy { .. } => ActivateError::Busy(e.to_string()),
            other => ActivateError::Failed(other.to_string()),
        })?;
        Ok(None)
    }
}

/// What a test sets up before starting.
#[derive(Debug)]
pub struct Harness {
    config: RouterConfig,
    workers: usize,
    actors: Vec<(ActorRef, Workload)>,
}

/// A harness with the router's defaults but for the domain ([`DOMAIN`]), a 10 s queue wait
/// and 4 workers.
pub fn harness() -> Harness {
    Harness {
        config: RouterConfig {
            domain: DOMAIN.into(),
            queue_wait: Duration::from_secs(10),
            ..Default::default()
        },
        workers: 4,
        actors: Vec::new(),
    }
}

impl Harness {
    pub fn config(mut self, f: impl FnOnce(&mut RouterConfig)) -> Self {
        f(&mut self.config);
        self
    }

    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// An actor the activator knows, `team-a/<id>`.
    pub fn actor(mut self, id: &str, w: Workload) -> Self {
        self.actors.push((actor(id), w));
        self
    }

    /// Starts the node and the router.
    pub async fn start(self) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let seam = LocalSeam::new(Dataspace::new());
        let node = Node::start(NodeConfig::local(NODE, dir.path().join(NODE)), &seam)
            .expect("node starts");
        let activator = Arc::new(TestActivator::new(seam.clone(), self.actors, self.workers));
        let router = Router::new(
            self.config,
            Arc::new(seam.clone()),
            activator.clone() as Arc<dyn Activator>,
        )
        .expect("router");
        let handle = router
            .clone()
            .start(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("router starts");
        Env {
            addr: handle.local_addr(),
            handle: Some(handle),
            router,
            activator,
            node,
            seam,
            _dir: dir,
        }
    }
}

/// A running node and router. Fields drop in order: the router stops before the node.
#[derive(Debug)]
pub struct Env {
    handle: Option<RouterHandle>,
    /// A clone of the serving router, for its route table and queue.
    pub router: Router,
    pub activator: Arc<TestActivator>,
    pub node: Node,
    pub seam: LocalSeam,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Env {
    /// `http://<router>/<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `<id>.team-a.actors.<domain>`.
    pub fn host(&self, id: &str) -> String {
        format!("{id}.{ATESPACE}.actors.{DOMAIN}")
    }

    pub fn exec(&self) -> Arc<dyn NodeExecutor> {
        self.seam
            .executor(self.node.name())
            .expect("node registered")
    }

    /// Takes the router's handle, to shut it down.
    pub fn take_handle(&mut self) -> RouterHandle {
        self.handle.take().expect("router handle")
    }

    /// `GET <path>` with `Host: <host>` (else the router's address), read whole.
    pub async fn get(&self, host: Option<&str>, path: &str) -> Answer {
        let req = client::request("GET", &self.url(path), host, "").expect("request");
        client::send(&client::client(), req, ANSWER_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("GET {path} (host {host:?}): {e}"))
    }

    /// `GET /a/team-a/<id><rest>`, read whole.
    pub async fn get_path(&self, id: &str, rest: &str) -> Answer {
        self.get(None, &format!("/a/{ATESPACE}/{id}{rest}")).await
    }
}

/// A request with extra headers.
pub fn request_with(url: &str, headers: &[(&str, &str)]) -> http::Request<Full<Bytes>> {
    let mut b = http::Request::builder().uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::new())).expect("request")
}

/// Polls `ready` every 10 ms until it holds, panicking after `timeout`.
pub async fn eventually(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < timeout, "{what}: not after {timeout:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A request as the echo guest received it.
#[derive(Debug)]
pub struct Echoed {
    pub line: String,
    pub headers: Vec<(String, String)>,
}

impl Echoed {
    pub fn parse(raw: &str) -> Self {
        let head = raw.split("\r\n\r\n").next().unwrap_or_default();
        let mut lines = head.split("\r\n");
        let line = lines.next().unwrap_or_default().to_string();
        let headers = lines
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect();
        Self { line, headers }
    }

    /// Every value of header `name`, joined by `, `.
    pub fn header(&self, name: &str) -> Option<String> {
        let values: Vec<&str> = self
            .headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect();
        (!values.is_empty()).then(|| values.join(", "))
    }
}

/// Reads server-sent events from a streaming body as they arrive.
#[derive(Debug)]
pub struct EventReader {
    body: hyper::body::Incoming,
    buf: String,
}

impl EventReader {
    pub fn new(body: hyper::body::Incoming) -> Self {
        Self {
            body,
            buf: String::new(),
        }
    }

    /// The next event (its text without the blank line ending it); `Ok(None)` at the end
    /// of the body, `Err` when the body failed.
    pub async fn next(&mut self) -> Result<Option<String>, String> {
        loop {
            if let Some(i) = self.buf.find("\n\n") {
                let event = self.buf[..i].to_string();
                self.buf.drain(..i + 2);
                return Ok(Some(event));
            }
            match self.body.frame().await {
                None if self.buf.is_empty() => return Ok(None),
                None => return Err(format!("body ended inside an event: {:?}", self.buf)),
                Some(Err(e)) => return Err(e.to_string()),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.push_str(&String::from_utf8_lossy(&data));
                    }
                }
            }
        }
    }
}
