//! Durable dirs as snapshot files. Each dir becomes `<stem>.tar` plus `<stem>-index.json`
//! listing every regular file's path, size and sha256, so a restore verifies each file
//! and a damaged or tampered snapshot is refused instead of silently restored. The stem
//! comes from the path inside the sandbox (`/data` -> `data`, `/var/lib/x` ->
//! `var-lib-x`), which is the same on both sides of a snapshot.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::ProcessError;
use crate::tarsafe::{self, Rules, hex};

/// Largest index of a durable dir read at a restore (64 MiB, some 300 000 files): it is
/// parsed whole in memory, so a bigger one is refused before it is read.
pub const MAX_INDEX_BYTES: u64 = 64 << 20;

/// Packs each durable dir into a tar and an index. Returns (file name, content); names
/// use only `[A-Za-z0-9._-]`. Symlinks are stored as links; sockets, fifos and devices
/// are skipped. Call it while the program is stopped or frozen (after a checkpoint).
pub fn pack_dirs(dirs: &[(String, PathBuf)]) -> Result<Vec<(String, Bytes)>, ProcessError> {
    let stems = stems(dirs);
    let mut out = Vec::new();
    for ((inside, host), stem) in dirs.iter().zip(stems) {
        let mut builder = tar::Builder::new(Vec::new());
        builder.follow_symlinks(false);
        let mut files = BTreeMap::new();
        walk(host, Path::new(""), &mut builder, &mut files)?;
        let tar = builder
            .into_inner()
            .map_err(|e| ProcessError::io("packing", host, e))?;
        let index = json!({
            "dir": inside,
            "files": files.iter().map(|(p, (size, sha))| json!({"path": p, "size": size, "sha256": sha}))
                .collect::<Vec<_>>(),
        });
        let index = serde_json::to_vec_pretty(&index)
            .map_err(|e| ProcessError::io("encoding index of", host, std::io::Error::other(e)))?;
        out.push((format!("{stem}.tar"), Bytes::from(tar)));
        out.push((format!("{stem}-index.json"), Bytes::from(index)));
    }
    Ok(out)
}

/// Empties each host dir and restores its content from files made by `pack_dirs`
/// (`files`: name -> path on disk), verifying every file's size and digest against the
/// index and refusing entries that would escape the dir. On any error the dir is left
/// empty.
pub fn unpack_dirs(
    files: &[(String, PathBuf)],
    dirs: &[(String, PathBuf)],
) -> Result<(), ProcessError> {
    let stems = stems(dirs);
    for ((inside, host), stem) in dirs.iter().zip(stems) {
        let tar_name = format!("{stem}.tar");
        let index_name = format!("{stem}-index.json");
        let find = |name: &str| {
            files
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, p)| p.clone())
                .ok_or_else(|| snap(name, format!("missing for durable dir {inside}")))
        };
        let (tar_path, index_path) = (find(&tar_name)?, find(&index_name)?);
        let expected = read_index(&index_name, &index_path)?;
        std::fs::create_dir_all(host).map_err(|e| ProcessError::io("creating", host, e))?;
        empty_dir(host)?;
        let result = File::open(&tar_path)
            .map_err(|e| ProcessError::io("opening", &tar_path, e))
            .and_then(|f| {
                let rules = Rules {
                    hard_links: false,
                    skip_special: false,
                    keep_owner: false,
                };
                tarsafe::extract(std::io::BufReader::new(f), host, rules)
                    .map_err(|why| snap(&tar_name, why))
            })
            .and_then(|got| verify(&tar_name, &expected, &got));
        if let Err(e) = result {
            let _ = empty_dir(host);
            return Err(e);
        }
    }
    Ok(())
}

fn verify(
    name: &str,
    expected: &BTreeMap<String, (u64, String)>,
    got: &tarsafe::Extracted,
) -> Result<(), ProcessError> {
    for (path, (size, sha)) in expected {
        match got.get(path) {
            None => {
                return Err(snap(
                    name,
                    format!("file {path} listed in the index is missing"),
                ));
            }
            Some((s, d)) if s != size || d != sha => {
                return Err(snap(
                    name,
                    format!("file {path} does not match its digest in the index"),
                ));
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = got.keys().find(|p| !expected.contains_key(*p)) {
        return Err(snap(name, format!("file {extra} is not in the index")));
    }
    Ok(())
}

fn read_index(name: &str, path: &Path) -> Result<BTreeMap<String, (u64, String)>, ProcessError> {
    let size = std::fs::metadata(path)
        .map_err(|e| ProcessError::io("reading", path, e))?
        .len();
    if size > MAX_INDEX_BYTES {
        return Err(snap(
            name,
            format!("{size} bytes, over the limit of {MAX_INDEX_BYTES}"),
        ));
    }
    let text = std::fs::read(path).map_err(|e| ProcessError::io("reading", path, e))?;
    let v: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| snap(name, format!("not JSON: {e}")))?;
    let mut out = BTreeMap::new();
    for f in v["files"]
        .as_array()
        .ok_or_else(|| snap(name, "no files list".into()))?
    {
        let (Some(p), Some(size), Some(sha)) =
            (f["path"].as_str(), f["size"].as_u64(), f["sha256"].as_str())
        else {
            return Err(snap(name, "an entry lacks path, size or sha256".into()));
        };
        out.insert(p.to_string(), (size, sha.to_string()));
    }
    Ok(out)
}

fn walk(
    root: &Path,
    rel: &Path,
    builder: &mut tar::Builder<Vec<u8>>,
    files: &mut BTreeMap<String, (u64, String)>,
) -> Result<(), ProcessError> {
    let dir = root.join(rel);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| ProcessError::io("reading", &dir, e))?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = rel.join(entry.file_name());
        let meta =
            std::fs::symlink_metadata(&path).map_err(|e| ProcessError::io("reading", &path, e))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            builder
                .append_dir(&name, &path)
                .map_err(|e| ProcessError::io("packing", &path, e))?;
            walk(root, &name, builder, files)?;
        } else if ft.is_symlink() || ft.is_file() {
            builder
                .append_path_with_name(&path, &name)
                .map_err(|e| ProcessError::io("packing", &path, e))?;
            if ft.is_file() {
                let digest = sha256_file(&path)?;
                files.insert(name.to_string_lossy().into_owned(), (meta.len(), digest));
            }
        } else {
            tracing::warn!(path = %path.display(), "skipping socket, fifo or device in durable dir");
        }
    }
    Ok(())
}

fn sha256_file(path: &Path) -> Result<String, ProcessError> {
    let mut f = File::open(path).map_err(|e| ProcessError::io("reading", path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| ProcessError::io("reading", path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// Removes everything inside `dir` (not following symlinks), keeping `dir` itself.
fn empty_dir(dir: &Path) -> Result<(), ProcessError> {
    for entry in std::fs::read_dir(dir).map_err(|e| ProcessError::io("reading", dir, e))? {
        let entry = entry.map_err(|e| ProcessError::io("reading", dir, e))?;
        let path = entry.path();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        let r = if is_dir {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        r.map_err(|e| ProcessError::io("emptying", &path, e))?;
    }
    Ok(())
}

/// File name stems for each dir, unique and made of `[A-Za-z0-9._-]`.
fn stems(dirs: &[(String, PathBuf)]) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for (inside, _) in dirs {
        let base: String = inside
            .trim_matches('/')
            .chars()
            .map(|c| match c {
                '/' => '-',
                c if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' => c,
                _ => '_',
            })
            .collect();
        let base = if base.is_empty() || base.starts_with('.') {
            format!("dir{base}")
        } else {
            base
        };
        let mut stem = base.clone();
        let mut n = 2;
        while seen.contains(&stem) {
            stem = format!("{base}-{n}");
            n += 1;
        }
        seen.push(stem);
    }
    seen
}

fn snap(file: &str, reason: String) -> ProcessError {
    ProcessError::Snapshot {
        file: file.to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_are_safe_and_unique() {
        let d = |s: &str| (s.to_string(), PathBuf::from("/x"));
        assert_eq!(
            stems(&[
                d("/data"),
                d("/var/lib/x"),
                d("/var-lib/x"),
                d("/"),
                d("/a b")
            ]),
            vec!["data", "var-lib-x", "var-lib-x-2", "dir", "a_b"]
        );
    }
}
