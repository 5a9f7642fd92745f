//! Streaming one snapshot file into the store: a blocking thread reads the source in
//! chunks, digests and counts what it read and compresses it (zstd, one frame, as the
//! store has always held); the compressed chunks cross a small channel to the uploader,
//! which sends them as one `put` if the file compresses to less than a part, else as a
//! multipart upload of [`PART_BYTES`] parts, at most [`PARTS_IN_FLIGHT`] at a time.
//!
//! Invariant: memory stays bounded by a few buffers whatever the file's size: one read
//! buffer, the encoder's window, [`CHANNEL_CHUNKS`] compressed chunks, and the parts
//! being assembled and in flight. Size and digest are of the bytes actually read, so the
//! manifest describes exactly what was compressed.

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::Digest;

use crate::source::{SnapshotFile, read_chunks};

/// zstd level: fast enough to stay off the critical path of a suspend.
pub(crate) const LEVEL: i32 = 3;

/// Compressed bytes the compressing thread gathers before handing them over.
const CHUNK_BYTES: usize = 1 << 20;

/// Compressed chunks waiting between the compressing thread and the uploader: enough to
/// keep both busy, few enough that a slow store holds the reader back.
const CHANNEL_CHUNKS: usize = 2;

/// Size of each part of a multipart upload (5 MiB), also the size under which a file
/// goes up in one `put`: the smallest part S3 and GCS accept (all but the last part must
/// be at least that), so the memory an upload holds is as small as the stores allow.
pub const PART_BYTES: usize = 5 << 20;

/// Parts of one file uploading at once: two keep a connection busy while the next part
/// fills, and bound the memory to about `(PARTS_IN_FLIGHT + 1) * PART_BYTES` per file.
pub const PARTS_IN_FLIGHT: usize = 2;

/// What was streamed.
#[derive(Debug, Clone)]
pub(crate) struct Streamed {
    pub size: u64,
    pub compressed_size: u64,
    pub sha256: String,
}

/// Why a file could not be streamed.
#[derive(Debug)]
pub(crate) enum UploadError {
    /// The source passed its budget after `read` bytes.
    TooLarge { read: u64 },
    /// The source could not be read, or compression failed.
    Source(std::io::Error),
    /// The store refused or failed.
    Store(object_store::Error),
    /// The compressing thread died.
    Task(String),
}

/// Why the compressing thread stopped early.
enum Stopped {
    TooLarge(u64),
    Io(std::io::Error),
    /// The uploader hung up (it failed): its error is the one that counts.
    Gone,
}

/// Streams `file` to `path`, reading at most `budget` bytes of it.
pub(crate) async fn upload(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    file: SnapshotFile,
    budget: u64,
) -> Result<Streamed, UploadError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(CHANNEL_CHUNKS);
    let producer = tokio::task::spawn_blocking(move || compress(file, budget, tx));
    // The first part is held back until it is full: a file that compresses to less goes
    // up in one `put` (a state file, an index) instead of three multipart requests.
    let mut head: Vec<Bytes> = Vec::new();
    let mut head_len = 0usize;
    let mut multipart: Option<WriteMultipart> = None;
    let mut compressed = 0u64;
    let sent: Result<(), object_store::Error> = async {
        while let Some(chunk) = rx.recv().await {
            compressed += chunk.len() as u64;
            if let Some(w) = multipart.as_mut() {
                w.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                w.put(chunk);
                continue;
            }
            head_len += chunk.len();
            head.push(chunk);
            if head_len > PART_BYTES {
                let upload = store.put_multipart(path).await?;
                let mut w = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
                for c in head.drain(..) {
                    w.put(c);
                }
                multipart = Some(w);
            }
        }
        Ok(())
    }
    .await;
    // A failed upload stops the compressing thread at its next chunk.
    drop(rx);
    let produced = producer.await;
    let outcome = match (sent, produced) {
        (Err(e), _) => Err(UploadError::Store(e)),
        (Ok(()), Err(e)) => Err(UploadError::Task(e.to_string())),
        (Ok(()), Ok(Err(Stopped::TooLarge(read)))) => Err(UploadError::TooLarge { read }),
        (Ok(()), Ok(Err(Stopped::Io(e)))) => Err(UploadError::Source(e)),
        (Ok(()), Ok(Err(Stopped::Gone))) => {
            Err(UploadError::Task("the uploader stopped early".into()))
        }
        (Ok(()), Ok(Ok((size, sha256)))) => Ok(Streamed {
            size,
            compressed_size: compressed,
            sha256,
        }),
    };
    match (outcome, multipart) {
        (Ok(s), Some(w)) => {
            w.finish().await.map_err(UploadError::Store)?;
            Ok(s)
        }
        (Ok(s), None) => {
            store
                .put(path, PutPayload::from_iter(head))
                .await
                .map_err(UploadError::Store)?;
            Ok(s)
        }
        (Err(e), Some(w)) => {
            // Parts already sent are dropped by the store; an abort that fails leaves
            // them to the bucket's lifecycle rules, and the object never appears.
            if let Err(abort) = w.abort().await {
                tracing::warn!(path = %path, error = %abort, "cannot abort a multipart upload");
            }
            Err(e)
        }
        (Err(e), None) => Err(e),
    }
}

/// Reads, digests and compresses `file` into chunks sent on `tx`; returns the size read
/// and its SHA-256. Runs on a blocking thread.
fn compress(
    file: SnapshotFile,
    budget: u64,
    tx: tokio::sync::mpsc::Sender<Bytes>,
) -> Result<(u64, String), Stopped> {
    let mut reader = file.open().map_err(Stopped::Io)?;
    let mut encoder = zstd::stream::write::Encoder::new(Vec::with_capacity(CHUNK_BYTES), LEVEL)
        .map_err(Stopped::Io)?;
    let mut hasher = sha2::Sha256::new();
    let mut read = 0u64;
    let size = read_chunks(
        &mut reader,
        |chunk| {
            read += chunk.len() as u64;
            if read > budget {
                return Err(Stopped::TooLarge(read));
            }
            hasher.update(chunk);
            encoder.write_all(chunk).map_err(Stopped::Io)?;
            if encoder.get_ref().len() >= CHUNK_BYTES {
                let full = std::mem::replace(encoder.get_mut(), Vec::with_capacity(CHUNK_BYTES));
                tx.blocking_send(Bytes::from(full))
                    .map_err(|_| Stopped::Gone)?;
            }
            Ok(())
        },
        Stopped::Io,
    )?;
    let rest = encoder.finish().map_err(Stopped::Io)?;
    if !rest.is_empty() {
        tx.blocking_send(Bytes::from(rest))
            .map_err(|_| Stopped::Gone)?;
    }
    Ok((size, crate::hex(&hasher.finalize())))
}
