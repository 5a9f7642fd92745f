//! The `process` sandbox class end to end, with real `ate serve` processes, real runc
//! containers and real CRIU: Python agents as actors, their durable dirs in Data
//! snapshots, their memory in Full ones, a program that never gets ready, one that
//! crashes, and Full-scope templates placed only on nodes with CRIU. The class needs root
//! and runc, Full scope a working CRIU (`scripts/criu.sh` builds it; the test script
//! exports `ATE_CRIU`); without them each test says so and passes vacuously.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ate_testkit::http;
use common::Up;

fn demo_agent() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../demo/py-agent/agent.py")
        .display()
        .to_string()
}

/// Whether this machine runs process actors, and takes Full snapshots of them.
fn support() -> (bool, bool) {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let runc = std::process::Command::new("runc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let criu = std::env::var_os("ATE_CRIU").is_some_and(|p| Path::new(&p).is_file())
        || Path::new(&std::env::var("HOME").unwrap_or_default())
            .join(".cache/ate/criu-4.2.1/criu")
            .is_file();
    (root && runc, root && runc && criu)
}

/// Kills what the nodes under a test's dir left running when the test ends however it
/// ends: a node the harness kills leaves its containers to its next start's sweep, and
/// there is none.
struct Leftovers(PathBuf);

impl Drop for Leftovers {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.0) else {
            return;
        };
        for e in entries.flatten() {
            let state_dir = e.path().join("node/process-state");
            if state_dir.is_dir() {
                // Dropping the host sweeps its state dir.
                drop(ate_process::ProcessHost::detect(ate_process::HostConfig {
                    state_dir,
                    runc: None,
                    criu: None,
                }));
            }
        }
    }
}

/// Containers runc knows in a node's state dir.
fn containers(node_dir: &Path) -> Vec<String> {
    let root = node_dir.join("node/process-state/runc");
    let out = std::process::Command::new("runc")
        .arg("--root")
        .arg(&root)
        .args(["list", "-q"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

macro_rules! require {
    ($full:expr) => {
        let (process, full) = support();
        if !process || ($full && !full) {
            eprintln!(
                "skipped: needs root and runc{}",
                if $full {
                    ", and CRIU (scripts/criu.sh)"
                } else {
                    ""
                }
            );
            return;
        }
    };
}

/// A process template `name` running `script` with the given snapshot scope.
fn template(name: &str, script: &str, scope: &str, extra: &str) -> String {
    format!(
        "---
apiVersion: ate.dev/v1alpha1
kind: ActorTemplate
metadata:
  namespace: demo
  name: {name}
spec:
  sandboxClass: process
  module: {script}
  command: [python3, /ate/module]
  env:
  - name: NOTES_DIR
    value: /data
  durableDirs: [/data]
  readiness:
    path: /readyz
  snapshots:
    onPause: {scope}
    onCommit: {scope}
{extra}"
    )
}

fn apply(api: &Up, dir: &Path, replicas: u32, templates: &str) {
    let text = format!(
        "apiVersion: ate.dev/v1alpha1
kind: Atespace
metadata:
  name: team-a
---
apiVersion: ate.dev/v1alpha1
kind: WorkerPool
metadata:
  namespace: default
  name: process
spec:
  replicas: {replicas}
  sandboxClass: process
{templates}"
    );
    let path = dir.join("manifest.yaml");
    std::fs::write(&path, text).unwrap();
    api.ok(&["apply", "-f", &path.display().to_string()]);
}

async fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Workers as `ate get workers -A` lists them: (node, actor or FREE).
fn workers(api: &Up) -> Vec<(String, String)> {
    api.ok(&["get", "workers", "-A"])
        .lines()
        .skip(1)
        .filter_map(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            Some((c.get(3)?.to_string(), c.get(4)?.to_string()))
        })
        .collect()
}

fn free(api: &Up) -> usize {
    workers(api).iter().filter(|(_, a)| a == "FREE").count()
}

/// Workers bound to actor `id` of team-a.
fn bound(api: &Up, id: &str) -> usize {
    let actor = format!("team-a/{id}");
    api.ok(&["get", "workers", "-A"])
        .lines()
        .filter(|l| l.split_whitespace().nth(5) == Some(actor.as_str()))
        .count()
}

/// The node hosting actor `id`.
fn node_of(api: &Up, id: &str) -> String {
    actor_column(api, id, "NODE")
}

/// `pool/name` of the worker actor `id` holds.
fn worker_of(api: &Up, id: &str) -> String {
    actor_column(api, id, "WORKER")
}

/// Column `name` of actor `id` in `get actors -o wide` (which must hold a value).
fn actor_column(api: &Up, id: &str, name: &str) -> String {
    let out = api.ok(&["get", "actors", "-a", "team-a", "-o", "wide"]);
    let row = out
        .lines()
        .find(|l| l.split_whitespace().nth(3) == Some(id))
        .unwrap_or_else(|| panic!("no actor {id} in\n{out}"));
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    // "TEMPLATE NS" is one column of two words.
    let col = header.iter().position(|h| *h == name).unwrap() - 1;
    let value = row.split_whitespace().nth(col).unwrap().to_string();
    assert_ne!(value, "<none>", "actor {id} has no {name}:\n{out}");
    value
}

async fn send(router: &Up, method: &str, path: &str, body: &str) -> http::Answer {
    let req = http::request(method, &format!("{}{path}", router.router), None, body).unwrap();
    http::send(&http::client(), req, Duration::from_secs(60))
        .await
        .unwrap()
}

async fn ok(router: &Up, method: &str, path: &str, body: &str) -> String {
    let a = send(router, method, path, body).await;
    assert_eq!(a.status, 200, "{method} {path}: {}", a.body);
    a.body
}

/// One process with every role, on SQLite.
async fn solo(dir: &Path, replicas: u32, templates: &str) -> Up {
    let db = format!("sqlite://{}", dir.join("ate.db").display());
    let up = Up::serve(
        &dir.join("solo"),
        &[
            "--roles",
            "api,node,router",
            "--store",
            &db,
            "--node-name",
            "solo",
        ],
    );
    apply(&up, dir, replicas, templates);
    wait_until("free workers", Duration::from_secs(30), || {
        free(&up) >= replicas as usize
    })
    .await;
    up
}

/// A control plane alone, on SQLite under `dir`.
fn control_plane(dir: &Path) -> Up {
    let db = format!("sqlite://{}", dir.join("ate.db").display());
    Up::serve(&dir.join("api"), &["--roles", "api", "--store", &db])
}

/// A node daemon `name` registered with `api`, sharing the snapshot store under `dir`;
/// `extra` flags come last (another `--roles` adds roles).
fn node_daemon(dir: &Path, api: &Up, name: &str, extra: &[&str]) -> Up {
    let control = api.endpoint.trim_start_matches("http://");
    let snapshots = format!("file://{}", dir.join("snapshots").display());
    let mut args = vec![
        "--roles",
        "node",
        "--node-name",
        name,
        "--control",
        control,
        "--snapshots",
        &snapshots,
    ];
    args.extend_from_slice(extra);
    Up::serve(&dir.join(name), &args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_scope_keeps_the_durable_dirs_and_starts_the_program_afresh() {
    require!(false);
    let dir = tempfile::tempdir().unwrap();
    let _leftovers = Leftovers(dir.path().to_path_buf());
    let up = solo(dir.path(), 2, &template("notes", &demo_agent(), "Data", "")).await;
    up.ok(&["create", "actor", "a1", "-t", "demo/notes", "-a", "team-a"]);
    ok(&up, "POST", "/a/team-a/a1/chat", "hello").await;
    ok(&up, "POST", "/a/team-a/a1/notes", "buy milk").await;
    ok(&up, "POST", "/a/team-a/a1/notes", "call bob").await;
    let who = ok(&up, "GET", "/a/team-a/a1/", "").await;
    assert!(who.contains("\"actor\": \"a1\""), "{who}");
    up.ok(&["suspend", "actor", "a1", "-a", "team-a"]);
    assert_eq!(up.status_of("a1"), "SUSPENDED");
    assert_eq!(free(&up), 2, "the suspended actor's worker is free");
    // The files came back; the conversation, which lived in memory, did not.
    assert_eq!(
        ok(&up, "GET", "/a/team-a/a1/notes", "").await,
        "buy milk\ncall bob\n"
    );
    assert_eq!(ok(&up, "GET", "/a/team-a/a1/history", "").await, "");
    assert_eq!(up.status_of("a1"), "RUNNING");
    // A second actor of the template starts with empty dirs of its own.
    up.ok(&["create", "actor", "a2", "-t", "demo/notes", "-a", "team-a"]);
    assert_eq!(ok(&up, "GET", "/a/team-a/a2/notes", "").await, "");
    assert!(!containers(&dir.path().join("solo")).is_empty());
    // A node that stops takes its programs with it.
    up.stop();
    assert_eq!(containers(&dir.path().join("solo")), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_scope_restores_memory_on_the_same_node_and_on_another() {
    require!(true);
    let dir = tempfile::tempdir().unwrap();
    let _leftovers = Leftovers(dir.path().to_path_buf());
    let api = control_plane(dir.path());
    let node = |name: &str| node_daemon(dir.path(), &api, name, &[]);
    let (n1, n2) = (node("n1"), node("n2"));
    let control = api.endpoint.trim_start_matches("http://");
    let router = Up::router(&dir.path().join("router"), control, &api);
    apply(
        &api,
        dir.path(),
        4,
        &template("chat", &demo_agent(), "Full", ""),
    );
    wait_until("workers on both nodes", Duration::from_secs(30), || {
        let w = workers(&api);
        ["n1", "n2"]
            .iter()
            .all(|n| w.iter().any(|(node, a)| node == n && a == "FREE"))
    })
    .await;
    api.ok(&["create", "actor", "c1", "-t", "demo/chat", "-a", "team-a"]);
    ok(&router, "POST", "/a/team-a/c1/chat", "hello").await;
    ok(&router, "POST", "/a/team-a/c1/notes", "kept on disk").await;
    let before = ok(&router, "GET", "/a/team-a/c1/history", "").await;
    let first = node_of(&api, "c1");
    api.ok(&["suspend", "actor", "c1", "-a", "team-a"]);
    // Back from its checkpoint: the conversation in memory is intact.
    assert_eq!(ok(&router, "GET", "/a/team-a/c1/history", "").await, before);
    assert_eq!(
        ok(&router, "POST", "/a/team-a/c1/chat", "again").await,
        "turn 2: you said 1 word: again\n"
    );
    let history = ok(&router, "GET", "/a/team-a/c1/history", "").await;
    // Draining its node suspends it; the next request restores it on the other node.
    let here = node_of(&api, "c1");
    api.ok(&["drain", "node", &here]);
    assert_eq!(api.status_of("c1"), "SUSPENDED");
    assert_eq!(
        ok(&router, "GET", "/a/team-a/c1/history", "").await,
        history
    );
    assert_ne!(node_of(&api, "c1"), here, "restored on the other node");
    assert_eq!(
        ok(&router, "GET", "/a/team-a/c1/notes", "").await,
        "kept on disk\n"
    );
    assert_eq!(
        ok(&router, "POST", "/a/team-a/c1/chat", "third").await,
        "turn 3: you said 1 word: third\n"
    );
    let log = api.ok(&["logs", "actor", "c1", "-a", "team-a"]);
    assert!(log.contains("py-agent listening"), "{log}");
    let now = node_of(&api, "c1");
    let worker = worker_of(&api, "c1");
    eprintln!("first on {first}, then {here}, now {now}");
    // A node killed outright leaves its programs running (the actor's, and a golden snapshot's
    // when one was being taken); its next start sweeps them away.
    let (victim, other) = if now == "n1" { (n1, n2) } else { (n2, n1) };
    victim.crash();
    let left = containers(&dir.path().join(&now));
    let mine = format!("-{}-", worker.replace('/', "-"));
    assert!(
        left.iter().any(|c| c.contains(&mine)),
        "{mine} not in {left:?}"
    );
    let again = node(&now);
    wait_until(
        "the restarted node to sweep what it left",
        Duration::from_secs(10),
        || containers(&dir.path().join(&now)).is_empty(),
    )
    .await;
    drop((again, other, router));
}

/// A program that answers /readyz and exits with status 3 on /crash.
const CRASHER: &str = r#"
import os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/crash":
            print("crashing on purpose", flush=True)
            os._exit(3)
        body = b"alive\n"
        if self.path.startswith("/ls?"):
            try:
                body = ",".join(sorted(os.listdir(self.path[4:]))).encode()
            except OSError as e:
                body = str(e).encode()
        self.send_response(200); self.send_header("content-length", str(len(body))); self.end_headers()
        self.wfile.write(body)
HTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_that_never_gets_ready_fails_the_resume_and_frees_the_worker() {
    require!(false);
    let dir = tempfile::tempdir().unwrap();
    let _leftovers = Leftovers(dir.path().to_path_buf());
    let sleeper = dir.path().join("sleeper.py");
    std::fs::write(
        &sleeper,
        "import time\nprint('thinking', flush=True)\ntime.sleep(600)\n",
    )
    .unwrap();
    let extra = "  idleTimeout: 0s\n";
    let mut t = template("sleepy", &sleeper.display().to_string(), "Data", extra);
    t = t.replace(
        "    path: /readyz\n",
        "    path: /readyz\n    timeout: 2s\n",
    );
    let up = solo(dir.path(), 2, &t).await;
    up.ok(&["create", "actor", "s1", "-t", "demo/sleepy", "-a", "team-a"]);
    let err = up.fails(&["resume", "actor", "s1", "-a", "team-a"]);
    assert!(err.contains("not ready after 2s"), "{err}");
    assert_eq!(up.status_of("s1"), "SUSPENDED");
    assert_eq!(bound(&up, "s1"), 0, "the worker was freed");
    // Through the router the failure is an error answer, not a hang.
    let a = send(&up, "GET", "/a/team-a/s1/", "").await;
    assert!(a.status >= 500, "{} {}", a.status, a.body);
    assert_eq!(bound(&up, "s1"), 0);
    up.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_program_is_reported_and_its_worker_recovered() {
    require!(false);
    // Not under /tmp, which the container replaces with its own: the data dir must be
    // hidden for its own sake.
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let _leftovers = Leftovers(dir.path().to_path_buf());
    let crasher = dir.path().join("crasher.py");
    std::fs::write(&crasher, CRASHER).unwrap();
    let t = template("crashy", &crasher.display().to_string(), "Data", "")
        .replace("    path: /readyz\n", "    path: /\n");
    let up = solo(dir.path(), 2, &t).await;
    up.ok(&["create", "actor", "x1", "-t", "demo/crashy", "-a", "team-a"]);
    assert_eq!(ok(&up, "GET", "/a/team-a/x1/", "").await, "alive\n");
    // The host is visible read-only, but not the node's data dir (other actors' snapshots).
    let data = dir.path().join("solo");
    assert!(std::fs::read_dir(&data).unwrap().count() > 0);
    let seen = ok(
        &up,
        "GET",
        &format!("/a/team-a/x1/ls?{}", data.display()),
        "",
    )
    .await;
    assert_eq!(seen, "", "the data dir is hidden");
    let a = send(&up, "GET", "/a/team-a/x1/crash", "").await;
    assert!(a.status >= 500, "{} {}", a.status, a.body);
    wait_until(
        "the crashed actor to be suspended",
        Duration::from_secs(10),
        || up.status_of("x1") == "SUSPENDED",
    )
    .await;
    let described = up.ok(&["get", "actors", "-a", "team-a", "-o", "yaml"]);
    assert!(described.contains("ProcessExited"), "{described}");
    assert!(described.contains("exited with status 3"), "{described}");
    assert_eq!(bound(&up, "x1"), 0, "the worker was recovered");
    let log = up.ok(&["logs", "actor", "x1", "-a", "team-a"]);
    assert!(log.contains("crashing on purpose"), "{log}");
    assert!(log.contains("exited with status 3"), "{log}");
    // The next request starts it again.
    assert_eq!(ok(&up, "GET", "/a/team-a/x1/", "").await, "alive\n");
    up.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_scope_templates_go_only_to_nodes_with_criu() {
    require!(true);
    let dir = tempfile::tempdir().unwrap();
    let _leftovers = Leftovers(dir.path().to_path_buf());
    let api = control_plane(dir.path());
    let token_file = api.token_file();
    let node = |name: &str, criu: &[&str]| {
        let router = ["--roles", "node,router", "--token-file", &token_file];
        node_daemon(dir.path(), &api, name, &[&router[..], criu].concat())
    };
    let (with, without) = (node("with-criu", &[]), node("no-criu", &["--criu", "off"]));
    let templates =
        template("full", &demo_agent(), "Full", "") + &template("data", &demo_agent(), "Data", "");
    apply(&api, dir.path(), 4, &templates);
    wait_until("workers on both nodes", Duration::from_secs(30), || {
        let w = workers(&api);
        ["with-criu", "no-criu"]
            .iter()
            .all(|n| w.iter().any(|(node, a)| node == n && a == "FREE"))
    })
    .await;
    let nodes = api.ok(&["get", "nodes", "-o", "wide"]);
    let header: Vec<&str> = nodes.lines().next().unwrap().split_whitespace().collect();
    let col = header.iter().position(|h| *h == "CAPABILITIES").unwrap();
    let capabilities = |n: &str| {
        let row = nodes
            .lines()
            .find(|l| l.starts_with(&format!("{n} ")))
            .unwrap();
        row.split_whitespace().nth(col).unwrap().to_string()
    };
    assert_eq!(capabilities("with-criu"), "criu", "{nodes}");
    assert_eq!(capabilities("no-criu"), "<none>", "{nodes}");
    let capable = workers(&api)
        .iter()
        .filter(|(n, _)| n == "with-criu")
        .count();
    for i in 0..capable {
        let id = format!("f{i}");
        api.ok(&["create", "actor", &id, "-t", "demo/full", "-a", "team-a"]);
        ok(&without, "POST", &format!("/a/team-a/{id}/chat"), "hi").await;
        assert_eq!(node_of(&api, &id), "with-criu");
    }
    // Every worker with CRIU is taken: one more Full actor evicts an idle one there; it
    // never goes to the node without CRIU, where workers are free.
    api.ok(&[
        "create",
        "actor",
        "f-extra",
        "-t",
        "demo/full",
        "-a",
        "team-a",
    ]);
    ok(&with, "GET", "/a/team-a/f-extra/", "").await;
    assert_eq!(node_of(&api, "f-extra"), "with-criu");
    let evicted = (0..capable)
        .filter(|i| api.status_of(&format!("f{i}")) == "SUSPENDED")
        .count();
    assert_eq!(evicted, 1);
    // A Data-scope actor runs on the node without CRIU.
    api.ok(&["create", "actor", "d1", "-t", "demo/data", "-a", "team-a"]);
    ok(&with, "POST", "/a/team-a/d1/notes", "fine here").await;
    assert_eq!(node_of(&api, "d1"), "no-criu");
    drop((with, without));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_actors_evicted_for_one_another_keep_their_state() {
    require!(false);
    let (_, full) = support();
    let dir = tempfile::tempdir().unwrap();
    let _leftovers = Leftovers(dir.path().to_path_buf());
    let mut templates = template("notes", &demo_agent(), "Data", "");
    if full {
        templates += &template("chat", &demo_agent(), "Full", "");
    }
    // One worker: every actor that answers evicts the one before it.
    let up = solo(dir.path(), 1, &templates).await;
    for id in ["n1", "n2"] {
        up.ok(&["create", "actor", id, "-t", "demo/notes", "-a", "team-a"]);
    }
    ok(&up, "POST", "/a/team-a/n1/notes", "first").await;
    ok(&up, "POST", "/a/team-a/n2/notes", "second").await;
    assert_eq!(up.status_of("n1"), "SUSPENDED");
    // Data scope: the durable dir came through the eviction.
    assert_eq!(ok(&up, "GET", "/a/team-a/n1/notes", "").await, "first\n");
    assert_eq!(up.status_of("n2"), "SUSPENDED");
    assert_eq!(ok(&up, "GET", "/a/team-a/n2/notes", "").await, "second\n");
    if full {
        // Full scope: the conversation in memory came through too.
        up.ok(&["create", "actor", "f1", "-t", "demo/chat", "-a", "team-a"]);
        ok(&up, "POST", "/a/team-a/f1/chat", "hello").await;
        let before = ok(&up, "GET", "/a/team-a/f1/history", "").await;
        ok(&up, "GET", "/a/team-a/n1/notes", "").await;
        assert_eq!(up.status_of("f1"), "SUSPENDED");
        assert_eq!(ok(&up, "GET", "/a/team-a/f1/history", "").await, before);
    } else {
        eprintln!("full scope skipped: needs CRIU (scripts/criu.sh)");
    }
    assert_eq!(bound(&up, "n1") + bound(&up, "n2"), usize::from(!full));
    up.stop();
}

/// Snapshot directories of actor `id` of team-a in the snapshot stores under `dir`, and
/// whether each is complete (has its manifest).
fn stored_snapshots(dir: &Path, id: &str) -> Vec<(String, bool)> {
    fn walk(p: &Path, id: &str, out: &mut Vec<(String, bool)>) {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            let path = e.path();
            if !path.is_dir() {
                continue;
            }
            let is_actor = path.file_name().is_some_and(|n| n == id)
                && path
                    .parent()
                    .and_then(Path::file_name)
                    .is_some_and(|n| n == "team-a")
                && path
                    .ancestors()
                    .any(|a| a.file_name().is_some_and(|n| n == "snapshots"));
            if is_actor {
                for s in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                    let name = s.file_name().to_string_lossy().into_owned();
                    out.push((name, s.path().join("manifest.json").is_file()));
                }
            } else {
                walk(&path, id, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, id, &mut out);
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspend_over_max_bytes_fails_and_the_program_keeps_running() {
    require!(false);
    let dir = tempfile::tempdir().unwrap();
    let _leftovers = Leftovers(dir.path().to_path_buf());
    let capped = template("capped", &demo_agent(), "Data", "    maxBytes: 65536\n");
    let up = solo(dir.path(), 1, &capped).await;
    up.ok(&["create", "actor", "a1", "-t", "demo/capped", "-a", "team-a"]);
    ok(&up, "POST", "/a/team-a/a1/notes", "small").await;
    // A few KiB of durable dir: within the limit.
    up.ok(&["suspend", "actor", "a1", "-a", "team-a"]);
    let before = stored_snapshots(dir.path(), "a1");
    assert_eq!(before.len(), 1, "{before:?}");
    ok(&up, "POST", "/a/team-a/a1/chat", "remember me").await;
    let big = "x".repeat(100_000);
    ok(&up, "POST", "/a/team-a/a1/notes", &big).await;

    // Now the durable dir packs past 64 KiB: the suspend fails while packing, and the
    // program goes on running as it was, its memory (the conversation) intact.
    let err = up.fails(&["suspend", "actor", "a1", "-a", "team-a"]);
    assert!(
        err.contains("FailedPrecondition")
            && err.contains("snapshot of actor team-a/a1 is too large")
            && err.contains("over spec.snapshots.maxBytes of 65536"),
        "{err}"
    );
    assert_eq!(up.status_of("a1"), "RUNNING");
    assert_eq!(
        actor_column(&up, "a1", "CONDITION"),
        "SnapshotTooLarge(MaxBytesExceeded)"
    );
    let history = ok(&up, "GET", "/a/team-a/a1/history", "").await;
    assert!(history.contains("remember me"), "{history}");
    assert!(
        ok(&up, "GET", "/a/team-a/a1/notes", "")
            .await
            .contains(&big)
    );
    assert_eq!(
        stored_snapshots(dir.path(), "a1"),
        before,
        "nothing of the refused snapshot is stored"
    );
    assert_eq!(bound(&up, "a1"), 1, "it keeps its worker");
}
