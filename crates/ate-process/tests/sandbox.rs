//! Real runc and CRIU tests of the process sandbox class: Full snapshots, snapshots taken
//! frozen, and egress. Skipped, with the reason printed, when not root, when runc or
//! python3 is missing, or (Full scope) without CRIU.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ate_process::{ProcessError, Sandbox, unpack_dirs};
use common::*;

/// What the test agent's ticker reports (`tick` mode).
#[derive(Debug)]
struct Ticks {
    memory: u64,
    gap_ms: u64,
    /// Ticks that found the counter file not holding the count last written: (on file,
    /// written).
    mismatches: Vec<(u64, u64)>,
}

/// The ticker's state; a program that does not answer within 5 s (frozen) fails the test.
async fn ticks(s: &Sandbox) -> Ticks {
    let (status, body) = tokio::time::timeout(Duration::from_secs(5), get(s, "/tick"))
        .await
        .expect("the program answers (it is not left frozen)");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    Ticks {
        memory: v["memory"].as_u64().unwrap(),
        gap_ms: v["gap_ms"].as_u64().unwrap(),
        mismatches: v["mismatches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m[0].as_u64().unwrap(), m[1].as_u64().unwrap()))
            .collect(),
    }
}

/// Waits until the ticker's count reaches `n`.
async fn ticked(s: &Sandbox, n: u64) -> Ticks {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = ticks(s).await;
        if t.memory >= n {
            return t;
        }
        assert!(Instant::now() < deadline, "the ticker is stuck at {t:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes snapshot files to `snap` and unpacks their `/data` into `data`; returns the
/// counter the snapshot holds.
fn unpack_data(files: &[(String, bytes::Bytes)], snap: &Path, data: &Path) -> u64 {
    std::fs::create_dir_all(snap).unwrap();
    let mut on_disk: Vec<(String, PathBuf)> = Vec::new();
    for (name, bytes) in files {
        std::fs::write(snap.join(name), bytes).unwrap();
        on_disk.push((name.clone(), snap.join(name)));
    }
    unpack_dirs(&on_disk, &[("/data".into(), data.to_path_buf())]).unwrap();
    std::fs::read_to_string(data.join("counter"))
        .unwrap()
        .parse()
        .unwrap()
}

/// Makes packing a durable dir take long enough (a few hundred ms in a debug build) that
/// a program running on meanwhile would be seen to.
const BALLAST: usize = 8 << 20;

/// Takes a snapshot of a ticking program and checks that the program did not tick while
/// it was taken (the dump, if any, and the packing), and that it was thawed after (it
/// answers). Returns the snapshot files and the ticker's state after.
async fn frozen_snapshot(
    a: &Sandbox,
    images: Option<&Path>,
) -> (Vec<(String, bytes::Bytes)>, Ticks) {
    assert_eq!(get(a, "/tick-reset").await.1, "ok");
    let t = Instant::now();
    let files = snapshot(a, images).await.unwrap();
    let took = t.elapsed().as_millis() as u64;
    let after = ticks(a).await;
    let scope = if images.is_some() { "full" } else { "data" };
    eprintln!(
        "TIMING {scope} snapshot {took} ms; the program's longest pause {} ms",
        after.gap_ms
    );
    // Without one freeze over the whole snapshot the ticker pauses a few ms at most, or
    // for CRIU's own freeze during a dump; frozen, it pauses for all of the snapshot but
    // the `runc pause` and `runc resume` around it, well over half of it with the ballast.
    assert!(
        after.gap_ms >= took / 2,
        "the program ran during its {scope} snapshot: paused {} ms of {took} ms",
        after.gap_ms
    );
    (files, after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_snapshot_is_taken_with_the_program_frozen() {
    let f = fixture().await;
    let Some(host) = host(&f.state, false) else {
        return;
    };
    let (data, logs) = (f.data.clone(), f.logs.clone());
    std::fs::write(data.join("ballast.bin"), vec![7u8; BALLAST]).unwrap();
    let a = host
        .start(launch("t9-data", "tick", &data, &agent_path(), &logs))
        .await
        .unwrap();
    ticked(&a, 50).await;
    let (files, after) = frozen_snapshot(&a, None).await;
    assert!(after.mismatches.is_empty(), "{after:?}");
    let on_file = unpack_data(
        &files,
        &f.data.with_file_name("snap"),
        &f.data.with_file_name("restored"),
    );
    assert!(on_file <= after.memory, "{on_file} vs {after:?}");
    ticked(&a, after.memory + 20).await;

    // A program that exited by itself cannot be frozen, nor change its dir: a Data
    // snapshot packs it as it is.
    let pids = live_pids_with("/ate/agent.py");
    assert_eq!(pids.len(), 1, "{pids:?}");
    std::process::Command::new("kill")
        .args(["-9", &pids[0].to_string()])
        .status()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), a.exited())
        .await
        .unwrap();
    let files = snapshot(&a, None).await.unwrap();
    assert!(files.iter().any(|(n, _)| n == "data.tar"));
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_snapshot_is_taken_frozen_so_memory_and_files_agree() {
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let Some(host) = host(&state, true) else {
        return;
    };
    let logs = Logs::default();
    let data_a = tmp.path().join("data-a");
    std::fs::create_dir_all(&data_a).unwrap();
    std::fs::write(data_a.join("ballast.bin"), vec![7u8; BALLAST]).unwrap();
    let a = host
        .start(launch("t10-a", "tick", &data_a, &agent_path(), &logs))
        .await
        .unwrap();
    ticked(&a, 100).await;

    let images = tmp.path().join("images");
    let (files, _) = frozen_snapshot(&a, Some(&images)).await;

    // Restored elsewhere, its memory continues from the instant its files were packed:
    // the counter file holds the count it last wrote (or the next one, when the freeze
    // came between writing the file and noting it in memory).
    let data_b = tmp.path().join("data-b");
    let on_file = unpack_data(&files, &tmp.path().join("snap-b"), &data_b);
    let b = host
        .restore(
            launch("t10-b", "tick", &data_b, &agent_path(), &logs),
            &images,
        )
        .await
        .unwrap();
    let restored = ticked(&b, on_file + 20).await;
    assert!(
        restored
            .mismatches
            .iter()
            .all(|(file, written)| *file == written + 1),
        "memory and files of the snapshot disagree: {restored:?}"
    );
    b.stop().await;

    // Control: dumping and then packing with the program running in between (the order
    // without one freeze) gives a file from the memory's future, and the ticker sees it.
    // A dump that caught the ticker mid-write cannot be restored once the file moved on;
    // then take another.
    let mut seen = None;
    for attempt in 0..3 {
        let images_c = tmp.path().join(format!("images-c{attempt}"));
        a.checkpoint(&images_c, true).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let files = pack(&[("/data".into(), data_a.clone())]).unwrap();
        let data_c = tmp.path().join(format!("data-c{attempt}"));
        unpack_data(
            &files,
            &tmp.path().join(format!("snap-c{attempt}")),
            &data_c,
        );
        let name = format!("t10-c{attempt}");
        match host
            .restore(
                launch(&name, "tick", &data_c, &agent_path(), &logs),
                &images_c,
            )
            .await
        {
            Ok(c) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                seen = Some(ticks(&c).await);
                c.stop().await;
                break;
            }
            Err(e) => eprintln!("control restore {attempt} failed: {e}"),
        }
    }
    let seen = seen.expect("a control restore");
    assert!(
        seen.mismatches
            .iter()
            .any(|(file, written)| *file > written + 1),
        "the check must catch a snapshot packed while the program ran: {seen:?}"
    );
    a.stop().await;
    assert!(runc_list(&state).is_empty());
    assert!(leftovers(&state, "bundles").is_empty());
}

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
    for (name, bytes) in pack(&[("/data".into(), data_a.clone())]).unwrap() {
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
