//! Extracting untrusted tar archives into a directory without ever writing outside it.
//!
//! Rules: every entry path must consist of plain components (no `..`, no absolute path);
//! no entry is written through a symlink (every ancestor must be a real directory and
//! files are created with `O_NOFOLLOW`); symlinks are created but never followed here;
//! hard links are refused or, for rootfs images, allowed only to an earlier entry inside
//! the same directory; device nodes and fifos are refused or skipped.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};
use tar::EntryType;

/// How permissive an extraction is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules {
    /// Allow hard links to earlier entries (rootfs images); refuse them otherwise.
    pub(crate) hard_links: bool,
    /// Skip device nodes and fifos (rootfs images) instead of refusing them.
    pub(crate) skip_special: bool,
    /// Keep owner, group and setuid/setgid bits (rootfs images).
    pub(crate) keep_owner: bool,
}

/// What was extracted: each regular file's relative path, size and sha256.
pub(crate) type Extracted = HashMap<String, (u64, String)>;

/// Extracts `archive` into `dst` (which must exist) under `rules`. Errors are plain
/// messages naming the offending entry.
pub(crate) fn extract(archive: impl Read, dst: &Path, rules: Rules) -> Result<Extracted, String> {
    let mut ar = tar::Archive::new(archive);
    let mut out = Extracted::new();
    let entries = ar.entries().map_err(|e| format!("reading archive: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("reading archive: {e}"))?;
        let raw = entry
            .path()
            .map_err(|e| format!("bad entry path: {e}"))?
            .into_owned();
        let Some(rel) = clean(&raw) else {
            return Err(format!("entry {} escapes the directory", raw.display()));
        };
        if rel.as_os_str().is_empty() {
            continue; // "./" itself
        }
        let shown = rel.display().to_string();
        let target = dst.join(&rel);
        check_ancestors(dst, &rel).map_err(|why| format!("entry {shown}: {why}"))?;
        let header = entry.header();
        let mode = header.mode().unwrap_or(0o644);
        let mode = if rules.keep_owner {
            mode & 0o7777
        } else {
            mode & 0o1777
        };
        let owner = (header.uid().ok(), header.gid().ok());
        match header.entry_type() {
            EntryType::Directory => {
                match std::fs::symlink_metadata(&target) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => return Err(format!("entry {shown}: directory over a non-directory")),
                    Err(_) => {
                        std::fs::create_dir(&target).map_err(|e| format!("entry {shown}: {e}"))?
                    }
                }
                set_mode(&target, mode | 0o700, rules, owner, &shown)?;
            }
            EntryType::Regular | EntryType::Continuous => {
                replace(&target, &shown)?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                    .mode(0o600)
                    .open(&target)
                    .map_err(|e| format!("entry {shown}: {e}"))?;
                let mut hasher = Sha256::new();
                let mut buf = vec![0u8; 64 * 1024];
                let mut size = 0u64;
                loop {
                    let n = entry
                        .read(&mut buf)
                        .map_err(|e| format!("entry {shown}: {e}"))?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                    file.write_all(&buf[..n])
                        .map_err(|e| format!("entry {shown}: {e}"))?;
                    size += n as u64;
                }
                drop(file);
                set_mode(&target, mode, rules, owner, &shown)?;
                out.insert(shown, (size, hex(&hasher.finalize())));
            }
            EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(|e| format!("entry {shown}: {e}"))?
                    .ok_or_else(|| format!("entry {shown}: symlink without target"))?;
                replace(&target, &shown)?;
                std::os::unix::fs::symlink(&link, &target)
                    .map_err(|e| format!("entry {shown}: {e}"))?;
                if rules.keep_owner
                    && let (Some(uid), Some(gid)) = owner
                {
                    let _ = std::os::unix::fs::lchown(&target, Some(uid as u32), Some(gid as u32));
                }
            }
            EntryType::Link if rules.hard_links => {
                let link = entry
                    .link_name()
                    .map_err(|e| format!("entry {shown}: {e}"))?
                    .ok_or_else(|| format!("entry {shown}: hard link without target"))?;
                let Some(src_rel) = clean(&link).filter(|p| !p.as_os_str().is_empty()) else {
                    return Err(format!(
                        "entry {shown}: hard link target {} escapes",
                        link.display()
                    ));
                };
                check_ancestors(dst, &src_rel).map_err(|why| format!("entry {shown}: {why}"))?;
                let src = dst.join(&src_rel);
                match std::fs::symlink_metadata(&src) {
                    Ok(m) if m.is_file() => {}
                    _ => {
                        return Err(format!(
                            "entry {shown}: hard link target is not an earlier file"
                        ));
                    }
                }
                replace(&target, &shown)?;
                std::fs::hard_link(&src, &target).map_err(|e| format!("entry {shown}: {e}"))?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo if rules.skip_special => {
                tracing::debug!(entry = %shown, "skipping device or fifo in image");
            }
            EntryType::XGlobalHeader
            | EntryType::XHeader
            | EntryType::GNULongName
            | EntryType::GNULongLink => {}
            other => return Err(format!("entry {shown}: type {other:?} is not allowed")),
        }
    }
    Ok(out)
}

/// `p` as plain relative components, or `None` if it is absolute or uses `..`.
fn clean(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Every ancestor of `rel` below `dst` must be a real directory (not a symlink);
/// missing ones are created (archives often omit parent directory entries).
fn check_ancestors(dst: &Path, rel: &Path) -> Result<(), String> {
    let mut cur = dst.to_path_buf();
    let parent = rel.parent().unwrap_or(Path::new(""));
    for c in parent.components() {
        cur.push(c);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(_) => return Err(format!("parent {} is not a directory", cur.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&cur).map_err(|e| format!("parent {}: {e}", cur.display()))?;
            }
            Err(e) => return Err(format!("parent {}: {e}", cur.display())),
        }
    }
    Ok(())
}

/// Removes a non-directory at `target` so a later entry can take its place.
fn replace(target: &Path, shown: &str) -> Result<(), String> {
    match std::fs::symlink_metadata(target) {
        Ok(m) if m.is_dir() => Err(format!("entry {shown}: would replace a directory")),
        Ok(_) => std::fs::remove_file(target).map_err(|e| format!("entry {shown}: {e}")),
        Err(_) => Ok(()),
    }
}

fn set_mode(
    target: &Path,
    mode: u32,
    rules: Rules,
    owner: (Option<u64>, Option<u64>),
    shown: &str,
) -> Result<(), String> {
    if rules.keep_owner
        && let (Some(uid), Some(gid)) = owner
    {
        std::os::unix::fs::lchown(target, Some(uid as u32), Some(gid as u32))
            .map_err(|e| format!("entry {shown}: {e}"))?;
    }
    std::fs::set_permissions(target, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("entry {shown}: {e}"))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
