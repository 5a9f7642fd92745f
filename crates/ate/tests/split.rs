//! The split deployment with real `ate serve` processes: control-plane replicas on a
//! shared store, node daemons and a router in processes of their own, and the failures a
//! deployment sees: a node killed or frozen, a replica killed in a resume storm, the store
//! restarted under load.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use ate_testkit::http;
use common::{Up, counter_manifest};

/// How long a node may miss heartbeats before it is declared lost, in these tests.
const LIVENESS: &str = "3s";

/// A node daemon registered with `controls`, sharing the snapshot store under `dir`.
fn node(dir: &Path, name: &str, controls: &str) -> Up {
    let snapshots = format!("file://{}", dir.join("snapshots").display());
    Up::serve(
        &dir.join(name),
        &[
            "--roles",
            "node",
            "--node-name",
            name,
            "--control",
            controls,
            "--snapshots",
            &snapshots,
            "--liveness-timeout",
            LIVENESS,
        ],
    )
}

fn host(endpoint: &str) -> &str {
    endpoint.trim_start_matches("http://")
}

/// The actor's status and worker (`pool/name`) as `ate get actors` shows them.
fn actor(api: &Up, id: &str) -> (String, String) {
    let out = api.ok(&["get", "actors", "-a", "team-a"]);
    let row = out
        .lines()
        .find(|l| l.split_whitespace().nth(3) == Some(id))
        .unwrap_or_else(|| panic!("no actor {id} in\n{out}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    (cells[4].to_string(), cells[5].to_string())
}

/// The node a worker named `pool/name` lives on.
fn node_of(api: &Up, worker: &str) -> String {
    let name = worker.split('/').nth(1).unwrap();
    let out = api.ok(&["get", "workers", "-A"]);
    out.lines()
        .find(|l| l.split_whitespace().nth(2) == Some(name))
        .and_then(|l| l.split_whitespace().nth(3))
        .unwrap_or_else(|| panic!("no worker {worker} in\n{out}"))
        .to_string()
}

fn node_status(api: &Up, name: &str) -> String {
    let out = api.ok(&["get", "nodes"]);
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("<absent>")
        .to_string()
}

/// Workers hosting each actor, from `ate get workers -A`.
fn hosts(api: &Up, id: &str) -> usize {
    api.ok(&["get", "workers", "-A"])
        .lines()
        .filter(|l| l.split_whitespace().nth(5) == Some(&format!("team-a/{id}")))
        .count()
}

async fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Free workers on `node`.
fn free_on(api: &Up, node: &str) -> usize {
    api.ok(&["get", "workers", "-A"])
        .lines()
        .filter(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            c.get(3) == Some(&node) && c.get(4) == Some(&"FREE")
        })
        .count()
}

/// A control plane on SQLite, two nodes and a router, each its own process, with the
/// counter template and four workers.
async fn small_cluster(dir: &Path) -> (Up, Up, Up, Up) {
    let db = format!("sqlite://{}", dir.join("ate.db").display());
    let api = Up::serve(&dir.join("api"), &["--roles", "api", "--store", &db]);
    let control = host(&api.endpoint).to_string();
    let n1 = node(dir, "n1", &control);
    let n2 = node(dir, "n2", &control);
    let router = Up::router(&dir.join("router"), &control, &api);
    api.ok(&["apply", "-f", &counter_manifest(dir, 4)]);
    wait_until(
        "two free workers on each node",
        Duration::from_secs(30),
        || {
            free_on(&api, "n1") + free_on(&api, "n2") >= 3
                && free_on(&api, "n1") >= 1
                && free_on(&api, "n2") >= 1
        },
    )
    .await;
    (api, n1, n2, router)
}

async fn expect(router: &Up, path: &str, want: &str) {
    let a = router.curl(path).await;
    assert_eq!((a.status, a.body.as_str()), (200, want), "GET {path}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_s_actors_resume_elsewhere_from_their_last_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (api, n1, n2, router) = small_cluster(dir.path()).await;
    api.create_counter("c1");
    // A router with neither token nor certificate does not start; one with a token the
    // control plane refuses tells its clients the fault is the router's, not the actor's.
    let control = host(&api.endpoint).to_string();
    let bare = std::process::Command::new(common::ATE)
        .args(["serve", "--roles", "router", "--control", &control])
        .args(["--listen", "127.0.0.1:0", "--router-listen", "127.0.0.1:0"])
        .args(["--admin-listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("bare-router"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&bare.stderr);
    assert!(
        !bare.status.success() && stderr.contains("--token-file"),
        "{stderr}"
    );
    let bogus = dir.path().join("bogus.token");
    std::fs::write(&bogus, "not-a-token").unwrap();
    let refused = Up::serve(
        &dir.path().join("refused-router"),
        &[
            "--roles",
            "router",
            "--control",
            &control,
            "--token-file",
            &bogus.display().to_string(),
        ],
    );
    let a = refused.curl("/a/team-a/c1/").await;
    assert_eq!(a.status, 502, "{} {}", a.status, a.body);
    assert!(a.body.contains("may not resume"), "{}", a.body);
    drop(refused);
    expect(&router, "/a/team-a/c1/", "1").await;
    expect(&router, "/a/team-a/c1/", "2").await;
    api.ok(&["suspend", "actor", "c1", "-a", "team-a"]);
    // Resumed from the snapshot holding 2; 3 lives only in the node's memory.
    expect(&router, "/a/team-a/c1/", "3").await;
    let (status, worker) = actor(&api, "c1");
    assert_eq!(status, "RUNNING");
    let dead = node_of(&api, &worker);
    let (victim, _survivor) = if dead == "n1" { (n1, n2) } else { (n2, n1) };
    victim.crash();
    wait_until(
        "the actor of the killed node to be suspended",
        Duration::from_secs(10),
        || actor(&api, "c1").0 == "SUSPENDED",
    )
    .await;
    assert_eq!(node_status(&api, &dead), "NotReady");
    // The next request resumes it on the other node, from the snapshot: 3 again.
    expect(&router, "/a/team-a/c1/", "3").await;
    let (status, worker) = actor(&api, "c1");
    assert_eq!(status, "RUNNING");
    assert_ne!(node_of(&api, &worker), dead);
    assert_eq!(hosts(&api, "c1"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_declared_lost_is_fenced_when_it_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let (api, n1, n2, router) = small_cluster(dir.path()).await;
    api.create_counter("c1");
    expect(&router, "/a/team-a/c1/", "1").await;
    api.ok(&["suspend", "actor", "c1", "-a", "team-a"]);
    expect(&router, "/a/team-a/c1/", "2").await;
    let lost = node_of(&api, &actor(&api, "c1").1);
    let frozen = if lost == "n1" { &n1 } else { &n2 };
    // Frozen, not dead: its connections stay open, but its heartbeats stop.
    frozen.signal("STOP");
    wait_until(
        "the frozen node's actor to be suspended",
        Duration::from_secs(15),
        || actor(&api, "c1").0 == "SUSPENDED",
    )
    .await;
    expect(&router, "/a/team-a/c1/", "2").await;
    let moved_to = node_of(&api, &actor(&api, "c1").1);
    assert_ne!(moved_to, lost);
    frozen.signal("CONT");
    // It learns it was declared lost, stops what it hosted and registers anew.
    wait_until(
        "the frozen node to register again",
        Duration::from_secs(20),
        || node_status(&api, &lost) == "Ready",
    )
    .await;
    for want in ["3", "4", "5"] {
        expect(&router, "/a/team-a/c1/", want).await;
    }
    assert_eq!(node_of(&api, &actor(&api, "c1").1), moved_to);
    assert_eq!(hosts(&api, "c1"), 1);
    drop((n1, n2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_api_node_and_router_in_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("ate.db").display());
    let up = Up::serve(
        dir.path(),
        &[
            "--roles",
            "api,node,router",
            "--store",
            &db,
            "--node-name",
            "solo",
        ],
    );
    up.ok(&["apply", "-f", &counter_manifest(dir.path(), 2)]);
    wait_until("a free worker", Duration::from_secs(30), || {
        free_on(&up, "solo") >= 1
    })
    .await;
    up.create_counter("c1");
    for want in ["1", "2"] {
        expect(&up, "/a/team-a/c1/", want).await;
    }
    up.stop();
    for (args, error) in [
        (vec!["--roles", "router"], "--control"),
        (vec!["--roles", "api"], "--store"),
        (
            vec![
                "--roles",
                "node",
                "--store",
                &db,
                "--control",
                "127.0.0.1:1",
            ],
            "--store",
        ),
    ] {
        let out = std::process::Command::new(common::ATE)
            .arg("serve")
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(error), "{args:?}: {stderr}");
    }
}

/// Two control-plane replicas on one store, two nodes and a router registered with both.
async fn replicated(dir: &Path, store: &str, workers: u32) -> (Up, Up, Up, Up, Up) {
    // Replicas of one store share its key-encryption key.
    let kek = dir.join("kek").display().to_string();
    let replica = |name: &str| {
        Up::serve(
            &dir.join(name),
            &[
                "--roles",
                "api",
                "--store",
                store,
                "--lease-ttl",
                "3s",
                "--kek-file",
                &kek,
            ],
        )
    };
    let (a, b) = (replica("api-a"), replica("api-b"));
    let controls = format!("{},{}", host(&a.endpoint), host(&b.endpoint));
    let n1 = node(dir, "n1", &controls);
    let n2 = node(dir, "n2", &controls);
    let router = Up::router(&dir.join("router"), &controls, &a);
    a.ok(&["apply", "-f", &counter_manifest(dir, workers)]);
    wait_until(
        "free workers on both nodes",
        Duration::from_secs(30),
        || free_on(&b, "n1") >= 1 && free_on(&b, "n2") >= 1,
    )
    .await;
    (a, b, n1, n2, router)
}

/// Asks the router for `path` until it answers 200 (clients retry 5xx), within `within`.
async fn until_ok(router: &Up, path: &str, within: Duration) -> String {
    let start = Instant::now();
    loop {
        if let Ok(a) = http::get(&format!("{}{path}", router.router), None).await
            && a.status == 200
        {
            return a.body;
        }
        assert!(start.elapsed() < within, "GET {path} never succeeded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_in_a_resume_storm_strands_nothing() {
    let pg = ate_testkit::PostgresServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (a, b, _n1, _n2, router) = replicated(dir.path(), &pg.url(), 8).await;
    let ids: Vec<String> = (0..6).map(|i| format!("c{i}")).collect();
    for id in &ids {
        b.create_counter(id);
    }
    // Every actor is asked for at once, over and over, while replica a dies.
    let storm: Vec<_> = ids
        .iter()
        .map(|id| {
            let url = format!("{}/a/team-a/{id}/", router.router);
            tokio::spawn(async move {
                let mut answers = Vec::new();
                for _ in 0..10 {
                    if let Ok(a) = http::get(&url, None).await {
                        answers.push(a.status);
                    }
                }
                answers
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    a.crash();
    for task in storm {
        let statuses = task.await.unwrap();
        assert!(
            statuses.iter().all(|s| [200, 503, 504].contains(s)),
            "{statuses:?}"
        );
    }
    // Clients retrying get through, and every actor ends on exactly one worker.
    for id in &ids {
        let path = format!("/a/team-a/{id}/");
        let n: u32 = until_ok(&router, &path, Duration::from_secs(30))
            .await
            .parse()
            .unwrap();
        assert!(n >= 1);
    }
    for id in &ids {
        let (status, worker) = actor(&b, id);
        assert_eq!(status, "RUNNING", "{id}");
        assert_eq!(hosts(&b, id), 1, "{id} on {worker}");
    }
}

async fn survives_a_store_restart(store: &str, restart: impl FnOnce()) {
    let dir = tempfile::tempdir().unwrap();
    let api = Up::serve(
        &dir.path().join("api"),
        &["--roles", "api", "--store", store],
    );
    let control = host(&api.endpoint).to_string();
    let _n1 = node(dir.path(), "n1", &control);
    let router = Up::router(&dir.path().join("router"), &control, &api);
    api.ok(&["apply", "-f", &counter_manifest(dir.path(), 4)]);
    wait_until("a free worker", Duration::from_secs(30), || {
        free_on(&api, "n1") >= 2
    })
    .await;
    api.create_counter("c1");
    api.create_counter("c2");
    expect(&router, "/a/team-a/c1/", "1").await;
    restart();
    // While the store is away, a running actor still answers; starting one cannot.
    let a = router.curl("/a/team-a/c1/").await;
    assert_eq!((a.status, a.body.as_str()), (200, "2"));
    let b = router.curl("/a/team-a/c2/").await;
    assert!([200, 503].contains(&b.status), "{}", b.status);
    // Everything recovers without restarting ate.
    let c2: u32 = until_ok(&router, "/a/team-a/c2/", Duration::from_secs(30))
        .await
        .parse()
        .unwrap();
    assert!(c2 >= 1);
    expect(&router, "/a/team-a/c1/", "3").await;
    wait_until("the control API", Duration::from_secs(30), || {
        api.ate(&["get", "actors", "-a", "team-a"]).status.success()
    })
    .await;
    assert_eq!(node_status(&api, "n1"), "Ready");
    api.create_counter("c3");
    expect(&router, "/a/team-a/c3/", "1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_a_postgres_restart() {
    let mut pg = ate_testkit::PostgresServer::start().unwrap();
    let url = pg.url();
    survives_a_store_restart(&url, || {
        pg.kill().unwrap();
        std::thread::sleep(Duration::from_secs(1));
        pg.start_again().unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_a_redis_restart() {
    let mut redis = ate_testkit::RedisServer::start().unwrap();
    let url = redis.url();
    survives_a_store_restart(&url, || {
        redis.kill();
        std::thread::sleep(Duration::from_secs(1));
        redis.restart().unwrap();
    })
    .await;
}
