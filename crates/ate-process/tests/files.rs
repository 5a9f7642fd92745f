//! Snapshot files of durable dirs and template rootfs images: round trips, tampering,
//! archives that try to escape their directory, and programs that change their dirs
//! while they are packed.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use ate_process::{MAX_INDEX_BYTES, ProcessError, pack_dirs, prepare_rootfs, unpack_dirs};
use common::*;

fn write_all(dir: &Path, files: &[(String, bytes::Bytes)]) -> Vec<(String, PathBuf)> {
    files
        .iter()
        .map(|(name, bytes)| {
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
                "{name}"
            );
            std::fs::write(dir.join(name), bytes).unwrap();
            (name.clone(), dir.join(name))
        })
        .collect()
}

#[test]
fn pack_unpack_round_trip_and_tampering() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst, snap) = (
        tmp.path().join("src"),
        tmp.path().join("dst"),
        tmp.path().join("snap"),
    );
    for d in [&src, &dst, &snap] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
    std::fs::write(src.join("a.txt"), "alpha").unwrap();
    std::fs::write(src.join("sub/deeper/b.bin"), vec![7u8; 100_000]).unwrap();
    std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
    std::fs::write(dst.join("stale"), "old").unwrap();

    let packed = pack(&[("/data".into(), src.clone())]).unwrap();
    let names: Vec<&str> = packed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["data.tar", "data-index.json"]);
    let files = write_all(&snap, &packed);
    unpack_dirs(&files, &[("/data".into(), dst.clone())]).unwrap();
    assert_eq!(std::fs::read_to_string(dst.join("a.txt")).unwrap(), "alpha");
    assert_eq!(
        std::fs::read(dst.join("sub/deeper/b.bin")).unwrap(),
        vec![7u8; 100_000]
    );
    assert_eq!(
        std::fs::read_link(dst.join("link")).unwrap(),
        Path::new("a.txt")
    );
    assert!(!dst.join("stale").exists(), "the dir was emptied first");

    // Flip one byte of a file's content inside the tar: digest mismatch.
    let mut tar = std::fs::read(snap.join("data.tar")).unwrap();
    let at = tar.windows(5).position(|w| w == b"alpha").unwrap();
    tar[at] = b'A';
    std::fs::write(snap.join("data.tar"), &tar).unwrap();
    let err = unpack_dirs(&files, &[("/data".into(), dst.clone())]).unwrap_err();
    assert!(matches!(err, ProcessError::Snapshot { .. }), "{err}");
    assert!(
        err.to_string().contains("a.txt does not match its digest"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(&dst).unwrap().count(),
        0,
        "left empty after a refusal"
    );
}

#[test]
fn packing_stops_at_the_size_limit_and_writes_to_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, out) = (tmp.path().join("src"), tmp.path().join("out"));
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(src.join("a.txt"), "alpha").unwrap();
    for i in 0..4 {
        std::fs::write(src.join(format!("sub/big-{i}.bin")), vec![i as u8; 1 << 20]).unwrap();
    }
    let dirs = [("/data".to_string(), src.clone())];
    let packed = pack_dirs(&dirs, &out, u64::MAX).unwrap();
    let names: Vec<&str> = packed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["data.tar", "data-index.json"]);
    let total: u64 = packed
        .iter()
        .map(|(_, p)| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(total > 4 << 20, "{total}");
    // Exactly the size it takes is within the limit.
    pack_dirs(&dirs, &out, total).expect("at the limit");
    // One byte less, or much less: refused, and the tar stops growing at the limit.
    for limit in [total - 1, 1 << 20] {
        std::fs::remove_dir_all(&out).unwrap();
        std::fs::create_dir_all(&out).unwrap();
        match pack_dirs(&dirs, &out, limit) {
            Err(e @ ProcessError::TooLarge { .. }) => {
                let ProcessError::TooLarge { size, limit: l } = e else {
                    unreachable!()
                };
                assert_eq!(l, limit);
                assert!(size > limit, "{size} vs {limit}");
                assert!(e.to_string().contains("spec.snapshots.maxBytes"), "{e}");
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        let tar = std::fs::metadata(out.join("data.tar")).map_or(0, |m| m.len());
        assert!(
            tar <= limit,
            "the tar reached {tar} past a limit of {limit}"
        );
    }
}

/// One packed durable dir, read back: each entry's path and kind, and each regular
/// file's size and sha256 computed from the bytes in the tar.
struct Packed {
    entries: Vec<(String, tar::EntryType)>,
    files: BTreeMap<String, (u64, String)>,
    tar: Vec<u8>,
}

/// Reads a `pack_dirs` result for one dir, asserting that the tar is well formed and that
/// its index lists exactly the tar's regular files with the size and digest of their
/// bytes in the tar.
fn read_packed(packed: &[(String, bytes::Bytes)]) -> Packed {
    let [(tar_name, tar), (index_name, index)] = packed else {
        panic!("one dir packs to two files: {packed:?}");
    };
    assert_eq!(
        (tar_name.as_str(), index_name.as_str()),
        ("data.tar", "data-index.json")
    );
    let mut entries = Vec::new();
    let mut files = BTreeMap::new();
    let mut archive = tar::Archive::new(&tar[..]);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let kind = entry.header().entry_type();
        if kind == tar::EntryType::Regular {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            assert_eq!(entry.header().size().unwrap(), bytes.len() as u64, "{path}");
            let sha: String = Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            files.insert(path.clone(), (bytes.len() as u64, sha));
        }
        entries.push((path, kind));
    }
    let index: serde_json::Value = serde_json::from_slice(index).unwrap();
    let listed: BTreeMap<String, (u64, String)> = index["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let path = f["path"].as_str().unwrap().to_string();
            let sha = f["sha256"].as_str().unwrap().to_string();
            (path, (f["size"].as_u64().unwrap(), sha))
        })
        .collect();
    assert_eq!(listed, files, "the index matches the bytes in the tar");
    Packed {
        entries,
        files,
        tar: tar.to_vec(),
    }
}

/// Runs `change` in a tight loop on its own thread until the returned guard is dropped;
/// the counter says how many changes it made.
struct Changer {
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn keep_changing(mut change: impl FnMut() + Send + 'static) -> Changer {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let (s, c) = (stop.clone(), count.clone());
    let thread = std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            change();
            c.fetch_add(1, Ordering::Relaxed);
        }
    });
    Changer {
        stop,
        count,
        thread: Some(thread),
    }
}

impl Drop for Changer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_dir_flipped_to_a_symlink_while_packing_never_packs_what_it_points_to() {
    const ROUNDS: usize = 1000;
    const MARKER: &[u8] = b"host secret that must never reach a snapshot";
    let tmp = tempfile::tempdir().unwrap();
    let (src, outside) = (tmp.path().join("src"), tmp.path().join("outside"));
    std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
    std::fs::create_dir_all(outside.join("deeper")).unwrap();
    std::fs::write(outside.join("marker"), MARKER).unwrap();
    std::fs::write(outside.join("deeper/marker"), MARKER).unwrap();
    std::fs::write(src.join("a.txt"), "alpha").unwrap();
    std::fs::write(src.join("sub/inner.txt"), "inner").unwrap();
    std::fs::write(src.join("sub/deeper/leaf.txt"), "leaf").unwrap();
    std::os::unix::fs::symlink(&outside, src.join("swap")).unwrap();

    // `sub` and `swap` trade places atomically, over and over: each name is a real
    // directory one moment and a symlink to `outside` the next.
    let (sub, swap) = (src.join("sub"), src.join("swap"));
    let flipper = keep_changing(move || {
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            &sub,
            rustix::fs::CWD,
            &swap,
            rustix::fs::RenameFlags::EXCHANGE,
        )
        .unwrap();
    });
    let (mut as_dir, mut as_link) = (0, 0);
    let mut failures = Vec::new();
    for round in 0..ROUNDS {
        // A failed pack is noted, not fatal at once: what matters first is that no
        // round packs anything from outside.
        let packed = match pack(&[("/data".into(), src.clone())]) {
            Ok(packed) => read_packed(&packed),
            Err(e) => {
                failures.push(format!("round {round}: {e}"));
                continue;
            }
        };
        assert!(
            !packed.tar.windows(MARKER.len()).any(|w| w == MARKER),
            "round {round}: a file outside the durable dir was packed: {:?}",
            packed.entries
        );
        assert!(
            packed.entries.iter().all(|(p, _)| !p.contains("marker")),
            "round {round}: {:?}",
            packed.entries
        );
        assert_eq!(
            packed.files.get("a.txt").map(|f| f.0),
            Some(5),
            "round {round}"
        );
        for (path, kind) in &packed.entries {
            match (path.as_str(), kind) {
                ("sub" | "swap", tar::EntryType::Directory) => as_dir += 1,
                ("sub" | "swap", tar::EntryType::Symlink) => as_link += 1,
                _ => {}
            }
        }
    }
    let flips = flipper.count.load(Ordering::Relaxed);
    drop(flipper);
    eprintln!("{ROUNDS} packs over {flips} flips: {as_dir} dir entries, {as_link} link entries");
    assert!(failures.is_empty(), "packing failed: {failures:?}");
    assert!(flips > 0 && as_dir > 0 && as_link > 0, "the race was run");
}

#[test]
fn a_file_changing_size_while_packing_is_packed_as_copied() {
    const ROUNDS: usize = 200;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("before.txt"), "before").unwrap();
    std::fs::write(src.join("z-after.txt"), "after").unwrap();
    let log = src.join("log.bin");
    let mut file = std::fs::File::create(&log).unwrap();
    // Grows by 4 KiB at a time and is cut back to nothing past 1 MiB, so the packer
    // meets a file both longer and shorter than it was a moment earlier.
    let writer = keep_changing(move || {
        let len = file.metadata().unwrap().len();
        if len > 1 << 20 {
            file.set_len(0).unwrap();
            file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        } else {
            file.write_all(&[b'x'; 4096]).unwrap();
        }
    });
    for round in 0..ROUNDS {
        let packed =
            pack(&[("/data".into(), src.clone())]).unwrap_or_else(|e| panic!("round {round}: {e}"));
        let packed = read_packed(&packed);
        let names: Vec<&str> = packed.files.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            ["before.txt", "log.bin", "z-after.txt"],
            "round {round}"
        );
    }
    let writes = writer.count.load(Ordering::Relaxed);
    drop(writer);
    assert!(writes > 0, "the file changed");
}

/// A raw ustar header for `name` (no validation, so it can say anything).
fn header(name: &str, kind: u8, size: usize, link: &str) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    h
}

fn malicious(entries: &[(&str, u8, &[u8], &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, data, link) in entries {
        out.extend_from_slice(&header(name, *kind, data.len(), link));
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

#[test]
fn unpack_refuses_entries_that_escape() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("parent", malicious(&[("../outside/evil", b'0', b"x", "")])),
        (
            "absolute",
            malicious(&[(&format!("{}/evil", outside.display()), b'0', b"x", "")]),
        ),
        (
            "through a symlink",
            malicious(&[
                ("esc", b'2', b"", outside.to_str().unwrap()),
                ("esc/evil", b'0', b"x", ""),
            ]),
        ),
        ("hard link", malicious(&[("hl", b'1', b"", "/etc/passwd")])),
        ("device", malicious(&[("dev", b'3', b"", "")])),
    ];
    for (what, tar) in cases {
        let dst = tmp.path().join(format!("dst-{}", what.replace(' ', "-")));
        let snap = tmp.path().join(format!("snap-{}", what.replace(' ', "-")));
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join("data.tar"), &tar).unwrap();
        std::fs::write(
            snap.join("data-index.json"),
            br#"{"dir":"/data","files":[]}"#,
        )
        .unwrap();
        let files = vec![
            ("data.tar".to_string(), snap.join("data.tar")),
            ("data-index.json".to_string(), snap.join("data-index.json")),
        ];
        let err = unpack_dirs(&files, &[("/data".into(), dst.clone())]).unwrap_err();
        assert!(
            matches!(err, ProcessError::Snapshot { .. }),
            "{what}: {err}"
        );
        assert_eq!(
            std::fs::read_dir(&outside).unwrap().count(),
            0,
            "{what}: wrote outside"
        );
        assert_eq!(
            std::fs::read_dir(&dst).unwrap().count(),
            0,
            "{what}: dst not emptied"
        );
    }
    // The same traversal in a rootfs image is refused too.
    let img = tmp.path().join("bad.tar");
    std::fs::write(&img, malicious(&[("../outside/evil", b'0', b"x", "")])).unwrap();
    let err = prepare_rootfs(&img, &tmp.path().join("cache")).unwrap_err();
    assert!(matches!(err, ProcessError::InvalidRootfs { .. }), "{err}");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
}

/// Every entry under `dir`, recursively, without following symlinks.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if std::fs::symlink_metadata(&path).unwrap().is_dir() {
            out.extend(tree(&path));
        }
        out.push(path);
    }
    out.sort();
    out
}

#[test]
fn unpack_refuses_every_hard_link_block_device_and_fifo() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "hard link inside",
            malicious(&[("a", b'0', b"x", ""), ("hl", b'1', b"", "a")]),
        ),
        ("block device", malicious(&[("blk", b'4', b"", "")])),
        ("fifo", malicious(&[("fifo", b'6', b"", "")])),
    ];
    for (what, tar) in cases {
        let slug = what.replace(' ', "-");
        let (dst, snap) = (
            tmp.path().join(format!("dst-{slug}")),
            tmp.path().join(format!("snap-{slug}")),
        );
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join("data.tar"), &tar).unwrap();
        std::fs::write(
            snap.join("data-index.json"),
            br#"{"dir":"/data","files":[]}"#,
        )
        .unwrap();
        let files = vec![
            ("data.tar".to_string(), snap.join("data.tar")),
            ("data-index.json".to_string(), snap.join("data-index.json")),
        ];
        let err = unpack_dirs(&files, &[("/data".into(), dst.clone())]).unwrap_err();
        assert!(err.to_string().contains("is not allowed"), "{what}: {err}");
        assert!(tree(&dst).is_empty(), "{what}: dst not emptied");
    }
}

#[test]
fn an_index_over_the_size_limit_is_refused_unread() {
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("dst");
    let index = tmp.path().join("data-index.json");
    // Sparse: the refusal must come from the size, before any reading.
    std::fs::File::create(&index)
        .unwrap()
        .set_len(MAX_INDEX_BYTES + 1)
        .unwrap();
    std::fs::write(tmp.path().join("data.tar"), malicious(&[])).unwrap();
    let files = vec![
        ("data.tar".to_string(), tmp.path().join("data.tar")),
        ("data-index.json".to_string(), index),
    ];
    let err = unpack_dirs(&files, &[("/data".into(), dst)]).unwrap_err();
    assert!(matches!(err, ProcessError::Snapshot { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("over the limit of {MAX_INDEX_BYTES}")),
        "{err}"
    );
}

#[test]
fn rootfs_images_cannot_escape_through_paths_or_links() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("canary"), "untouched").unwrap();
    let out = outside.to_str().unwrap().to_string();
    let canary = format!("{out}/canary");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "parent",
            malicious(&[("../../outside/evil", b'0', b"x", "")]),
        ),
        (
            "dot dot inside",
            malicious(&[("a/../../../outside/evil", b'0', b"x", "")]),
        ),
        (
            "absolute",
            malicious(&[(&format!("{out}/evil"), b'0', b"x", "")]),
        ),
        (
            "file through a symlink",
            malicious(&[("esc", b'2', b"", &out), ("esc/evil", b'0', b"x", "")]),
        ),
        (
            "directory through a symlink",
            malicious(&[("esc", b'2', b"", &out), ("esc/sub/", b'5', b"", "")]),
        ),
        (
            "directory over a symlink",
            malicious(&[("esc", b'2', b"", &out), ("esc", b'5', b"", "")]),
        ),
        (
            "hard link to a parent path",
            malicious(&[("hl", b'1', b"", "../../outside/canary")]),
        ),
        (
            "hard link to an absolute path",
            malicious(&[("hl", b'1', b"", &canary)]),
        ),
        (
            "hard link through a symlinked dir",
            malicious(&[("esc", b'2', b"", &out), ("hl", b'1', b"", "esc/canary")]),
        ),
        (
            "hard link to a symlink pointing outside",
            malicious(&[("ln", b'2', b"", &canary), ("hl", b'1', b"", "ln")]),
        ),
    ];
    for (i, (what, tar)) in cases.into_iter().enumerate() {
        let img = tmp.path().join(format!("bad-{i}.tar"));
        std::fs::write(&img, &tar).unwrap();
        let cache = tmp.path().join(format!("cache-{i}"));
        let err = prepare_rootfs(&img, &cache).unwrap_err();
        assert!(
            matches!(err, ProcessError::InvalidRootfs { .. }),
            "{what}: {err}"
        );
        assert_eq!(tree(&outside), [outside.join("canary")], "{what}");
        assert_eq!(
            std::fs::read_to_string(outside.join("canary")).unwrap(),
            "untouched",
            "{what}"
        );
        assert!(
            tree(&cache).is_empty(),
            "{what}: partial extraction left behind"
        );
    }
}

#[test]
fn rootfs_images_skip_devices_and_fifos_and_keep_inner_links() {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("root.tar");
    std::fs::write(
        &img,
        malicious(&[
            ("etc/hostname", b'0', b"box", ""),
            ("dev/null", b'3', b"", ""),
            ("dev/sda", b'4', b"", ""),
            ("run/fifo", b'6', b"", ""),
            ("etc/name", b'1', b"", "etc/hostname"),
            ("etc/abs", b'2', b"", "/etc/hostname"),
        ]),
    )
    .unwrap();
    let root = prepare_rootfs(&img, &tmp.path().join("cache")).unwrap();
    assert_eq!(
        std::fs::read_to_string(root.join("etc/name")).unwrap(),
        "box"
    );
    // Symlinks are kept as they are (they resolve inside the container's root).
    assert_eq!(
        std::fs::read_link(root.join("etc/abs")).unwrap(),
        Path::new("/etc/hostname")
    );
    for special in ["dev/null", "dev/sda", "run/fifo"] {
        assert!(
            std::fs::symlink_metadata(root.join(special)).is_err(),
            "{special} was created"
        );
    }
}

/// A tiny rootfs: dash and the two libraries it needs, as a .tar.gz.
fn dash_rootfs(path: &Path) -> bool {
    let files = [
        "/usr/bin/dash",
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/lib64/ld-linux-x86-64.so.2",
    ];
    if files.iter().any(|f| !Path::new(f).exists()) {
        return false;
    }
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::fast(),
    );
    let mut b = tar::Builder::new(gz);
    for f in files {
        b.append_path_with_name(std::fs::canonicalize(f).unwrap(), &f[1..])
            .unwrap();
    }
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    b.append_link(&mut h, "bin", "usr/bin").unwrap();
    b.into_inner().unwrap().finish().unwrap().flush().unwrap();
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_runs_in_a_prepared_rootfs() {
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("root.tar.gz");
    if !dash_rootfs(&img) {
        eprintln!("skipped: dash or its libraries are missing");
        return;
    }
    let cache = tmp.path().join("cache");
    let root = prepare_rootfs(&img, &cache).unwrap();
    assert_eq!(
        prepare_rootfs(&img, &cache).unwrap(),
        root,
        "extracted once"
    );
    assert!(root.join("usr/bin/dash").is_file());

    let state = tmp.path().join("state");
    let Some(host) = host(&state, false) else {
        return;
    };
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let logs = Logs::default();
    let mut l = launch("files-rootfs", "serve", &data, &agent_path(), &logs);
    l.rootfs = Some(root);
    l.command = vec![
        "/bin/dash".into(),
        "-c".into(),
        "echo in rootfs $PORT; exit 4".into(),
    ];
    let err = host.start(l).await.unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("exited with status 4"), "{text}");
    assert!(text.contains("in rootfs 8080"), "{text}");
}
