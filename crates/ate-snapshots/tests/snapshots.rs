//! Snapshot storage on a real directory through `file://`: round trips, verification,
//! size limits, retention, and the node cache.
#![allow(clippy::unwrap_used)]

use ate_model::{ActorRef, SnapshotScope};
use ate_snapshots::{
    MAX_MANIFEST_BYTES, Manifest, SnapshotCache, SnapshotError, SnapshotFile, SnapshotStore,
    new_snapshot_id,
};
use ate_testkit::files_under;
use bytes::Bytes;
use std::io::Read;

/// No size limit: the tests of limits set their own.
const ANY: u64 = u64::MAX;

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

fn sources(files: Vec<(String, Bytes)>) -> Vec<SnapshotFile> {
    files
        .into_iter()
        .map(|(n, b)| SnapshotFile::bytes(n, b))
        .collect()
}

async fn write(s: &SnapshotStore, actor: &ActorRef, id: &str, seed: u8) {
    s.write(
        actor,
        id,
        "wasm",
        SnapshotScope::Full,
        "ate/test",
        sources(files(seed, 70_000)),
        ANY,
    )
    .await
    .expect("write");
}

/// Reads a whole snapshot through a scratch directory: its manifest and its files, in
/// the manifest's order.
async fn read(
    s: &SnapshotStore,
    actor: &ActorRef,
    id: &str,
) -> Result<(Manifest, Vec<(String, Bytes)>), SnapshotError> {
    let to = tempfile::tempdir().unwrap();
    let m = s.read_into(actor, id, to.path(), ANY).await?;
    let files = m
        .files
        .iter()
        .map(|f| {
            let data = std::fs::read(to.path().join(&f.name)).unwrap();
            (f.name.clone(), Bytes::from(data))
        })
        .collect();
    Ok((m, files))
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
            sources(files(3, 1 << 20)),
            ANY,
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
    let (back, got) = read(&s, &actor, &id).await.unwrap();
    assert_eq!(back, m);
    assert_eq!(got, files(3, 1 << 20));
}

#[tokio::test]
async fn corrupt_or_incomplete_snapshots_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    let actor = ActorRef::new("team-a", "x");
    write(&s, &actor, "0001-a", 5).await;
    let snap = dir.path().join("snapshots/team-a/x/0001-a");
    // Replaces memory.bin's object, and its compressed size in the manifest to match (a
    // mismatch alone is refused earlier: see the test of compressed sizes).
    let replace = |object: &[u8]| {
        std::fs::write(snap.join("memory.bin.zst"), object).unwrap();
        let mpath = snap.join("manifest.json");
        let mut m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
        m["files"][0]["compressedSize"] = (object.len() as u64).into();
        std::fs::write(&mpath, serde_json::to_vec(&m).unwrap()).unwrap();
    };

    // Another valid zstd stream with different content: the checksum catches it.
    replace(&zstd::bulk::compress(&vec![9u8; 70_000], 3).unwrap());
    match read(&s, &actor, "0001-a").await {
        Err(SnapshotError::Corrupt { reason, .. }) => {
            assert!(reason.contains("sha256"), "{reason}")
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // Garbage instead of zstd.
    replace(b"not zstd");
    match read(&s, &actor, "0001-a").await {
        Err(SnapshotError::Corrupt { reason, .. }) => {
            assert!(reason.contains("cannot decompress"), "{reason}")
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // A stream cut short.
    let whole = zstd::bulk::compress(&vec![9u8; 70_000], 3).unwrap();
    replace(&whole[..whole.len() - 3]);
    assert!(matches!(
        read(&s, &actor, "0001-a").await,
        Err(SnapshotError::Corrupt { .. })
    ));
    // A file gone.
    std::fs::remove_file(snap.join("memory.bin.zst")).unwrap();
    assert!(matches!(
        read(&s, &actor, "0001-a").await,
        Err(SnapshotError::Incomplete { .. })
    ));
    // No manifest: an interrupted write.
    write(&s, &actor, "0002-b", 6).await;
    std::fs::remove_file(dir.path().join("snapshots/team-a/x/0002-b/manifest.json")).unwrap();
    match read(&s, &actor, "0002-b").await {
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
        read(&s, &actor, "0003-c").await,
        Err(SnapshotError::Corrupt { .. })
    ));
    assert!(matches!(
        read(&s, &actor, "0009-z").await,
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
                vec![SnapshotFile::bytes(name, Bytes::from_static(b"x"))],
                ANY,
            )
            .await;
        assert!(
            matches!(r, Err(SnapshotError::InvalidName { .. })),
            "{name}: {r:?}"
        );
    }
    let r = read(&s, &actor, "../../etc").await;
    assert!(matches!(r, Err(SnapshotError::InvalidName { .. })), "{r:?}");
    let r = read(&s, &ActorRef::new("..", "x"), "0001-a").await;
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
    assert_eq!(read(&s, &actor, &ids[4]).await.unwrap().1, files(4, 70_000));
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
    let a = cache.get_or_fetch(&s, &x, "0001-a", ANY).await.unwrap();
    assert_eq!(
        std::fs::read(a.file("memory.bin").unwrap()).unwrap(),
        files(2, 70_000)[0].1
    );
    cache.get_or_fetch(&s, &y, "0001-a", ANY).await.unwrap();
    assert_eq!(cache.held(), ["team-a/x/0001-a", "team-a/y/0001-a"]);
    // Use x again, then bring in z: y is the least recently used and goes.
    std::fs::remove_dir_all(dir.path().join("snapshots/team-a/x/0001-a")).unwrap();
    cache
        .get_or_fetch(&s, &x, "0001-a", ANY)
        .await
        .expect("served from the cache");
    cache.get_or_fetch(&s, &z, "0001-a", ANY).await.unwrap();
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
    cache.get_or_fetch(&s, &y, "0001-a", ANY).await.unwrap();
    cache.get_or_fetch(&s, &x, "0001-a", ANY).await.unwrap();
    cache.get_or_fetch(&s, &x, "0002-b", ANY).await.unwrap();
    assert_eq!(cache.held(), ["team-a/x/0002-b", "team-a/y/0001-a"]);
    assert!(!dir.path().join("cache/team-a/x/0001-a").exists());
    // An older one fetched again (a fallback restore) leaves the newer one in place.
    cache.get_or_fetch(&s, &x, "0001-a", ANY).await.unwrap();
    assert_eq!(
        cache.held(),
        ["team-a/x/0001-a", "team-a/x/0002-b", "team-a/y/0001-a"]
    );
    // The next newer one replaces both; another actor's is never touched.
    cache.get_or_fetch(&s, &x, "0003-c", ANY).await.unwrap();
    assert_eq!(cache.held(), ["team-a/x/0003-c", "team-a/y/0001-a"]);
    let one = cache.total_bytes();
    cache.get_or_fetch(&s, &y, "0001-a", ANY).await.unwrap();
    assert_eq!(cache.total_bytes(), one, "sizes stay accounted");
}

#[tokio::test]
async fn the_cache_refuses_actor_names_that_could_escape() {
    let dir = tempfile::tempdir().unwrap();
    let cache = SnapshotCache::new(dir.path().join("cache"), 1 << 20).unwrap();
    for actor in [ActorRef::new("..", "x"), ActorRef::new("team-a", "../..")] {
        let r = cache.stage(&actor, "0001-a");
        assert!(
            matches!(r, Err(SnapshotError::InvalidName { .. })),
            "{actor}: {r:?}"
        );
    }
    let mut staged = cache
        .stage(&ActorRef::new("team-a", "x"), "0001-a")
        .unwrap();
    let r = staged.add(SnapshotFile::bytes("../x", Bytes::from_static(b"x")));
    assert!(matches!(r, Err(SnapshotError::InvalidName { .. })), "{r:?}");
    drop(staged);
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["cache"], "nothing written beside the cache");
    assert!(
        files_under(&dir.path().join("cache")).is_empty(),
        "a dropped staging leaves nothing"
    );
}

#[tokio::test]
async fn staged_files_are_moved_in_described_and_committed_whole() {
    let dir = tempfile::tempdir().unwrap();
    let cache = SnapshotCache::new(dir.path().join("cache"), 1 << 30).unwrap();
    let actor = ActorRef::new("team-a", "x");
    let image = dir.path().join("image.bin");
    std::fs::write(&image, vec![5u8; 300_000]).unwrap();
    let mut staged = cache.stage(&actor, "0001-a").unwrap();
    staged.add(SnapshotFile::path("image.bin", &image)).unwrap();
    staged
        .add(SnapshotFile::bytes("state.json", Bytes::from_static(b"{}")))
        .unwrap();
    staged
        .add(SnapshotFile::reader(
            "log.txt",
            std::io::Cursor::new(b"lines".to_vec()),
        ))
        .unwrap();
    assert!(!image.exists(), "a path source is handed over, not copied");
    let r = staged.add(SnapshotFile::bytes("state.json", Bytes::from_static(b"{}")));
    assert!(matches!(r, Err(SnapshotError::InvalidName { .. })), "{r:?}");
    let entries = staged.describe().unwrap();
    let sizes: Vec<(&str, u64)> = entries.iter().map(|e| (e.name.as_str(), e.size)).collect();
    assert_eq!(
        sizes,
        [("image.bin", 300_000), ("state.json", 2), ("log.txt", 5)]
    );
    assert!(
        cache.held().is_empty(),
        "nothing is cached before the commit"
    );
    let m = Manifest::new(&actor, "0001-a", "wasm", SnapshotScope::Full, "t", entries);
    let cached = cache.commit(staged, m).unwrap();
    assert_eq!(cache.held(), ["team-a/x/0001-a"]);
    assert_eq!(cache.total_bytes(), 300_007);
    assert_eq!(
        std::fs::read(cached.file("log.txt").unwrap()).unwrap(),
        b"lines"
    );
    // Everything under the cache is the committed snapshot: no staging is left.
    assert_eq!(files_under(&dir.path().join("cache")).len(), 3);
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
    match read(&s, &actor, "0001-a").await {
        Err(SnapshotError::Corrupt { reason, .. }) => assert!(
            reason.contains("manifest.json is 1048577 bytes, over the limit of 1048576"),
            "{reason}"
        ),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    text.truncate(MAX_MANIFEST_BYTES as usize);
    std::fs::write(&mpath, &text).unwrap();
    read(&s, &actor, "0001-a")
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

/// A store in a new temp dir holding snapshot `0001-a` of `team-a/x`, and the directory
/// of that snapshot.
async fn one_snapshot() -> (
    tempfile::TempDir,
    SnapshotStore,
    ActorRef,
    std::path::PathBuf,
) {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    let actor = ActorRef::new("team-a", "x");
    write(&s, &actor, "0001-a", 1).await;
    let snap = dir.path().join("snapshots/team-a/x/0001-a");
    (dir, s, actor, snap)
}

#[tokio::test]
async fn sizes_in_the_manifest_never_drive_allocation() {
    let (_dir, s, actor, snap) = one_snapshot().await;
    let mpath = snap.join("manifest.json");
    let original = std::fs::read_to_string(&mpath).unwrap();
    let with_size = |size: u64, compressed: Option<u64>| {
        let mut m: serde_json::Value = serde_json::from_str(&original).unwrap();
        m["files"][0]["size"] = size.into();
        if let Some(c) = compressed {
            m["files"][0]["compressedSize"] = c.into();
        }
        std::fs::write(&mpath, serde_json::to_vec(&m).unwrap()).unwrap();
    };
    // A file that inflates to more than its manifest says is refused after one byte more.
    with_size(10, None);
    match read(&s, &actor, "0001-a").await {
        Err(SnapshotError::Corrupt { reason, .. }) => assert!(
            reason.contains("decompresses to more than the 10 bytes the manifest says"),
            "{reason}"
        ),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // A petabyte claimed by the manifest and by the frame header alike: refused, where
    // reserving the claimed size up front aborted the process.
    let lying = lying_frame(1 << 50, b"tiny");
    std::fs::write(snap.join("memory.bin.zst"), &lying).unwrap();
    for size in [1 << 50, u64::MAX] {
        with_size(size, Some(lying.len() as u64));
        let r = read(&s, &actor, "0001-a").await;
        assert!(
            matches!(r, Err(SnapshotError::Corrupt { .. })),
            "{size}: {r:?}"
        );
        // Under a real limit the claim alone is refused, before any object is read.
        let to = tempfile::tempdir().unwrap();
        let r = s.read_into(&actor, "0001-a", to.path(), 1 << 30).await;
        assert!(
            matches!(r, Err(SnapshotError::TooLarge { limit, .. }) if limit == 1 << 30),
            "{size}: {r:?}"
        );
        assert!(files_under(to.path()).is_empty());
    }
}

#[tokio::test]
async fn a_compressed_size_that_disagrees_with_the_object_is_refused_before_reading() {
    let (_dir, s, actor, snap) = one_snapshot().await;
    let mpath = snap.join("manifest.json");
    let original = std::fs::read_to_string(&mpath).unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&original).unwrap();
    // globals.json is second: the first file must not be read either.
    let real = manifest["files"][1]["compressedSize"].as_u64().unwrap();
    let refused = |expect: &'static str| {
        let s = s.clone();
        let actor = actor.clone();
        async move {
            let to = tempfile::tempdir().unwrap();
            match s.read_into(&actor, "0001-a", to.path(), ANY).await {
                Err(SnapshotError::Corrupt { reason, .. }) => {
                    assert!(reason.contains(expect), "{reason}")
                }
                other => panic!("expected Corrupt, got {other:?}"),
            }
            assert!(
                files_under(to.path()).is_empty(),
                "refused before a file was read"
            );
        }
    };
    for claimed in [real - 1, real + 1, 0] {
        let mut m = manifest.clone();
        m["files"][1]["compressedSize"] = claimed.into();
        std::fs::write(&mpath, serde_json::to_vec(&m).unwrap()).unwrap();
        refused("globals.json: object is").await;
    }
    // A compressed size no zstd frame of that many bytes can have.
    let mut m = manifest.clone();
    m["files"][1]["compressedSize"] = (1u64 << 40).into();
    std::fs::write(&mpath, serde_json::to_vec(&m).unwrap()).unwrap();
    refused("is more than zstd makes of").await;
    // The manifest is right but the object grew (appended to, replaced).
    std::fs::write(&mpath, &original).unwrap();
    let zst = snap.join("globals.json.zst");
    let mut object = std::fs::read(&zst).unwrap();
    object.extend_from_slice(b"more");
    std::fs::write(&zst, &object).unwrap();
    refused("globals.json: object is").await;
    object.truncate(object.len() - 4);
    std::fs::write(&zst, &object).unwrap();
    read(&s, &actor, "0001-a").await.expect("whole again");
}

#[tokio::test]
async fn snapshots_over_max_bytes_are_refused_and_leave_nothing_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    let actor = ActorRef::new("team-a", "big");
    let actor_dir = dir.path().join("snapshots/team-a/big");
    let write = |files: Vec<SnapshotFile>, max: u64| {
        s.write(
            &actor,
            "0001-a",
            "process",
            SnapshotScope::Data,
            "t",
            files,
            max,
        )
    };
    // Sizes known up front: refused before anything is written.
    let on_disk = dir.path().join("dir.tar");
    std::fs::write(&on_disk, vec![1u8; 600_000]).unwrap();
    let r = write(
        vec![
            SnapshotFile::path("dir.tar", &on_disk),
            SnapshotFile::bytes("dir-index.json", Bytes::from(vec![b' '; 1000])),
        ],
        600_500,
    )
    .await;
    match r {
        Err(e @ SnapshotError::TooLarge { size, limit, .. }) => {
            assert_eq!((size, limit), (601_000, 600_500));
            assert_eq!(
                e.to_string(),
                "snapshot 0001-a of team-a/big is too large: 601000 bytes, over spec.snapshots.maxBytes of 600500"
            );
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(files_under(&actor_dir).is_empty());
    // A source whose size shows only as it streams, past the limit after more than one
    // part went up (incompressible bytes): the upload is aborted and the files already
    // written, the manifest-less snapshot, are removed.
    let limit = (2 * ate_snapshots::PART_BYTES) as u64;
    let endless = Noise(7).take(limit + 1_000_000);
    let r = write(
        vec![
            SnapshotFile::bytes("first.json", Bytes::from_static(b"{}")),
            SnapshotFile::reader("stream.bin", endless),
        ],
        limit,
    )
    .await;
    match r {
        Err(SnapshotError::TooLarge { size, limit: l, .. }) => {
            assert_eq!(l, limit);
            assert!(size > limit, "{size}");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(
        files_under(&actor_dir).is_empty(),
        "left behind: {:?}",
        files_under(&actor_dir)
    );
    assert!(s.list(&actor).await.unwrap().is_empty());
    // At the limit exactly is fine.
    let m = write(
        vec![SnapshotFile::reader("stream.bin", Noise(7).take(limit))],
        limit,
    )
    .await
    .expect("at the limit");
    assert_eq!(m.total_size(), limit);
    assert!(
        m.files[0].compressed_size > ate_snapshots::PART_BYTES as u64,
        "went up in parts"
    );
    let (_, back) = read(&s, &actor, "0001-a").await.unwrap();
    let mut expect = Vec::new();
    Noise(7).take(limit).read_to_end(&mut expect).unwrap();
    assert!(
        back[0].1 == expect,
        "byte-identical after a multipart upload"
    );
}

/// Incompressible bytes (xorshift), as many as taken.
struct Noise(u64);

impl std::io::Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let bytes = self.0.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(buf.len())
    }
}
