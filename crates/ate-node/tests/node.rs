//! Nodes in one process, driven through the seam as the control plane drives them: real
//! wasm guests, real snapshot files, the dataspace adverts.

use std::path::Path;
use std::sync::Arc;

use ate_dataspace::{Dataspace, Filter};
use ate_model::{ActorRef, NamespacedName, TemplateSpec};
use ate_node::{Node, NodeConfig};
use ate_seam::*;
use ate_testkit::files_under;
use http_body_util::BodyExt;

const COUNTER: &str = include_str!("../../../demo/counter/counter.wat");

struct Fixture {
    seam: LocalSeam,
    dir: tempfile::TempDir,
    workload: Workload,
}

fn fixture(module_source: &str, budget_ms: u64) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let module = dir.path().join("module.wat");
    std::fs::write(&module, module_source).expect("write module");
    let mut spec = TemplateSpec {
        sandbox_class: "wasm".into(),
        module: module.display().to_string(),
        ..Default::default()
    };
    spec.limits.request_budget = ate_model::Duration(std::time::Duration::from_millis(budget_ms));
    Fixture {
        seam: LocalSeam::new(Dataspace::new()),
        dir,
        workload: Workload {
            template: NamespacedName::new("demo", "counter"),
            spec,
        },
    }
}

impl Fixture {
    fn node(&self, name: &str) -> Node {
        let mut config = NodeConfig::local(name, self.dir.path().join(name));
        // Every node shares one snapshot store, as nodes of one deployment do.
        config.snapshot_location =
            format!("file://{}", self.dir.path().join("snapshots").display());
        Node::start(config, &self.seam).expect("node starts")
    }

    fn exec(&self, node: &str) -> Arc<dyn NodeExecutor> {
        self.seam.executor(node).expect("node is registered")
    }

    fn run(&self, worker: &WorkerId, actor: &ActorRef) -> RunRequest {
        RunRequest {
            worker: worker.clone(),
            actor: actor.clone(),
            actor_uid: None,
            workload: self.workload.clone(),
        }
    }

    fn checkpoint(&self, worker: &WorkerId, actor: &ActorRef) -> CheckpointRequest {
        CheckpointRequest {
            worker: worker.clone(),
            actor: actor.clone(),
            workload: self.workload.clone(),
            location: String::new(),
            id: ate_snapshots::new_snapshot_id(),
            scope: ate_model::SnapshotScope::Full,
            durability: Durability::Durable,
            seal: false,
            evict: false,
        }
    }

    fn restore(
        &self,
        worker: &WorkerId,
        actor: &ActorRef,
        snapshot: &SnapshotRef,
    ) -> RestoreRequest {
        RestoreRequest {
            worker: worker.clone(),
            actor: actor.clone(),
            actor_uid: None,
            workload: self.workload.clone(),
            snapshot: snapshot.clone(),
        }
    }

    fn snapshots(&self) -> std::path::PathBuf {
        self.dir.path().join("snapshots")
    }
}

fn worker(name: &str) -> WorkerId {
    WorkerId::new("default", "wasm", name)
}

async fn get(
    exec: &Arc<dyn NodeExecutor>,
    w: &WorkerId,
    a: &ActorRef,
) -> Result<(u16, String), SeamError> {
    let req = http::Request::builder()
        .uri("/count?x=1")
        .body(full_body("hello"))
        .expect("request");
    let resp = exec.invoke(w, a, req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Ok((status, String::from_utf8(body.to_vec()).expect("utf-8")))
}

fn find(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
        if p.is_dir()
            && let Some(found) = find(&p, name)
        {
            return Some(found);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_moves_between_nodes_through_a_snapshot() {
    let f = fixture(COUNTER, 10_000);
    let (a, b) = (f.node("node-a"), f.node("node-b"));
    let actor = ActorRef::new("team-a", "c1");
    let (w1, w2) = (worker("w1"), worker("w2"));
    let ea = f.exec("node-a");
    ea.run(f.run(&w1, &actor)).await.unwrap();
    // A retried run is a no-op; another actor cannot take the worker.
    ea.run(f.run(&w1, &actor)).await.unwrap();
    let other = ActorRef::new("team-a", "c2");
    assert!(matches!(
        ea.run(f.run(&w1, &other)).await,
        Err(SeamError::WorkerBusy { .. })
    ));
    assert!(matches!(
        get(&ea, &w1, &other).await,
        Err(SeamError::NotHosted { .. })
    ));
    for n in 1..=3 {
        assert_eq!(get(&ea, &w1, &actor).await.unwrap(), (200, n.to_string()));
    }
    let cp = ea.checkpoint(f.checkpoint(&w1, &actor)).await.unwrap();
    assert!(cp.bytes >= 65_536, "{cp:?}");
    assert_eq!(get(&ea, &w1, &actor).await.unwrap().1, "4");

    // The worker and node advertise the snapshot.
    let key = format!("team-a/c1/{}", cp.snapshot.id);
    let ds = f.seam.dataspace();
    let advert: WorkerAdvert = ds.get(&w1.to_string().into()).expect("worker advert");
    assert_eq!(advert.snapshots, vec![key.clone()]);
    let cache: NodeCacheAdvert = ds.get(&"node-a".into()).expect("cache advert");
    assert_eq!(cache.snapshots, vec![key.clone()]);

    ea.stop(StopRequest {
        worker: w1.clone(),
        actor: actor.clone(),
    })
    .await
    .unwrap();
    ea.stop(StopRequest {
        worker: w1.clone(),
        actor: actor.clone(),
    })
    .await
    .unwrap();
    assert!(matches!(
        get(&ea, &w1, &actor).await,
        Err(SeamError::NotHosted { .. })
    ));

    // Restored on the other node from the store: it continues from the checkpoint.
    let eb = f.exec("node-b");
    eb.restore(f.restore(&w2, &actor, &cp.snapshot))
        .await
        .unwrap();
    assert_eq!(get(&eb, &w2, &actor).await.unwrap().1, "4");
    assert_eq!(get(&eb, &w2, &actor).await.unwrap().1, "5");
    let cache_b: NodeCacheAdvert = ds.get(&"node-b".into()).expect("cache advert b");
    assert_eq!(cache_b.snapshots, vec![key]);

    // The guest's stdout is the actor's log on the node that ran it.
    let mut logs = eb.logs(&actor, None, false).await.unwrap();
    let mut lines = Vec::new();
    while let Some(l) = logs.recv().await {
        lines.push(l.text);
    }
    assert_eq!(lines, ["counter: request 4", "counter: request 5"]);

    // Leaving retracts the registration and every advert.
    drop(a);
    assert!(ds.get::<NodeRegistration>(&"node-a".into()).is_none());
    assert!(ds.get::<NodeCacheAdvert>(&"node-a".into()).is_none());
    assert!(ds.get::<WorkerAdvert>(&w1.to_string().into()).is_none());
    assert!(matches!(
        f.seam.executor("node-a"),
        Err(SeamError::NodeUnavailable { .. })
    ));
    let names: Vec<String> = ds
        .list::<NodeRegistration>(&Filter::All)
        .into_iter()
        .map(|(_, r)| r.name)
        .collect();
    assert_eq!(names, ["node-b"]);
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_checkpoint_is_cached_at_once_and_uploaded_in_the_background() {
    let f = fixture(COUNTER, 10_000);
    let (_a, _b) = (f.node("node-a"), f.node("node-b"));
    let actor = ActorRef::new("team-a", "p1");
    let (w1, w2) = (worker("w1"), worker("w2"));
    let ea = f.exec("node-a");
    ea.run(f.run(&w1, &actor)).await.unwrap();
    assert_eq!(get(&ea, &w1, &actor).await.unwrap().1, "1");
    let req = CheckpointRequest {
        durability: Durability::Local,
        ..f.checkpoint(&w1, &actor)
    };
    let id = req.id.clone();
    let cp = ea.checkpoint(req.clone()).await.unwrap();
    assert_eq!(cp.snapshot.id, id, "the caller's id is the snapshot's");
    let cache: NodeCacheAdvert = f.seam.dataspace().get(&"node-a".into()).expect("advert");
    assert_eq!(cache.snapshots, vec![format!("team-a/p1/{id}")]);
    // The upload lands: its manifest appears in the store.
    let store = ate_snapshots::SnapshotStore::open(&cp.snapshot.location).unwrap();
    let mut uploaded = false;
    for _ in 0..200 {
        if store.manifest(&actor, &id).await.is_ok() {
            uploaded = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(uploaded, "the paused snapshot reaches the store");
    ea.stop(StopRequest {
        worker: w1.clone(),
        actor: actor.clone(),
    })
    .await
    .unwrap();
    // Another node restores it from the store.
    let eb = f.exec("node-b");
    eb.restore(f.restore(&w2, &actor, &cp.snapshot))
        .await
        .unwrap();
    assert_eq!(get(&eb, &w2, &actor).await.unwrap().1, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_snapshot_is_refused() {
    let f = fixture(COUNTER, 10_000);
    let _a = f.node("node-a");
    let _b = f.node("node-b");
    let actor = ActorRef::new("team-a", "c1");
    let ea = f.exec("node-a");
    ea.run(f.run(&worker("w1"), &actor)).await.unwrap();
    get(&ea, &worker("w1"), &actor).await.unwrap();
    let cp = ea
        .checkpoint(f.checkpoint(&worker("w1"), &actor))
        .await
        .unwrap();
    let memory = find(&f.snapshots(), "memory.bin.zst").expect("memory file in the store");
    let mut bytes = std::fs::read(&memory).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&memory, bytes).unwrap();
    let err = f
        .exec("node-b")
        .restore(f.restore(&worker("w2"), &actor, &cp.snapshot))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SeamError::Snapshot(m) if m.contains("corrupt")),
        "{err}"
    );
    // Nothing was installed: the worker is still free.
    assert!(matches!(
        get(&f.exec("node-b"), &worker("w2"), &actor).await,
        Err(SeamError::NotHosted { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_over_the_templates_max_bytes_are_refused_both_ways() {
    let f = fixture(COUNTER, 10_000);
    let _a = f.node("node-a");
    let _b = f.node("node-b");
    let actor = ActorRef::new("team-a", "c1");
    let (ea, w1) = (f.exec("node-a"), worker("w1"));
    ea.run(f.run(&w1, &actor)).await.unwrap();
    assert_eq!(get(&ea, &w1, &actor).await.unwrap().1, "1");
    let mut small = f.workload.clone();
    small.spec.snapshots.max_bytes = 32 << 10;

    // A sealing pause over the limit: refused, nothing cached or stored, and the actor
    // takes requests again where it was.
    for durability in [Durability::Local, Durability::Durable] {
        let err = ea
            .checkpoint(CheckpointRequest {
                workload: small.clone(),
                durability,
                seal: true,
                ..f.checkpoint(&w1, &actor)
            })
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                SeamError::SnapshotTooLarge {
                    size: 65_536,
                    limit: 32_768,
                    ..
                }
            ),
            "{err}"
        );
        assert!(files_under(&f.dir.path().join("node-a/cache/team-a")).is_empty());
        assert!(files_under(&f.snapshots()).is_empty());
    }
    assert_eq!(get(&ea, &w1, &actor).await.unwrap().1, "2");

    // Taken under the default limit, then restored by a template whose limit is smaller:
    // node-b, which must fetch it, refuses it before reading any of it.
    let cp = ea.checkpoint(f.checkpoint(&w1, &actor)).await.unwrap();
    assert!(cp.bytes > 65_536, "{}", cp.bytes);
    let err = f
        .exec("node-b")
        .restore(RestoreRequest {
            workload: small.clone(),
            ..f.restore(&worker("w2"), &actor, &cp.snapshot)
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SeamError::SnapshotTooLarge { size, limit: 32_768, .. } if *size == cp.bytes),
        "{err}"
    );
    assert!(files_under(&f.dir.path().join("node-b/cache/team-a")).is_empty());
    f.exec("node-b")
        .restore(f.restore(&worker("w2"), &actor, &cp.snapshot))
        .await
        .expect("within the default limit");
    assert_eq!(
        get(&f.exec("node-b"), &worker("w2"), &actor)
            .await
            .unwrap()
            .1,
        "3"
    );
}

const SPIN: &str = include_str!("../../ate-wasm/tests/fixtures/spin.wat");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_guest_is_stopped_and_its_worker_recovers() {
    let f = fixture(SPIN, 300);
    let _a = f.node("node-a");
    let ea = f.exec("node-a");
    let actor = ActorRef::new("team-a", "spin");
    ea.run(f.run(&worker("w1"), &actor)).await.unwrap();
    assert_eq!(
        get(&ea, &worker("w1"), &actor).await.unwrap(),
        (200, "1".into())
    );
    let err = get(&ea, &worker("w1"), &actor).await.unwrap_err();
    assert!(
        matches!(&err, SeamError::GuestUnavailable { reason, .. } if reason.contains("budget")),
        "{err}"
    );
    // The next request gets a replacement guest (booted fresh: no checkpoint was taken).
    assert_eq!(
        get(&ea, &worker("w1"), &actor).await.unwrap(),
        (200, "1".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_name_is_registered_once() {
    let f = fixture(COUNTER, 10_000);
    let first = f.node("node-a");
    let config = NodeConfig::local("node-a", f.dir.path().join("again"));
    let err = Node::start(config.clone(), &f.seam).unwrap_err();
    assert!(
        err.to_string()
            .contains("node node-a is already registered"),
        "{err}"
    );
    // The first keeps its registration; once it leaves, the name is free again.
    assert!(f.seam.executor("node-a").is_ok());
    drop(first);
    let again = Node::start(config, &f.seam).unwrap();
    assert_eq!(again.name(), "node-a");
}
