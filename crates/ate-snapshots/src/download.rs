//! Streaming one snapshot file out of the store into a local file: the object's chunks
//! cross a small channel to a blocking thread that decompresses them straight into the
//! file, digesting and counting what it writes.
//!
//! Invariant: the object was sized against the manifest before this reads a byte (see
//! `SnapshotStore::read_into`), and the output stops one byte past the size the manifest
//! gives, so neither the object nor its claims about itself decide how much is read,
//! allocated or written. Memory stays bounded by a few chunks and the decoder's window.

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::ObjectStore;
use object_store::path::Path;
use sha2::Digest;

use crate::manifest::FileEntry;

/// Object chunks waiting for the decompressing thread.
const CHANNEL_CHUNKS: usize = 8;

/// Why a file could not be read into place.
#[derive(Debug)]
pub(crate) enum DownloadError {
    /// The object is not there.
    Missing,
    /// The object or what it decompresses to disagrees with the manifest.
    Corrupt(String),
    /// The store failed.
    Store(object_store::Error),
    /// Writing the local file failed.
    Local(std::io::Error),
}

/// Reads the object at `path`, described by `entry`, decompressed into the new file `to`.
pub(crate) async fn download(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    entry: &FileEntry,
    to: std::path::PathBuf,
) -> Result<(), DownloadError> {
    let got = match store.get_opts(path, Default::default()).await {
        Ok(r) => r,
        Err(object_store::Error::NotFound { .. }) => return Err(DownloadError::Missing),
        Err(e) => return Err(DownloadError::Store(e)),
    };
    // Checked again on the object actually opened: it may have changed since the check
    // of the whole snapshot.
    if got.meta.size != entry.compressed_size {
        return Err(DownloadError::Corrupt(size_mismatch(
            got.meta.size,
            entry.compressed_size,
        )));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(CHANNEL_CHUNKS);
    let (size, sha) = (entry.size, entry.sha256.clone());
    let writer = tokio::task::spawn_blocking(move || decompress(rx, &to, size, &sha));
    let mut stream = got.into_stream();
    let mut fed = Ok(());
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => {
                if tx.send(c).await.is_err() {
                    // The decompressing thread stopped: its error says why.
                    break;
                }
            }
            Err(e) => {
                fed = Err(DownloadError::Store(e));
                break;
            }
        }
    }
    drop(tx);
    let written = writer
        .await
        .map_err(|e| DownloadError::Local(std::io::Error::other(e.to_string())))?;
    fed?;
    written
}

/// Why an object of `actual` bytes is refused for a manifest saying `claimed`.
pub(crate) fn size_mismatch(actual: u64, claimed: u64) -> String {
    format!("object is {actual} bytes, manifest says compressedSize {claimed}")
}

/// The file being written: everything the decoder produces passes through here, counted
/// against the size the manifest allows and digested.
struct Sink {
    file: std::io::BufWriter<std::fs::File>,
    hasher: sha2::Sha256,
    written: u64,
    limit: u64,
    over: bool,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.written + buf.len() as u64 > self.limit {
            self.over = true;
            return Err(std::io::Error::other("more bytes than the manifest says"));
        }
        self.file.write_all(buf)?;
        self.hasher.update(buf);
        self.written += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Decompresses the chunks from `rx` into the new file `to`, which must come out exactly
/// `size` bytes with SHA-256 `sha`. Runs on a blocking thread.
fn decompress(
    mut rx: tokio::sync::mpsc::Receiver<Bytes>,
    to: &std::path::Path,
    size: u64,
    sha: &str,
) -> Result<(), DownloadError> {
    let file = crate::private::create_file(to).map_err(DownloadError::Local)?;
    let sink = Sink {
        file: std::io::BufWriter::new(file),
        hasher: sha2::Sha256::new(),
        written: 0,
        // One byte past the manifest's size is enough to know it lied.
        limit: size.saturating_add(1),
        over: false,
    };
    let corrupt = |sink: &Sink, e: std::io::Error| {
        if sink.over {
            DownloadError::Corrupt(format!(
                "decompresses to more than the {size} bytes the manifest says"
            ))
        } else {
            DownloadError::Corrupt(format!("cannot decompress: {e}"))
        }
    };
    let mut decoder = zstd::stream::write::Decoder::new(sink).map_err(DownloadError::Local)?;
    while let Some(chunk) = rx.blocking_recv() {
        if let Err(e) = decoder.write_all(&chunk) {
            return Err(corrupt(decoder.get_ref(), e));
        }
    }
    if let Err(e) = decoder.do_finish() {
        return Err(corrupt(decoder.get_ref(), e));
    }
    let mut sink = decoder.into_inner();
    sink.flush().map_err(DownloadError::Local)?;
    if sink.written != size {
        return Err(DownloadError::Corrupt(format!(
            "{} bytes, manifest says {size}",
            sink.written
        )));
    }
    if crate::hex(&sink.hasher.finalize()) != sha {
        return Err(DownloadError::Corrupt(
            "sha256 does not match the manifest".into(),
        ));
    }
    Ok(())
}
