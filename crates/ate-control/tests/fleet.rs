//! Fleet placement over three real in-process nodes and a real SQLite store: pools spread
//! evenly, follow nodes joining and leaving, scale up and down, and never lose a busy
//! worker.

use std::collections::BTreeMap;
use std::sync::Arc;

mod common;

use ate_control::{Fleet, NODE_LOST, NODE_READY};
use ate_dataspace::Dataspace;
use ate_model::{
    ActorRef, Assignment, FieldSelector, Labels, NamespacedName, Node, PoolSpec, Worker, WorkerPool,
};
use ate_node::{Node as NodeDaemon, NodeConfig};
use ate_seam::LocalSeam;
use ate_store::{ListOptions, Store};
use ate_store_sqlite::SqliteStore;
use common::wait_for;

struct Env {
    dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    seam: LocalSeam,
    fleet: Fleet,
}

fn env() -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path().join("ate.db")).expect("open"));
    let seam = LocalSeam::new(Dataspace::new());
    let fleet = Fleet::new(store.clone(), Arc::new(seam.clone()));
    Env {
        dir,
        store,
        seam,
        fleet,
    }
}

impl Env {
    fn node(&self, name: &str, labels: &[(&str, &str)]) -> NodeDaemon {
        let mut config = NodeConfig::local(name, self.dir.path().join(name));
        config.labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Labels>();
        config.capacity = 8;
        NodeDaemon::start(config, &self.seam).expect("node starts")
    }

    async fn pool(&self, name: &str, replicas: u32, node_selector: &[(&str, &str)]) {
        let key = format!("default/{name}");
        let spec = PoolSpec {
            replicas,
            sandbox_class: "wasm".into(),
            labels: Labels::new(),
            node_selector: node_selector
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        match self.store.get::<WorkerPool>(&key).await {
            Ok(mut p) => {
                p.spec = spec;
                self.store.update(p).await.expect("update pool");
            }
            Err(_) => {
                self.store
                    .create(WorkerPool {
                        namespace: "default".into(),
                        name: name.into(),
                        version: 0,
                        spec,
                        status: Default::default(),
                    })
                    .await
                    .expect("create pool");
            }
        }
    }

    async fn workers(&self) -> Vec<Worker> {
        self.store
            .list_all::<Worker>(&ListOptions::default())
            .await
            .expect("list workers")
    }

    /// Workers of `pool` per node.
    async fn spread(&self, pool: &str) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for w in self.workers().await.into_iter().filter(|w| w.pool == pool) {
            *out.entry(w.node_name).or_default() += 1;
        }
        out
    }
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_follow_nodes_and_replicas_and_keep_busy_workers() {
    let e = env();
    let a = e.node("node-a", &[]);
    let b = e.node("node-b", &[]);
    let c = e.node("node-c", &[("disk", "ssd")]);
    e.pool("wasm", 6, &[]).await;
    e.fleet.reconcile().await.unwrap();
    assert_eq!(
        e.spread("wasm").await,
        counts(&[("node-a", 2), ("node-b", 2), ("node-c", 2)])
    );
    let nodes = e
        .store
        .list_all::<Node>(&ListOptions::default())
        .await
        .unwrap();
    assert_eq!(nodes.len(), 3);
    assert!(
        nodes
            .iter()
            // `process` too where the machine can run it.
            .all(|n| n.status == NODE_READY && n.sandbox_classes.iter().any(|c| c == "wasm"))
    );
    let pool = e.store.get::<WorkerPool>("default/wasm").await.unwrap();
    assert_eq!(pool.status.replicas, 6);
    // Idempotent: a second pass changes nothing.
    assert_eq!(e.fleet.reconcile().await.unwrap(), Default::default());

    // A node selector keeps a pool on matching nodes.
    e.pool("fast", 3, &[("disk", "ssd")]).await;
    e.fleet.reconcile().await.unwrap();
    assert_eq!(e.spread("fast").await, counts(&[("node-c", 3)]));

    // Make both workers on node-a busy, then lose node-b: its free workers go, the pool
    // refills on the nodes that are left, and the busy workers stay.
    for id in ["x1", "x2"] {
        let sel = FieldSelector::parse("pool=wasm,node_name=node-a").unwrap();
        let claim = Assignment {
            actor: ActorRef::new("team-a", id),
            template: NamespacedName::new("demo", "counter"),
            lease_generation: 0,
        };
        e.store
            .claim(&sel, &claim)
            .await
            .unwrap()
            .expect("a free worker on node-a");
    }
    drop(b);
    e.fleet.reconcile().await.unwrap();
    assert_eq!(
        e.spread("wasm").await,
        counts(&[("node-a", 3), ("node-c", 3)])
    );
    let lost = e.store.get::<Node>("node-b").await.unwrap();
    assert_eq!(lost.status, NODE_LOST);

    // Scale down to 2: only free workers are removed, so the two busy ones are what is left.
    e.pool("wasm", 2, &[]).await;
    e.fleet.reconcile().await.unwrap();
    let left: Vec<Worker> = e
        .workers()
        .await
        .into_iter()
        .filter(|w| w.pool == "wasm")
        .collect();
    assert_eq!(left.len(), 2);
    assert!(
        left.iter().all(|w| !w.is_free() && w.node_name == "node-a"),
        "{left:?}"
    );

    // Scale up to 4 with node-b back: new workers go to the emptiest nodes.
    let b = e.node("node-b", &[]);
    e.pool("wasm", 4, &[]).await;
    e.fleet.reconcile().await.unwrap();
    assert_eq!(
        e.spread("wasm").await,
        counts(&[("node-a", 2), ("node-b", 1), ("node-c", 1)])
    );
    assert_eq!(
        e.store.get::<Node>("node-b").await.unwrap().status,
        NODE_READY
    );

    // Capacity bounds placement: node-c holds 3 "fast" + 1 "wasm" of its 8 slots.
    e.pool("fast", 40, &[("disk", "ssd")]).await;
    e.fleet.reconcile().await.unwrap();
    assert_eq!(e.spread("fast").await, counts(&[("node-c", 7)]));
    drop((a, b, c));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_fleet_reacts_to_a_joining_node() {
    let e = env();
    let _a = e.node("node-a", &[]);
    e.pool("wasm", 4, &[]).await;
    let _fleet = e.fleet.clone().start();
    wait_for("fleet state", || async {
        e.spread("wasm").await == counts(&[("node-a", 4)])
    })
    .await;
    let _b = e.node("node-b", &[]);
    wait_for("fleet state", || async {
        e.spread("wasm").await == counts(&[("node-a", 2), ("node-b", 2)])
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_advertises_its_hot_snapshot_into_its_record() {
    use ate_model::{SnapshotScope, TemplateSpec};
    use ate_seam::{CheckpointRequest, NodeDirectory, RunRequest, WorkerId, Workload};

    let e = env();
    let _a = e.node("node-a", &[]);
    e.pool("wasm", 1, &[]).await;
    let _fleet = e.fleet.clone().start();
    wait_for("fleet state", || async { e.workers().await.len() == 1 }).await;
    let w = e.workers().await.remove(0);
    let module = e.dir.path().join("counter.wat");
    std::fs::write(&module, include_str!("../../../demo/counter/counter.wat")).unwrap();
    let workload = Workload {
        template: NamespacedName::new("demo", "counter"),
        spec: TemplateSpec {
            sandbox_class: "wasm".into(),
            module: module.display().to_string(),
            ..Default::default()
        },
    };
    let worker = WorkerId::new(&w.namespace, &w.pool, &w.name);
    let actor = ActorRef::new("team-a", "c1");
    let exec = e.seam.executor("node-a").unwrap();
    exec.run(RunRequest {
        worker: worker.clone(),
        actor: actor.clone(),
        actor_uid: None,
        workload: workload.clone(),
    })
    .await
    .unwrap();
    let cp = exec
        .checkpoint(CheckpointRequest {
            worker,
            actor,
            workload,
            location: String::new(),
            id: "0001-a".into(),
            scope: SnapshotScope::Full,
            durability: ate_seam::Durability::Durable,
            seal: false,
            evict: false,
        })
        .await
        .unwrap();
    let key = format!("team-a/c1/{}", cp.snapshot.id);
    wait_for("fleet state", || async {
        e.store
            .get::<Worker>(&w.key())
            .await
            .unwrap()
            .cached_snapshots
            == [key.clone()]
    })
    .await;
    // The scheduler's first step finds it by the indexed field.
    let sel = FieldSelector::parse(&format!("cached_snapshot={key}")).unwrap();
    let found = e
        .store
        .list_all::<Worker>(&ListOptions::with_fields(sel))
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_cannot_change_what_the_fleet_knows_of_another() {
    use ate_seam::{NodeDirectory, NodeRegistration, WorkerAdvert, WorkerId};

    let e = env();
    let _a = e.node("node-a", &[]);
    e.pool("wasm", 1, &[]).await;
    e.fleet.reconcile().await.unwrap();
    let w = e.workers().await.remove(0);
    let real = e
        .seam
        .dataspace()
        .get::<NodeRegistration>(&"node-a".into())
        .unwrap();
    // node-a's registration, with another incarnation, under another id: taken for
    // node-a, it would make node-a's workers (and the actors on them) look lost.
    let intruder = e.seam.dataspace().owner("intruder");
    intruder
        .assert(
            "node-z",
            NodeRegistration {
                incarnation: "forged".into(),
                ..real.clone()
            },
        )
        .unwrap();
    e.fleet.reconcile().await.unwrap();
    let node = e.store.get::<Node>("node-a").await.unwrap();
    assert_eq!(node.incarnation, real.incarnation);
    assert_eq!(node.status, NODE_READY);
    let now = e.workers().await;
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].key(), w.key());
    assert_eq!(now[0].node_incarnation, real.incarnation);
    // Another node's advert for node-a's worker is not recorded on it.
    let forged = WorkerAdvert {
        node: "node-b".into(),
        worker: WorkerId::new(&w.namespace, &w.pool, &w.name),
        snapshots: vec!["team-a/x/forged".into()],
    };
    e.fleet.record_advert(&forged).await.unwrap();
    let stored = e.store.get::<Worker>(&w.key()).await.unwrap();
    assert!(stored.cached_snapshots.is_empty(), "{stored:?}");
}
