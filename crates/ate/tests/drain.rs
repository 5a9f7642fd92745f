//! `ate drain node` and `ate uncordon node` through the real binary: draining the one node
//! of `ate up` suspends its actors and leaves no capacity (the CLI and the router both say
//! so), and uncordoning gives the capacity back, the actor's state intact.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Up, eventually};

/// The STATUS column of the one node of `ate up`, and its name.
fn the_node(up: &Up) -> (String, String) {
    let out = up.ok(&["get", "nodes"]);
    let mut rows = out.lines().skip(1);
    let row = rows.next().expect("a node row");
    assert!(rows.next().is_none(), "one node: {out}");
    let mut cells = row.split_whitespace();
    let name = cells.next().unwrap().to_string();
    (name, cells.next().unwrap().to_string())
}

fn free_workers(up: &Up) -> usize {
    up.ok(&["get", "workers", "--field-selector", "actor_id="])
        .lines()
        .skip(1)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_node_takes_no_actor_until_uncordoned() {
    let dir = tempfile::tempdir().unwrap();
    // A short queue wait: the router holds a request with no worker to take that long.
    let up = Up::launch(dir.path(), None, &["--queue-wait", "500ms"], &[]);
    up.ok(&["create", "atespace", "team-a"]);
    up.create_counter("c1");
    eventually("the demo templates' golden snapshots", || {
        up.ok(&["get", "templates"]).matches("Ready").count() == up.demo_templates()
    });
    for want in ["1", "2"] {
        let a = up.curl("/a/team-a/c1/").await;
        assert_eq!((a.status, a.body.as_str()), (200, want));
    }
    assert_eq!(up.status_of("c1"), "RUNNING");
    let (node, status) = the_node(&up);
    assert_eq!(status, "Ready");

    let out = up.ok(&["drain", "node", &node]);
    assert_eq!(out, format!("node/{node} drained (1 actor suspended)\n"));
    assert_eq!(up.status_of("c1"), "SUSPENDED");
    assert_eq!(the_node(&up).1, "Ready,SchedulingDisabled");
    assert_eq!(free_workers(&up), 0, "no free worker on a drained node");
    let err = up.fails(&["resume", "actor", "c1", "-a", "team-a"]);
    assert!(
        err.contains("failed to resume actor")
            && err.contains("FailedPrecondition")
            && err.contains("no free worker"),
        "{err}"
    );
    let a = up.curl("/a/team-a/c1/").await;
    assert_eq!(
        a.status, 503,
        "the router has no capacity either: {}",
        a.body
    );
    assert!(a.body.contains("no worker freed up"), "{}", a.body);
    // A resume attempt the router made for the request may still be rolling back (its
    // RESUMING is transient); it ends SUSPENDED, with no worker taken.
    eventually("c1 back to SUSPENDED", || up.status_of("c1") == "SUSPENDED");
    assert_eq!(free_workers(&up), 0);
    // Draining again is harmless.
    let out = up.ok(&["drain", "node", &node]);
    assert_eq!(out, format!("node/{node} drained (0 actors suspended)\n"));

    let err = up.fails(&["drain", "node", "no-such-node"]);
    assert!(
        err.contains("failed to drain node") && err.contains("NotFound"),
        "{err}"
    );
    let err = up.fails(&["drain", "node", "Bad_Name"]);
    assert!(err.contains("InvalidArgument"), "{err}");

    let out = up.ok(&["uncordon", "node", &node]);
    assert_eq!(out, format!("node/{node} uncordoned\n"));
    assert_eq!(the_node(&up).1, "Ready");
    eventually("workers back on the node", || free_workers(&up) > 0);
    let resumed = up.ok(&["resume", "actor", "c1", "-a", "team-a"]);
    assert!(resumed.contains("RUNNING"), "{resumed}");
    let a = up.curl("/a/team-a/c1/").await;
    assert_eq!((a.status, a.body.as_str()), (200, "3"), "the count goes on");
    up.stop();
}
