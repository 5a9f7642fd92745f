//! Process-class control: the reaction to a program that exited by itself, and placement
//! on node capabilities. Nodes here are real in-process wasm nodes joined to the seam
//! under a registration the test chooses (sandbox classes, capabilities), with the test
//! holding their dataspace owner so it can assert what a node asserts. No process driver
//! runs in this crate's tests: a `process` workload is accepted by the stand-in executor
//! and recorded, which is all the scheduler's placement needs.

mod common;

use std::sync::{Arc, Mutex};

use ate_control::{LifecycleError, PROCESS_EXITED};
use ate_dataspace::Dataspace;
use ate_model::{
    ActorRef, ActorStatus, ActorTemplate, Labels, NamespacedName, Node, PoolSpec, STATE_LOST,
    SnapshotScope, TemplateSpec, Worker, WorkerPool,
};
use ate_node::{Node as NodeDaemon, NodeConfig, NodeService};
use ate_seam::{
    ActorExited, Body, Checkpoint, CheckpointRequest, Evictable, InvokeError, LocalSeam, LogStream,
    NodeDirectory, NodeExecutor, NodeMembership, NodeRegistration, RestoreRequest, RunRequest,
    SeamError, StopRequest, WorkerId, actor_key,
};
use ate_store::ListOptions;
use common::{System, wait_for};

/// A node as the control plane sees it: a registration in the seam, an executor, and the
/// owner of the node's assertions. Wasm calls go to a real node; `process` runs are only
/// recorded. A stop withdraws the actor's exit assertion, as a process node does.
/// A test's locks hold plain values: a poisoned one is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug)]
struct TestNode {
    name: String,
    /// The seam's dataspace, to read what the node asserted.
    ds: Dataspace,
    wasm: Arc<NodeService>,
    membership: Mutex<Option<NodeMembership>>,
    ran: Mutex<Vec<(WorkerId, ActorRef)>>,
    _daemon: NodeDaemon,
}

impl TestNode {
    fn join(
        s: &System,
        name: &str,
        classes: &[&str],
        capabilities: &[&str],
        capacity: u32,
    ) -> Arc<Self> {
        // The real node registers in a seam of its own; this one stands in for it.
        let mut config = NodeConfig::local(name, s.dir.path().join(name));
        config.snapshot_location = format!("file://{}", s.snapshots().display());
        let daemon =
            NodeDaemon::start(config.clone(), &LocalSeam::new(Dataspace::new())).expect("node");
        let node = Arc::new(Self {
            name: name.into(),
            ds: s.seam.dataspace().clone(),
            wasm: daemon.service(),
            membership: Mutex::new(None),
            ran: Mutex::new(Vec::new()),
            _daemon: daemon,
        });
        let registration = NodeRegistration {
            name: name.into(),
            address: String::new(),
            labels: Labels::new(),
            sandbox_classes: classes.iter().map(|c| c.to_string()).collect(),
            capacity,
            incarnation: format!("{name}-1"),
            snapshot_location: config.snapshot_location,
            capabilities: capabilities.iter().map(|c| c.to_string()).collect(),
            liveness_timeout_ms: None,
        };
        let m = s
            .seam
            .join(registration, node.clone() as Arc<dyn NodeExecutor>)
            .expect("join");
        *lock(&node.membership) = Some(m);
        node
    }

    fn with_owner<R>(&self, f: impl FnOnce(&ate_dataspace::Owner) -> R) -> R {
        f(lock(&self.membership).as_ref().expect("joined").owner())
    }

    /// What a node asserts when an actor's program stops by itself.
    fn exited(&self, actor: &ActorRef, worker: WorkerId, message: &str) {
        let exit = ActorExited {
            actor: actor.clone(),
            node: self.name.clone(),
            worker,
            message: message.into(),
            time_ms: 1,
        };
        self.with_owner(|o| o.assert(actor_key(actor), exit))
            .expect("assert exit");
    }

    /// Re-registers in place with other capabilities (the same incarnation).
    fn set_capabilities(&self, capabilities: &[&str]) {
        let name = self.name.as_str();
        let mut reg = self
            .ds
            .get::<NodeRegistration>(&name.into())
            .expect("registered");
        reg.capabilities = capabilities.iter().map(|c| c.to_string()).collect();
        self.with_owner(|o| o.assert(name, reg))
            .expect("re-register");
    }

    fn leave(&self) {
        lock(&self.membership).take();
    }
}

#[async_trait::async_trait]
impl NodeExecutor for TestNode {
    async fn run(&self, req: RunRequest) -> Result<(), SeamError> {
        if req.workload.spec.sandbox_class == "process" {
            lock(&self.ran).push((req.worker, req.actor));
            return Ok(());
        }
        self.wasm.run(req).await
    }

    async fn restore(&self, req: RestoreRequest) -> Result<(), SeamError> {
        self.wasm.restore(req).await
    }

    async fn checkpoint(&self, req: CheckpointRequest) -> Result<Checkpoint, SeamError> {
        self.wasm.checkpoint(req).await
    }

    async fn stop(&self, req: StopRequest) -> Result<(), SeamError> {
        let key = actor_key(&req.actor);
        let mine = self
            .ds
            .get::<ActorExited>(&key)
            .is_some_and(|e| e.node == self.name && e.worker == req.worker);
        if mine {
            self.with_owner(|o| o.retract::<ActorExited>(key))
                .expect("retract exit");
        }
        lock(&self.ran).retain(|(w, a)| !(w == &req.worker && a == &req.actor));
        self.wasm.stop(req).await
    }

    async fn invoke(
        &self,
        worker: &WorkerId,
        actor: &ActorRef,
        request: http::Request<Body>,
    ) -> Result<http::Response<Body>, InvokeError> {
        self.wasm.invoke(worker, actor, request).await
    }

    async fn evictable(&self) -> Result<Vec<Evictable>, SeamError> {
        self.wasm.evictable().await
    }

    async fn logs(
        &self,
        actor: &ActorRef,
        actor_uid: Option<&str>,
        follow: bool,
    ) -> Result<LogStream, SeamError> {
        self.wasm.logs(actor, actor_uid, follow).await
    }
}

async fn pool(s: &System, name: &str, class: &str, replicas: u32) {
    s.store
        .create(WorkerPool {
            namespace: "default".into(),
            name: name.into(),
            version: 0,
            spec: PoolSpec {
                replicas,
                sandbox_class: class.into(),
                labels: Labels::new(),
                node_selector: Labels::new(),
            },
            status: Default::default(),
        })
        .await
        .expect("pool");
}

/// A process template; `full` keeps memory in its snapshots (and so needs CRIU).
async fn process_template(s: &System, name: &str, full: bool) -> NamespacedName {
    let mut spec = TemplateSpec {
        sandbox_class: "process".into(),
        command: vec!["/usr/bin/python3".into(), "/ate/module".into()],
        ..Default::default()
    };
    if !full {
        spec.snapshots.on_pause = SnapshotScope::Data;
        spec.snapshots.on_commit = SnapshotScope::Data;
    }
    let t = ActorTemplate {
        namespace: "demo".into(),
        name: name.into(),
        version: 0,
        spec,
        status: Default::default(),
    };
    t.validate().expect("valid template");
    s.store.create(t).await.expect("template").id()
}

fn worker_of(a: &ate_model::Actor) -> WorkerId {
    let p = a.worker.as_ref().expect("placed");
    WorkerId::new(&p.namespace, &p.pool, &p.name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exited_program_suspends_its_actor_and_frees_the_worker() {
    let s = System::new().await;
    let node = TestNode::join(&s, "node-a", &["wasm"], &[], 8);
    s.pool(2).await;
    s.fleet.reconcile().await.expect("reconcile");
    let _exits = s.lifecycle.start_exit_reaction().expect("exit reaction");
    let t = s.template("counter", 3).await;
    let a = s.actor("c1", &t).await;
    let l = &s.lifecycle;

    // A durable snapshot at count 2, then newer state (3) only in memory.
    l.resume(&a, false).await.unwrap();
    s.hit(&a).await;
    s.hit(&a).await;
    l.suspend(&a).await.unwrap();
    let running = l.resume(&a, false).await.unwrap();
    assert_eq!(s.hit(&a).await, "3");
    let w = worker_of(&running);

    // An exit seen on another worker is not this actor's: ignored.
    let other = s
        .workers()
        .await
        .into_iter()
        .find(|x| x.key() != w.to_string())
        .expect("a second worker");
    node.exited(
        &a,
        WorkerId::new(&other.namespace, &other.pool, &other.name),
        "exited with status 1",
    );
    wait_for("stale exit withdrawn", || async {
        s.seam
            .dataspace()
            .get::<ActorExited>(&actor_key(&a))
            .is_none()
    })
    .await;
    let still = s.get(&a).await;
    assert_eq!(still.status, ActorStatus::Running);
    assert_eq!(worker_of(&still), w);
    assert!(still.conditions.is_empty());
    assert_eq!(s.hit(&a).await, "4", "still served where it was");

    // The program on its own worker stops: the actor goes back to its durable snapshot.
    node.exited(&a, w.clone(), "was killed by signal 9 (out of memory)");
    wait_for("actor suspended", || async {
        s.get(&a).await.status == ActorStatus::Suspended
    })
    .await;
    let parked = s.get(&a).await;
    assert!(parked.worker.is_none());
    let lost = parked
        .conditions
        .iter()
        .find(|c| c.kind == STATE_LOST)
        .expect("loss recorded");
    assert_eq!(lost.reason, PROCESS_EXITED);
    assert!(
        lost.message.starts_with(
            "the actor's program was killed by signal 9 (out of memory) on node node-a"
        ),
        "{}",
        lost.message
    );
    let freed: Worker = s.store.get(&w.to_string()).await.expect("worker");
    assert!(freed.is_free(), "the worker is free again");
    wait_for("exit withdrawn by the stop", || async {
        s.seam
            .dataspace()
            .get::<ActorExited>(&actor_key(&a))
            .is_none()
    })
    .await;
    s.assert_consistent().await;

    // The next resume starts from the durable snapshot (count 2).
    l.resume(&a, false).await.unwrap();
    assert_eq!(s.hit(&a).await, "3");

    // An exit for an actor that is gone is ignored.
    node.exited(
        &ActorRef::new("team-a", "nobody"),
        w,
        "exited with status 0",
    );
    wait_for("exit of an unknown actor withdrawn", || async {
        s.seam
            .dataspace()
            .get::<ActorExited>(&actor_key(&ActorRef::new("team-a", "nobody")))
            .is_none()
    })
    .await;
    s.assert_consistent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_snapshots_of_process_actors_go_only_to_criu_nodes() {
    let s = System::new().await;
    let plain = TestNode::join(&s, "plain", &["process"], &[], 4);
    let criu = TestNode::join(&s, "criu", &["process"], &["criu"], 4);
    pool(&s, "process", "process", 2).await;
    s.fleet.reconcile().await.expect("reconcile");

    // Node records and the workers on them carry the registration's capabilities.
    let nodes = s
        .store
        .list_all::<Node>(&ListOptions::default())
        .await
        .expect("nodes");
    let caps = |n: &str| {
        nodes
            .iter()
            .find(|x| x.name == n)
            .map(|x| x.capabilities.clone())
    };
    assert_eq!(caps("criu"), Some(vec!["criu".to_string()]));
    assert_eq!(caps("plain"), Some(vec![]));
    let workers = s.workers().await;
    assert_eq!(workers.len(), 2);
    for w in &workers {
        let want: Vec<String> = if w.node_name == "criu" {
            vec!["criu".into()]
        } else {
            vec![]
        };
        assert_eq!(w.capabilities, want, "{}", w.key());
    }

    let full = process_template(&s, "full", true).await;
    let data = process_template(&s, "data", false).await;
    let l = &s.lifecycle;
    let a1 = s.actor("a1", &full).await;
    let r = l.resume(&a1, false).await.expect("resume on the criu node");
    assert_eq!(
        r.worker.as_ref().map(|p| p.node_name.as_str()),
        Some("criu")
    );
    assert_eq!(lock(&criu.ran).len(), 1);

    // The only capable worker is busy; the plain one is free but cannot take it: no
    // capacity, as for any pool that is full.
    let a2 = s.actor("a2", &full).await;
    let e = l.resume(&a2, false).await.unwrap_err();
    assert!(matches!(e, LifecycleError::NoFreeWorker { .. }), "{e}");
    assert_eq!(e.label(), "no_capacity");
    assert_eq!(s.get(&a2).await.status, ActorStatus::Suspended);

    // A Data-only process template needs no capability.
    let a3 = s.actor("a3", &data).await;
    let r = l.resume(&a3, false).await.expect("resume on any node");
    assert_eq!(
        r.worker.as_ref().map(|p| p.node_name.as_str()),
        Some("plain")
    );
    assert_eq!(lock(&plain.ran).len(), 1);

    // The node re-registers without CRIU: its workers stop advertising it.
    criu.set_capabilities(&[]);
    s.fleet.reconcile().await.expect("reconcile");
    assert!(s.workers().await.iter().all(|w| w.capabilities.is_empty()));
    let e = l.resume(&a2, false).await.unwrap_err();
    assert!(
        matches!(&e, LifecycleError::MissingCapability { class, capability }
            if class == "process" && capability == "criu"),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "no node can take full snapshots of process actors: none has criu"
    );
    assert_eq!(e.label(), "missing_capability");
    assert_eq!(e.kind(), ate_model::ErrorKind::FailedPrecondition);
    assert_eq!(s.get(&a2).await.status, ActorStatus::Suspended);

    // It gets CRIU back, and a new capable node joins: the waiting actor is placed.
    criu.set_capabilities(&["criu"]);
    let more = TestNode::join(&s, "criu-2", &["process"], &["criu"], 4);
    let mut p: WorkerPool = s.store.get("default/process").await.expect("pool");
    p.spec.replicas = 3;
    s.store.update(p).await.expect("scale pool");
    s.fleet.reconcile().await.expect("reconcile");
    let r = l.resume(&a2, false).await.expect("resume on a criu node");
    assert_eq!(
        r.worker.as_ref().map(|p| p.node_name.as_str()),
        Some("criu-2")
    );
    assert_eq!(lock(&more.ran).len(), 1);
    plain.leave();
}
