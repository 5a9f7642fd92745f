//! Actor snapshots in object storage. A snapshot is a set of named files written under
//! `<location>/<atespace>/<actor>/<snapshot-id>/` as `<name>.zst` (zstd), followed by
//! `manifest.json` (class, scope, runtime, and each file's size and SHA-256). Restores check
//! every file against the manifest and refuse a corrupt or incomplete snapshot. Locations are
//! URLs: `file:///var/lib/ate/snapshots` (the default), `s3://bucket/prefix`,
//! `gs://bucket/prefix` (credentials from the environment, as the cloud SDKs read them).
//! [`SnapshotCache`] keeps recent snapshots on the node's disk within a size bound. On a
//! local disk (a `file://` store, the cache) directories are 0700 and files 0600: snapshots
//! are tenants' data.
//!
//! Invariant of memory: no snapshot file is ever held whole. Writes read their sources in
//! chunks, compress and digest them chunk by chunk and upload them in parts
//! ([`upload`]); reads check every object's size against the manifest before reading it
//! and decompress it chunk by chunk into a file ([`download`]). A snapshot over its size
//! limit (`spec.snapshots.maxBytes`) is refused with [`SnapshotError::TooLarge`], and a
//! write that fails leaves nothing of that snapshot in the store.

mod cache;
mod download;
mod manifest;
mod private;
mod source;
mod store;
mod upload;

pub use cache::{CachedSnapshot, SnapshotCache, Staged, key as cache_key};
pub use manifest::{
    FORMAT, FileEntry, MAX_MANIFEST_BYTES, Manifest, describe_files, validate_actor,
    validate_file_name, validate_id,
};
pub use private::{DIR_MODE, FILE_MODE};
pub use source::{FileSource, SnapshotFile, check_size};
pub use store::{SnapshotStore, new_snapshot_id};
pub use upload::{PART_BYTES, PARTS_IN_FLIGHT};

/// Everything snapshot storage can fail with.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("invalid snapshot location {url:?}: {reason}")]
    InvalidLocation { url: String, reason: String },
    #[error("invalid {what} {name:?}")]
    InvalidName { what: &'static str, name: String },
    #[error("snapshot {id} of {actor} not found")]
    NotFound { actor: String, id: String },
    #[error("snapshot {id} of {actor} is incomplete: {reason}")]
    Incomplete {
        actor: String,
        id: String,
        reason: String,
    },
    #[error("snapshot {id} of {actor} is corrupt: {reason}")]
    Corrupt {
        actor: String,
        id: String,
        reason: String,
    },
    /// Bigger than its template allows. `size` is the whole snapshot when it was known
    /// before reading; a source that grew while it streamed is refused as soon as the
    /// bytes read pass the limit, with the count then.
    #[error(
        "snapshot {id} of {actor} is too large: {size} bytes, over spec.snapshots.maxBytes of {limit}"
    )]
    TooLarge {
        actor: String,
        id: String,
        size: u64,
        limit: u64,
    },
    #[error("snapshot storage unavailable: {0}")]
    Unavailable(String),
    #[error("snapshot i/o: {0}")]
    Io(String),
}

impl SnapshotError {
    pub(crate) fn too_large(actor: &ate_model::ActorRef, id: &str, size: u64, limit: u64) -> Self {
        SnapshotError::TooLarge {
            actor: actor.to_string(),
            id: id.into(),
            size,
            limit,
        }
    }

    pub fn kind(&self) -> ate_model::ErrorKind {
        use ate_model::ErrorKind;
        match self {
            SnapshotError::InvalidLocation { .. } | SnapshotError::InvalidName { .. } => {
                ErrorKind::InvalidArgument
            }
            SnapshotError::NotFound { .. } => ErrorKind::NotFound,
            SnapshotError::Incomplete { .. }
            | SnapshotError::Corrupt { .. }
            | SnapshotError::TooLarge { .. } => ErrorKind::FailedPrecondition,
            SnapshotError::Unavailable(_) => ErrorKind::Unavailable,
            SnapshotError::Io(_) => ErrorKind::Internal,
        }
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(data))
}
