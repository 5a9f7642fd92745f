//! Eviction under pressure: a resume that finds every worker taken suspends the least
//! recently used actor with nothing in flight and takes its worker; the victim loses
//! nothing, an actor answering a request or streaming a response is never chosen, and a
//! template can opt out (`eviction: Never`).

mod common;

use std::time::Duration;

use ate_control::LifecycleError;
use ate_model::{ActorStatus, Eviction};
use common::System;
use http_body_util::BodyExt;

/// Long enough apart that the node's millisecond clock orders two requests.
const APART: Duration = Duration::from_millis(20);

fn evicted_for(s: &ate_model::Actor) -> Option<String> {
    s.conditions
        .iter()
        .find(|c| c.kind == "Evicted")
        .map(|c| c.message.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_least_recently_used_idle_actor_makes_room_and_loses_nothing() {
    let s = System::with_workers(&["node-a"], 2).await;
    let t = s.template("counter", 3).await;
    let (a, b, c) = (
        s.actor("a", &t).await,
        s.actor("b", &t).await,
        s.actor("c", &t).await,
    );
    let l = &s.lifecycle;
    l.resume(&a, false).await.unwrap();
    assert_eq!(s.hit(&a).await, "1");
    tokio::time::sleep(APART).await;
    l.resume(&b, false).await.unwrap();
    assert_eq!(s.hit(&b).await, "1");
    tokio::time::sleep(APART).await;
    assert_eq!(s.hit(&a).await, "2");
    tokio::time::sleep(APART).await;

    // Both workers taken: b was used least recently, so c gets its worker.
    let b_worker = s.get(&b).await.worker.expect("b runs");
    let resumed = l.resume(&c, false).await.expect("resume by eviction");
    assert_eq!(resumed.worker.as_ref(), Some(&b_worker));
    let evicted = s.get(&b).await;
    assert_eq!(evicted.status, ActorStatus::Suspended);
    let why = evicted_for(&evicted).expect("an Evicted condition");
    assert!(why.contains("team-a/c"), "{why}");
    assert_eq!(s.get(&a).await.status, ActorStatus::Running);
    assert_eq!(s.hit(&c).await, "1");
    s.assert_consistent().await;

    // b comes back (evicting a, now the least recently used) and counts on.
    tokio::time::sleep(APART).await;
    l.resume(&b, false).await.unwrap();
    assert_eq!(s.get(&a).await.status, ActorStatus::Suspended);
    assert_eq!(s.hit(&b).await, "2");
    tokio::time::sleep(APART).await;
    l.resume(&a, false).await.unwrap();
    assert_eq!(s.hit(&a).await, "3");
    s.assert_consistent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_with_a_request_in_flight_is_never_evicted() {
    let s = System::with_workers(&["node-a"], 2).await;
    let counter = s.template("counter", 3).await;
    // No pause between events: the guest fills the response channel and waits for the
    // reader, so each stream stays open for as long as the test holds its body.
    let ticker = s.ticker("ticker", 40, 0).await;
    let l = &s.lifecycle;
    let (t1, t2) = (s.actor("t1", &ticker).await, s.actor("t2", &ticker).await);
    let (c1, c2) = (s.actor("c1", &counter).await, s.actor("c2", &counter).await);

    l.resume(&t1, false).await.unwrap();
    let stream1 = s.request(&t1).await;
    tokio::time::sleep(APART).await;
    l.resume(&c1, false).await.unwrap();
    assert_eq!(s.hit(&c1).await, "1");

    // t1 is the older, but it is streaming: c1 goes.
    l.resume(&c2, false).await.expect("c1 makes room");
    assert_eq!(s.get(&c1).await.status, ActorStatus::Suspended);
    assert_eq!(s.get(&t1).await.status, ActorStatus::Running);
    l.resume(&t2, false).await.expect("c2 makes room");
    assert_eq!(s.get(&c2).await.status, ActorStatus::Suspended);
    let stream2 = s.request(&t2).await;

    // Both workers stream: no victim, and nobody was touched.
    let e = l.resume(&c1, false).await.unwrap_err();
    assert!(matches!(e, LifecycleError::NoFreeWorker { .. }), "{e}");
    assert_eq!(s.get(&c1).await.status, ActorStatus::Suspended);
    for t in [&t1, &t2] {
        assert_eq!(s.get(t).await.status, ActorStatus::Running);
    }

    // Each stream ran to its end, whole.
    for body in [stream1, stream2] {
        let text = body.collect().await.expect("stream").to_bytes();
        let text = String::from_utf8_lossy(&text);
        assert_eq!(text.matches("data: tick ").count(), 40, "{text}");
        assert!(text.contains("data: tick 40\n\n"));
    }
    // Done streaming, t1 is evictable again, and c1 counts on.
    l.resume(&c1, false)
        .await
        .expect("a finished stream makes room");
    assert_eq!(s.hit(&c1).await, "2");
    s.assert_consistent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_of_a_never_evicted_template_keeps_its_worker() {
    let s = System::with_workers(&["node-a"], 1).await;
    let counter = s.template("counter", 3).await;
    let mut spec = s.wasm_spec("counter.wat", common::COUNTER);
    spec.eviction = Eviction::Never;
    let pinned = s.template_of("pinned", spec).await;
    let l = &s.lifecycle;
    let (p, c) = (s.actor("p", &pinned).await, s.actor("c", &counter).await);

    l.resume(&p, false).await.unwrap();
    assert_eq!(s.hit(&p).await, "1");
    tokio::time::sleep(APART).await;
    let e = l.resume(&c, false).await.unwrap_err();
    assert!(matches!(e, LifecycleError::NoFreeWorker { .. }), "{e}");
    assert_eq!(s.get(&p).await.status, ActorStatus::Running);
    assert_eq!(s.hit(&p).await, "2");

    // Never protects the victim, not the newcomer: p may evict an ordinary actor.
    l.suspend(&p).await.unwrap();
    l.resume(&c, false).await.unwrap();
    l.resume(&p, false).await.expect("p makes room");
    assert_eq!(s.get(&c).await.status, ActorStatus::Suspended);
    assert_eq!(s.hit(&p).await, "3");
    s.assert_consistent().await;
}
