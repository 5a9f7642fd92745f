//! Snapshot storage on a real directory through `file://`: round trips, verification,
//! retention, and the node cache.

use ate_model::{ActorRef, SnapshotScope};
use ate_snapshots::{
    MAX_MANIFEST_BYTES, Manifest, SnapshotCache, SnapshotError, SnapshotStore, describe_files,
    new_snapshot_id,
};
use bytes::Bytes;

fn store(dir: &tempfile::TempDir) -> SnapshotStore {
    SnapshotStore::open(&format!(
        "file://{}",
        dir.path().join("snapshots").display()
    ))
    .expect("open")
}

fn files(seed: u8, size: usize) -> Vec<(String, Bytes)> {
    let memory: Vec<u8> = (0..size).map(|i| (i as u8).wrapping_mul(seed)).collect();
    vec![
        ("memory.bin".into(), Bytes::from(memory)),
        (
            "globals.json".into(),
            Bytes::from(format!("{{\"counter\":{seed}}}")),
        ),
    ]
}

async fn write(s: &SnapshotStore, actor: &ActorRef, id: &str, seed: u8) {
    s.write(
        actor,
        id,
        "wasm",
        SnapshotScope::Full,
        "ate/test",
        files(seed, 70_000),
    )
    .await
    .expect("write");
}

#[tokio::test]
async fn round_trip_is_byte_identical_and_laid_out_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    let actor = ActorRef::new("team-a", "counter-1");
    let id = new_snapshot_id();
    let m = s
        .write(
            &actor,
            &id,
            "wasm",
            SnapshotScope::Full,
            "ate/test",
            files(3, 1 << 20),
        )
        .await
        .unwrap();
    assert_eq!(m.files.len(), 2);
    assert!(
        m.files[0].compressed_size < m.files[0].size,
        "files are compressed"
    );
    let on_disk = dir.path().join("snapshots/team-a/counter-1").join(&id);
    for f in ["manifest.json", "memory.bin.zst", "globals.json.zst"] {
        assert!(on_disk.join(f).exists(), "{f}");
    }
    let (read, got) = s.read(&actor, &id).await.unwrap();
    assert_eq!(read, m);
    assert_eq!(got, files(3, 1 << 20));
}

#[tokio::test]
async fn corrupt_or_incomplete_snapshots_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    let actor = ActorRef::new("team-a", "x");
    write(&s, &actor, "0001-a", 5).await;
    let snap = dir.path().join("snapshots/team-a/x/0001-a");

    // Another valid zstd stream with different content: the checksum catches it.
    let other = zstd::bulk::compress(&vec![9u8; 70_000], 3).unwrap();
    std::fs::write(snap.join("memory.bin.zst"), other).unwrap();
    match s.read(&actor, "0001-a").await {
        Err(SnapshotError::Corrupt { reason, .. }) => {
            assert!(reason.contains("sha256"), "{reason}")
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // Garbage instead of zstd.
    std::fs::write(snap.join("memory.bin.zst"), b"not zstd").unwrap();
    assert!(matches!(
        s.read(&actor, "0001-a").await,
        Err(SnapshotError::Corrupt { .. })
    ));
    // A file gone.
    std::fs::remove_file(snap.join("memory.bin.zst")).unwrap();
    assert!(matches!(
        s.read(&actor, "0001-a").await,
        Err(SnapshotError::Incomplete { .. })
    ));
    // No manifest: an interrupted write.
    write(&s, &actor, "0002-b", 6).await;
    std::fs::remove_file(dir.path().join("snapshots/team-a/x/0002-b/manifest.json")).unwrap();
    match s.read(&actor, "0002-b").await {
        Err(SnapshotError::Incomplete { reason, .. }) => {
            assert!(reason.contains("manifest"), "{reason}")
        }
        other => panic!("expected Incomplete, got {other:?}"),
    }
    // A manifest that names files outside the snapshot.
    write(&s, &actor, "0003-c", 7).await;
    let mpath = dir.path().join("snapshots/team-a/x/0003-c/manifest.json");
    let text = std::fs::read_to_string(&mpath)
        .unwrap()
        .replace("globals.json", "../../escape");
    std::fs::write(&mpath, text).unwrap();
    assert!(matches!(
        s.read(&actor, "0003-c").await,
        Err(SnapshotError::Corrupt { .. })
    ));
    assert!(matches!(
        s.read(&actor, "0009-z").await,
        Err(SnapshotError::NotFound { .. })
    ));
}

#[tokio::test]
async fn names_that_could_escape_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    let actor = ActorRef::new("team-a", "x");
    for name in ["../x", "a/b", "..", "manifest.json"] {
        let r = s
            .write(
                &actor,
                "0001-a",
                "wasm",
                SnapshotScope::Full,
                "t",
                vec![(name.into(), Bytes::from_static(b"x"))],
            )
            .await;
        assert!(
            matches!(r, Err(SnapshotError::InvalidName { .. })),
            "{name}: {r:?}"
        );
    }
    let r = s.read(&actor, "../../etc").await;
    assert!(matches!(r, Err(SnapshotError::InvalidName { .. })), "{r:?}");
    let r = s.read(&ActorRef::new("..", "x"), "0001-a").await;
    assert!(matches!(r, Err(SnapshotError::InvalidName { .. })), "{r:?}");
    assert!(SnapshotStore::open("ftp://x/y").is_err());
    assert!(SnapshotStore::open("not a url").is_err());
}

#[tokio::test]
async fn retention_keeps_the_newest_and_actor_delete_removes_all() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    let actor = ActorRef::new("team-a", "x");
    let other = ActorRef::new("team-b", "x");
    let mut ids = Vec::new();
    for i in 0..5u8 {
        let id = new_snapshot_id();
        write(&s, &actor, &id, i).await;
        ids.push(id);
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    write(&s, &other, "0001-a", 1).await;
    assert_eq!(s.list(&actor).await.unwrap(), ids);
    let deleted = s.retain(&actor, 2, &[ids[0].as_str()]).await.unwrap();
    assert_eq!(deleted, ids[1..3].to_vec(), "a protected snapshot is kept");
    assert_eq!(
        s.list(&actor).await.unwrap(),
        [&ids[..1], &ids[3..]].concat()
    );
    assert_eq!(s.retain(&actor, 2, &[]).await.unwrap(), ids[..1].to_vec());
    assert_eq!(s.list(&actor).await.unwrap(), ids[3..].to_vec());
    assert_eq!(s.read(&actor, &ids[4]).await.unwrap().1, files(4, 70_000));
    assert_eq!(s.delete_actor(&actor).await.unwrap(), 2);
    assert!(s.list(&actor).await.unwrap().is_empty());
    assert_eq!(
        s.list(&other).await.unwrap(),
        ["0001-a"],
        "another atespace is untouched"
    );
}

#[tokio::test]
async fn the_cache_serves_hits_and_evicts_least_recently_used() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    let [x, y, z] = ["x", "y", "z"].map(|id| ActorRef::new("team-a", id));
    for a in [&x, &y, &z] {
        write(&s, a, "0001-a", 2).await;
    }
    // Each snapshot is a little over 70 kB: the cache holds two.
    let cache = SnapshotCache::new(dir.path().join("cache"), 150_000).unwrap();
    let a = cache.get_or_fetch(&s, &x, "0001-a").await.unwrap();
    assert_eq!(
        std::fs::read(a.file("memory.bin").unwrap()).unwrap(),
        files(2, 70_000)[0].1
    );
    cache.get_or_fetch(&s, &y, "0001-a").await.unwrap();
    assert_eq!(cache.held(), ["team-a/x/0001-a", "team-a/y/0001-a"]);
    // Use x again, then bring in z: y is the least recently used and goes.
    std::fs::remove_dir_all(dir.path().join("snapshots/team-a/x/0001-a")).unwrap();
    cache
        .get_or_fetch(&s, &x, "0001-a")
        .await
        .expect("served from the cache");
    cache.get_or_fetch(&s, &z, "0001-a").await.unwrap();
    assert_eq!(cache.held(), ["team-a/x/0001-a", "team-a/z/0001-a"]);
    assert!(cache.total_bytes() <= 150_000);
    assert!(
        !dir.path().join("cache/team-a/y/0001-a").exists(),
        "evicted files are removed"
    );
    assert!(a.file("../x").is_err());
}

#[tokio::test]
async fn a_newer_snapshot_of_an_actor_supersedes_the_cached_older_ones() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    let (x, y) = (ActorRef::new("team-a", "x"), ActorRef::new("team-a", "y"));
    for id in ["0001-a", "0002-b", "0003-c"] {
        write(&s, &x, id, 1).await;
    }
    write(&s, &y, "0001-a", 1).await;
    let cache = SnapshotCache::new(dir.path().join("cache"), 1 << 30).unwrap();
    cache.get_or_fetch(&s, &y, "0001-a").await.unwrap();
    cache.get_or_fetch(&s, &x, "0001-a").await.unwrap();
    cache.get_or_fetch(&s, &x, "0002-b").await.unwrap();
    assert_eq!(cache.held(), ["team-a/x/0002-b", "team-a/y/0001-a"]);
    assert!(!dir.path().join("cache/team-a/x/0001-a").exists());
    // An older one fetched again (a fallback restore) leaves the newer one in place.
    cache.get_or_fetch(&s, &x, "0001-a").await.unwrap();
    assert_eq!(
        cache.held(),
        ["team-a/x/0001-a", "team-a/x/0002-b", "team-a/y/0001-a"]
    );
    // The next newer one replaces both; another actor's is never touched.
    cache.get_or_fetch(&s, &x, "0003-c").await.unwrap();
    assert_eq!(cache.held(), ["team-a/x/0003-c", "team-a/y/0001-a"]);
    let one = cache.total_bytes();
    cache.get_or_fetch(&s, &y, "0001-a").await.unwrap();
    assert_eq!(cache.total_bytes(), one, "sizes stay accounted");
}

#[tokio::test]
async fn the_cache_refuses_actor_names_that_could_escape() {
    let dir = tempfile::tempdir().unwrap();
    let cache = SnapshotCache::new(dir.path().join("cache"), 1 << 20).unwrap();
    let data = files(1, 10);
    for actor in [ActorRef::new("..", "x"), ActorRef::new("team-a", "../..")] {
        let manifest = Manifest::new(
            &actor,
            "0001-a",
            "wasm",
            SnapshotScope::Full,
            "t",
            describe_files(&data).unwrap(),
        );
        let r = cache.insert(&actor, manifest, &data);
        assert!(
            matches!(r, Err(SnapshotError::InvalidName { .. })),
            "{actor}: {r:?}"
        );
    }
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["cache"], "nothing written beside the cache");
}

#[tokio::test]
async fn manifests_over_the_size_limit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    let actor = ActorRef::new("team-a", "x");
    write(&s, &actor, "0001-a", 1).await;
    let mpath = dir.path().join("snapshots/team-a/x/0001-a/manifest.json");
    // Still a valid manifest, padded with whitespace to one byte over the limit.
    let mut text = std::fs::read(&mpath).unwrap();
    text.resize(MAX_MANIFEST_BYTES as usize + 1, b' ');
    std::fs::write(&mpath, &text).unwrap();
    match s.read(&actor, "0001-a").await {
        Err(SnapshotError::Corrupt { reason, .. }) => assert!(
            reason.contains("manifest.json is 1048577 bytes, over the limit of 1048576"),
            "{reason}"
        ),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    text.truncate(MAX_MANIFEST_BYTES as usize);
    std::fs::write(&mpath, &text).unwrap();
    s.read(&actor, "0001-a")
        .await
        .expect("at the limit is fine");
}

/// A zstd frame whose header claims `claimed` bytes of content but holds `data` only.
fn lying_frame(claimed: u64, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x28, 0xb5, 0x2f, 0xfd];
    // Frame header: an 8-byte content size, single segment, no checksum, no dictionary.
    f.push(0xe0);
    f.extend_from_slice(&claimed.to_le_bytes());
    // One last raw block.
    let header = 1 | ((data.len() as u32) << 3);
    f.extend_from_slice(&header.to_le_bytes()[..3]);
    f.extend_from_slice(data);
    f
}

#[tokio::test]
async fn sizes_in_the_manifest_never_drive_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    let actor = ActorRef::new("team-a", "x");
    write(&s, &actor, "0001-a", 1).await;
    let snap = dir.path().join("snapshots/team-a/x/0001-a");
    let mpath = snap.join("manifest.json");
    let original = std::fs::read_to_string(&mpath).unwrap();
    let with_size = |size: u64| {
        let mut m: serde_json::Value = serde_json::from_str(&original).unwrap();
        m["files"][0]["size"] = size.into();
        std::fs::write(&mpath, serde_json::to_vec(&m).unwrap()).unwrap();
    };
    // A file that inflates to more than its manifest says is refused after one byte more.
    with_size(10);
    match s.read(&actor, "0001-a").await {
        Err(SnapshotError::Corrupt { reason, .. }) => {
            assert!(reason.contains("11 bytes, manifest says 10"), "{reason}")
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // A petabyte claimed by the manifest and by the frame header alike: refused, where
    // reserving the claimed size up front aborted the process.
    std::fs::write(snap.join("memory.bin.zst"), lying_frame(1 << 50, b"tiny")).unwrap();
    for size in [1 << 50, u64::MAX] {
        with_size(size);
        let r = s.read(&actor, "0001-a").await;
        assert!(
            matches!(r, Err(SnapshotError::Corrupt { .. })),
            "{size}: {r:?}"
        );
    }
}
