//! Where the bytes of a snapshot file come from when it is written: a file on the local
//! disk, bytes already in memory, or any reader. Sources are read in chunks and never
//! gathered whole, so writing a snapshot costs a few buffers of memory whatever its size;
//! only bytes the caller already holds for another reason (a wasm guest's memory image,
//! kept warm in its worker) are in memory at all.

use std::io::Read;
use std::path::PathBuf;

use ate_model::ActorRef;
use bytes::Bytes;

use crate::SnapshotError;

/// The bytes of one snapshot file.
pub enum FileSource {
    /// A file on the local disk, read as it is when the write gets to it.
    Path(PathBuf),
    /// Bytes the caller holds anyway (no copy is made).
    Bytes(Bytes),
    /// Anything else; its size is known only once it has been read, so the size limit
    /// is enforced while it streams.
    Reader(Box<dyn Read + Send>),
}

impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileSource::Path(p) => f.debug_tuple("Path").field(p).finish(),
            FileSource::Bytes(b) => f.debug_tuple("Bytes").field(&b.len()).finish(),
            FileSource::Reader(_) => f.write_str("Reader(..)"),
        }
    }
}

/// A named file of a snapshot, to be written.
#[derive(Debug)]
pub struct SnapshotFile {
    pub name: String,
    pub source: FileSource,
}

impl SnapshotFile {
    pub fn path(name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            source: FileSource::Path(path.into()),
        }
    }

    pub fn bytes(name: impl Into<String>, bytes: impl Into<Bytes>) -> Self {
        Self {
            name: name.into(),
            source: FileSource::Bytes(bytes.into()),
        }
    }

    pub fn reader(name: impl Into<String>, reader: impl Read + Send + 'static) -> Self {
        Self {
            name: name.into(),
            source: FileSource::Reader(Box::new(reader)),
        }
    }

    /// The size the source has now, if it can be known without reading it.
    pub fn known_size(&self) -> std::io::Result<Option<u64>> {
        Ok(match &self.source {
            FileSource::Path(p) => Some(std::fs::metadata(p)?.len()),
            FileSource::Bytes(b) => Some(b.len() as u64),
            FileSource::Reader(_) => None,
        })
    }

    /// The source, opened for reading.
    pub(crate) fn open(self) -> std::io::Result<Box<dyn Read + Send>> {
        Ok(match self.source {
            FileSource::Path(p) => Box::new(std::fs::File::open(p)?),
            FileSource::Bytes(b) => Box::new(std::io::Cursor::new(b)),
            FileSource::Reader(r) => r,
        })
    }
}

/// Checks the sizes `files` already know against `max_bytes` before anything is read or
/// written, and returns their total. A reader's size counts as 0 here: the write stops it
/// once it streams past the limit.
pub fn check_size(
    actor: &ActorRef,
    id: &str,
    files: &[SnapshotFile],
    max_bytes: u64,
) -> Result<u64, SnapshotError> {
    let mut total = 0u64;
    for f in files {
        let size = f
            .known_size()
            .map_err(|e| SnapshotError::Io(format!("{}: {e}", f.name)))?
            .unwrap_or(0);
        total = total.saturating_add(size);
    }
    if total > max_bytes {
        return Err(SnapshotError::too_large(actor, id, total, max_bytes));
    }
    Ok(total)
}

/// Bytes read from a source at a time.
const READ_BYTES: usize = 256 << 10;

/// Reads `reader` to its end one buffer of [`READ_BYTES`] at a time, handing each chunk
/// to `chunk` (which may stop the reading with an error); returns the bytes read.
pub(crate) fn read_chunks<E>(
    reader: &mut dyn Read,
    mut chunk: impl FnMut(&[u8]) -> Result<(), E>,
    io: impl Fn(std::io::Error) -> E,
) -> Result<u64, E> {
    let mut buf = vec![0u8; READ_BYTES];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(e)),
        };
        total += n as u64;
        chunk(&buf[..n])?;
    }
}
