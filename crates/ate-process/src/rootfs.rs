//! Template root filesystems: a directory used as it is, or a tarball extracted once
//! into a cache keyed by the tarball's sha256 (so a changed tarball never reuses a stale
//! tree, and an unchanged one is extracted only once per node).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::ProcessError;
use crate::tarsafe::{self, Rules, hex};

/// Returns a root directory for `path`: the directory itself, or the extraction of a
/// `.tar`, `.tar.gz`/`.tgz` or `.tar.zst`/`.tzst` under `cache_dir/<sha256>`. Extraction
/// refuses entries that escape the root (see `tarsafe`), keeps owners, hard links and
/// symlinks, and skips device nodes (the container gets its own /dev).
pub fn prepare_rootfs(path: &Path, cache_dir: &Path) -> Result<PathBuf, ProcessError> {
    let invalid = |reason: String| ProcessError::InvalidRootfs {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| invalid(e.to_string()))?;
    if meta.is_dir() {
        return path.canonicalize().map_err(|e| invalid(e.to_string()));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let kind = if name.ends_with(".tar") {
        Kind::Plain
    } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        Kind::Gzip
    } else if name.ends_with(".tar.zst") || name.ends_with(".tzst") {
        Kind::Zstd
    } else {
        return Err(invalid(
            "expected a directory or a .tar, .tar.gz, .tgz, .tar.zst or .tzst file".into(),
        ));
    };
    let digest = {
        let mut f = File::open(path).map_err(|e| invalid(e.to_string()))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = f.read(&mut buf).map_err(|e| invalid(e.to_string()))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        hex(&h.finalize())
    };
    let dest = cache_dir.join(&digest);
    if dest.is_dir() {
        return Ok(dest);
    }
    std::fs::create_dir_all(cache_dir).map_err(|e| ProcessError::io("creating", cache_dir, e))?;
    let tmp = cache_dir.join(format!(".{digest}.{}.partial", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| ProcessError::io("clearing", &tmp, e))?;
    }
    std::fs::create_dir(&tmp).map_err(|e| ProcessError::io("creating", &tmp, e))?;
    let file = BufReader::new(File::open(path).map_err(|e| invalid(e.to_string()))?);
    let rules = Rules {
        hard_links: true,
        skip_special: true,
        keep_owner: true,
    };
    let result = match kind {
        Kind::Plain => tarsafe::extract(file, &tmp, rules),
        Kind::Gzip => tarsafe::extract(flate2::read::GzDecoder::new(file), &tmp, rules),
        Kind::Zstd => match zstd::stream::read::Decoder::with_buffer(file) {
            Ok(d) => tarsafe::extract(d, &tmp, rules),
            Err(e) => Err(format!("zstd: {e}")),
        },
    };
    if let Err(reason) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(invalid(reason));
    }
    match std::fs::rename(&tmp, &dest) {
        Ok(()) => Ok(dest),
        // Another extraction of the same tarball won the race: use it.
        Err(_) if dest.is_dir() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(dest)
        }
        Err(e) => Err(ProcessError::io("renaming into", &dest, e)),
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Plain,
    Gzip,
    Zstd,
}
