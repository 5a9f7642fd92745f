//! Multiplexing on demand through the real binary: more actors than workers all answer
//! (idle ones are evicted to make room, their state intact), many concurrent clients over
//! ten actors per worker get only correct answers, a request with no worker to take waits
//! for one (or gets 503 with Retry-After when its wait runs out), and the API's resume
//! evicts too.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use ate_testkit::http;
use common::{Up, eventually};

/// The workers of `ate up`'s default wasm pool.
const WORKERS: usize = 4;

fn ready_templates(up: &Up, n: usize) -> bool {
    up.ok(&["get", "templates"]).matches("Ready").count() == n
}

/// Each RUNNING actor's worker in `ate get actors -A -o wide`, as (actor, worker).
fn placements(up: &Up) -> Vec<(String, String)> {
    up.ok(&["get", "actors", "-A"])
        .lines()
        .skip(1)
        .filter_map(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            (c.get(4) == Some(&"RUNNING")).then(|| (c[3].to_string(), c[5].to_string()))
        })
        .collect()
}

/// No worker is held by two actors.
fn assert_one_actor_per_worker(up: &Up) {
    let p = placements(up);
    let mut workers: Vec<&String> = p.iter().map(|(_, w)| w).collect();
    workers.sort();
    workers.dedup();
    assert_eq!(workers.len(), p.len(), "a worker is bound twice: {p:?}");
    assert!(p.len() <= WORKERS, "{p:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_actors_than_workers_all_answer_and_keep_their_state() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    up.ok(&["create", "atespace", "team-a"]);
    eventually("the demo templates' golden snapshots", || {
        ready_templates(&up, up.demo_templates())
    });
    let ids: Vec<String> = (1..=2 * WORKERS).map(|i| format!("c{i}")).collect();
    for id in &ids {
        up.create_counter(id);
    }
    for want in ["1", "2"] {
        for id in &ids {
            let a = up.curl(&format!("/a/team-a/{id}/")).await;
            assert_eq!((a.status, a.body.as_str()), (200, want), "{id}");
        }
    }
    assert_one_actor_per_worker(&up);
    let evictions = r#"ate_actor_evictions_total{outcome="ok"}"#;
    assert!(up.metric(evictions).await >= 12.0, "evictions counted");

    // An evicted actor says when it left and for whom.
    let c1 = up.ok(&["get", "actor", "c1", "-a", "team-a", "-o", "yaml"]);
    assert!(c1.contains("Evicted"), "{c1}");
    assert!(c1.contains("to make room for actor team-a/c"), "{c1}");
    let wide = up.ok(&["get", "actors", "-a", "team-a", "-o", "wide"]);
    assert!(wide.contains("Evicted(WorkerNeeded)"), "{wide}");

    // The API's resume evicts as well, and the evicted actor counts on afterwards.
    assert_eq!(up.status_of("c1"), "SUSPENDED");
    up.ok(&["resume", "actor", "c1", "-a", "team-a"]);
    assert_eq!(up.status_of("c1"), "RUNNING");
    let a = up.curl("/a/team-a/c1/").await;
    assert_eq!((a.status, a.body.as_str()), (200, "3"));
    assert_one_actor_per_worker(&up);
    up.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_actors_per_worker_under_concurrent_clients_get_only_right_answers() {
    const CLIENTS: usize = 8;
    const ACTORS_PER_CLIENT: usize = 5;
    const ROUNDS: usize = 6;
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    up.ok(&["create", "atespace", "team-a"]);
    eventually("the demo templates' golden snapshots", || {
        ready_templates(&up, up.demo_templates())
    });
    assert_eq!(CLIENTS * ACTORS_PER_CLIENT, 10 * WORKERS);
    for c in 0..CLIENTS {
        for a in 0..ACTORS_PER_CLIENT {
            up.create_counter(&format!("k{c}-{a}"));
        }
    }
    // Each client owns its actors, so it knows every count it must see; the clients run
    // at once and take workers from one another.
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let router = up.router.clone();
        clients.spawn(async move {
            let client = http::client();
            let mut answers = 0;
            for round in 1..=ROUNDS {
                for a in 0..ACTORS_PER_CLIENT {
                    let url = format!("{router}/a/team-a/k{c}-{a}/");
                    let req = http::request("GET", &url, None, "").unwrap();
                    let got = http::send(&client, req, Duration::from_secs(60))
                        .await
                        .unwrap();
                    assert_eq!(
                        (got.status, got.body.as_str()),
                        (200, round.to_string().as_str()),
                        "k{c}-{a} in round {round}"
                    );
                    answers += 1;
                }
            }
            answers
        });
    }
    let answers: usize = clients.join_all().await.into_iter().sum();
    assert_eq!(answers, CLIENTS * ACTORS_PER_CLIENT * ROUNDS);
    assert_eq!(
        up.metric(r#"ate_router_requests_total{status="503"}"#)
            .await,
        0.0
    );
    assert_one_actor_per_worker(&up);
    up.stop();
}

/// A manifest of two ticker templates: `demo/short` streams for about a second,
/// `demo/long` for several.
fn tickers(dir: &Path) -> String {
    let module = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../demo/ticker/ticker.wat");
    let template = |name: &str, count: u32, interval_ms: u32| {
        format!(
            "---
apiVersion: ate.dev/v1alpha1
kind: ActorTemplate
metadata:
  namespace: demo
  name: {name}
spec:
  sandboxClass: wasm
  module: {}
  env:
  - name: TICK_COUNT
    value: \"{count}\"
  - name: TICK_INTERVAL_MS
    value: \"{interval_ms}\"
",
            module.display()
        )
    };
    let path = dir.join("tickers.yaml");
    std::fs::write(
        &path,
        template("short", 5, 250) + &template("long", 12, 500),
    )
    .unwrap();
    path.display().to_string()
}

/// Starts one streaming request per actor of `template` and waits until every worker
/// is streaming; the tasks end with each whole stream.
async fn fill_workers_with(up: &Up, template: &str) -> tokio::task::JoinSet<String> {
    let mut streams = tokio::task::JoinSet::new();
    for i in 0..WORKERS {
        let id = format!("{template}-{i}");
        up.ok(&[
            "create",
            "actor",
            &id,
            "-t",
            &format!("demo/{template}"),
            "-a",
            "team-a",
        ]);
        let url = format!("{}/a/team-a/{id}/", up.router);
        streams.spawn(async move {
            let req = http::request("GET", &url, None, "").unwrap();
            let a = http::send(&http::client(), req, Duration::from_secs(60))
                .await
                .unwrap();
            assert_eq!(a.status, 200, "{}", a.body);
            a.body
        });
    }
    eventually("every worker streaming", || {
        let p = placements(up);
        p.len() == WORKERS && p.iter().all(|(a, _)| a.starts_with(template))
    });
    streams
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waits_for_a_busy_worker_or_gets_503_when_its_wait_runs_out() {
    let wait = Duration::from_secs(3);
    let dir = tempfile::tempdir().unwrap();
    let up = Up::launch(dir.path(), None, &["--queue-wait", "3s"], &[]);
    up.ok(&["create", "atespace", "team-a"]);
    up.ok(&["apply", "-f", &tickers(dir.path())]);
    eventually("every template's golden snapshot", || {
        ready_templates(&up, up.demo_templates() + 2)
    });
    up.create_counter("c1");

    // Every worker streams for about a second: the request waits for the first stream
    // to end, takes that worker, and is answered.
    let streams = fill_workers_with(&up, "short").await;
    let started = Instant::now();
    let a = up.curl("/a/team-a/c1/").await;
    assert_eq!((a.status, a.body.as_str()), (200, "1"));
    assert!(started.elapsed() < wait, "waited {:?}", started.elapsed());
    for body in streams.join_all().await {
        assert_eq!(body.matches("data: tick ").count(), 5, "{body}");
    }

    // Every worker streams for longer than the wait: 503 with Retry-After once it ends,
    // and the streams are not cut.
    let streams = fill_workers_with(&up, "long").await;
    let started = Instant::now();
    let a = up.curl("/a/team-a/c1/").await;
    assert_eq!(a.status, 503, "{}", a.body);
    assert_eq!(
        a.headers
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string()),
        Some("1".to_string())
    );
    assert!(a.body.contains("no worker freed up"), "{}", a.body);
    assert!(
        started.elapsed() >= wait,
        "gave up after {:?}",
        started.elapsed()
    );
    for body in streams.join_all().await {
        assert_eq!(body.matches("data: tick ").count(), 12, "{body}");
    }
    // Once the streams are over, the actor is answered again, its count intact.
    let a = up.curl("/a/team-a/c1/").await;
    assert_eq!((a.status, a.body.as_str()), (200, "2"));
    up.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_actors_taking_one_worker_from_each_other_answer_every_request() {
    // One worker, two clients each asking its own actor with a short pause between
    // requests: the actors keep evicting each other, and requests often reach an actor
    // while it is being evicted (handed back, then resumed). Every answer must be exact.
    const REQUESTS: usize = 40;
    const THINK: Duration = Duration::from_millis(10);
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    up.ok(&["create", "atespace", "team-a"]);
    eventually("the demo templates' golden snapshots", || {
        ready_templates(&up, up.demo_templates())
    });
    let pool = dir.path().join("pool.yaml");
    std::fs::write(
        &pool,
        "apiVersion: ate.dev/v1alpha1\nkind: WorkerPool\nmetadata:\n  namespace: default\n  name: wasm\nspec:\n  replicas: 1\n  sandboxClass: wasm\n",
    )
    .unwrap();
    up.ok(&["apply", "-f", &pool.display().to_string()]);
    eventually("one wasm worker left", || {
        let w = up.ok(&["get", "workers", "-A"]);
        w.lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("wasm"))
            .count()
            == 1
    });
    for id in ["ping", "pong"] {
        up.create_counter(id);
    }
    let mut clients = tokio::task::JoinSet::new();
    for id in ["ping", "pong"] {
        let url = format!("{}/a/team-a/{id}/", up.router);
        clients.spawn(async move {
            let client = http::client();
            for n in 1..=REQUESTS {
                let req = http::request("GET", &url, None, "").unwrap();
                let a = http::send(&client, req, Duration::from_secs(60))
                    .await
                    .unwrap();
                assert_eq!(
                    (a.status, a.body.as_str()),
                    (200, n.to_string().as_str()),
                    "{id}"
                );
                // A client that never pauses keeps its actor busy, and the other waits
                // for a gap it may not see (see docs/operations.md).
                tokio::time::sleep(THINK).await;
            }
        });
    }
    clients.join_all().await;
    let evicted = up
        .metric(r#"ate_actor_evictions_total{outcome="ok"}"#)
        .await;
    let page = ate_testkit::http::get(&up.metrics, None)
        .await
        .unwrap()
        .body;
    let lines: Vec<&str> = page
        .lines()
        .filter(|l| {
            l.contains("evictions")
                || l.contains("activations_total")
                || l.contains("resumes_total")
        })
        .collect();
    assert!(
        evicted >= 8.0,
        "only {evicted} evictions: {lines:#?}\n{}\n{}",
        up.ok(&["get", "actors", "-A", "-o", "wide"]),
        up.ok(&["get", "workers", "-A"])
    );
    assert_one_actor_per_worker(&up);
    up.stop();
}
