//! Real runc tests of a process sandbox's life: readiness failures, exits, limits and
//! cleanup (nothing may be left behind). Skipped, with the reason printed, when not
//! root or when runc or python3 is missing.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use ate_process::ProcessError;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_that_never_listens_is_not_ready_and_leaves_nothing() {
    let f = fixture().await;
    let Some(host) = host(&f.state, false) else {
        return;
    };
    let (state, data, logs) = (f.state.clone(), f.data.clone(), f.logs.clone());
    let mut l = launch("t3-quiet", "never-listen", &data, &agent_path(), &logs);
    l.readiness.timeout = Duration::from_secs(2);
    let t = Instant::now();
    let err = host.start(l).await.unwrap_err();
    let took = t.elapsed();
    assert!(matches!(err, ProcessError::NotReady { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with("not ready after 2s: connect to port 8080"),
        "{text}"
    );
    assert!(
        text.contains("not listening on purpose"),
        "tail in error: {text}"
    );
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert!(runc_list(&state).is_empty());
    assert!(leftovers(&state, "netns").is_empty());
    assert!(leftovers(&state, "bundles").is_empty());
    assert!(live_pids_with("never-listen").is_empty(), "no process left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exits_are_reported_with_their_status() {
    let f = fixture().await;
    let Some(host) = host(&f.state, false) else {
        return;
    };
    let (state, data, logs) = (f.state.clone(), f.data.clone(), f.logs.clone());

    let t = Instant::now();
    let err = host
        .start(launch("t4-exit", "exit3", &data, &agent_path(), &logs))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ProcessError::Exited { .. }), "{text}");
    assert!(
        text.starts_with("exited with status 3 before becoming ready"),
        "{text}"
    );
    assert!(text.contains("fatal: giving up"), "{text}");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "failed at once: {:?}",
        t.elapsed()
    );
    assert!(runc_list(&state).is_empty());

    // A command that does not exist: runc's own error comes back.
    let mut l = launch("t4-missing", "serve", &data, &agent_path(), &logs);
    l.command = vec!["no-such-program-ate".into()];
    let err = host.start(l).await.unwrap_err();
    assert!(err.to_string().contains("no-such-program-ate"), "{err}");
    assert!(runc_list(&state).is_empty());

    let s = host
        .start(launch("t4-kill", "serve", &data, &agent_path(), &logs))
        .await
        .unwrap();
    let pids = live_pids_with("/ate/agent.py");
    assert_eq!(pids.len(), 1, "{pids:?}");
    std::process::Command::new("kill")
        .args(["-9", &pids[0].to_string()])
        .status()
        .unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), s.exited())
        .await
        .unwrap();
    assert_eq!(msg, "killed by signal 9");
    // Several waiters see the same message.
    assert_eq!(s.exited().await, msg);
    s.stop().await;
    assert!(runc_list(&state).is_empty());
    assert!(leftovers(&state, "netns").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limit_kills_the_program() {
    let f = fixture().await;
    let Some(host) = host(&f.state, false) else {
        return;
    };
    let (data, logs) = (f.data.clone(), f.logs.clone());
    let mut l = launch("t6-oom", "serve", &data, &agent_path(), &logs);
    l.memory_limit_bytes = 64 << 20;
    let s = host.start(l).await.unwrap();
    let mut conn = s.connect().await.unwrap();
    conn.write_all(b"GET /hog HTTP/1.0\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = conn.read_to_end(&mut buf).await;
    assert!(
        buf.is_empty(),
        "the allocation must not succeed: {}",
        String::from_utf8_lossy(&buf)
    );
    let msg = tokio::time::timeout(Duration::from_secs(5), s.exited())
        .await
        .unwrap();
    assert_eq!(
        msg,
        format!(
            "killed by signal 9 (out of memory: limit {} bytes)",
            64 << 20
        )
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_removes_containers_of_a_forgotten_host() {
    let f = fixture().await;
    let Some(first) = host(&f.state, false) else {
        return;
    };
    let (state, data, logs) = (f.state.clone(), f.data.clone(), f.logs.clone());
    let s = first
        .start(launch("t7-left", "serve", &data, &agent_path(), &logs))
        .await
        .unwrap();
    // As if the node was SIGKILLed: no stop, no drop.
    std::mem::forget(s);
    std::mem::forget(first);
    assert_eq!(runc_list(&state), vec!["t7-left".to_string()]);
    assert_eq!(live_pids_with("/ate/agent.py").len(), 1);

    let second = host(&state, false).unwrap();
    second.sweep();
    assert!(runc_list(&state).is_empty());
    assert!(leftovers(&state, "netns").is_empty());
    assert!(leftovers(&state, "bundles").is_empty());
    assert!(
        settles(Duration::from_secs(2), || live_pids_with("/ate/agent.py")
            .is_empty())
        .await,
        "the program was killed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_sandbox_or_its_host_kills_the_container() {
    let f = fixture().await;
    let Some(host) = host(&f.state, false) else {
        return;
    };
    let (state, data, logs) = (f.state.clone(), f.data.clone(), f.logs.clone());
    let s = host
        .start(launch("t8-drop", "serve", &data, &agent_path(), &logs))
        .await
        .unwrap();
    drop(s);
    settles(Duration::from_secs(3), || {
        runc_list(&state).is_empty() && live_pids_with("/ate/agent.py").is_empty()
    })
    .await;
    assert!(runc_list(&state).is_empty());
    assert!(live_pids_with("/ate/agent.py").is_empty());
    assert!(leftovers(&state, "netns").is_empty());

    // A node shutting down drops its host: containers die even if a handle leaked.
    let s = host
        .start(launch("t8-host", "serve", &data, &agent_path(), &logs))
        .await
        .unwrap();
    std::mem::forget(s);
    drop(host);
    assert!(runc_list(&state).is_empty());
    assert!(leftovers(&state, "netns").is_empty());
    assert!(leftovers(&state, "bundles").is_empty());
    assert!(
        settles(Duration::from_secs(2), || live_pids_with("/ate/agent.py")
            .is_empty())
        .await
    );
}
