//! What a node reads back from a snapshot, all of it untrusted (object storage, or a
//! snapshot another node wrote):
//!
//! - mode 0: `manifest.json` of a snapshot (`Manifest::from_json`), and snapshot file
//!   names and ids;
//! - mode 1: a process actor's durable-dir snapshot, its index and tar
//!   (`ate_process::unpack_dirs`);
//! - mode 2: a template rootfs tarball (`ate_process::prepare_rootfs`);
//! - mode 3: a whole snapshot read back from a `file://` store (`SnapshotStore::read_into`):
//!   its manifest and its `memory.bin.zst`, whatever sizes they claim.
//!
//! The first byte picks the mode (modulo 4). Modes 1 and 3 then take a big-endian u16,
//! the length of the index (or manifest), then the index (manifest), then the tar (the
//! zstd file); mode 2 takes the tar.
//!
//! The archives are extracted under `$TMPDIR/ate-fuzz-tar/` (a fixed path, so that seeds
//! can aim absolute paths and links at `$TMPDIR/ate-fuzz-tar/outside`), next to a canary
//! file; after every input nothing may exist there but the extraction, the inputs and the
//! untouched canary, with no second link to it. Run one instance per `TMPDIR`.
#![no_main]

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ate_model::ActorRef;
use ate_snapshots::{Manifest, SnapshotStore, validate_file_name, validate_id};
use libfuzzer_sys::fuzz_target;

const CANARY: &[u8] = b"untouched";

/// Most a snapshot read back may hold: whatever sizes a manifest claims, a read never
/// writes more than this.
const MAX_READ: u64 = 64 << 20;

fn snapshot_manifest(data: &[u8]) {
    // The actor and id it must name: as it says if it says so, else a fixed pair.
    let value: serde_json::Value = serde_json::from_slice(data).unwrap_or_default();
    let field = |k: &str, default: &str| value[k].as_str().unwrap_or(default).to_string();
    let actor = ActorRef::new(field("atespace", "team-a"), field("actor", "counter"));
    let id = field("id", "0001-a");
    if let Ok(m) = Manifest::from_json(data, &actor, &id) {
        assert_eq!(
            (&m.id, &m.atespace, &m.actor),
            (&id, &actor.atespace, &actor.id)
        );
        for f in &m.files {
            let mut parts = Path::new(&f.name).components();
            assert!(
                matches!(parts.next(), Some(std::path::Component::Normal(n)) if n == f.name.as_str())
                    && parts.next().is_none(),
                "file name {:?} is not one plain path component",
                f.name
            );
        }
        let json = serde_json::to_vec(&m).expect("a manifest serialises");
        let again = Manifest::from_json(&json, &actor, &id).expect("its own json is accepted");
        assert_eq!(again, m);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if validate_file_name(text).is_ok() {
            assert!(text.len() <= 128 && !text.contains('/') && text != "." && text != "..");
            assert_eq!(
                Path::new(text).file_name().and_then(|n| n.to_str()),
                Some(text)
            );
        }
        if validate_id(text).is_ok() {
            assert!(
                (1..=64).contains(&text.len())
                    && text
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{text:?}"
            );
        }
    }
}

/// A fresh sandbox: `outside/canary` and `in/` (the input files); extractions go to
/// `dst/` and `cache/`.
fn sandbox() -> PathBuf {
    let base = std::env::temp_dir().join("ate-fuzz-tar");
    for dir in ["dst", "cache", "in", "outside"] {
        let d = base.join(dir);
        if d.exists() {
            std::fs::remove_dir_all(&d).expect("clearing the sandbox");
        }
    }
    std::fs::create_dir_all(base.join("outside")).expect("creating the sandbox");
    std::fs::create_dir_all(base.join("in")).expect("creating the sandbox");
    std::fs::write(base.join("outside/canary"), CANARY).expect("writing the canary");
    base
}

/// Every path below `dir`, without following symlinks.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk(&path, out);
        }
        out.push(path);
    }
}

/// Nothing outside `dst/` and `cache/` changed, and no special file was extracted.
fn check_contained(base: &Path, inputs: &[&str], hard_links: bool) {
    let mut all = Vec::new();
    walk(base, &mut all);
    let mut expected: BTreeSet<PathBuf> = ["dst", "cache", "in", "outside", "outside/canary"]
        .iter()
        .map(|p| base.join(p))
        .collect();
    expected.extend(inputs.iter().map(|p| base.join("in").join(p)));
    for path in &all {
        let inside = path.starts_with(base.join("dst")) || path.starts_with(base.join("cache"));
        assert!(
            inside || expected.contains(path),
            "{} was written outside the extraction dir",
            path.display()
        );
        if !inside {
            continue;
        }
        let meta = std::fs::symlink_metadata(path).expect("stat");
        let kind = meta.file_type();
        use std::os::unix::fs::FileTypeExt;
        assert!(
            !(kind.is_block_device()
                || kind.is_char_device()
                || kind.is_fifo()
                || kind.is_socket()),
            "{} is a device, fifo or socket",
            path.display()
        );
        if !hard_links && kind.is_file() {
            assert_eq!(meta.nlink(), 1, "{} is a hard link", path.display());
        }
    }
    let canary = base.join("outside/canary");
    assert_eq!(
        std::fs::read(&canary).expect("the canary"),
        CANARY,
        "the canary changed"
    );
    let meta = std::fs::symlink_metadata(&canary).expect("the canary");
    assert!(meta.is_file(), "the canary was replaced");
    assert_eq!(
        meta.nlink(),
        1,
        "the canary was hard-linked from the extraction"
    );
}

fn durable_dirs(data: &[u8]) {
    let Some((index, tar)) = split_prefixed(data) else {
        return;
    };
    let base = sandbox();
    let (tar_path, index_path) = (base.join("in/data.tar"), base.join("in/data-index.json"));
    std::fs::write(&tar_path, tar).expect("writing the tar");
    std::fs::write(&index_path, index).expect("writing the index");
    let files = [
        ("data.tar".to_string(), tar_path),
        ("data-index.json".to_string(), index_path),
    ];
    let dst = base.join("dst");
    let result = ate_process::unpack_dirs(&files, &[("/data".to_string(), dst.clone())]);
    check_contained(&base, &["data.tar", "data-index.json"], false);
    if result.is_err() {
        let mut left = Vec::new();
        walk(&dst, &mut left);
        assert!(left.is_empty(), "a refused snapshot left {left:?}");
    }
}

fn rootfs(tar: &[u8]) {
    let base = sandbox();
    let img = base.join("in/root.tar");
    std::fs::write(&img, tar).expect("writing the tar");
    let cache = base.join("cache");
    let result = ate_process::prepare_rootfs(&img, &cache);
    check_contained(&base, &["root.tar"], true);
    match result {
        Ok(root) => assert!(root.starts_with(&cache), "{}", root.display()),
        Err(_) => {
            let mut left = Vec::new();
            walk(&cache, &mut left);
            assert!(left.is_empty(), "a refused image left {left:?}");
        }
    }
}

/// `data` split after a big-endian u16 length prefix.
fn split_prefixed(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let [a, b, rest @ ..] = data else {
        return None;
    };
    let len = usize::from(u16::from_be_bytes([*a, *b]));
    Some(rest.split_at(len.min(rest.len())))
}

fn stored_snapshot(data: &[u8]) {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let Some((manifest, packed)) = split_prefixed(data) else {
        return;
    };
    let base = sandbox();
    let dir = base.join("in/snapshots/team-a/counter/0001-a");
    std::fs::create_dir_all(&dir).expect("creating the snapshot dir");
    std::fs::write(dir.join("manifest.json"), manifest).expect("writing the manifest");
    std::fs::write(dir.join("memory.bin.zst"), packed).expect("writing the file");
    let location = format!("file://{}", base.join("in/snapshots").display());
    let store = SnapshotStore::open(&location).expect("opening the store");
    let actor = ActorRef::new("team-a", "counter");
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    });
    let dst = base.join("dst");
    std::fs::create_dir_all(&dst).expect("creating the destination");
    if let Ok(m) = runtime.block_on(store.read_into(&actor, "0001-a", &dst, MAX_READ)) {
        for entry in &m.files {
            let written = std::fs::metadata(dst.join(&entry.name))
                .map(|f| f.len())
                .expect("a file read back exists");
            assert_eq!(written, entry.size, "{}: size", entry.name);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => snapshot_manifest(rest),
        1 => durable_dirs(rest),
        2 => rootfs(rest),
        _ => stored_snapshot(rest),
    }
});
