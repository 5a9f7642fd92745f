//! The node registry of the split deployment, spoken to over real gRPC by a hand-driven node:
//! registration and its mirror in every replica, retraction when the stream ends or goes
//! quiet, a dead replica's nodes reaped by another, fencing by lease generation, the watch
//! routers follow, and bad hellos refused naming the field.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ate_control::Registry;
use ate_dataspace::{Dataspace, Filter};
use ate_proto::atenode::{
    self as pb, node_message::Message as Out, registry_client::RegistryClient,
    registry_message::Message as In,
};
use ate_seam::NodeRegistration;
use ate_store::Store;
use ate_store_sqlite::SqliteStore;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::Streaming;
use tonic::transport::Channel;

/// A replica serving its registry on a free port.
async fn replica(store: &Arc<dyn Store>) -> (Registry, ate_control::RegistryHandle, String) {
    let (registry, handle) = Registry::start(store.clone(), Dataspace::new());
    registry.synced().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let service = registry.service();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await
    });
    (registry, handle, addr)
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

fn registration(node: &str, incarnation: &str) -> pb::NodeMessage {
    let value = NodeRegistration {
        name: node.into(),
        address: "127.0.0.1:1".into(),
        labels: Default::default(),
        sandbox_classes: vec!["wasm".into()],
        capacity: 4,
        incarnation: incarnation.into(),
        snapshot_location: "file:///tmp/x".into(),
        capabilities: vec!["criu".into()],
    };
    pb::NodeMessage {
        message: Some(Out::Asserted(pb::Asserted {
            r#type: "ate.node.v1".into(),
            id: node.into(),
            value_json: serde_json::to_string(&value).unwrap(),
        })),
    }
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
