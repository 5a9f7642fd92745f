//! End to end: the real `ate` binary, `ate up` on a free port with a temp data dir, driven by
//! the CLI as a user would, across restarts.

mod common;

use std::process::Command;

use common::{ATE, Up};

const THREE_ACTORS: &str = "\
ATESPACE   TEMPLATE NS   TEMPLATE   ID      STATUS      WORKER   ADDRESS   VERSION
team-a     examples      counter    test    SUSPENDED   <none>   <none>    1
team-a     examples      counter    test2   SUSPENDED   <none>   <none>    1
team-b     examples      counter    test    SUSPENDED   <none>   <none>    1
";

#[test]
fn the_cli_scenario_survives_restarts_on_sqlite() {
    scenario(None);
}

#[test]
fn the_cli_scenario_survives_restarts_on_redis() {
    let server = ate_testkit::RedisServer::start().expect("redis-server");
    scenario(Some(&server.url()));
}

#[test]
fn the_cli_scenario_survives_restarts_on_postgres() {
    let server = ate_testkit::PostgresServer::start().expect("postgres");
    scenario(Some(&server.url()));
}

/// The scenario of the README, against `ate up` on the given store (the embedded SQLite
/// file when `None`), across a clean restart and a crash of `ate up`.
fn scenario(store: Option<&str>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/counter.yaml");
    let up = Up::start_with(dir.path(), store);

    assert_eq!(up.ok(&["create", "atespace", "team-a"]), "NAME\nteam-a\n");
    up.ok(&["create", "atespace", "team-b"]);
    let applied = up.ok(&["apply", "-f", manifest]);
    assert!(
        applied.contains("actortemplate \"examples/counter\" created"),
        "{applied}"
    );
    let again = up.ok(&["apply", "-f", manifest]);
    assert!(
        again.contains("actortemplate \"examples/counter\" unchanged"),
        "{again}"
    );

    up.ok(&[
        "create",
        "actor",
        "test",
        "-t",
        "examples/counter",
        "-a",
        "team-a",
    ]);
    up.ok(&[
        "create",
        "actor",
        "test2",
        "-t",
        "examples/counter",
        "-a",
        "team-a",
    ]);
    up.ok(&[
        "create",
        "actor",
        "test",
        "-t",
        "examples/counter",
        "-a",
        "team-b",
    ]);
    let err = up.fails(&[
        "create",
        "actor",
        "test",
        "-t",
        "examples/counter",
        "-a",
        "team-c",
    ]);
    assert_eq!(
        err.trim(),
        "Error: failed to create actor: rpc error: code = FailedPrecondition desc = atespace team-c not found"
    );
    let err = up.fails(&[
        "create",
        "actor",
        "test",
        "-t",
        "examples/nope",
        "-a",
        "team-a",
    ]);
    assert!(err.contains("template examples/nope not found"), "{err}");

    assert_eq!(up.ok(&["get", "actors", "-A"]), THREE_ACTORS);
    // The system atespace shows when named, and `-A` hides it whatever the selector says.
    let golden = up.ok(&["get", "actors", "-a", "ate-golden"]);
    assert!(golden.lines().count() > 1, "{golden}");
    let others = up.ok(&[
        "get",
        "actors",
        "-A",
        "--field-selector",
        "atespace!=team-a",
    ]);
    assert!(!others.contains("ate-golden"), "{others}");
    assert!(others.contains("team-b"), "{others}");
    let team_a = up.ok(&["get", "actors", "-a", "team-a"]);
    assert_eq!(team_a.lines().count(), 3, "{team_a}");
    assert!(
        team_a.lines().skip(1).all(|l| l.starts_with("team-a ")),
        "{team_a}"
    );

    let err = up.fails(&["delete", "atespace", "team-a"]);
    assert!(
        err.contains("FailedPrecondition") && err.contains("atespace team-a is not empty"),
        "{err}"
    );

    // A clean restart keeps everything.
    up.stop();
    let up = Up::start_with(dir.path(), store);
    assert_eq!(up.ok(&["get", "actors", "-A"]), THREE_ACTORS);
    let spaces = up.ok(&["get", "atespaces"]);
    assert_eq!(spaces, "NAME\nate-golden\nteam-a\nteam-b\n");

    assert_eq!(
        up.ok(&["delete", "actor", "test", "-a", "team-a"]),
        "actor \"test\" deleted\n"
    );
    assert_eq!(
        up.ok(&["delete", "actor", "test2", "-a", "team-a"]),
        "actor \"test2\" deleted\n"
    );
    assert_eq!(
        up.ok(&["delete", "atespace", "team-a"]),
        "atespace \"team-a\" deleted\n"
    );

    // So does a crash.
    up.crash();
    let up = Up::start_with(dir.path(), store);
    assert_eq!(up.ok(&["get", "atespaces"]), "NAME\nate-golden\nteam-b\n");
    let left = up.ok(&["get", "actors", "-A"]);
    assert_eq!(left.lines().count(), 2, "{left}");
    assert!(left.contains("team-b"), "{left}");
    up.stop();
}

#[test]
fn flag_misuse_and_output_formats() {
    let dir = tempfile::tempdir().expect("tempdir");
    let up = Up::start(dir.path());
    let cases: [(&[&str], &str); 4] = [
        (
            &["get", "actors"],
            "specify --atespace <name> to list one atespace, or -A/--all-atespaces for all",
        ),
        (
            &["get", "actors", "-a", "x", "-A"],
            "--atespace and -A/--all-atespaces are mutually exclusive",
        ),
        (
            &["get", "actors", "x", "-A"],
            "-A/--all-atespaces cannot be used when getting a specific actor; pass --atespace",
        ),
        (
            &["get", "actors", "x"],
            "--atespace is required when getting a specific actor",
        ),
    ];
    for (args, msg) in cases {
        assert_eq!(up.fails(args).trim(), format!("Error: {msg}"), "{args:?}");
    }
    let err = up.fails(&["create", "actor", "x", "-t", "no-slash", "-a", "team-a"]);
    assert!(err.contains("malformed --template"), "{err}");

    up.ok(&["create", "atespace", "team-a"]);
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/counter.yaml");
    up.ok(&["apply", "-f", manifest]);
    up.ok(&[
        "create",
        "actor",
        "a1",
        "-t",
        "examples/counter",
        "-a",
        "team-a",
        "--selector",
        "tier=gold",
    ]);
    let json = up.ok(&["get", "actors", "-a", "team-a", "-o", "json"]);
    assert!(
        json.contains("\"actors\"") && json.contains("\"id\": \"a1\""),
        "{json}"
    );
    assert!(json.contains("\"tier\": \"gold\""), "{json}");
    let yaml = up.ok(&["get", "actor", "a1", "-a", "team-a", "-o", "yaml"]);
    assert!(
        yaml.contains("id: a1") && yaml.contains("status: SUSPENDED"),
        "{yaml}"
    );
    let updated = up.ok(&[
        "update",
        "actor",
        "a1",
        "-a",
        "team-a",
        "--selector",
        "tier=silver",
        "-o",
        "wide",
    ]);
    assert!(
        updated.contains("tier=silver") && updated.contains(" 2 "),
        "{updated}"
    );
    let filtered = up.ok(&["get", "actors", "-A", "--field-selector", "status=RUNNING"]);
    assert_eq!(filtered.lines().count(), 1, "only the header: {filtered}");
    let err = up.fails(&["get", "actors", "-A", "--field-selector", "colour=red"]);
    assert!(
        err.contains("InvalidArgument") && err.contains("supported fields"),
        "{err}"
    );
    // Its selector matches no pool.
    let err = up.fails(&["resume", "actor", "a1", "-a", "team-a"]);
    assert!(
        err.contains("FailedPrecondition") && err.contains("no worker pool matches"),
        "{err}"
    );
    let pools = up.ok(&["get", "pools"]);
    assert!(pools.contains("default     wasm"), "{pools}");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: ate.dev/v1alpha1\nkind: Atespace\nmetadata: {name: team-z}\n---\napiVersion: ate.dev/v1alpha1\nkind: WorkerPool\nmetadata: {name: p}\nspec: {sandboxClass: gvisor}\n").expect("write");
    let err = up.fails(&["apply", "-f", bad.to_str().expect("path")]);
    assert!(
        err.contains("document 2") && err.contains("spec.sandboxClass"),
        "{err}"
    );
    let spaces = up.ok(&["get", "atespaces"]);
    assert!(
        !spaces.contains("team-z"),
        "a bad file applies nothing: {spaces}"
    );
    up.stop();
}

#[test]
fn unreachable_endpoint_is_a_clear_error() {
    let out = Command::new(ATE)
        .args(["get", "atespaces", "--endpoint", "http://127.0.0.1:1"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("Error: failed to connect to ate at http://127.0.0.1:1"),
        "{err}"
    );
}

/// Retries a command until it succeeds (the store is coming back).
fn eventually_ok(up: &Up, args: &[&str]) -> String {
    for _ in 0..100 {
        let out = up.ate(args);
        if out.status.success() {
            return String::from_utf8(out.stdout).expect("utf8");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("ate {args:?} never succeeded after the store came back");
}

/// Under a running `ate up` on the store at `url`: `stop` takes the store server down and
/// calls fail with `Unavailable`; `start` brings it back and ate recovers without a restart.
fn outage(url: &str, stop: impl FnOnce(), start: impl FnOnce()) {
    let dir = tempfile::tempdir().expect("tempdir");
    let up = Up::start_with(dir.path(), Some(url));
    up.ok(&["create", "atespace", "team-a"]);
    stop();
    let err = up.fails(&["get", "atespaces"]);
    assert!(err.contains("code = Unavailable"), "{err}");
    start();
    let spaces = eventually_ok(&up, &["get", "atespaces"]);
    assert!(spaces.contains("team-a"), "{spaces}");
    up.ok(&["create", "atespace", "team-b"]);
    up.stop();
}

#[test]
fn a_store_outage_is_unavailable_then_recovers_redis() {
    let server = std::cell::RefCell::new(ate_testkit::RedisServer::start().expect("redis-server"));
    let url = server.borrow().url();
    outage(
        &url,
        || server.borrow_mut().kill(),
        || server.borrow_mut().restart().expect("restart"),
    );
}

#[test]
fn a_store_outage_is_unavailable_then_recovers_postgres() {
    let server = std::cell::RefCell::new(ate_testkit::PostgresServer::start().expect("postgres"));
    let url = server.borrow().url();
    outage(
        &url,
        || server.borrow_mut().kill().expect("stop postgres"),
        || server.borrow_mut().start_again().expect("start postgres"),
    );
}

#[test]
fn an_unreachable_store_at_start_up_is_retried_then_reported() {
    let port = ate_testkit::free_port().expect("port");
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("redis://127.0.0.1:{port}/0");
    let out = Command::new(ATE)
        .args([
            "up",
            "--api-listen",
            "127.0.0.1:0",
            "--store",
            &url,
            "--store-timeout",
            "2",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("store not reachable yet; retrying"), "{err}");
    assert!(
        err.contains(&format!("Error: cannot open store {url}")),
        "{err}"
    );
    let bad = Command::new(ATE)
        .args(["up", "--store", "mysql://x", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("store scheme \"mysql\" is not supported"),
        "{err}"
    );
}

#[test]
fn ate_up_runs_a_local_node_with_a_default_wasm_pool() {
    let dir = tempfile::tempdir().expect("tempdir");
    let up = Up::start(dir.path());
    let nodes = up.ok(&["get", "nodes"]);
    let classes = if up.runs_process() {
        "wasm,process"
    } else {
        "wasm"
    };
    let cells = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(
        nodes.lines().map(cells).collect::<Vec<_>>(),
        [
            cells("NAME STATUS ADDRESS CLASSES CAPACITY"),
            cells(&format!("local Ready 127.0.0.1 {classes} 64")),
        ],
        "{nodes}"
    );
    // The demo templates' golden snapshots are baked on a worker each, then let go.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while up.ok(&["get", "templates"]).matches("Ready").count() < up.demo_templates() {
        assert!(
            std::time::Instant::now() < deadline,
            "golden snapshots not baked"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let workers = up.ok(&["get", "workers"]);
    let mut lines = workers.lines();
    assert_eq!(
        lines.next().map(cells),
        Some(cells("NAMESPACE POOL WORKER NODE STATUS ACTOR"))
    );
    assert_eq!(
        lines
            .map(cells)
            .filter(|c| c[..2] == ["default", "wasm"]
                && c[2].starts_with("wasm-local-")
                && c[3..] == ["local", "FREE", "<none>"])
            .count(),
        4,
        "{workers}"
    );
    let templates = up.ok(&["get", "templates"]);
    assert!(
        templates
            .lines()
            .any(|l| cells(l) == ["demo", "counter", "wasm", "Ready"]),
        "{templates}"
    );
    if up.runs_process() {
        assert!(
            templates
                .lines()
                .any(|l| cells(l) == ["demo", "py-agent", "process", "Ready"]),
            "{templates}"
        );
    }

    // A created actor that never ran has no log lines; an unknown one is an error.
    up.ok(&["create", "atespace", "team-a"]);
    up.create_counter("c1");
    assert_eq!(up.ok(&["logs", "actor", "c1", "-a", "team-a"]), "");
    let err = up.fails(&["logs", "actor", "nope", "-a", "team-a"]);
    assert!(err.contains("actor team-a/nope not found"), "{err}");

    // Scaling the pool down through a manifest: the running fleet follows.
    let manifest = dir.path().join("pool.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: ate.dev/v1alpha1\nkind: WorkerPool\nmetadata: {namespace: default, name: wasm}\nspec: {replicas: 2, sandboxClass: wasm}\n",
    )
    .expect("write manifest");
    up.ok(&["apply", "-f", manifest.to_str().expect("utf-8 path")]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let workers = up.ok(&["get", "workers", "--field-selector", "pool=wasm"]);
        if workers.lines().count() == 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pool did not scale down: {workers}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn a_recreated_actor_never_shows_the_logs_of_its_namesake() {
    let dir = tempfile::tempdir().expect("tempdir");
    let up = Up::start(dir.path());
    let logs = || up.ok(&["logs", "actor", "c1", "-a", "team-a"]);
    up.ok(&["create", "atespace", "team-a"]);
    up.create_counter("c1");
    for _ in 0..2 {
        let (status, _) = common::http_get(&up.router, "/a/team-a/c1/", None);
        assert_eq!(status, 200);
    }
    assert_eq!(logs(), "counter: request 1\ncounter: request 2\n");

    // The actor and its atespace go; new ones of the same names start with nothing.
    up.ok(&["suspend", "actor", "c1", "-a", "team-a"]);
    up.ok(&["delete", "actor", "c1", "-a", "team-a"]);
    up.ok(&["delete", "atespace", "team-a"]);
    up.ok(&["create", "atespace", "team-a"]);
    up.create_counter("c1");
    assert_eq!(logs(), "");
    let (status, _) = common::http_get(&up.router, "/a/team-a/c1/", None);
    assert_eq!(status, 200);
    assert_eq!(logs(), "counter: request 1\n");
}
