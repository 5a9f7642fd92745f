//! What snapshots leave on a local disk is the owner's only, whatever the umask: the
//! directories of a `file://` store and of the node cache are 0700 and their files 0600,
//! and a store directory an older version made readable by others is tightened on open.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ate_model::{ActorRef, SnapshotScope};
use ate_snapshots::{SnapshotCache, SnapshotFile, SnapshotStore};
use bytes::Bytes;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every directory and file under `root` (itself included), with its mode.
fn modes(root: &Path) -> Vec<(std::path::PathBuf, bool, u32)> {
    let mut out = vec![(root.to_path_buf(), true, mode(root))];
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(modes(&path));
        } else {
            out.push((path.clone(), false, mode(&path)));
        }
    }
    out
}

fn assert_private(root: &Path) {
    let all = modes(root);
    assert!(
        all.iter().any(|(_, dir, _)| !dir),
        "files under {}",
        root.display()
    );
    for (path, dir, mode) in all {
        let want = if dir { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{}", path.display());
    }
}

#[tokio::test]
async fn store_and_cache_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("snapshots");
    let store = SnapshotStore::open(&format!("file://{}", root.display())).unwrap();
    let actor = ActorRef::new("team-a", "agent-1");
    let files = vec![SnapshotFile::bytes(
        "memory.bin",
        Bytes::from(vec![7u8; 4096]),
    )];
    store
        .write(
            &actor,
            "0001-a",
            "wasm",
            SnapshotScope::Full,
            "ate/test",
            files,
            u64::MAX,
        )
        .await
        .unwrap();
    assert_private(&root);

    let cache_dir = dir.path().join("cache");
    let cache = SnapshotCache::new(&cache_dir, 1 << 20).unwrap();
    cache
        .get_or_fetch(&store, &actor, "0001-a", u64::MAX)
        .await
        .unwrap();
    assert_private(&cache_dir);
}

#[test]
fn a_loose_store_directory_is_tightened_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("snapshots");
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    SnapshotStore::open(&format!("file://{}", root.display())).unwrap();
    assert_eq!(mode(&root), 0o700);
}
