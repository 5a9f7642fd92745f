//! What a node tells routers and the control plane through the dataspace while it hosts an
//! actor, on real wasm guests (the counter and ticker demos) and a real dataspace:
//!
//! - the actor's `Route` (published on run and restore, with node, worker, template and
//!   the template's route timeout; kept by a plain checkpoint; withdrawn on stop);
//! - sealing checkpoints (suspend, pause): the route goes, new requests are refused with
//!   the request handed back intact, a request already running finishes before the state
//!   is saved, one admitted but not yet running is handed back, the snapshot holds the
//!   state at the seal, and a failed sealing checkpoint reopens the actor;
//! - `IdleActor` marks: asserted after the template's idle timeout without a request in
//!   flight (never earlier, never while a stream runs, never with a zero timeout),
//!   retracted by a request, a stop or a seal.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ate_dataspace::{Dataspace, Event, Filter, Subscription};
use ate_model::{ActorRef, NamespacedName};
use ate_seam::*;
use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn tick_stream(count: u32) -> String {
    (1..=count).map(|n| format!("data: tick {n}\n\n")).collect()
}

fn route(ds: &Dataspace, a: &ActorRef) -> Option<Route> {
    ds.get::<Route>(&actor_key(a))
}

fn idle_mark(ds: &Dataspace, a: &ActorRef) -> Option<IdleActor> {
    ds.get::<IdleActor>(&actor_key(a))
}

/// Starts a ticker request; returns the response once its head is in.
async fn start_stream(exec: &Arc<dyn NodeExecutor>, w: &WorkerId, a: &ActorRef) -> Body {
    let req = http::Request::builder()
        .uri("/")
        .body(empty_body())
        .unwrap();
    match exec.invoke(w, a, req).await {
        Ok(r) => {
            assert_eq!(r.status(), 200);
            r.into_body()
        }
        Err(e) => panic!("invoke failed: {}", e.error),
    }
}

/// Reads a body to its end: the bytes, when the last data frame came and when it ended.
async fn read_stream(mut body: Body) -> (String, Instant, Instant) {
    let mut out = Vec::new();
    let mut last_data = Instant::now();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            out.extend_from_slice(&data);
            last_data = Instant::now();
        }
    }
    (String::from_utf8(out).unwrap(), last_data, Instant::now())
}

/// Polls `ok` every few milliseconds; returns when it first held.
async fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Instant {
    let deadline = Instant::now() + limit;
    loop {
        if ok() {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(ms(5)).await;
    }
}

/// Every assertion event queued on `sub` (not waiting), `Synced` left out.
fn drain<T: ate_dataspace::Assertion>(sub: &mut Subscription<T>) -> Vec<Event<T>> {
    std::iter::from_fn(|| sub.try_recv())
        .filter(|e| !matches!(e, Event::Synced))
        .collect()
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_follows_the_actor_from_run_to_stop_and_restore() {
    let f = Fixture::new();
    let (_a, _b) = (f.node("node-a"), f.node("node-b"));
    let (ea, eb) = (f.exec("node-a"), f.exec("node-b"));
    let ds = f.ds();
    let counter = f.workload("counter", COUNTER, |s| {
        s.route_timeout = ate_model::Duration(ms(2_500));
    });
    let actor = ActorRef::new("team-a", "c1");
    let (w1, w2) = (worker("w1"), worker("w2"));
    assert_eq!(actor_key(&actor), "team-a/c1".into());

    assert_eq!(route(&ds, &actor), None, "no route before the actor runs");
    ea.run(run(&w1, &actor, &counter)).await.unwrap();
    let on_a = Route {
        actor: actor.clone(),
        node: "node-a".into(),
        worker: w1.clone(),
        template: NamespacedName::new("demo", "counter"),
        timeout_ms: 2_500,
    };
    assert_eq!(route(&ds, &actor), Some(on_a.clone()));
    assert_eq!(count(&ea, &w1, &actor).await, "1");

    // A plain checkpoint (a snapshot, not a departure) leaves the actor serving.
    let cp = ea
        .checkpoint(checkpoint(&w1, &actor, &counter, false))
        .await
        .unwrap();
    assert_eq!(route(&ds, &actor), Some(on_a));
    assert_eq!(count(&ea, &w1, &actor).await, "2");

    ea.stop(stop(&w1, &actor)).await.unwrap();
    assert_eq!(route(&ds, &actor), None, "a stop withdraws the route");

    // Restored elsewhere: the route names the new node and worker.
    eb.restore(restore(&w2, &actor, &counter, &cp.snapshot))
        .await
        .unwrap();
    let on_b = route(&ds, &actor).expect("a restore publishes the route");
    assert_eq!((on_b.node.as_str(), &on_b.worker), ("node-b", &w2));
    assert_eq!(on_b.timeout_ms, 2_500);
    assert_eq!(count(&eb, &w2, &actor).await, "2");
    eb.stop(stop(&w2, &actor)).await.unwrap();
    assert_eq!(route(&ds, &actor), None);

    // The default route timeout (0: wait as long as it takes) is published as 0.
    let plain = f.workload("plain", COUNTER, |_| {});
    ea.run(run(&w1, &actor, &plain)).await.unwrap();
    let r = route(&ds, &actor).unwrap();
    assert_eq!(
        (r.timeout_ms, r.template),
        (0, NamespacedName::new("demo", "plain"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealing_checkpoint_withdraws_the_route_and_hands_new_requests_back() {
    let f = Fixture::new();
    let _a = f.node("node-a");
    let ea = f.exec("node-a");
    let ds = f.ds();
    let counter = f.workload("counter", COUNTER, |_| {});
    let actor = ActorRef::new("team-a", "c1");
    let (w1, w2) = (worker("w1"), worker("w2"));
    ea.run(run(&w1, &actor, &counter)).await.unwrap();
    assert_eq!(count(&ea, &w1, &actor).await, "1");
    assert_eq!(count(&ea, &w1, &actor).await, "2");

    let cp = ea
        .checkpoint(checkpoint(&w1, &actor, &counter, true))
        .await
        .unwrap();
    assert_eq!(route(&ds, &actor), None, "a seal withdraws the route");
    let body = b"hello \x00\xff world".to_vec();
    for _ in 0..2 {
        let refused = ea
            .invoke(&w1, &actor, tagged_request(full_body(body.clone())))
            .await;
        assert_handed_back(refused, &body).await;
    }

    // Stopping the sealed actor keeps it unrouted; its snapshot holds the state at the
    // seal: the refused requests never reached it.
    ea.stop(stop(&w1, &actor)).await.unwrap();
    assert_eq!(route(&ds, &actor), None);
    ea.restore(restore(&w2, &actor, &counter, &cp.snapshot))
        .await
        .unwrap();
    assert_eq!(route(&ds, &actor).unwrap().worker, w2);
    assert_eq!(count(&ea, &w2, &actor).await, "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seal_lets_the_stream_in_flight_finish_before_saving() {
    let f = Fixture::new();
    let _a = f.node("node-a");
    let ea = f.exec("node-a");
    let ds = f.ds();
    let ticker = f.workload("ticker", TICKER, |s| s.env = ticks(3, 300));
    let actor = ActorRef::new("team-a", "t1");
    let w1 = worker("w1");
    ea.run(run(&w1, &actor, &ticker)).await.unwrap();

    let started = Instant::now();
    let stream = start_stream(&ea, &w1, &actor).await;
    let reader = tokio::spawn(read_stream(stream));
    let sealing = tokio::spawn({
        let (ea, req) = (ea.clone(), checkpoint(&w1, &actor, &ticker, true));
        async move {
            let taken = ea.checkpoint(req).await;
            (taken, Instant::now())
        }
    });
    // The seal begins at once: the route goes while the stream still runs.
    wait_for("the route to be withdrawn", ms(2_000), || {
        route(&ds, &actor).is_none()
    })
    .await;
    let body = b"late".to_vec();
    let refused = ea
        .invoke(&w1, &actor, tagged_request(full_body(body.clone())))
        .await;
    let refused_at = Instant::now();
    assert!(
        !sealing.is_finished(),
        "the checkpoint waits for the stream"
    );
    assert_handed_back(refused, &body).await;

    let (text, _, stream_end) = reader.await.unwrap();
    let (taken, saved_at) = sealing.await.unwrap();
    taken.unwrap();
    assert_eq!(text, tick_stream(3), "the stream delivered every tick");
    assert!(
        refused_at < stream_end,
        "the late request was refused at once, not queued behind the stream"
    );
    assert!(
        saved_at.duration_since(started) >= ms(550),
        "the checkpoint finished {:?} after the stream began, before its last tick",
        saved_at.duration_since(started)
    );
    assert!(
        saved_at + ms(50) >= stream_end,
        "the checkpoint finished {:?} before the stream ended",
        stream_end.duration_since(saved_at)
    );
    assert_eq!(route(&ds, &actor), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_admitted_before_the_seal_but_not_yet_running_is_handed_back_whole() {
    let f = Fixture::new();
    let _a = f.node("node-a");
    let ea = f.exec("node-a");
    let counter = f.workload("counter", COUNTER, |_| {});
    let actor = ActorRef::new("team-a", "c1");
    let (w1, w2) = (worker("w1"), worker("w2"));
    ea.run(run(&w1, &actor, &counter)).await.unwrap();
    assert_eq!(count(&ea, &w1, &actor).await, "1");

    // A request whose body is still arriving is admitted, then waits for its body.
    let (tx, slow_body) = channel_body(4);
    let req = http::Request::builder()
        .method(http::Method::POST)
        .uri("/count?x=1&y=two")
        .header("content-type", "text/plain")
        .header("x-trace", "abc-123")
        .body(slow_body)
        .unwrap();
    let pending = tokio::spawn({
        let (ea, w1, actor) = (ea.clone(), w1.clone(), actor.clone());
        async move { ea.invoke(&w1, &actor, req).await }
    });
    tx.send(Ok(Bytes::from_static(b"first "))).await.unwrap();
    tokio::time::sleep(ms(100)).await;

    let cp = ea
        .checkpoint(checkpoint(&w1, &actor, &counter, true))
        .await
        .unwrap();
    tx.send(Ok(Bytes::from_static(b"second"))).await.unwrap();
    drop(tx);
    // It must not run after the save (its effect would be lost): it comes back whole.
    assert_handed_back(pending.await.unwrap(), b"first second").await;

    ea.stop(stop(&w1, &actor)).await.unwrap();
    ea.restore(restore(&w2, &actor, &counter, &cp.snapshot))
        .await
        .unwrap();
    assert_eq!(count(&ea, &w2, &actor).await, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sealing_checkpoint_reopens_the_actor() {
    let f = Fixture::new();
    let _a = f.node("node-a");
    let ea = f.exec("node-a");
    let ds = f.ds();
    let counter = f.workload("counter", COUNTER, |_| {});
    let actor = ActorRef::new("team-a", "c1");
    let (w1, w2) = (worker("w1"), worker("w2"));
    ea.run(run(&w1, &actor, &counter)).await.unwrap();
    let published = route(&ds, &actor).unwrap();
    assert_eq!(count(&ea, &w1, &actor).await, "1");

    // A store the node cannot open (unsupported scheme), then one it cannot write (a
    // directory under a regular file): both fail after the seal.
    let file = f.dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let mut n = 1;
    for location in [
        "ftp://snapshots.example/ate".to_string(),
        format!("file://{}/sub", file.display()),
    ] {
        let req = CheckpointRequest {
            location: location.clone(),
            ..checkpoint(&w1, &actor, &counter, true)
        };
        let err = ea.checkpoint(req).await.unwrap_err();
        assert!(matches!(err, SeamError::Snapshot(_)), "{location}: {err}");
        assert_eq!(
            route(&ds, &actor),
            Some(published.clone()),
            "{location}: the route is back"
        );
        n += 1;
        assert_eq!(count(&ea, &w1, &actor).await, n.to_string(), "{location}");
    }

    // Still a normal actor: a sealing checkpoint that works takes the latest state.
    let cp = ea
        .checkpoint(checkpoint(&w1, &actor, &counter, true))
        .await
        .unwrap();
    assert_eq!(route(&ds, &actor), None);
    ea.stop(stop(&w1, &actor)).await.unwrap();
    ea.restore(restore(&w2, &actor, &counter, &cp.snapshot))
        .await
        .unwrap();
    assert_eq!(count(&ea, &w2, &actor).await, "4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_actor_is_marked_after_its_timeout_and_unmarked_by_a_request_or_stop() {
    let f = Fixture::new();
    let _a = f.node("node-a");
    let ea = f.exec("node-a");
    let ds = f.ds();
    let counter = f.workload("counter", COUNTER, |s| {
        s.idle_timeout = ate_model::Duration(ms(300));
    });
    let actor = ActorRef::new("team-a", "c1");
    let w1 = worker("w1");
    ea.run(run(&w1, &actor, &counter)).await.unwrap();

    for n in 1..=2 {
        let (sent, sent_wall) = (Instant::now(), SystemTime::now());
        assert_eq!(count(&ea, &w1, &actor).await, n.to_string());
        let (done, done_wall) = (Instant::now(), SystemTime::now());
        assert_eq!(idle_mark(&ds, &actor), None, "a request clears the mark");
        let seen = wait_for("the idle mark", ms(3_000), || {
            idle_mark(&ds, &actor).is_some()
        })
        .await;
        assert!(
            seen.duration_since(sent) >= ms(300),
            "marked idle {:?} after the request",
            seen.duration_since(sent)
        );
        assert!(
            seen.duration_since(done) <= ms(1_000),
            "marked idle only {:?} after the request",
            seen.duration_since(done)
        );
        let mark = idle_mark(&ds, &actor).unwrap();
        assert_eq!(
            (&mark.actor, mark.node.as_str(), &mark.worker),
            (&actor, "node-a", &w1)
        );
        assert!(
            (unix_ms(sent_wall).saturating_sub(20)..=unix_ms(done_wall) + 20)
                .contains(&mark.idle_since_ms),
            "idle since {} is not the request's end",
            mark.idle_since_ms
        );
    }

    ea.stop(stop(&w1, &actor)).await.unwrap();
    assert_eq!(idle_mark(&ds, &actor), None, "a stop retracts the mark");
    tokio::time::sleep(ms(500)).await;
    assert_eq!(
        idle_mark(&ds, &actor),
        None,
        "a stopped actor is not marked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_in_flight_keeps_the_actor_from_being_marked_idle() {
    let f = Fixture::new();
    let _a = f.node("node-a");
    let ea = f.exec("node-a");
    let ds = f.ds();
    // A 900 ms stream, three times the idle timeout.
    let ticker = f.workload("ticker", TICKER, |s| {
        s.env = ticks(4, 300);
        s.idle_timeout = ate_model::Duration(ms(300));
    });
    let actor = ActorRef::new("team-a", "t1");
    let w1 = worker("w1");
    ea.run(run(&w1, &actor, &ticker)).await.unwrap();

    let stream = start_stream(&ea, &w1, &actor).await;
    let mut marks = ds
        .subscribe::<IdleActor>(Filter::Exact(actor_key(&actor)))
        .unwrap();
    assert_eq!(drain(&mut marks), [], "no mark once a request runs");
    let (text, last_tick, _) = read_stream(stream).await;
    assert_eq!(text, tick_stream(4));
    assert_eq!(drain(&mut marks), [], "marked idle while a stream ran");

    // Idle time counts from the stream's end, not its start.
    let seen = wait_for("the idle mark", ms(3_000), || {
        idle_mark(&ds, &actor).is_some()
    })
    .await;
    assert!(
        seen.duration_since(last_tick) >= ms(300),
        "marked idle {:?} after the stream's last tick",
        seen.duration_since(last_tick)
    );
    assert!(seen.duration_since(last_tick) <= ms(1_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_idle_timeout_never_marks_and_a_seal_retracts_a_mark() {
    let f = Fixture::new();
    let _a = f.node("node-a");
    let ea = f.exec("node-a");
    let ds = f.ds();
    let never = f.workload("never", COUNTER, |s| {
        s.idle_timeout = ate_model::Duration(Duration::ZERO);
    });
    let soon = f.workload("soon", COUNTER, |s| {
        s.idle_timeout = ate_model::Duration(ms(300));
    });
    let (quiet, sleepy) = (
        ActorRef::new("team-a", "quiet"),
        ActorRef::new("team-a", "sleepy"),
    );
    let (w1, w2) = (worker("w1"), worker("w2"));
    let mut marks = ds.subscribe::<IdleActor>(Filter::All).unwrap();
    ea.run(run(&w1, &quiet, &never)).await.unwrap();
    ea.run(run(&w2, &sleepy, &soon)).await.unwrap();
    assert_eq!(count(&ea, &w1, &quiet).await, "1");

    // The idle watcher runs (the other actor is marked) but never marks this one.
    tokio::time::sleep(ms(1_500)).await;
    let marked: Vec<_> = drain(&mut marks)
        .into_iter()
        .map(|e| match e {
            Event::Asserted { id, .. } => format!("+{id}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(marked, ["+team-a/sleepy"]);

    // Sealing retracts the standing mark, and a sealed actor is not marked again.
    ea.checkpoint(checkpoint(&w2, &sleepy, &soon, true))
        .await
        .unwrap();
    assert_eq!(idle_mark(&ds, &sleepy), None, "a seal retracts the mark");
    tokio::time::sleep(ms(600)).await;
    assert_eq!(
        drain(&mut marks),
        [Event::Retracted {
            id: actor_key(&sleepy)
        }]
    );
}

// Routes are per actor: a stop withdraws only the route of the worker it stops, and a route
// the dataspace refuses (another node holds it) is asserted once that node lets go.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_stop_on_the_old_worker_keeps_the_new_workers_route() {
    let f = Fixture::new();
    let _a = f.node("node-a");
    let ea = f.exec("node-a");
    let ds = f.ds();
    let counter = f.workload("counter", COUNTER, |_| {});
    let actor = ActorRef::new("team-a", "c1");
    let (w1, w2) = (worker("w1"), worker("w2"));
    ea.run(run(&w1, &actor, &counter)).await.unwrap();
    let cp = ea
        .checkpoint(checkpoint(&w1, &actor, &counter, true))
        .await
        .unwrap();
    // Resumed on another worker of the same node before the old one was stopped (a stop
    // that failed, then a stray-worker sweep).
    ea.restore(restore(&w2, &actor, &counter, &cp.snapshot))
        .await
        .unwrap();
    assert_eq!(route(&ds, &actor).unwrap().worker, w2);
    ea.stop(stop(&w1, &actor)).await.unwrap();
    assert_eq!(count(&ea, &w2, &actor).await, "1", "w2 still serves");
    assert_eq!(
        route(&ds, &actor).map(|r| r.worker),
        Some(w2),
        "w2's route survives the stop on w1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_onto_the_worker_still_holding_the_sealed_actor_serves_again() {
    let f = Fixture::new();
    let _a = f.node("node-a");
    let ea = f.exec("node-a");
    let ds = f.ds();
    let counter = f.workload("counter", COUNTER, |_| {});
    let actor = ActorRef::new("team-a", "c1");
    let w1 = worker("w1");
    ea.run(run(&w1, &actor, &counter)).await.unwrap();
    assert_eq!(count(&ea, &w1, &actor).await, "1");
    let cp = ea
        .checkpoint(checkpoint(&w1, &actor, &counter, true))
        .await
        .unwrap();
    // The stop after the park never arrived; the resume picks the worker that holds the
    // snapshot hot. The restore answers Ok, so the actor must take requests.
    ea.restore(restore(&w1, &actor, &counter, &cp.snapshot))
        .await
        .unwrap();
    assert!(
        route(&ds, &actor).is_some(),
        "the restore publishes a route"
    );
    assert_eq!(count(&ea, &w1, &actor).await, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_while_another_node_still_holds_the_route_is_routed_once_that_node_stops() {
    let f = Fixture::new();
    let (_a, _b) = (f.node("node-a"), f.node("node-b"));
    let (ea, eb) = (f.exec("node-a"), f.exec("node-b"));
    let ds = f.ds();
    let counter = f.workload("counter", COUNTER, |_| {});
    let actor = ActorRef::new("team-a", "c1");
    let (w1, w2) = (worker("w1"), worker("w2"));
    ea.run(run(&w1, &actor, &counter)).await.unwrap();
    let cp = ea
        .checkpoint(checkpoint(&w1, &actor, &counter, false))
        .await
        .unwrap();
    // node-b's restore answers Ok, but its route is refused (node-a's owner holds the id).
    eb.restore(restore(&w2, &actor, &counter, &cp.snapshot))
        .await
        .unwrap();
    ea.stop(stop(&w1, &actor)).await.unwrap();
    assert_eq!(count(&eb, &w2, &actor).await, "1", "node-b serves");
    // node-b tries again on its next tick (every 200 ms).
    let start = std::time::Instant::now();
    while route(&ds, &actor).is_none() && start.elapsed() < ms(1000) {
        tokio::time::sleep(ms(20)).await;
    }
    assert_eq!(
        route(&ds, &actor).map(|r| r.node),
        Some("node-b".to_string()),
        "the actor node-b serves has a route"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicting_checkpoint_refuses_an_actor_in_use_and_seals_an_idle_one() {
    let f = Fixture::new();
    let _a = f.node("node-a");
    let ea = f.exec("node-a");
    let ds = f.ds();
    let counter = f.workload("counter", COUNTER, |_| {});
    let pinned = f.workload("pinned", COUNTER, |s| {
        s.eviction = ate_model::Eviction::Never;
    });
    // No pause between events: the stream stays open until the test reads it.
    let ticker = f.workload("ticker", TICKER, |s| s.env = ticks(40, 0));
    let (c1, p1, t1) = (
        ActorRef::new("team-a", "c1"),
        ActorRef::new("team-a", "p1"),
        ActorRef::new("team-a", "t1"),
    );
    let (w1, w2, w3) = (worker("w1"), worker("w2"), worker("w3"));
    ea.run(run(&w1, &c1, &counter)).await.unwrap();
    ea.run(run(&w2, &p1, &pinned)).await.unwrap();
    ea.run(run(&w3, &t1, &ticker)).await.unwrap();
    tokio::time::sleep(ms(20)).await;
    assert_eq!(count(&ea, &w1, &c1).await, "1");
    let stream = start_stream(&ea, &w3, &t1).await;

    // Only c1 may go: p1's template says never, t1 is streaming.
    let list = ea.evictable().await.unwrap();
    let names: Vec<_> = list.iter().map(|e| e.actor.id.as_str()).collect();
    assert_eq!(names, ["c1"], "{list:?}");

    // An evicting checkpoint of the streaming actor is refused at once and changes
    // nothing: the stream goes on whole and the actor keeps its route.
    let mut evict = checkpoint(&w3, &t1, &ticker, true);
    evict.evict = true;
    let refused = tokio::time::timeout(ms(5_000), ea.checkpoint(evict))
        .await
        .expect("an eviction never waits for a request");
    assert!(
        matches!(refused, Err(SeamError::InUse { .. })),
        "{refused:?}"
    );
    assert!(route(&ds, &t1).is_some());
    let (text, _, _) = read_stream(stream).await;
    assert_eq!(text, tick_stream(40));

    // Idle, c1 is sealed: its route goes, a later request comes back unread, and the
    // snapshot holds what it had answered.
    let mut evict = checkpoint(&w1, &c1, &counter, true);
    evict.evict = true;
    let cp = ea.checkpoint(evict).await.expect("idle actor evicted");
    assert_eq!(route(&ds, &c1), None);
    let body = b"late".to_vec();
    let late = ea
        .invoke(&w1, &c1, tagged_request(full_body(body.clone())))
        .await;
    assert_handed_back(late, &body).await;
    assert!(ea.evictable().await.unwrap().iter().all(|e| e.actor != c1));
    ea.stop(stop(&w1, &c1)).await.unwrap();
    ea.restore(restore(&w1, &c1, &counter, &cp.snapshot))
        .await
        .unwrap();
    assert_eq!(count(&ea, &w1, &c1).await, "2");
}
