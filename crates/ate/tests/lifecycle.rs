//! The actor lifecycle through the real binary: resume, suspend and pause from the CLI,
//! a drain on shutdown, and a control plane that aborts in the middle of each step of
//! resume, suspend and pause, then restarts into a consistent state.

mod common;

use ate_model::{Actor, ActorStatus, Worker};
use common::{Up, eventually};

fn actors(up: &Up) -> Vec<Actor> {
    let out = up.ok(&["get", "actors", "-A", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    serde_json::from_value(v["actors"].clone()).expect("actors")
}

fn workers(up: &Up) -> Vec<Worker> {
    let out = up.ok(&["get", "workers", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    serde_json::from_value(v["workers"].clone()).expect("workers")
}

/// No actor in transition; running actors and bound workers point at each other.
fn consistent(up: &Up) -> bool {
    let (actors, workers) = (actors(up), workers(up));
    let settled = actors.iter().all(|a| {
        matches!(
            a.status,
            ActorStatus::Running | ActorStatus::Suspended | ActorStatus::Paused
        ) && (a.status == ActorStatus::Running) == a.worker.is_some()
    });
    let running_bound = actors
        .iter()
        .filter(|a| a.status == ActorStatus::Running)
        .all(|a| {
            let p = a.worker.as_ref().expect("worker");
            workers.iter().any(|w| {
                w.name == p.name && w.assignment.as_ref().map(|x| &x.actor) == Some(&a.actor_ref())
            })
        });
    let bound_running = workers
        .iter()
        .filter_map(|w| w.assignment.as_ref())
        .all(|x| {
            actors
                .iter()
                .any(|a| a.actor_ref() == x.actor && a.status == ActorStatus::Running)
        });
    settled && running_bound && bound_running
}

/// Waits until every demo template has its golden snapshot (baking runs workflows too).
fn golden_ready(up: &Up) {
    eventually("the demo templates' golden snapshots", || {
        up.ok(&["get", "templates"]).matches("Ready").count() == up.demo_templates()
    });
}

fn row(out: &str) -> &str {
    out.lines().nth(1).expect("a table row")
}

#[test]
fn actors_resume_suspend_and_pause_from_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let up = Up::start(dir.path());
    up.ok(&["create", "atespace", "team-a"]);
    up.create_counter("c1");
    golden_ready(&up);

    let resumed = up.ok(&["resume", "actor", "c1", "-a", "team-a"]);
    let r = row(&resumed);
    assert!(r.contains("RUNNING"), "{resumed}");
    assert!(
        r.contains("wasm/wasm-local-"),
        "the worker is shown: {resumed}"
    );
    assert!(r.contains("127.0.0.1"), "and its address: {resumed}");
    let listed = up.ok(&["get", "actors", "-a", "team-a"]);
    assert!(row(&listed).contains("wasm/wasm-local-"), "{listed}");

    let suspended = up.ok(&["suspend", "actor", "c1", "-a", "team-a"]);
    assert!(row(&suspended).contains("SUSPENDED"), "{suspended}");
    assert!(row(&suspended).contains("<none>"), "{suspended}");
    let err = up.fails(&["pause", "actor", "c1", "-a", "team-a"]);
    assert!(err.contains("only a running actor can be paused"), "{err}");

    up.ok(&["resume", "actor", "c1", "-a", "team-a"]);
    let paused = up.ok(&["pause", "actor", "c1", "-a", "team-a"]);
    assert!(row(&paused).contains("PAUSED"), "{paused}");
    let wide = up.ok(&["get", "actors", "-a", "team-a", "-o", "wide"]);
    assert!(wide.contains("file://"), "the snapshot is shown: {wide}");
    let booted = up.ok(&["resume", "actor", "c1", "-a", "team-a", "--boot"]);
    assert!(row(&booted).contains("RUNNING"), "{booted}");
    let err = up.fails(&["delete", "actor", "c1", "-a", "team-a"]);
    assert!(
        err.contains("only a suspended or paused actor can be deleted"),
        "{err}"
    );

    // A clean stop suspends what runs; after a restart it is there to resume.
    up.stop();
    let up = Up::start(dir.path());
    assert_eq!(actors(&up)[0].status, ActorStatus::Suspended);
    assert!(consistent(&up));
    up.ok(&["resume", "actor", "c1", "-a", "team-a"]);
    up.ok(&["suspend", "actor", "c1", "-a", "team-a"]);
    up.ok(&["delete", "actor", "c1", "-a", "team-a"]);
    up.stop();
}

/// Every step at which a resume, suspend or pause persists something.
const CRASH_POINTS: &[&str] = &[
    "resume.marked",
    "resume.claimed",
    "resume.started",
    "suspend.marked",
    "suspend.checkpointed",
    "suspend.released",
    "pause.marked",
    "pause.checkpointed",
    "pause.released",
];

#[test]
fn a_control_plane_killed_mid_operation_restarts_consistent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fast = ["--lease-ttl", "1s"];
    let up = Up::launch(dir.path(), None, &fast, &[]);
    up.ok(&["create", "atespace", "team-a"]);
    // Baked before any crash point is armed, so only the operation under test reaches it.
    golden_ready(&up);
    up.stop();
    for (n, point) in CRASH_POINTS.iter().enumerate() {
        let id = format!("c{n}");
        let up = Up::launch(dir.path(), None, &fast, &[("ATE_CRASH_AT", point)]);
        up.create_counter(&id);
        let verb = point.split('.').next().expect("verb");
        if verb != "resume" {
            up.ok(&["resume", "actor", &id, "-a", "team-a"]);
        }
        up.fails(&[verb, "actor", &id, "-a", "team-a"]);
        assert!(up.wait_crashed(), "ate up aborted at {point}");

        let up = Up::launch(dir.path(), None, &fast, &[]);
        eventually(&format!("consistent after a crash at {point}"), || {
            consistent(&up)
        });
        let resumed = up.ok(&["resume", "actor", &id, "-a", "team-a"]);
        assert!(row(&resumed).contains("RUNNING"), "{point}: {resumed}");
        let suspended = up.ok(&["suspend", "actor", &id, "-a", "team-a"]);
        assert!(
            row(&suspended).contains("SUSPENDED"),
            "{point}: {suspended}"
        );
        assert!(consistent(&up), "{point}");
        up.stop();
    }
}
