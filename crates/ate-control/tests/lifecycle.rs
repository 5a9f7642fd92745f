//! The actor lifecycle end to end in one process: real wasm counters on in-process nodes,
//! real snapshot files, a real SQLite store.

mod common;

use std::sync::Arc;

use ate_control::LifecycleError;
use ate_model::{
    ActorStatus, ActorTemplate, Assignment, SNAPSHOT_TOO_LARGE, STATE_LOST, SnapshotInfo,
};
use ate_seam::SeamError;
use ate_testkit::files_under;
use common::{COUNTER, System, wait_for};

async fn system(nodes: &[&str], replicas: u32) -> System {
    System::with_workers(nodes, replicas).await
}

fn snapshot_ids(s: &System, actor: &str) -> Vec<String> {
    snapshot_ids_in(s, "team-a", actor)
}

fn snapshot_ids_in(s: &System, atespace: &str, actor: &str) -> Vec<String> {
    let dir = s.snapshots().join(atespace).join(actor);
    let mut ids: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().join("manifest.json").exists())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_state_survives_suspend_pause_and_resume() {
    let s = system(&["node-a"], 2).await;
    let t = s.template("counter", 2).await;
    let a = s.actor("c1", &t).await;
    let l = &s.lifecycle;

    let running = l.resume(&a, false).await.unwrap();
    assert_eq!(running.status, ActorStatus::Running);
    assert!(running.worker.is_some());
    // Resuming a running actor changes nothing.
    assert_eq!(l.resume(&a, false).await.unwrap().version, running.version);
    for n in 1..=3 {
        assert_eq!(s.hit(&a).await, n.to_string());
    }

    let suspended = l.suspend(&a).await.unwrap();
    assert_eq!(suspended.status, ActorStatus::Suspended);
    assert!(suspended.worker.is_none());
    assert!(matches!(
        suspended.latest_snapshot,
        Some(SnapshotInfo::External { .. })
    ));
    assert!(s.bound_to(&a).await.is_empty(), "the worker is free");
    // Suspending a suspended actor is a no-op.
    assert_eq!(l.suspend(&a).await.unwrap().version, suspended.version);

    l.resume(&a, false).await.unwrap();
    assert_eq!(s.hit(&a).await, "4");

    let paused = l.pause(&a).await.unwrap();
    assert_eq!(paused.status, ActorStatus::Paused);
    let Some(SnapshotInfo::Local {
        nodes, fallback, ..
    }) = &paused.latest_snapshot
    else {
        panic!("a pause keeps a local snapshot: {paused:?}");
    };
    assert_eq!(nodes, &["node-a"]);
    assert_eq!(
        Some(fallback.as_str()),
        suspended.latest_snapshot.as_ref().map(|l| l.uri())
    );
    l.resume(&a, false).await.unwrap();
    assert_eq!(s.hit(&a).await, "5");

    // A paused actor can be suspended: its snapshot becomes the durable one.
    l.pause(&a).await.unwrap();
    let durable = l.suspend(&a).await.unwrap();
    assert!(matches!(
        durable.latest_snapshot,
        Some(SnapshotInfo::External { .. })
    ));
    l.resume(&a, false).await.unwrap();
    assert_eq!(s.hit(&a).await, "6");

    // boot=true starts from nothing.
    l.suspend(&a).await.unwrap();
    l.resume(&a, true).await.unwrap();
    assert_eq!(s.hit(&a).await, "1");
    l.suspend(&a).await.unwrap();

    // Retention (after the suspend returns) keeps two, the template's setting, and leaves
    // no emptied directory behind; deleting removes them all.
    wait_for("retention keeps two snapshots", || async {
        snapshot_ids(&s, "c1").len() == 2
    })
    .await;
    let dirs = std::fs::read_dir(s.snapshots().join("team-a").join("c1"))
        .unwrap()
        .count();
    assert_eq!(dirs, 2, "an emptied snapshot directory was left behind");
    let err = l.pause(&a).await.unwrap_err();
    assert!(matches!(err, LifecycleError::WrongState { .. }), "{err}");
    l.delete(&a).await.unwrap();
    assert!(snapshot_ids(&s, "c1").is_empty());
    s.assert_consistent().await;
    // Nothing of the actor's lease outlives it: a new actor of the name starts afresh.
    let lease = s
        .store
        .acquire_lease("actor/team-a/c1", "next", std::time::Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        lease.generation, 1,
        "the deleted actor's lease was left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_resumes_on_another_node_from_its_snapshot() {
    let mut s = system(&["node-a", "node-b"], 2).await;
    let t = s.template("counter", 3).await;
    let a = s.actor("c1", &t).await;
    let first = s.lifecycle.resume(&a, false).await.unwrap();
    let node = first.worker.unwrap().node_name;
    assert_eq!(s.hit(&a).await, "1");
    assert_eq!(s.hit(&a).await, "2");
    s.lifecycle.suspend(&a).await.unwrap();
    s.kill_node(&node);
    wait_for("the lost node's worker removed", || async {
        s.workers().await.iter().all(|w| w.node_name != node)
    })
    .await;
    let moved = s.lifecycle.resume(&a, false).await.unwrap();
    assert_ne!(moved.worker.unwrap().node_name, node);
    assert_eq!(s.hit(&a).await, "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_prefers_the_worker_then_the_node_holding_the_snapshot() {
    let s = system(&["node-a", "node-b"], 4).await;
    let t = s.template("counter", 3).await;
    let a = s.actor("c1", &t).await;
    let first = s.lifecycle.resume(&a, false).await.unwrap().worker.unwrap();
    s.hit(&a).await;
    s.lifecycle.suspend(&a).await.unwrap();

    // The same worker holds the snapshot hot: it is chosen again.
    let again = s.lifecycle.resume(&a, false).await.unwrap().worker.unwrap();
    assert_eq!(again.name, first.name);
    s.lifecycle.suspend(&a).await.unwrap();

    // That worker is busy: another worker on the same node (it has the snapshot cached).
    let key = format!("{}/{}/{}", first.namespace, first.pool, first.name);
    occupy(&s, &key, "squatter-1").await;
    let near = s.lifecycle.resume(&a, false).await.unwrap().worker.unwrap();
    assert_ne!(near.name, first.name);
    assert_eq!(near.node_name, first.node_name);
    assert_eq!(s.hit(&a).await, "2");
    s.lifecycle.suspend(&a).await.unwrap();

    // Every worker of that node is busy: elsewhere, from the store.
    let near_key = format!("{}/{}/{}", near.namespace, near.pool, near.name);
    occupy(&s, &near_key, "squatter-2").await;
    let far = s.lifecycle.resume(&a, false).await.unwrap().worker.unwrap();
    assert_ne!(far.node_name, first.node_name);
    assert_eq!(s.hit(&a).await, "3");
}

/// Binds a worker to a stand-in actor, as another tenant's actor would hold it.
async fn occupy(s: &System, key: &str, who: &str) {
    // The fleet may be recording the worker's advert at the same time: retry on conflict.
    for _ in 0..20 {
        let mut w: ate_model::Worker = s.store.get(key).await.expect("worker");
        w.assignment = Some(Assignment {
            actor: ate_model::ActorRef::new("team-b", who),
            template: ate_model::NamespacedName::new("demo", "counter"),
            lease_generation: 0,
        });
        match s.store.update(w).await {
            Ok(_) => return,
            Err(ate_store::StoreError::Conflict { .. }) => continue,
            Err(e) => panic!("occupy {key}: {e}"),
        }
    }
    panic!("occupy {key}: kept conflicting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_resumes_bind_one_worker() {
    let s = system(&["node-a"], 4).await;
    let t = s.template("counter", 3).await;
    let a = s.actor("c1", &t).await;
    let l = Arc::new(s.lifecycle.clone());
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (l, a) = (l.clone(), a.clone());
            tokio::spawn(async move { l.resume(&a, false).await })
        })
        .collect();
    for t in tasks {
        let actor = t.await.unwrap().expect("every caller succeeds");
        assert_eq!(actor.status, ActorStatus::Running);
    }
    assert_eq!(s.bound_to(&a).await.len(), 1);
    assert_eq!(s.hit(&a).await, "1");
    s.assert_consistent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_actors_into_eight_workers() {
    // Fifty concurrent resumes onto eight workers: the first take free workers, the rest
    // evict one another. A resume whose every candidate is being evicted by someone else
    // finds no capacity (the router would park it); none binds a worker twice.
    let s = system(&["node-a", "node-b"], 8).await;
    let t = s.template("counter", 3).await;
    let mut actors = Vec::new();
    for i in 0..50 {
        actors.push(s.actor(&format!("a{i}"), &t).await);
    }
    let tasks: Vec<_> = actors
        .iter()
        .map(|a| {
            let (l, a) = (s.lifecycle.clone(), a.clone());
            tokio::spawn(async move { l.resume(&a, false).await })
        })
        .collect();
    let (mut ran, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(a) => {
                assert_eq!(a.status, ActorStatus::Running);
                ran += 1;
            }
            Err(e @ LifecycleError::NoFreeWorker { .. }) => {
                assert!(
                    e.to_string()
                        .contains("no free worker in pool(s) default/wasm")
                );
                refused += 1;
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(ran + refused, 50);
    assert!(ran >= 8, "only {ran} resumes got a worker");
    let bound: Vec<_> = s
        .workers()
        .await
        .into_iter()
        .filter_map(|w| w.assignment.map(|x| x.actor))
        .collect();
    let mut distinct = bound.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(bound.len(), distinct.len(), "an actor holds two workers");
    assert!(bound.len() <= 8);
    s.assert_consistent().await;

    // One at a time, every actor gets a worker by evicting the least recently used one,
    // and counts on from where it was: nothing is lost across the evictions.
    for want in ["1", "2"] {
        for a in &actors {
            s.lifecycle
                .resume(a, false)
                .await
                .expect("resume by eviction");
            assert_eq!(s.hit(a).await, want, "{a}");
        }
    }
    s.assert_consistent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_node_returns_running_and_paused_actors_to_durable_state() {
    let mut s = system(&["node-a"], 4).await;
    let t = s.template("counter", 3).await;
    let l = s.lifecycle.clone();
    // Three actors with a durable snapshot at count 2 and newer state (3) on node-a.
    let mut refs = Vec::new();
    for id in ["running", "paused", "unuploaded"] {
        let a = s.actor(id, &t).await;
        l.resume(&a, false).await.unwrap();
        s.hit(&a).await;
        s.hit(&a).await;
        l.suspend(&a).await.unwrap();
        l.resume(&a, false).await.unwrap();
        assert_eq!(s.hit(&a).await, "3");
        refs.push(a);
    }
    let (running, paused, unuploaded) = (&refs[0], &refs[1], &refs[2]);
    l.pause(paused).await.unwrap();
    let p = l.pause(unuploaded).await.unwrap();
    // Its upload never lands: the manifest is what makes a snapshot complete.
    let uri = p.latest_snapshot.unwrap().uri().to_string();
    let id = uri.rsplit('/').next().unwrap().to_string();
    let manifest = s
        .snapshots()
        .join("team-a/unuploaded")
        .join(id)
        .join("manifest.json");
    wait_for("upload", || async { manifest.exists() }).await;
    std::fs::remove_file(&manifest).unwrap();

    s.start_node("node-b", 16);
    wait_for("node-b has workers", || async {
        s.workers().await.iter().any(|w| w.node_name == "node-b")
    })
    .await;
    s.kill_node("node-a");
    wait_for("running actor recovered", || async {
        s.get(running).await.status == ActorStatus::Suspended
    })
    .await;
    let r = s.get(running).await;
    assert!(r.worker.is_none());
    let lost = r
        .conditions
        .iter()
        .find(|c| c.kind == STATE_LOST)
        .expect("loss recorded");
    assert_eq!(lost.reason, "NodeLost");
    wait_for("lost workers removed and replaced", || async {
        let w = s.workers().await;
        w.len() == 4 && w.iter().all(|w| w.node_name == "node-b")
    })
    .await;

    // Each resumes on node-b from its last durable state.
    l.resume(running, false).await.unwrap();
    assert_eq!(s.hit(running).await, "3", "back to the count-2 snapshot");
    l.resume(paused, false).await.unwrap();
    assert_eq!(
        s.hit(paused).await,
        "4",
        "the paused snapshot had been uploaded"
    );
    assert!(s.get(paused).await.conditions.is_empty());
    let u = l.resume(unuploaded, false).await.unwrap();
    assert_eq!(
        s.hit(unuploaded).await,
        "3",
        "fell back to the snapshot before the pause"
    );
    assert_eq!(u.conditions[0].reason, "PausedSnapshotUnavailable");
    s.assert_consistent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_gets_a_golden_snapshot_that_new_actors_start_from() {
    use ate_control::{Golden, PHASE_PENDING, PHASE_READY, golden_actor};
    use ate_model::ActorTemplate;

    let s = system(&["node-a", "node-b"], 4).await;
    let _golden = Golden::new(s.store.clone(), s.lifecycle.clone()).start();
    let t = s.template("counter", 3).await;
    wait_for("golden snapshot baked", || async {
        let t: ActorTemplate = s.store.get(&t.key()).await.unwrap();
        t.status.phase == PHASE_READY
    })
    .await;
    let baked: ActorTemplate = s.store.get(&t.key()).await.unwrap();
    let gref = golden_actor(&t);
    assert_eq!(baked.status.golden_actor, gref.to_string());
    let golden = s.get(&gref).await;
    assert_eq!(golden.status, ActorStatus::Suspended);
    assert_eq!(
        golden.latest_snapshot.as_ref().map(|l| l.uri()),
        Some(baked.status.golden_snapshot.as_str())
    );
    assert!(s.bound_to(&gref).await.is_empty(), "baking keeps no worker");

    // A new actor restores the golden snapshot: it lands where that snapshot is hot (the
    // worker record follows the node's adverts, which arrive asynchronously).
    let holds_golden = |w: &ate_model::Worker| !w.cached_snapshots.is_empty();
    wait_for(
        "the golden actor's worker advertises its snapshot",
        || async { s.workers().await.iter().any(holds_golden) },
    )
    .await;
    let hot = s
        .workers()
        .await
        .into_iter()
        .find(holds_golden)
        .expect("the golden actor's worker holds its snapshot");
    let a = s.actor("c1", &t).await;
    let r = s.lifecycle.resume(&a, false).await.unwrap();
    assert_eq!(r.worker.unwrap().name, hot.name);
    assert_eq!(s.hit(&a).await, "1");

    // The golden actor's own later suspends never retire the baked snapshot, whatever the
    // template's `keep` (3) says.
    let golden_id = baked.status.golden_snapshot.rsplit('/').next().unwrap();
    for _ in 0..4 {
        s.lifecycle.resume(&gref, false).await.unwrap();
        s.lifecycle.suspend(&gref).await.unwrap();
    }
    wait_for("retention of the golden actor's snapshots", || async {
        snapshot_ids_in(&s, &gref.atespace, &gref.id).len() == 4
    })
    .await;
    assert!(
        snapshot_ids_in(&s, &gref.atespace, &gref.id).contains(&golden_id.to_string()),
        "the baked snapshot {golden_id} was deleted"
    );
    let b = s.actor("c2", &t).await;
    s.lifecycle.resume(&b, false).await.unwrap();
    assert_eq!(s.hit(&b).await, "1");
    s.lifecycle.suspend(&b).await.unwrap();

    // A template whose module cannot load is retried and says why; no worker is kept.
    let mut broken = s.store.get::<ActorTemplate>(&t.key()).await.unwrap();
    broken.name = "broken".into();
    broken.spec.module = "/nonexistent/module.wasm".into();
    broken.status = Default::default();
    s.store.create(broken.clone()).await.unwrap();
    wait_for("failure reported", || async {
        let t: ActorTemplate = s.store.get(&broken.id().key()).await.unwrap();
        t.status.phase == PHASE_PENDING && t.status.message.contains(" failed: ")
    })
    .await;
    let t: ActorTemplate = s.store.get(&broken.id().key()).await.unwrap();
    assert!(
        t.status.message.starts_with("attempt ")
            && t.status.message.contains("retrying in")
            && t.status.message.contains("/nonexistent/module.wasm"),
        "{}",
        t.status.message
    );
    assert!(s.bound_to(&golden_actor(&broken.id())).await.is_empty());
    s.lifecycle.suspend(&a).await.unwrap();
    s.assert_consistent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_a_dead_control_plane_left_behind_are_settled() {
    use ate_model::{Actor, Assignment, FieldSelector};
    use std::time::Duration;

    let s = system(&["node-a"], 4).await;
    let t = s.template("counter", 3).await;
    let l = &s.lifecycle;

    // A resume that died after claiming a worker, before recording it, holding the lease.
    let r = s.actor("resuming", &t).await;
    let mut a = s.get(&r).await;
    a.status = ActorStatus::Resuming;
    s.store.update(a).await.unwrap();
    let claimed = s
        .store
        .claim(
            &FieldSelector::eq([("actor_id", "")]),
            &Assignment {
                actor: r.clone(),
                template: t.clone(),
                lease_generation: 0,
            },
        )
        .await
        .unwrap()
        .unwrap();
    s.store
        .acquire_lease("actor/team-a/resuming", "dead", Duration::from_secs(1))
        .await
        .unwrap();

    // A suspend that died after its checkpoint landed, before freeing the worker.
    let p = s.actor("suspending", &t).await;
    l.resume(&p, false).await.unwrap();
    assert_eq!(s.hit(&p).await, "1");
    l.suspend(&p).await.unwrap();
    let before: Actor = l.resume(&p, false).await.unwrap();
    assert_eq!(s.hit(&p).await, "2");
    let location = format!("file://{}", s.snapshots().display());
    let uri = ate_model::snapshot_uri(&location, &p, "0000000000000001-dead");
    let mut a = s.get(&p).await;
    a.status = ActorStatus::Suspending;
    a.in_progress_snapshot = uri.clone();
    s.store.update(a).await.unwrap();

    // The busy one is left alone until its dead holder's lease expires.
    let first = l.recover().await.unwrap();
    assert_eq!((first.settled, first.busy), (1, 1), "{first:?}");
    let parked = s.get(&p).await;
    assert_eq!(parked.status, ActorStatus::Suspended);
    assert_eq!(parked.latest_snapshot.unwrap().uri(), uri, "rolled forward");
    assert!(before.worker.is_some() && s.bound_to(&p).await.is_empty());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = l.recover().await.unwrap();
    assert_eq!(second.settled, 1, "{second:?}");
    let back = s.get(&r).await;
    assert_eq!(
        back.status,
        ActorStatus::Suspended,
        "the resume is rolled back"
    );
    let w: ate_model::Worker = s.store.get(&claimed.key()).await.unwrap();
    assert!(w.is_free(), "its stray worker is freed");
    s.assert_consistent().await;

    // Both resume normally afterwards, the suspended one from the rolled-forward snapshot.
    l.resume(&p, false).await.unwrap();
    assert_eq!(s.hit(&p).await, "3");
    l.resume(&r, false).await.unwrap();
    assert_eq!(s.hit(&r).await, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_actor_refuses_a_second_operation() {
    use std::time::{Duration, Instant};

    let s = system(&["node-a"], 2).await;
    let t = s.template("counter", 3).await;
    let a = s.actor("c1", &t).await;
    s.lifecycle.resume(&a, false).await.unwrap();
    // Another control plane is suspending it.
    s.store
        .acquire_lease("actor/team-a/c1", "other", Duration::from_secs(30))
        .await
        .unwrap();
    let err = s.lifecycle.suspend(&a).await.unwrap_err();
    assert!(matches!(err, LifecycleError::Busy { .. }), "{err}");
    assert_eq!(err.kind(), ate_model::ErrorKind::Aborted);
    let mut x = s.get(&a).await;
    x.status = ActorStatus::Suspending;
    s.store.update(x).await.unwrap();
    // A resume does not wait out a suspend.
    let started = Instant::now();
    let err = s.lifecycle.resume(&a, false).await.unwrap_err();
    assert!(matches!(err, LifecycleError::Busy { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // The same id in another atespace is a different lease.
    s.store
        .create(ate_model::Atespace {
            name: "team-b".into(),
            version: 0,
        })
        .await
        .unwrap();
    let other = ate_model::ActorRef::new("team-b", "c1");
    s.store
        .create(ate_model::Actor {
            atespace: "team-b".into(),
            id: "c1".into(),
            template: t.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    s.lifecycle.resume(&other, false).await.unwrap();
    s.lifecycle.suspend(&other).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_that_cannot_be_settled_never_stops_the_sweep() {
    let s = system(&["node-a"], 1).await;
    let t = s.template("counter", 2).await;
    let broken = s.actor("broken", &t).await;
    let fine = s.actor("fine", &t).await;
    // A pause that died, whose snapshot's store is gone; a resume that died.
    let mut b = s.get(&broken).await;
    b.status = ActorStatus::Pausing;
    b.latest_snapshot = Some(SnapshotInfo::Local {
        prefix: "gone://bucket/team-a/broken/1".into(),
        nodes: vec![],
        fallback: String::new(),
    });
    s.store.update(b).await.unwrap();
    let mut f = s.get(&fine).await;
    f.status = ActorStatus::Resuming;
    s.store.update(f).await.unwrap();

    let first = s.lifecycle.recover().await.expect("the sweep goes on");
    assert_eq!((first.settled, first.failed), (1, 1), "{first:?}");
    let settled = s.get(&fine).await;
    assert_eq!(settled.status, ActorStatus::Suspended);
    assert!(
        settled.conditions.is_empty(),
        "a resume that never had a worker lost nothing: {:?}",
        settled.conditions
    );
    assert_eq!(s.get(&broken).await.status, ActorStatus::Pausing);
    // Tried again only after a backoff.
    let next = s.lifecycle.recover().await.expect("sweep");
    assert_eq!((next.deferred, next.failed), (1, 0), "{next:?}");
    wait_for("the broken actor is tried again", || async {
        s.lifecycle.recover().await.expect("sweep").failed == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_over_max_bytes_fails_cleanly_with_a_condition() {
    let s = system(&["node-a"], 2).await;
    // The counter's memory is one 64 KiB page: its snapshots are a little over 64 KiB.
    let mut spec = s.wasm_spec("counter.wat", COUNTER);
    spec.snapshots.max_bytes = 32 << 10;
    let t = s.template_of("small", spec).await;
    let a = s.actor("c1", &t).await;
    let l = &s.lifecycle;
    l.resume(&a, false).await.unwrap();
    assert_eq!(s.hit(&a).await, "1");

    for (n, park) in [(2, "suspend"), (3, "pause")] {
        let refused = if park == "suspend" {
            l.suspend(&a).await
        } else {
            l.pause(&a).await
        };
        match refused {
            Err(LifecycleError::Node(SeamError::SnapshotTooLarge { size, limit, .. })) => {
                assert_eq!((size, limit), (65_536, 32 << 10), "{park}")
            }
            other => panic!("{park}: expected SnapshotTooLarge, got {other:?}"),
        }
        let after = s.get(&a).await;
        assert_eq!(after.status, ActorStatus::Running, "{park}: rolled back");
        assert!(after.in_progress_snapshot.is_empty());
        assert!(after.latest_snapshot.is_none());
        let c = after
            .conditions
            .iter()
            .find(|c| c.kind == SNAPSHOT_TOO_LARGE)
            .unwrap_or_else(|| panic!("{park}: no condition in {:?}", after.conditions));
        assert_eq!(c.reason, "MaxBytesExceeded");
        assert_eq!(
            c.message,
            format!(
                "the {park} checkpoint is 65536 bytes, over spec.snapshots.maxBytes of 32768; the actor keeps running"
            )
        );
        // It kept running, state and all, and takes requests where it was.
        assert_eq!(s.hit(&a).await, n.to_string(), "{park}");
        assert_eq!(s.bound_to(&a).await.len(), 1);
    }
    s.assert_consistent().await;
    assert!(
        files_under(&s.snapshots().join("team-a/c1")).is_empty(),
        "nothing in the snapshot store: {:?}",
        files_under(&s.snapshots().join("team-a/c1"))
    );
    assert!(
        files_under(&s.dir.path().join("node-a/cache/team-a/c1")).is_empty(),
        "nothing in the node's cache"
    );

    // With the limit raised (0: the default) the same actor suspends and resumes, its
    // state intact.
    let mut tpl: ActorTemplate = s.store.get(&t.key()).await.unwrap();
    tpl.spec.snapshots.max_bytes = 0;
    s.store.update(tpl).await.unwrap();
    wait_for("the raised limit applies", || async {
        l.suspend(&a).await.is_ok()
    })
    .await;
    assert!(!files_under(&s.snapshots().join("team-a/c1")).is_empty());
    l.resume(&a, false).await.unwrap();
    assert_eq!(s.hit(&a).await, "4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_the_store_still_registers_is_not_declared_lost_on_a_lagging_view() {
    let mut s = system(&["node-a"], 1).await;
    let t = s.template("counter", 2).await;
    let a = s.actor("c1", &t).await;
    s.lifecycle.resume(&a, false).await.unwrap();
    assert_eq!(s.hit(&a).await, "1");
    let w = s.bound_to(&a).await.pop().expect("bound worker");
    // The store still holds the node incarnation's registration (written by the replica
    // that holds its stream) while this replica's view has lost it.
    let record = ate_model::NodeAssertion {
        node: "node-a".into(),
        type_tag: "ate.node.v1".into(),
        id: "node-a".into(),
        value: "{}".into(),
        incarnation: w.node_incarnation.clone(),
        version: 0,
    };
    let key = record.key();
    s.store.create(record).await.unwrap();
    s.kill_node("node-a");
    s.fleet.reconcile().await.unwrap();
    assert_eq!(s.get(&a).await.status, ActorStatus::Running);
    // Once the store agrees, the actor goes back to its snapshot.
    s.store
        .delete::<ate_model::NodeAssertion>(&key, None)
        .await
        .unwrap();
    s.fleet.reconcile().await.unwrap();
    assert_eq!(s.get(&a).await.status, ActorStatus::Suspended);
}
