//! Durable dirs as snapshot files. Each dir becomes `<stem>.tar` plus `<stem>-index.json`
//! listing every regular file's path, size and sha256, so a restore verifies each file
//! and a damaged or tampered snapshot is refused instead of silently restored. The stem
//! comes from the path inside the sandbox (`/data` -> `data`, `/var/lib/x` ->
//! `var-lib-x`), which is the same on both sides of a snapshot.
//!
//! Packing writes the tar and the index to files in a directory the caller gives, a buffer
//! at a time, so a durable dir of any size costs a few buffers of memory; the bytes written
//! are counted against the snapshot's size limit, and packing stops as soon as they pass it.
//!
//! Invariant of packing: nothing outside a durable dir ever enters its snapshot, and the
//! index describes exactly the bytes in the tar. The dirs belong to the program, which
//! may replace any directory in them by a symlink (to `/`, to a host path) at any
//! moment, so the walk goes from directory descriptor to directory descriptor
//! (`openat` with `O_NOFOLLOW`, never a path from the root), stores symlinks as links
//! without following them, and takes each file's size and digest from the bytes it
//! copied into the tar rather than from an earlier `stat`.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, Dir, FileType, Mode, OFlags, fstat, openat, readlinkat, statat};
use rustix::io::Errno;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::ProcessError;
use crate::tarsafe::{self, Rules, hex};

/// Largest index of a durable dir read at a restore (64 MiB, some 300 000 files): it is
/// parsed whole in memory, so a bigger one is refused before it is read.
pub const MAX_INDEX_BYTES: u64 = 64 << 20;

/// Deepest directory nesting packed. The walk holds one open descriptor per level and
/// recurses once per level, so an unbounded tree made by the program could exhaust the
/// node's descriptors or stack; 256 levels is far beyond real data and far below both.
const MAX_DEPTH: usize = 256;

/// Bytes copied from a file at a time while packing it.
const COPY_CHUNK: usize = 64 * 1024;

/// A tar being written to its file, counting how far it reaches against a budget. The
/// tar writer seeks back to rewrite a header once a file's data is in, so what counts is
/// the furthest byte written, not the bytes passed to `write`.
struct Budgeted {
    file: BufWriter<File>,
    pos: u64,
    end: u64,
    budget: u64,
    /// How far a write refused for the budget would have reached.
    over: Option<u64>,
}

impl Write for Budgeted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let reach = self.pos + buf.len() as u64;
        if reach > self.budget {
            self.over = Some(reach.max(self.end));
            return Err(std::io::Error::other("over the snapshot size limit"));
        }
        let n = self.file.write(buf)?;
        self.pos += n as u64;
        self.end = self.end.max(self.pos);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Seek for Budgeted {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.pos = self.file.seek(to)?;
        Ok(self.pos)
    }
}

type Tar = tar::Builder<Budgeted>;

/// A new owner-only file for packed data.
fn create(path: &Path) -> Result<File, ProcessError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| ProcessError::io("creating", path, e))
}

/// Packs each durable dir into a tar and an index, written as files in `out` (an existing
/// directory the caller owns; files of the same names are replaced). Returns (file name,
/// path) in order; names use only `[A-Za-z0-9._-]`. The files written may take at most
/// `max_bytes` in all: past it packing stops with [`ProcessError::TooLarge`]. Symlinks
/// are stored as links and never followed; sockets, fifos and devices are skipped. Safe
/// against a program that changes its dirs while this runs (nothing outside a dir is
/// packed, the index matches the tar), but only a stopped or frozen program gives a
/// snapshot whose files agree with each other and with its memory: `Sandbox::snapshot`
/// freezes the program around it. On an error, files already written in `out` are the
/// caller's to remove.
pub fn pack_dirs(
    dirs: &[(String, PathBuf)],
    out: &Path,
    max_bytes: u64,
) -> Result<Vec<(String, PathBuf)>, ProcessError> {
    let stems = stems(dirs);
    let mut packed = Vec::new();
    let mut used = 0u64;
    for ((inside, host), stem) in dirs.iter().zip(stems) {
        let root = openat(
            CWD,
            host,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ProcessError::io("opening durable dir", host, e.into()))?;
        let (tar_name, index_name) = (format!("{stem}.tar"), format!("{stem}-index.json"));
        let tar_path = out.join(&tar_name);
        let mut builder = tar::Builder::new(Budgeted {
            file: BufWriter::new(create(&tar_path)?),
            pos: 0,
            end: 0,
            budget: max_bytes - used,
            over: None,
        });
        let mut files = BTreeMap::new();
        let top = Level {
            fd: &root,
            rel: Path::new(""),
            depth: 0,
        };
        let walked = walk(top, &mut builder, &mut files).map_err(|e| in_dir(e, host));
        let before = used;
        let too_large = |reach: u64| ProcessError::TooLarge {
            size: before + reach,
            limit: max_bytes,
        };
        if let Some(reach) = builder.get_ref().over {
            return Err(too_large(reach));
        }
        walked?;
        let finished = builder.into_inner().and_then(|mut b| {
            b.flush()?;
            Ok(b)
        });
        let tar = match finished {
            Ok(b) => b,
            Err(e) => {
                return Err(ProcessError::io("packing", host, e));
            }
        };
        if let Some(reach) = tar.over {
            return Err(too_large(reach));
        }
        used += tar.end;
        let index = json!({
            "dir": inside,
            "files": files.iter().map(|(p, (size, sha))| json!({"path": p, "size": size, "sha256": sha}))
                .collect::<Vec<_>>(),
        });
        let index = serde_json::to_vec_pretty(&index)
            .map_err(|e| ProcessError::io("encoding index of", host, std::io::Error::other(e)))?;
        if used + index.len() as u64 > max_bytes {
            return Err(too_large(tar.end + index.len() as u64));
        }
        used += index.len() as u64;
        let index_path = out.join(&index_name);
        create(&index_path)?
            .write_all(&index)
            .map_err(|e| ProcessError::io("writing", &index_path, e))?;
        packed.push((tar_name, tar_path));
        packed.push((index_name, index_path));
    }
    Ok(packed)
}

/// Errors of the walk name paths relative to the durable dir; this puts the dir's host
/// path in front.
fn in_dir(e: ProcessError, host: &Path) -> ProcessError {
    match e {
        ProcessError::Io { what, path, source } => ProcessError::Io {
            what,
            path: host.join(path),
            source,
        },
        other => other,
    }
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

/// One level of a durable dir being packed: its open directory and its path inside
/// the archive.
struct Level<'a> {
    fd: &'a OwnedFd,
    rel: &'a Path,
    depth: usize,
}

/// Packs the entries of the directory open at `level.fd`, recursing into
/// subdirectories through descriptors opened relative to it. Each entry is opened
/// with `O_NOFOLLOW` and classified by `fstat` on that descriptor, so what is packed
/// is the inode that was opened, whatever the name points to a moment later.
fn walk(
    level: Level<'_>,
    out: &mut Tar,
    files: &mut BTreeMap<String, (u64, String)>,
) -> Result<(), ProcessError> {
    if level.depth >= MAX_DEPTH {
        return Err(ProcessError::io(
            "packing",
            level.rel,
            std::io::Error::other(format!("deeper than {MAX_DEPTH} levels")),
        ));
    }
    let mut names = list(level.fd).map_err(|e| ProcessError::io("reading", level.rel, e))?;
    names.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, hint) in names {
        let rel = level.rel.join(OsStr::from_bytes(name.as_bytes()));
        // Devices, fifos and sockets are skipped before opening: opening one can block
        // or have side effects. A fifo swapped in later still opens without blocking
        // (O_NONBLOCK) and is skipped below.
        if matches!(
            hint,
            FileType::Fifo | FileType::Socket | FileType::CharacterDevice | FileType::BlockDevice
        ) {
            skip_special(&rel);
            continue;
        }
        let opened = openat(
            level.fd,
            name.as_c_str(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        );
        let fd = match opened {
            Ok(fd) => fd,
            // The final component is a symlink: stored as a link, never followed.
            Err(Errno::LOOP) => {
                pack_symlink(level.fd, &name, &rel, out)?;
                continue;
            }
            // Removed since the listing.
            Err(Errno::NOENT) => continue,
            // A socket, which cannot be opened.
            Err(Errno::NXIO) => {
                skip_special(&rel);
                continue;
            }
            Err(e) => return Err(ProcessError::io("opening", &rel, e.into())),
        };
        let st = fstat(&fd).map_err(|e| ProcessError::io("reading", &rel, e.into()))?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                let mut header = header_of(&st, tar::EntryType::Directory);
                header.set_size(0);
                out.append_data(&mut header, &rel, std::io::empty())
                    .map_err(|e| ProcessError::io("packing", &rel, e))?;
                let next = Level {
                    fd: &fd,
                    rel: &rel,
                    depth: level.depth + 1,
                };
                walk(next, out, files)?;
            }
            FileType::RegularFile => {
                let (size, digest) = pack_file(File::from(fd), &st, &rel, out)?;
                files.insert(rel.to_string_lossy().into_owned(), (size, digest));
            }
            _ => skip_special(&rel),
        }
    }
    Ok(())
}

/// The names in the directory open at `fd` (without `.` and `..`), with the type the
/// listing reports (only a hint: the entry may change before it is opened).
fn list(fd: &OwnedFd) -> std::io::Result<Vec<(CString, FileType)>> {
    let mut dir = Dir::read_from(fd)?;
    let mut names = Vec::new();
    while let Some(entry) = dir.read() {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        names.push((name.to_owned(), entry.file_type()));
    }
    Ok(names)
}

/// Appends the regular file open as `file`. Its header says how many bytes were copied
/// (the tar writer rewrites it after the data) and the digest is of those same bytes,
/// so the archive and the index agree even if the file changes meanwhile. At most the
/// size the file had when opened is read, so a file that keeps growing cannot stall
/// the packing.
fn pack_file(
    file: File,
    st: &rustix::fs::Stat,
    rel: &Path,
    out: &mut Tar,
) -> Result<(u64, String), ProcessError> {
    let mut header = header_of(st, tar::EntryType::Regular);
    let mut entry = out
        .append_writer(&mut header, rel)
        .map_err(|e| ProcessError::io("packing", rel, e))?;
    let mut data = file.take(u64::try_from(st.st_size).unwrap_or(0));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; COPY_CHUNK];
    let mut size = 0u64;
    loop {
        let n = data
            .read(&mut buf)
            .map_err(|e| ProcessError::io("reading", rel, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        entry
            .write_all(&buf[..n])
            .map_err(|e| ProcessError::io("packing", rel, e))?;
        size += n as u64;
    }
    entry
        .finish()
        .map_err(|e| ProcessError::io("packing", rel, e))?;
    Ok((size, hex(&hasher.finalize())))
}

/// Appends the symlink `name` of the directory open at `dir` as a link entry, with
/// the target it holds now. One that stopped being a symlink since it was opened is
/// left out: it changed while being packed.
fn pack_symlink(dir: &OwnedFd, name: &CStr, rel: &Path, out: &mut Tar) -> Result<(), ProcessError> {
    let (target, st) = match readlinkat(dir, name, Vec::new())
        .and_then(|t| Ok((t, statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?)))
    {
        Ok(found) => found,
        Err(Errno::INVAL | Errno::NOENT) => {
            tracing::warn!(path = %rel.display(), "skipping an entry that changed while packing");
            return Ok(());
        }
        Err(e) => return Err(ProcessError::io("reading link", rel, e.into())),
    };
    let mut header = header_of(&st, tar::EntryType::Symlink);
    header.set_size(0);
    let target = Path::new(OsStr::from_bytes(target.as_bytes()));
    out.append_link(&mut header, rel, target)
        .map_err(|e| ProcessError::io("packing", rel, e))
}

/// A GNU header with the entry's type, mode, owner and modification time.
fn header_of(st: &rustix::fs::Stat, kind: tar::EntryType) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(st.st_mode & 0o7777);
    header.set_uid(u64::from(st.st_uid));
    header.set_gid(u64::from(st.st_gid));
    header.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
    header
}

fn skip_special(rel: &Path) {
    tracing::warn!(path = %rel.display(), "skipping socket, fifo or device in durable dir");
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
