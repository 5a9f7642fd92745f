//! Owner-only files and directories. Snapshots are actors' memory and files: their tenants'
//! data (conversations, and whatever credentials an agent holds in memory), so what the
//! snapshot store and the cache put on a local disk is readable by its owner only, whatever
//! the process's umask.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of the directories snapshots live in.
pub const DIR_MODE: u32 = 0o700;
/// Mode of snapshot files.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` and any missing parents with [`DIR_MODE`], and tightens `dir` itself when
/// it exists with a looser mode (made by an older version).
pub(crate) fn create_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    if let Some(from) = tighten(dir, DIR_MODE)? {
        tracing::info!(path = %dir.display(), from = format!("{from:o}"), to = format!("{DIR_MODE:o}"), "snapshot directory mode tightened");
    }
    Ok(())
}

/// Sets `mode` on `path` if it grants more than `mode` does; returns the mode it had then.
pub(crate) fn tighten(path: &Path, mode: u32) -> std::io::Result<Option<u32>> {
    let current = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if current & !mode == 0 {
        return Ok(None);
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(Some(current))
}

/// Creates a new file with [`FILE_MODE`] (replacing one of the same name).
pub(crate) fn create_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)
}

/// Writes a new file with [`FILE_MODE`] (replacing one of the same name).
pub(crate) fn write_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    create_file(path)?.write_all(data)
}
