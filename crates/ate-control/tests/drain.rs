//! Draining a node over gRPC, with real wasm counters on two in-process nodes, the fleet
//! running, and a real SQLite store: a drain suspends every actor on the node (paused
//! ones made durable), nothing is placed there while it is cordoned, even when the other
//! node is full, and uncordoning brings its workers back.

mod common;

use std::time::Duration;

use ate_control::{ControlService, LifecycleError};
use ate_model::{ActorStatus, Node, SnapshotInfo, Worker, WorkerPool};
use ate_proto::ateapi as pb;
use ate_proto::ateapi::control_client::ControlClient;
use common::{System, wait_for};
use tonic::Code;
use tonic::transport::Channel;

async fn serve(s: &System) -> ControlClient<Channel> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let control = ControlService::new(s.store.clone()).with_lifecycle(s.lifecycle.clone());
    tokio::spawn(ate_control::serve(
        listener,
        control,
        std::future::pending(),
    ));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    ControlClient::new(channel)
}

async fn drain(c: &mut ControlClient<Channel>, name: &str) -> pb::DrainNodeResponse {
    c.drain_node(pb::DrainNodeRequest { name: name.into() })
        .await
        .expect("drain")
        .into_inner()
}

async fn uncordon(c: &mut ControlClient<Channel>, name: &str) -> pb::Node {
    c.uncordon_node(pb::UncordonNodeRequest { name: name.into() })
        .await
        .expect("uncordon")
        .into_inner()
        .node
        .expect("node")
}

async fn set_replicas(s: &System, replicas: u32) {
    let mut p: WorkerPool = s.store.get("default/wasm").await.expect("pool");
    p.spec.replicas = replicas;
    s.store.update(p).await.expect("update pool");
}

async fn on(s: &System, node: &str) -> Vec<Worker> {
    s.workers()
        .await
        .into_iter()
        .filter(|w| w.node_name == node)
        .collect()
}

fn node_of(a: &ate_model::Actor) -> &str {
    &a.worker
        .as_ref()
        .expect("a running actor has a worker")
        .node_name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_node_gets_no_work_until_uncordoned() {
    let mut s = System::new().await;
    s.start_node("node-a", 4);
    s.pool(2).await;
    s.run_fleet();
    wait_for("workers on node-a", || async {
        s.workers().await.len() == 2
    })
    .await;
    let mut c = serve(&s).await;
    let t = s.template("counter", 3).await;
    let (c1, c2, c3) = (
        s.actor("c1", &t).await,
        s.actor("c2", &t).await,
        s.actor("c3", &t).await,
    );
    let l = s.lifecycle.clone();

    // c1 runs on node-a, c2 is paused there (its snapshot in node-a's cache).
    assert_eq!(node_of(&l.resume(&c1, false).await.unwrap()), "node-a");
    assert_eq!(node_of(&l.resume(&c2, false).await.unwrap()), "node-a");
    assert_eq!(s.hit(&c1).await, "1");
    assert_eq!(s.hit(&c1).await, "2");
    assert_eq!(s.hit(&c2).await, "1");
    let paused = l.pause(&c2).await.unwrap();
    assert!(matches!(
        &paused.latest_snapshot,
        Some(SnapshotInfo::Local { nodes, .. }) if nodes == &["node-a"]
    ));

    // node-b joins with room for two; the pool grows to four over both nodes.
    s.start_node("node-b", 2);
    set_replicas(&s, 4).await;
    wait_for("four workers, two on node-b", || async {
        s.workers().await.len() == 4 && on(&s, "node-b").await.len() == 2
    })
    .await;

    let drained = drain(&mut c, "node-a").await;
    assert_eq!(drained.suspended, ["team-a/c1", "team-a/c2"]);
    assert!(drained.failed.is_empty(), "{:?}", drained.failed);
    let node = drained.node.expect("node");
    assert_eq!(node.name, "node-a");
    assert!(node.cordoned);
    for a in [&c1, &c2] {
        let a = s.get(a).await;
        assert_eq!(a.status, ActorStatus::Suspended, "{}", a.id);
        assert!(
            matches!(a.latest_snapshot, Some(SnapshotInfo::External { .. })),
            "{} has a durable snapshot: {:?}",
            a.id,
            a.latest_snapshot
        );
    }
    assert!(
        on(&s, "node-a").await.is_empty(),
        "no worker is left on a drained node"
    );
    let nodes = c
        .list_nodes(pb::ListNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes;
    assert!(nodes.iter().any(|n| n.name == "node-a" && n.cordoned));
    assert!(nodes.iter().any(|n| n.name == "node-b" && !n.cordoned));

    // The fleet keeps it that way, and the stored record keeps the cordon over its writes.
    s.fleet.reconcile().await.unwrap();
    assert!(on(&s, "node-a").await.is_empty());
    let stored: Node = s.store.get("node-a").await.unwrap();
    assert!(stored.cordoned);

    // The actors resume on node-b with their state.
    assert_eq!(node_of(&l.resume(&c1, false).await.unwrap()), "node-b");
    assert_eq!(s.hit(&c1).await, "3");
    assert_eq!(node_of(&l.resume(&c2, false).await.unwrap()), "node-b");
    assert_eq!(s.hit(&c2).await, "2");

    // node-b is full and node-a cordoned: c3 takes the worker of the least recently used
    // actor on node-b (c1), and nothing lands on node-a.
    let r = c
        .resume_actor(pb::ResumeActorRequest {
            actor_ref: Some(pb::ActorRef {
                atespace: "team-a".into(),
                name: "c3".into(),
            }),
            boot: false,
        })
        .await
        .expect("resume by eviction")
        .into_inner()
        .actor
        .expect("actor");
    assert_eq!(r.node_name, "node-b");
    assert_eq!(s.get(&c1).await.status, ActorStatus::Suspended);
    assert_eq!(s.hit(&c3).await, "1");
    assert!(on(&s, "node-a").await.is_empty());

    // Draining again changes nothing.
    let again = drain(&mut c, "node-a").await;
    assert!(again.suspended.is_empty() && again.failed.is_empty());
    assert!(again.node.expect("node").cordoned);

    // Uncordoned, node-a gets workers again at once (not at the fleet's next tick), and
    // the next resume lands there. The fleet settles first, so that only the uncordon can
    // start its next pass.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!uncordon(&mut c, "node-a").await.cordoned);
    let started = tokio::time::Instant::now();
    wait_for("workers back on node-a", || async {
        on(&s, "node-a").await.len() == 2
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the fleet reacted to the uncordon in {:?}",
        started.elapsed()
    );
    assert_eq!(node_of(&l.resume(&c1, false).await.unwrap()), "node-a");
    assert_eq!(s.hit(&c1).await, "4");
    // Uncordoning a node that is not cordoned is a no-op.
    assert!(!uncordon(&mut c, "node-a").await.cordoned);
    s.assert_consistent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_on_a_cordoned_node_gives_the_worker_back() {
    // No fleet loop: the test plays a fleet pass that read the nodes before the cordon.
    let mut s = System::new().await;
    s.start_node("node-a", 4);
    s.pool(1).await;
    s.fleet.reconcile().await.unwrap();
    let mut c = serve(&s).await;
    let t = s.template("counter", 3).await;
    let c1 = s.actor("c1", &t).await;
    let [worker] = <[Worker; 1]>::try_from(s.workers().await).expect("one worker");

    let drained = drain(&mut c, "node-a").await;
    assert!(drained.suspended.is_empty() && drained.failed.is_empty());
    assert!(s.workers().await.is_empty(), "the free worker is removed");
    s.store
        .create(Worker {
            version: 0,
            ..worker
        })
        .await
        .unwrap();

    let err = s.lifecycle.resume(&c1, false).await.unwrap_err();
    assert!(matches!(err, LifecycleError::NoFreeWorker { .. }), "{err}");
    assert!(
        s.workers().await.is_empty(),
        "the claimed worker is removed"
    );
    assert_eq!(s.get(&c1).await.status, ActorStatus::Suspended);

    uncordon(&mut c, "node-a").await;
    s.fleet.reconcile().await.unwrap();
    assert_eq!(
        node_of(&s.lifecycle.resume(&c1, false).await.unwrap()),
        "node-a"
    );
    s.assert_consistent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_and_uncordon_check_the_name() {
    let mut s = System::new().await;
    s.start_node("node-a", 1);
    s.fleet.reconcile().await.unwrap();
    let mut c = serve(&s).await;

    for bad in ["Node_A", "", "-a"] {
        let err = c
            .drain_node(pb::DrainNodeRequest { name: bad.into() })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad:?}: {err:?}");
        assert!(err.message().contains("name"), "{}", err.message());
        let err = c
            .uncordon_node(pb::UncordonNodeRequest { name: bad.into() })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad:?}: {err:?}");
    }
    let err = c
        .drain_node(pb::DrainNodeRequest {
            name: "node-z".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), "node node-z not found");
    let err = c
        .uncordon_node(pb::UncordonNodeRequest {
            name: "node-z".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // A known node that is not cordoned: uncordon is a no-op success.
    assert!(!uncordon(&mut c, "node-a").await.cordoned);
}
