//! Real runc and CRIU tests of the process sandbox class: Full snapshots and egress.
//! Skipped, with the reason printed, when not root, when runc or python3 is missing, or
//! (Full scope) without CRIU.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use ate_process::{ProcessError, pack_dirs, unpack_dirs};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_and_restore_under_another_name() {
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let Some(host) = host(&state, true) else {
        return;
    };
    let (data_a, data_b) = (tmp.path().join("data-a"), tmp.path().join("data-b"));
    std::fs::create_dir_all(&data_a).unwrap();
    let logs = Logs::default();
    let upstream = serve_text("hello from the host").await;
    let with_egress = |mut l: ate_process::Launch| {
        l.egress = vec![format!("127.0.0.2:{upstream}")];
        l
    };

    let t = Instant::now();
    let a = host
        .start(with_egress(launch(
            "t1-a",
            "serve",
            &data_a,
            &agent_path(),
            &logs,
        )))
        .await
        .unwrap();
    let cold_ms = t.elapsed().as_millis();
    for n in 1..=3 {
        assert_eq!(get(&a, "/count").await, (200, n.to_string()));
    }
    assert_eq!(get(&a, "/tmpw").await.1, "ok");

    // An open connection makes the dump fail; the program keeps running.
    let held = a.connect().await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let err = a
        .checkpoint(&tmp.path().join("images-busy"), false)
        .await
        .unwrap_err();
    assert!(matches!(err, ProcessError::Criu { .. }), "{err}");
    eprintln!("checkpoint with an open connection: {err}");
    drop(held);
    assert_eq!(get(&a, "/file").await.1, "3");

    // Leave-running checkpoint first: the program continues untouched.
    let live = tmp.path().join("images-live");
    a.checkpoint(&live, true).await.unwrap();
    assert_eq!(get(&a, "/count").await.1, "4");

    let images = tmp.path().join("images");
    let t = Instant::now();
    a.checkpoint(&images, false).await.unwrap();
    let dump_ms = t.elapsed().as_millis();
    assert!(
        runc_list(&state).is_empty(),
        "the checkpointed container is gone"
    );
    let image_bytes = dir_size(&images);
    if std::env::var_os("ATE_LIST_IMAGES").is_some() {
        let mut names: Vec<_> = std::fs::read_dir(&images)
            .unwrap()
            .flatten()
            .map(|e| (e.file_name(), e.metadata().unwrap().len()))
            .collect();
        names.sort();
        eprintln!("IMAGES {names:?}");
    }

    // Durable dir to another host path through the snapshot files.
    let snap = tmp.path().join("snap");
    std::fs::create_dir_all(&snap).unwrap();
    let mut files = Vec::new();
    for (name, bytes) in pack_dirs(&[("/data".into(), data_a.clone())]).unwrap() {
        std::fs::write(snap.join(&name), &bytes).unwrap();
        files.push((name.clone(), snap.join(&name)));
    }
    unpack_dirs(&files, &[("/data".into(), data_b.clone())]).unwrap();
    // The module/agent file also moves to another host path.
    let agent_b = tmp.path().join("agent-copy.py");
    std::fs::copy(agent_path(), &agent_b).unwrap();

    let logs_b = Logs::default();
    let t = Instant::now();
    let b = host
        .restore(
            with_egress(launch("t1-b", "serve", &data_b, &agent_b, &logs_b)),
            &images,
        )
        .await
        .unwrap();
    let restore_ms = t.elapsed().as_millis();
    assert_eq!(
        get(&b, "/count").await,
        (200, "5".into()),
        "memory preserved"
    );
    assert_eq!(get(&b, "/file").await.1, "5", "durable file restored");
    assert_eq!(get(&b, "/tmpr").await.1, "kept in tmpfs");
    let fetched = get(&b, &format!("/fetch?url=http://127.0.0.2:{upstream}/"))
        .await
        .1;
    assert_eq!(
        fetched, "200 hello from the host",
        "egress proxy after restore"
    );
    // Request latency through connect() (python's backlog is 5: no connect floods).
    let t = Instant::now();
    for _ in 0..20 {
        assert_eq!(get(&b, "/file").await.0, 200);
    }
    let request_us = t.elapsed().as_micros() / 20;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let restored_logs = logs_b.lock().unwrap().clone();
    assert!(
        restored_logs.iter().any(|(_, l)| l.contains("GET /count")),
        "logs flow after restore: {restored_logs:?}"
    );
    eprintln!(
        "TIMING cold-start-to-ready {cold_ms} ms; checkpoint {dump_ms} ms; image {image_bytes} bytes; \
         restore-to-ready {restore_ms} ms; GET via connect() {request_us} us"
    );

    // A second generation: restore the restored container's checkpoint again.
    let images2 = tmp.path().join("images2");
    let t = Instant::now();
    b.checkpoint(&images2, false).await.unwrap();
    let dump2 = t.elapsed().as_millis();
    let t = Instant::now();
    let c = host
        .restore(
            launch("t1-c", "serve", &data_b, &agent_b, &logs_b),
            &images2,
        )
        .await
        .unwrap();
    eprintln!(
        "TIMING second checkpoint {dump2} ms; restore-to-ready {} ms; image {} bytes",
        t.elapsed().as_millis(),
        dir_size(&images2)
    );
    assert_eq!(get(&c, "/count").await.1, "6");
    c.stop().await;
    c.stop().await;
    assert!(runc_list(&state).is_empty());
    assert!(leftovers(&state, "netns").is_empty());
    assert!(leftovers(&state, "bundles").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_goes_only_through_the_proxy_to_allowed_hosts() {
    let f = fixture().await;
    let Some(host) = host(&f.state, false) else {
        return;
    };
    let allowed = serve_text("hello from the host").await;
    let denied = serve_text("secret").await;
    let (data, logs) = (f.data.clone(), f.logs.clone());
    let mut l = launch("t5-egress", "serve", &data, &agent_path(), &logs);
    // 127.0.0.2, not 127.0.0.1: the driver sets NO_PROXY=localhost,127.0.0.1 so the
    // program's own local connections bypass the proxy.
    l.egress = vec![format!("127.0.0.2:{allowed}")];
    let s = host.start(l).await.unwrap();

    let ok = get(&s, &format!("/fetch?url=http://127.0.0.2:{allowed}/x"))
        .await
        .1;
    assert_eq!(ok, "200 hello from the host");
    let no = get(&s, &format!("/fetch?url=http://127.0.0.2:{denied}/x"))
        .await
        .1;
    assert_eq!(
        no,
        format!("403 egress to 127.0.0.2:{denied} is not allowed by the template")
    );
    let tunnel = get(&s, &format!("/connect?host=127.0.0.2&port={allowed}"))
        .await
        .1;
    assert_eq!(tunnel, "tunnel hello from the host");
    let tunnel_denied = get(&s, &format!("/connect?host=127.0.0.2&port={denied}"))
        .await
        .1;
    assert_eq!(tunnel_denied, "HTTP/1.1 403 Forbidden");
    let direct = get(&s, &format!("/direct?url=http://127.0.0.2:{allowed}/x"))
        .await
        .1;
    assert!(
        direct.starts_with("error"),
        "direct connection must fail: {direct}"
    );
    s.stop().await;
}
