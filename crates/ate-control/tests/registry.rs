//! The node registry of the split deployment, spoken to over real gRPC by a hand-driven node:
//! registration and its mirror in every replica, retraction when the stream ends or goes
//! quiet, a dead replica's nodes reaped by another, fencing by lease generation, the watch
//! routers follow, and bad hellos refused naming the field. A node speaks only for itself:
//! assertions naming another node, under another assertion's id, about actors the store
//! does not bind to the node's workers, or over the bounds end its stream; what is true of
//! the node itself goes through, including a route in the window of a resume.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ate_control::Registry;
use ate_dataspace::{Assertion, Dataspace, Filter};
use ate_model::{
    Actor, ActorRef, ActorStatus, Assignment, Atespace, NamespacedName, Worker, WorkerPlacement,
};
use ate_proto::atenode::{
    self as pb, node_message::Message as Out, registry_client::RegistryClient,
    registry_message::Message as In,
};
use ate_seam::{
    ActorExited, IdleActor, NodeCacheAdvert, NodeRegistration, Route, WorkerAdvert, WorkerId,
    actor_key,
};
use ate_store::Store;
use ate_store_sqlite::SqliteStore;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::Streaming;
use tonic::transport::Channel;

/// A replica serving its registry on a free port.
async fn replica(store: &Arc<dyn Store>) -> (Registry, ate_control::RegistryHandle, String) {
    let (registry, handle, addr, _server) = replica_server(store).await;
    (registry, handle, addr)
}

/// A replica as [`replica`], and its server task: aborting it cuts every node off.
async fn replica_server(
    store: &Arc<dyn Store>,
) -> (
    Registry,
    ate_control::RegistryHandle,
    String,
    tokio::task::JoinHandle<()>,
) {
    let (registry, handle) = Registry::start(store.clone(), Dataspace::new());
    registry.synced().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let service = registry.service();
    let server = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await;
    });
    (registry, handle, addr, server)
}

fn hello(node: &str, incarnation: &str, generation: u64, ttl_ms: u64) -> pb::NodeMessage {
    pb::NodeMessage {
        message: Some(Out::Hello(pb::Hello {
            node: node.into(),
            incarnation: incarnation.into(),
            generation,
            liveness_timeout_ms: ttl_ms,
        })),
    }
}

fn node_registration(node: &str, incarnation: &str) -> NodeRegistration {
    NodeRegistration {
        name: node.into(),
        address: "127.0.0.1:1".into(),
        labels: Default::default(),
        sandbox_classes: vec!["wasm".into()],
        capacity: 4,
        incarnation: incarnation.into(),
        snapshot_location: "file:///tmp/x".into(),
        capabilities: vec!["criu".into()],
        liveness_timeout_ms: Some(2000),
    }
}

fn registration(node: &str, incarnation: &str) -> pb::NodeMessage {
    asserted(node, &node_registration(node, incarnation))
}

/// A node's stream: what it sends, and what the replica answers.
struct Stream {
    tx: mpsc::Sender<pb::NodeMessage>,
    answers: Streaming<pb::RegistryMessage>,
}

async fn open(addr: &str, first: pb::NodeMessage) -> Result<Stream, tonic::Status> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel(16);
    tx.send(first).await.unwrap();
    let answers = RegistryClient::new(channel)
        .register(ReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok(Stream { tx, answers })
}

impl Stream {
    async fn answer(&mut self) -> Result<In, tonic::Status> {
        let m = tokio::time::timeout(Duration::from_secs(10), self.answers.message())
            .await
            .expect("an answer in time")?;
        Ok(m.and_then(|m| m.message).expect("a message"))
    }
}

fn registered(registry: &Registry, node: &str) -> Option<NodeRegistration> {
    registry.dataspace().get::<NodeRegistration>(&node.into())
}

async fn until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("ate.db")).unwrap());
    (dir, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_is_seen_by_every_replica_until_its_stream_ends() {
    let (_dir, store) = store();
    let (a, _ha, addr_a) = replica(&store).await;
    let (b, _hb, _) = replica(&store).await;
    let mut node = open(&addr_a, hello("n1", "i1", 0, 2000)).await.unwrap();
    let In::Accepted(accepted) = node.answer().await.unwrap() else {
        panic!("hello not accepted");
    };
    assert!(accepted.generation > 0);
    node.tx.send(registration("n1", "i1")).await.unwrap();
    until("both replicas see n1", Duration::from_secs(5), || {
        registered(&a, "n1").is_some() && registered(&b, "n1").is_some()
    })
    .await;
    assert_eq!(registered(&b, "n1").unwrap().incarnation, "i1");
    // A heartbeat is confirmed with the same generation.
    node.tx
        .send(pb::NodeMessage {
            message: Some(Out::Heartbeat(pb::Done {})),
        })
        .await
        .unwrap();
    let In::Accepted(again) = node.answer().await.unwrap() else {
        panic!("heartbeat not confirmed");
    };
    assert_eq!(again.generation, accepted.generation);
    // The stream ends: every replica forgets the node at once, long before its timeout.
    drop(node);
    until("n1 retracted everywhere", Duration::from_secs(1), || {
        registered(&a, "n1").is_none() && registered(&b, "n1").is_none()
    })
    .await;
    // Coming back with the old generation: it was retracted, so it is fenced.
    let mut back = open(&addr_a, hello("n1", "i1", accepted.generation, 2000))
        .await
        .unwrap();
    assert!(matches!(back.answer().await.unwrap(), In::Fenced(_)));
    // A new incarnation registers afresh.
    let mut fresh = open(&addr_a, hello("n1", "i2", 0, 2000)).await.unwrap();
    assert!(matches!(fresh.answer().await.unwrap(), In::Accepted(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_node_is_retracted_after_its_liveness_timeout() {
    let (_dir, store) = store();
    let (a, _ha, addr) = replica(&store).await;
    let mut node = open(&addr, hello("n1", "i1", 0, 1000)).await.unwrap();
    assert!(matches!(node.answer().await.unwrap(), In::Accepted(_)));
    node.tx.send(registration("n1", "i1")).await.unwrap();
    until("n1 registered", Duration::from_secs(5), || {
        registered(&a, "n1").is_some()
    })
    .await;
    let sent = Instant::now();
    // No heartbeat: the stream stays open but the node says nothing.
    until("n1 retracted", Duration::from_secs(5), || {
        registered(&a, "n1").is_none()
    })
    .await;
    assert!(sent.elapsed() >= Duration::from_millis(900));
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_replica_s_nodes_are_reaped_by_another_and_fenced_when_they_return() {
    let (_dir, store) = store();
    let (a, ha, addr_a) = replica(&store).await;
    let (b, _hb, addr_b) = replica(&store).await;
    let mut node = open(&addr_a, hello("n1", "i1", 0, 1000)).await.unwrap();
    let In::Accepted(accepted) = node.answer().await.unwrap() else {
        panic!("hello not accepted");
    };
    node.tx.send(registration("n1", "i1")).await.unwrap();
    until("b sees n1", Duration::from_secs(5), || {
        registered(&b, "n1").is_some()
    })
    .await;
    // Replica a goes away without retracting (as on shutdown, or as if it died): the lease
    // is left to expire, and b takes it over.
    a.stop();
    drop(ha);
    until("b reaps n1", Duration::from_secs(5), || {
        registered(&b, "n1").is_none()
    })
    .await;
    drop(node);
    let mut back = open(&addr_b, hello("n1", "i1", accepted.generation, 1000))
        .await
        .unwrap();
    let In::Fenced(fenced) = back.answer().await.unwrap() else {
        panic!("a node declared lost was not fenced");
    };
    assert!(fenced.reason.contains("declared lost"), "{}", fenced.reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_fails_over_in_time_keeps_its_registration() {
    let (_dir, store) = store();
    let (a, ha, addr_a) = replica(&store).await;
    let (b, _hb, addr_b) = replica(&store).await;
    let mut node = open(&addr_a, hello("n1", "i1", 0, 3000)).await.unwrap();
    let In::Accepted(accepted) = node.answer().await.unwrap() else {
        panic!("hello not accepted");
    };
    node.tx.send(registration("n1", "i1")).await.unwrap();
    until("b sees n1", Duration::from_secs(5), || {
        registered(&b, "n1").is_some()
    })
    .await;
    a.stop();
    drop(ha);
    drop(node);
    let mut moved = open(&addr_b, hello("n1", "i1", accepted.generation, 3000))
        .await
        .unwrap();
    let In::Accepted(same) = moved.answer().await.unwrap() else {
        panic!("a node moving to another replica in time was refused");
    };
    assert_eq!(same.generation, accepted.generation);
    moved.tx.send(registration("n1", "i1")).await.unwrap();
    // Well past the first replica's lease: the node is still there.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..3 {
        moved
            .tx
            .send(pb::NodeMessage {
                message: Some(Out::Heartbeat(pb::Done {})),
            })
            .await
            .unwrap();
        assert!(matches!(moved.answer().await.unwrap(), In::Accepted(_)));
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    assert!(registered(&b, "n1").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routers_watch_and_bad_hellos_are_refused() {
    let (_dir, store) = store();
    let (_a, _ha, addr) = replica(&store).await;
    let mut node = open(&addr, hello("n1", "i1", 0, 5000)).await.unwrap();
    assert!(matches!(node.answer().await.unwrap(), In::Accepted(_)));
    node.tx.send(registration("n1", "i1")).await.unwrap();
    let (followed, mut follower) =
        ate_seam::follow_control(vec![addr.clone()], &ate_seam::carry::ROUTER_TYPES);
    follower.synced().await;
    let mut sub = followed.subscribe::<NodeRegistration>(Filter::All).unwrap();
    let start = Instant::now();
    loop {
        if followed.get::<NodeRegistration>(&"n1".into()).is_some() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "router never saw n1"
        );
        let _ = tokio::time::timeout(Duration::from_millis(100), sub.recv()).await;
    }
    for (bad, field) in [
        (hello("N1!", "i1", 0, 5000), "node"),
        (hello("n2", "", 0, 5000), "incarnation"),
        (hello("n2", "i1", 0, 10), "liveness_timeout_ms"),
    ] {
        let refused = match open(&addr, bad).await {
            Err(status) => status,
            Ok(mut s) => s.answer().await.unwrap_err(),
        };
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(refused.message().contains(field), "{}", refused.message());
    }
    // A registration may only name its own node.
    let mut liar = open(&addr, hello("n3", "i3", 0, 5000)).await.unwrap();
    assert!(matches!(liar.answer().await.unwrap(), In::Accepted(_)));
    liar.tx.send(registration("n4", "i3")).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), liar.answers.message())
        .await
        .unwrap();
    assert!(!matches!(
        ended,
        Ok(Some(pb::RegistryMessage {
            message: Some(In::Accepted(_))
        }))
    ));
    assert!(followed.get::<NodeRegistration>(&"n4".into()).is_none());
}

// A node speaks only for itself: what one node's stream may assert.

/// A store with atespace `team-a`, for actors.
async fn world() -> (tempfile::TempDir, Arc<dyn Store>) {
    let (dir, store) = store();
    store
        .create(Atespace {
            name: "team-a".into(),
            version: 0,
        })
        .await
        .unwrap();
    (dir, store)
}

/// A worker record of `node`, hosting `actor` if given.
async fn worker(
    store: &Arc<dyn Store>,
    name: &str,
    node: &str,
    hosts: Option<&ActorRef>,
) -> WorkerId {
    let w = store
        .create(Worker {
            namespace: "default".into(),
            pool: "wasm".into(),
            name: name.into(),
            node_name: node.into(),
            sandbox_class: "wasm".into(),
            assignment: hosts.map(|a| Assignment {
                actor: a.clone(),
                template: NamespacedName::new("team-a", "counter"),
                lease_generation: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    WorkerId::new(&w.namespace, &w.pool, &w.name)
}

/// An actor record with `status`, placed on `on` (worker of node) if given.
async fn actor(
    store: &Arc<dyn Store>,
    id: &str,
    status: ActorStatus,
    on: Option<(&WorkerId, &str)>,
) -> ActorRef {
    let a = store
        .create(Actor {
            atespace: "team-a".into(),
            id: id.into(),
            template: NamespacedName::new("team-a", "counter"),
            status,
            worker: on.map(|(w, node)| WorkerPlacement {
                namespace: w.namespace.clone(),
                pool: w.pool.clone(),
                name: w.name.clone(),
                node_name: node.into(),
                address: "127.0.0.1:1".into(),
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    a.actor_ref()
}

fn asserted<T: Assertion>(id: &str, value: &T) -> pb::NodeMessage {
    pb::NodeMessage {
        message: Some(Out::Asserted(pb::Asserted {
            r#type: T::TYPE.into(),
            id: id.into(),
            value_json: serde_json::to_string(value).unwrap(),
        })),
    }
}

fn retracted(type_tag: &str, id: &str) -> pb::NodeMessage {
    pb::NodeMessage {
        message: Some(Out::Retracted(pb::Retracted {
            r#type: type_tag.into(),
            id: id.into(),
        })),
    }
}

fn heartbeat() -> pb::NodeMessage {
    pb::NodeMessage {
        message: Some(Out::Heartbeat(pb::Done {})),
    }
}

fn route(actor: &ActorRef, node: &str, worker: &WorkerId) -> Route {
    Route {
        actor: actor.clone(),
        node: node.into(),
        worker: worker.clone(),
        template: NamespacedName::new("team-a", "counter"),
        timeout_ms: 0,
    }
}

fn idle(actor: &ActorRef, node: &str, worker: &WorkerId) -> IdleActor {
    IdleActor {
        actor: actor.clone(),
        node: node.into(),
        worker: worker.clone(),
        idle_since_ms: 1,
    }
}

fn exited(actor: &ActorRef, node: &str, worker: &WorkerId) -> ActorExited {
    ActorExited {
        actor: actor.clone(),
        node: node.into(),
        worker: worker.clone(),
        message: "exited with status 1".into(),
        time_ms: 1,
    }
}

/// The liveness timeout of the nodes below: an assertion the store contradicts is refused
/// after twice this.
const TTL_MS: u64 = 1000;

/// Node `node` (incarnation `incarnation`) registered on `addr`, heartbeating, with its
/// lease generation.
async fn join(addr: &str, node: &str, incarnation: &str) -> (Stream, u64) {
    let mut s = open(addr, hello(node, incarnation, 0, TTL_MS))
        .await
        .unwrap();
    let In::Accepted(accepted) = s.answer().await.unwrap() else {
        panic!("{node}: hello not accepted");
    };
    s.tx.send(registration(node, incarnation)).await.unwrap();
    let tx = s.tx.clone();
    tokio::spawn(async move {
        while tx.send(heartbeat()).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    (s, accepted.generation)
}

/// The status the replica ends the stream with (heartbeat confirmations skipped).
async fn refusal(s: &mut Stream, within: Duration) -> tonic::Status {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.answers.message()).await {
            Err(_) => panic!("the stream was not ended within {within:?}"),
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) => panic!("the stream ended without a status"),
            Ok(Err(status)) => return status,
        }
    }
}

/// Whether the stream is still open after `wait`, heartbeats confirmed.
async fn still_open(s: &mut Stream, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.answers.message()).await {
            Err(_) => return true,
            Ok(Ok(Some(_))) => continue,
            Ok(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cannot_assert_for_another_node_or_under_another_id() {
    let (_dir, store) = world().await;
    let (a, _ha, addr) = replica(&store).await;
    // n2 is a live node with an actor; n1 tries to speak for it.
    let (_n2, _) = join(&addr, "n2", "i-n2").await;
    until("n2 registered", Duration::from_secs(5), || {
        registered(&a, "n2").is_some()
    })
    .await;
    let a1 = ActorRef::new("team-a", "a1");
    let w1 = worker(&store, "w1", "n1", Some(&a1)).await;
    actor(&store, "a1", ActorStatus::Running, Some((&w1, "n1"))).await;
    let a2 = ActorRef::new("team-a", "a2");
    let w2 = worker(&store, "w2", "n2", Some(&a2)).await;
    actor(&store, "a2", ActorStatus::Running, Some((&w2, "n2"))).await;
    // Case n runs as incarnation i-n1-n of n1 (a registration must name its incarnation).
    let cases: Vec<(&str, pb::NodeMessage, &str)> = vec![
        (
            "registration naming n2",
            asserted("n2", &node_registration("n2", "i-n1-0")),
            "name:",
        ),
        // Under n2's id it would hide n2's registration: the fleet would take n2 for lost.
        (
            "own registration under n2's id",
            asserted("n2", &node_registration("n1", "i-n1-1")),
            "id:",
        ),
        (
            "worker advert naming n2",
            asserted(
                &w2.to_string(),
                &WorkerAdvert {
                    node: "n2".into(),
                    worker: w2.clone(),
                    snapshots: vec!["team-a/a2/s".into()],
                },
            ),
            "node:",
        ),
        (
            "cache advert under n2's id",
            asserted(
                "n2",
                &NodeCacheAdvert {
                    node: "n1".into(),
                    snapshots: vec![],
                },
            ),
            "id:",
        ),
        (
            "route naming n2",
            asserted("team-a/a2", &route(&a2, "n2", &w2)),
            "node:",
        ),
        (
            "idle mark naming n2",
            asserted("team-a/a2", &idle(&a2, "n2", &w2)),
            "node:",
        ),
        (
            "own route under another actor's id",
            asserted("team-a/a2", &route(&a1, "n1", &w1)),
            "id:",
        ),
        (
            "own exit under another actor's id",
            asserted("team-a/a2", &exited(&a1, "n1", &w1)),
            "id:",
        ),
        (
            "unknown type",
            pb::NodeMessage {
                message: Some(Out::Asserted(pb::Asserted {
                    r#type: "ate.other.v1".into(),
                    id: "x".into(),
                    value_json: "{}".into(),
                })),
            },
            "type:",
        ),
    ];
    for (n, (what, bad, field)) in cases.into_iter().enumerate() {
        let incarnation = format!("i-n1-{n}");
        let (mut n1, generation) = join(&addr, "n1", &incarnation).await;
        until("n1 registered", Duration::from_secs(5), || {
            registered(&a, "n1").is_some_and(|r| r.incarnation == incarnation)
        })
        .await;
        n1.tx.send(bad).await.unwrap();
        let refused = refusal(&mut n1, Duration::from_secs(5)).await;
        assert_eq!(
            refused.code(),
            tonic::Code::InvalidArgument,
            "{what}: {refused:?}"
        );
        assert!(
            refused.message().starts_with(field),
            "{what}: {}",
            refused.message()
        );
        // The stream ended as any other: n1 is retracted, and fenced if it comes back.
        until("n1 retracted", Duration::from_secs(5), || {
            registered(&a, "n1").is_none()
        })
        .await;
        let mut back = open(&addr, hello("n1", &incarnation, generation, TTL_MS))
            .await
            .unwrap();
        assert!(
            matches!(back.answer().await.unwrap(), In::Fenced(_)),
            "{what}: a refused node came back unfenced"
        );
        // n2 and its actor are as they were.
        let n2 = registered(&a, "n2").unwrap();
        assert_eq!(
            (n2.name.as_str(), n2.incarnation.as_str()),
            ("n2", "i-n2"),
            "{what}"
        );
        assert!(
            a.dataspace().get::<Route>(&actor_key(&a2)).is_none(),
            "{what}"
        );
        assert!(
            a.dataspace().get::<IdleActor>(&actor_key(&a2)).is_none(),
            "{what}"
        );
        assert!(
            a.dataspace().get::<ActorExited>(&actor_key(&a2)).is_none(),
            "{what}"
        );
        assert!(
            a.dataspace().get::<NodeCacheAdvert>(&"n2".into()).is_none(),
            "{what}"
        );
        assert!(
            a.dataspace()
                .get::<WorkerAdvert>(&w2.to_string().into())
                .is_none(),
            "{what}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cannot_route_or_suspend_another_node_s_actors() {
    let (_dir, store) = world().await;
    let (a, _ha, addr) = replica(&store).await;
    // a2 runs on n2's worker w2; n3's worker w3 is free; n6's worker w6 still names a6,
    // which the store has SUSPENDED.
    let a2 = ActorRef::new("team-a", "a2");
    let w2 = worker(&store, "w2", "n2", Some(&a2)).await;
    actor(&store, "a2", ActorStatus::Running, Some((&w2, "n2"))).await;
    let w3 = worker(&store, "w3", "n3", None).await;
    let a6 = ActorRef::new("team-a", "a6");
    let w6 = worker(&store, "w6", "n6", Some(&a6)).await;
    actor(&store, "a6", ActorStatus::Suspended, None).await;
    let key = actor_key(&a2).to_string();
    // Each from a node of its own, all at once: every one is refused once the store has
    // contradicted it for its grace (twice the liveness timeout), and none is shown before.
    let cases = vec![
        // Takes a2's traffic.
        ("n1", asserted(&key, &route(&a2, "n1", &w2)), "worker:"),
        ("n3", asserted(&key, &route(&a2, "n3", &w3)), "worker:"),
        (
            "n6",
            asserted(&actor_key(&a6).to_string(), &route(&a6, "n6", &w6)),
            "actor:",
        ),
        // Forces a suspend of a2, or stops it.
        ("n4", asserted(&key, &idle(&a2, "n4", &w2)), "worker:"),
        ("n5", asserted(&key, &exited(&a2, "n5", &w2)), "worker:"),
    ];
    let runs = cases.into_iter().map(|(node, bad, field)| {
        let (a, addr) = (a.clone(), addr.clone());
        async move {
            let (mut s, _) = join(&addr, node, &format!("i-{node}")).await;
            until("registered", Duration::from_secs(5), || {
                registered(&a, node).is_some()
            })
            .await;
            s.tx.send(bad).await.unwrap();
            let sent = Instant::now();
            let refused = refusal(&mut s, Duration::from_secs(10)).await;
            assert_eq!(
                refused.code(),
                tonic::Code::InvalidArgument,
                "{node}: {refused:?}"
            );
            assert!(
                refused.message().starts_with(field),
                "{node}: {}",
                refused.message()
            );
            assert!(sent.elapsed() >= Duration::from_millis(2 * TTL_MS - 100));
        }
    });
    let shown = {
        let (a, a2, a6) = (a.clone(), a2.clone(), a6.clone());
        tokio::spawn(async move {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(4) {
                let ds = a.dataspace();
                if ds.get::<Route>(&actor_key(&a2)).is_some()
                    || ds.get::<Route>(&actor_key(&a6)).is_some()
                    || ds.get::<IdleActor>(&actor_key(&a2)).is_some()
                    || ds.get::<ActorExited>(&actor_key(&a2)).is_some()
                {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            false
        })
    };
    side_by_side(runs).await;
    assert!(
        !shown.await.unwrap(),
        "a refused assertion was shown meanwhile"
    );
}

/// Runs futures to completion side by side.
async fn side_by_side<F: std::future::Future<Output = ()> + Send + 'static>(
    runs: impl IntoIterator<Item = F>,
) {
    let tasks: Vec<_> = runs.into_iter().map(tokio::spawn).collect();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_asserts_what_is_true_of_itself() {
    let (_dir, store) = world().await;
    let (a, _ha, addr) = replica(&store).await;
    let (mut n1, _) = join(&addr, "n1", "i-n1").await;
    until("n1 registered", Duration::from_secs(5), || {
        registered(&a, "n1").is_some()
    })
    .await;
    let ds = a.dataspace().clone();
    // The resume window: the worker is claimed and the actor RESUMING with no worker
    // recorded yet when the node, its actor ready, routes it.
    let a1 = ActorRef::new("team-a", "a1");
    let w1 = worker(&store, "w1", "n1", Some(&a1)).await;
    actor(&store, "a1", ActorStatus::Resuming, None).await;
    let key = actor_key(&a1).to_string();
    n1.tx
        .send(asserted(&key, &route(&a1, "n1", &w1)))
        .await
        .unwrap();
    until("a1 routed", Duration::from_secs(5), || {
        ds.get::<Route>(&actor_key(&a1)).is_some()
    })
    .await;
    // Running: marks, exits and adverts of its own.
    let mut rec = store.get::<Actor>(&a1.key()).await.unwrap();
    rec.status = ActorStatus::Running;
    rec.worker = Some(WorkerPlacement {
        namespace: w1.namespace.clone(),
        pool: w1.pool.clone(),
        name: w1.name.clone(),
        node_name: "n1".into(),
        address: "127.0.0.1:1".into(),
    });
    let mut rec = store.update(rec).await.unwrap();
    n1.tx
        .send(asserted(&key, &idle(&a1, "n1", &w1)))
        .await
        .unwrap();
    n1.tx
        .send(asserted(&key, &exited(&a1, "n1", &w1)))
        .await
        .unwrap();
    let advert = WorkerAdvert {
        node: "n1".into(),
        worker: w1.clone(),
        snapshots: vec!["team-a/a1/s1".into()],
    };
    n1.tx
        .send(asserted(&w1.to_string(), &advert))
        .await
        .unwrap();
    // An advert of a worker since removed stays asserted by its node: harmless.
    let gone = WorkerAdvert {
        node: "n1".into(),
        worker: WorkerId::new("default", "wasm", "gone"),
        snapshots: vec![],
    };
    n1.tx
        .send(asserted("default/wasm/gone", &gone))
        .await
        .unwrap();
    let cache = NodeCacheAdvert {
        node: "n1".into(),
        snapshots: vec!["team-a/a1/s1".into()],
    };
    n1.tx.send(asserted("n1", &cache)).await.unwrap();
    until("n1's assertions shown", Duration::from_secs(5), || {
        ds.get::<IdleActor>(&actor_key(&a1)).is_some()
            && ds.get::<ActorExited>(&actor_key(&a1)).is_some()
            && ds.get::<WorkerAdvert>(&w1.to_string().into()).is_some()
            && ds
                .get::<WorkerAdvert>(&"default/wasm/gone".into())
                .is_some()
            && ds.get::<NodeCacheAdvert>(&"n1".into()).is_some()
    })
    .await;
    // A suspend in progress keeps the worker: the route, sent again, still holds.
    rec.status = ActorStatus::Suspending;
    store.update(rec).await.unwrap();
    let again = Route {
        timeout_ms: 5,
        ..route(&a1, "n1", &w1)
    };
    n1.tx.send(asserted(&key, &again)).await.unwrap();
    until("route updated", Duration::from_secs(5), || {
        ds.get::<Route>(&actor_key(&a1))
            .is_some_and(|r| r.timeout_ms == 5)
    })
    .await;
    // The actor was stopped before the replica got to the node's route; the node's
    // retraction follows: held back meanwhile, it ends nothing.
    let a3 = ActorRef::new("team-a", "a3");
    let w3 = worker(&store, "w3", "n1", None).await;
    actor(&store, "a3", ActorStatus::Suspended, None).await;
    let key3 = actor_key(&a3).to_string();
    n1.tx
        .send(asserted(&key3, &route(&a3, "n1", &w3)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(ds.get::<Route>(&actor_key(&a3)).is_none());
    n1.tx.send(retracted(Route::TYPE, &key3)).await.unwrap();
    assert!(
        still_open(&mut n1, Duration::from_millis(3 * TTL_MS)).await,
        "a legitimate node's stream was ended"
    );
    assert!(registered(&a, "n1").is_some());
    assert!(ds.get::<Route>(&actor_key(&a1)).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_s_assertions_are_bounded() {
    let (_dir, store) = world().await;
    let (a, _ha, addr) = replica(&store).await;
    // One value over 4 MiB.
    let (mut n1, _) = join(&addr, "n1", "i-n1").await;
    let huge = NodeCacheAdvert {
        node: "n1".into(),
        snapshots: (0..100_000)
            .map(|i| format!("team-a/actor-{i}/0000000000000000-{i:08}"))
            .collect(),
    };
    n1.tx.send(asserted("n1", &huge)).await.unwrap();
    let refused = refusal(&mut n1, Duration::from_secs(10)).await;
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert!(
        refused.message().starts_with("value:"),
        "{}",
        refused.message()
    );
    assert!(a.dataspace().get::<NodeCacheAdvert>(&"n1".into()).is_none());
    // More bytes than a node's assertions may hold, each value within its own bound
    // (the count bound is checked the same way; see the session's unit tests).
    let mut n2 = open(&addr, hello("n2", "i-n2", 0, 300_000)).await.unwrap();
    assert!(matches!(n2.answer().await.unwrap(), In::Accepted(_)));
    let snapshots: Vec<String> = (0..85_000)
        .map(|i| format!("team-a/actor-{i}/0000000000000000-{i:08}"))
        .collect();
    let tx = n2.tx.clone();
    tokio::spawn(async move {
        for i in 0..17 {
            let w = WorkerId::new("default", "wasm", &format!("w-{i}"));
            let advert = WorkerAdvert {
                node: "n2".into(),
                worker: w.clone(),
                snapshots: snapshots.clone(),
            };
            if tx.send(asserted(&w.to_string(), &advert)).await.is_err() {
                return;
            }
        }
    });
    let refused = refusal(&mut n2, Duration::from_secs(60)).await;
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert!(
        refused.message().starts_with("assertions:"),
        "{}",
        refused.message()
    );
    until("n2 retracted", Duration::from_secs(5), || {
        a.dataspace().list::<WorkerAdvert>(&Filter::All).is_empty()
    })
    .await;
}

/// Wall-clock milliseconds, comparable across the node's and the store's view.
fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_node_fences_itself_before_its_lease_can_be_taken_over() {
    let (_dir, store) = store();
    let (a, _ha, addr, server) = replica_server(&store).await;
    let timeout = Duration::from_secs(2);
    let node = Dataspace::new();
    let owner = node.owner("node");
    owner.assert("n1", node_registration("n1", "i1")).unwrap();
    let mut reg = ate_seam::Registration::start(
        node.clone(),
        ate_seam::RegistrationConfig {
            controls: vec![addr],
            liveness_timeout: timeout,
            dialer: ate_seam::Dialer::plaintext(),
        },
    );
    until("n1 registered", Duration::from_secs(5), || {
        registered(&a, "n1").is_some()
    })
    .await;
    // Let a few heartbeats be confirmed, then cut the node off: its replica's server goes
    // (the lease is left as it is), and no other replica answers.
    tokio::time::sleep(timeout).await;
    server.abort();
    a.stop();
    let fenced_at = tokio::spawn(async move {
        let reason = reg.fenced().await;
        (wall_ms(), reason)
    });
    let taken_at = loop {
        match store
            .acquire_lease("node/n1", "reaper", Duration::from_secs(5))
            .await
        {
            Ok(_) => break wall_ms(),
            Err(ate_store::StoreError::LeaseHeld { .. }) => {}
            Err(e) => panic!("{e}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let (fenced_at, reason) = fenced_at.await.unwrap();
    assert!(reason.contains("confirmed"), "{reason}");
    // The node stopped at least a margin before anyone could take its lease over.
    let margin = ate_seam::fencing_margin(timeout).as_millis() as u64;
    assert!(
        fenced_at + margin <= taken_at,
        "fenced at {fenced_at}, lease free at {taken_at}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_that_hears_no_replica_stops_trusting_the_node_in_time() {
    let (_dir, store) = store();
    let (a, _ha, addr, server) = replica_server(&store).await;
    // The node announces a 2 s liveness timeout and keeps its lease renewed meanwhile.
    let mut node = open(&addr, hello("n1", "i1", 0, 2000)).await.unwrap();
    assert!(matches!(node.answer().await.unwrap(), In::Accepted(_)));
    node.tx.send(registration("n1", "i1")).await.unwrap();
    let (followed, mut follower) =
        ate_seam::follow_control(vec![addr.clone()], &ate_seam::carry::ROUTER_TYPES);
    follower.synced().await;
    until("the router sees n1", Duration::from_secs(5), || {
        followed.get::<NodeRegistration>(&"n1".into()).is_some()
    })
    .await;
    // Nothing changes, but the router hears its replica: the view stays trusted past the
    // bound while the node keeps its registration alive.
    for _ in 0..5 {
        node.tx.send(heartbeat()).await.unwrap();
        assert!(matches!(node.answer().await.unwrap(), In::Accepted(_)));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(followed.get::<NodeRegistration>(&"n1".into()).is_some());

    // The router loses every replica: it keeps the node for less than the liveness
    // timeout less the margin, then stops forwarding to it.
    let cut = Instant::now();
    server.abort();
    a.stop();
    until("the router drops n1", Duration::from_secs(5), || {
        followed.get::<NodeRegistration>(&"n1".into()).is_none()
    })
    .await;
    let bound = Duration::from_secs(2) - ate_seam::fencing_margin(Duration::from_secs(2));
    assert!(
        cut.elapsed() <= bound + Duration::from_millis(300),
        "{:?}",
        cut.elapsed()
    );
    assert!(
        cut.elapsed() >= bound - Duration::from_millis(1100),
        "{:?}",
        cut.elapsed()
    );
    drop(node);
}
