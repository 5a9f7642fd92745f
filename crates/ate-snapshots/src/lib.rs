//! Actor snapshots in object storage. A snapshot is a set of named files written under
//! `<location>/<atespace>/<actor>/<snapshot-id>/` as `<name>.zst` (zstd), followed by
//! `manifest.json` (class, scope, runtime, and each file's size and SHA-256). Restores check
//! every file against the manifest and refuse a corrupt or incomplete snapshot. Locations are
//! URLs: `file:///var/lib/ate/snapshots` (the default), `s3://bucket/prefix`,
//! `gs://bucket/prefix` (credentials from the environment, as the cloud SDKs read them).
//! [`SnapshotCache`] keeps recent snapshots on the node's disk within a size bound. On a
//! local disk (a `file://` store, the cache) directories are 0700 and files 0600: snapshots
//! are tenants' data.

mod cache;
mod manifest;
mod private;
mod store;

pub use cache::{CachedSnapshot, SnapshotCache, key as cache_key};
pub use manifest::{
    FORMAT, FileEntry, MAX_MANIFEST_BYTES, Manifest, describe_files, validate_actor,
    validate_file_name, validate_id,
};
pub use private::{DIR_MODE, FILE_MODE};
pub use store::{SnapshotStore, new_snapshot_id};

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
    #[error("snapshot storage unavailable: {0}")]
    Unavailable(String),
    #[error("snapshot i/o: {0}")]
    Io(String),
}

impl SnapshotError {
    pub fn kind(&self) -> ate_model::ErrorKind {
        use ate_model::ErrorKind;
        match self {
            SnapshotError::InvalidLocation { .. } | SnapshotError::InvalidName { .. } => {
                ErrorKind::InvalidArgument
            }
            SnapshotError::NotFound { .. } => ErrorKind::NotFound,
            SnapshotError::Incomplete { .. } | SnapshotError::Corrupt { .. } => {
                ErrorKind::FailedPrecondition
            }
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
