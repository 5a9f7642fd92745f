//! The snapshot store: writing, reading, listing and deleting snapshots at one location.
//! A snapshot's files go first and its manifest last, so a snapshot is either complete or
//! has no manifest; a write that fails removes what it wrote. Files stream both ways
//! (`upload`, `download`): no file is held in memory whole.

use std::sync::Arc;

use ate_model::{ActorRef, SnapshotScope};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::SnapshotError;
use crate::download::{DownloadError, download, size_mismatch};
use crate::manifest::{
    FileEntry, MAX_MANIFEST_BYTES, Manifest, too_big, validate_file_name, validate_id,
};
use crate::source::{SnapshotFile, check_size};
use crate::upload::{UploadError, upload};

const MANIFEST: &str = "manifest.json";

/// A new snapshot id: milliseconds since the epoch, then randomness. Ids sort by creation,
/// which retention relies on.
pub fn new_snapshot_id() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let mut r = [0u8; 4];
    let _ = getrandom::fill(&mut r);
    format!("{ms:016}-{}", crate::hex(&r))
}

/// The most a zstd frame of `size` bytes can compress to: zstd's own bound
/// (`ZSTD_compressBound`, about 1/256 over the input) with room for a frame header and a
/// small file's block overhead. A manifest claiming a larger compressed size is damaged.
fn compressed_bound(size: u64) -> u64 {
    size.saturating_add(size >> 8).saturating_add(128 << 10)
}

fn os_err(e: object_store::Error) -> SnapshotError {
    SnapshotError::Unavailable(e.to_string())
}

/// Where snapshots live.
#[derive(Clone)]
pub struct SnapshotStore {
    store: Arc<dyn ObjectStore>,
    base: Path,
    url: String,
    /// The directory of a `file://` store, whose emptied snapshot directories are removed
    /// (object stores have no directories to leave behind).
    local: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for SnapshotStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotStore")
            .field("url", &self.url)
            .finish()
    }
}

impl SnapshotStore {
    /// Opens a location: `file:///DIR` (created if missing, and made the owner's only),
    /// `s3://BUCKET/PREFIX` or `gs://BUCKET/PREFIX`.
    pub fn open(location: &str) -> Result<Self, SnapshotError> {
        let bad = |reason: String| SnapshotError::InvalidLocation {
            url: location.into(),
            reason,
        };
        let url = url::Url::parse(location).map_err(|e| bad(e.to_string()))?;
        let (store, base, local): (Arc<dyn ObjectStore>, Path, _) = match url.scheme() {
            "file" => {
                let dir = url
                    .to_file_path()
                    .map_err(|_| bad("not an absolute file path".into()))?;
                crate::private::create_dir(&dir).map_err(|e| bad(e.to_string()))?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| bad(e.to_string()))?;
                (Arc::new(fs), Path::default(), Some(dir))
            }
            "s3" | "gs" => {
                let (store, path) = object_store::parse_url_opts(&url, std::env::vars())
                    .map_err(|e| bad(e.to_string()))?;
                (Arc::from(store), path, None)
            }
            other => {
                return Err(bad(format!(
                    "scheme {other:?} is not supported (file, s3, gs)"
                )));
            }
        };
        Ok(Self {
            store,
            base,
            url: location.into(),
            local,
        })
    }

    pub fn location(&self) -> &str {
        &self.url
    }

    fn actor_dir(&self, actor: &ActorRef) -> Result<Path, SnapshotError> {
        crate::validate_actor(actor)?;
        Ok(self
            .base
            .clone()
            .join(actor.atespace.as_str())
            .join(actor.id.as_str()))
    }

    fn snapshot_dir(&self, actor: &ActorRef, id: &str) -> Result<Path, SnapshotError> {
        validate_id(id)?;
        Ok(self.actor_dir(actor)?.join(id))
    }

    /// Writes a snapshot: every file streamed (read in chunks, digested, compressed and
    /// uploaded in parts), then the manifest, so a snapshot is either complete or has no
    /// manifest. Sizes and digests in the manifest are of the bytes actually read. A
    /// snapshot over `max_bytes` (uncompressed, all files) is refused with
    /// [`SnapshotError::TooLarge`]: before anything is written when the sizes are known up
    /// front, else as soon as the bytes read pass it. A write that fails removes whatever
    /// it wrote of the snapshot.
    #[allow(clippy::too_many_arguments)]
    pub async fn write(
        &self,
        actor: &ActorRef,
        id: &str,
        sandbox_class: &str,
        scope: SnapshotScope,
        runtime: &str,
        files: Vec<SnapshotFile>,
        max_bytes: u64,
    ) -> Result<Manifest, SnapshotError> {
        let dir = self.snapshot_dir(actor, id)?;
        for (i, f) in files.iter().enumerate() {
            validate_file_name(&f.name)?;
            if files[..i].iter().any(|g| g.name == f.name) {
                return Err(SnapshotError::InvalidName {
                    what: "file name (given twice)",
                    name: f.name.clone(),
                });
            }
        }
        check_size(actor, id, &files, max_bytes)?;
        if let Some(local) = self.local_path(&dir) {
            // Made here, owner-only, before the object store makes it with the umask's mode.
            crate::private::create_dir(&local).map_err(|e| SnapshotError::Io(e.to_string()))?;
        }
        let written = self
            .write_files(&dir, actor, id, files, max_bytes)
            .await
            .map(|entries| Manifest::new(actor, id, sandbox_class, scope, runtime, entries));
        let written = match written {
            Ok(manifest) => match serde_json::to_vec_pretty(&manifest) {
                Ok(json) => self.put(&dir.join(MANIFEST), json).await.map(|()| manifest),
                Err(e) => Err(SnapshotError::Io(e.to_string())),
            },
            Err(e) => Err(e),
        };
        match written {
            Ok(manifest) => {
                tracing::debug!(actor = %actor, id, bytes = manifest.total_size(), "snapshot written");
                Ok(manifest)
            }
            Err(e) => {
                // Nothing of a failed write stays: no store is left holding a partial
                // snapshot that only retention would ever clean up.
                if let Err(cleanup) = self.delete_snapshot(actor, id).await {
                    tracing::warn!(actor = %actor, id, error = %cleanup, "cannot remove a failed snapshot write");
                }
                Err(e)
            }
        }
    }

    /// Streams each file to `<dir>/<name>.zst`, within `max_bytes` in all.
    async fn write_files(
        &self,
        dir: &Path,
        actor: &ActorRef,
        id: &str,
        files: Vec<SnapshotFile>,
        max_bytes: u64,
    ) -> Result<Vec<FileEntry>, SnapshotError> {
        let mut entries = Vec::with_capacity(files.len());
        let mut total = 0u64;
        for file in files {
            let name = file.name.clone();
            let path = dir.clone().join(format!("{name}.zst"));
            let streamed = upload(&self.store, &path, file, max_bytes - total)
                .await
                .map_err(|e| match e {
                    UploadError::TooLarge { read } => {
                        SnapshotError::too_large(actor, id, total.saturating_add(read), max_bytes)
                    }
                    UploadError::Source(e) => SnapshotError::Io(format!("{name}: {e}")),
                    UploadError::Store(e) => os_err(e),
                    UploadError::Task(e) => SnapshotError::Io(format!("{name}: {e}")),
                })?;
            self.tighten(&path)?;
            total += streamed.size;
            entries.push(FileEntry {
                name,
                size: streamed.size,
                compressed_size: streamed.compressed_size,
                sha256: streamed.sha256,
            });
        }
        Ok(entries)
    }

    /// Where an object lives on the local disk, for a `file://` store.
    fn local_path(&self, path: &Path) -> Option<std::path::PathBuf> {
        self.local.as_ref().map(|root| {
            path.parts()
                .fold(root.clone(), |p, part| p.join(part.as_ref()))
        })
    }

    /// Stores one object; on a local disk, owner-only (the object store writes files with
    /// the umask's mode, inside directories that are already the owner's only).
    async fn put(&self, path: &Path, data: impl Into<PutPayload>) -> Result<(), SnapshotError> {
        self.store.put(path, data.into()).await.map_err(os_err)?;
        self.tighten(path)
    }

    /// Makes a stored object owner-only, on a local disk.
    fn tighten(&self, path: &Path) -> Result<(), SnapshotError> {
        if let Some(local) = self.local_path(path) {
            crate::private::tighten(&local, crate::private::FILE_MODE)
                .map_err(|e| SnapshotError::Io(format!("{}: {e}", local.display())))?;
        }
        Ok(())
    }

    /// Reads a snapshot's manifest.
    pub async fn manifest(&self, actor: &ActorRef, id: &str) -> Result<Manifest, SnapshotError> {
        let dir = self.snapshot_dir(actor, id)?;
        let corrupt = |reason: String| SnapshotError::Corrupt {
            actor: actor.to_string(),
            id: id.into(),
            reason,
        };
        let bytes = match self.store.get(&dir.clone().join(MANIFEST)).await {
            // Refused before it is read whole: the size comes with the object.
            Ok(r) if r.meta.size > MAX_MANIFEST_BYTES => return Err(corrupt(too_big(r.meta.size))),
            Ok(r) => r.bytes().await.map_err(os_err)?,
            Err(object_store::Error::NotFound { .. }) => {
                let any = self
                    .store
                    .list(Some(&dir))
                    .try_next()
                    .await
                    .map_err(os_err)?;
                return Err(match any {
                    Some(_) => SnapshotError::Incomplete {
                        actor: actor.to_string(),
                        id: id.into(),
                        reason: "manifest.json is missing".into(),
                    },
                    None => SnapshotError::NotFound {
                        actor: actor.to_string(),
                        id: id.into(),
                    },
                });
            }
            Err(e) => return Err(os_err(e)),
        };
        Manifest::from_json(&bytes, actor, id)
    }

    /// Reads and verifies a whole snapshot into the existing directory `to`, one file per
    /// snapshot file. Before any file is read, the snapshot's size (all files,
    /// uncompressed) is checked against `max_bytes` ([`SnapshotError::TooLarge`]) and every
    /// object's size against the `compressedSize` the manifest gives it, which must itself
    /// be one zstd can make of the file's `size` ([`SnapshotError::Corrupt`]). Each file is
    /// then decompressed chunk by chunk into place, and must match the manifest's size and
    /// SHA-256. On an error, what was written into `to` is the caller's to remove.
    pub async fn read_into(
        &self,
        actor: &ActorRef,
        id: &str,
        to: &std::path::Path,
        max_bytes: u64,
    ) -> Result<Manifest, SnapshotError> {
        let manifest = self.manifest(actor, id).await?;
        let dir = self.snapshot_dir(actor, id)?;
        let corrupt = |name: &str, reason: String| SnapshotError::Corrupt {
            actor: actor.to_string(),
            id: id.into(),
            reason: format!("{name}: {reason}"),
        };
        let missing = |name: &str| SnapshotError::Incomplete {
            actor: actor.to_string(),
            id: id.into(),
            reason: format!("{name} is missing"),
        };
        let total = manifest.total_size();
        if total > max_bytes {
            return Err(SnapshotError::too_large(actor, id, total, max_bytes));
        }
        let object = |f: &FileEntry| dir.clone().join(format!("{}.zst", f.name));
        for f in &manifest.files {
            if f.compressed_size > compressed_bound(f.size) {
                return Err(corrupt(
                    &f.name,
                    format!(
                        "compressedSize {} is more than zstd makes of {} bytes",
                        f.compressed_size, f.size
                    ),
                ));
            }
            match self.store.head(&object(f)).await {
                Ok(meta) if meta.size != f.compressed_size => {
                    return Err(corrupt(
                        &f.name,
                        size_mismatch(meta.size, f.compressed_size),
                    ));
                }
                Ok(_) => {}
                Err(object_store::Error::NotFound { .. }) => return Err(missing(&f.name)),
                Err(e) => return Err(os_err(e)),
            }
        }
        for f in &manifest.files {
            download(&self.store, &object(f), f, to.join(&f.name))
                .await
                .map_err(|e| match e {
                    DownloadError::Missing => missing(&f.name),
                    DownloadError::Corrupt(reason) => corrupt(&f.name, reason),
                    DownloadError::Store(e) => os_err(e),
                    DownloadError::Local(e) => {
                        SnapshotError::Io(format!("{}: {e}", to.join(&f.name).display()))
                    }
                })?;
        }
        Ok(manifest)
    }

    /// The ids of an actor's snapshots, oldest first.
    pub async fn list(&self, actor: &ActorRef) -> Result<Vec<String>, SnapshotError> {
        // One level under the actor's directory, not every file of every snapshot: this
        // runs after each suspend. A deleted snapshot's directory goes with it (see
        // `delete_snapshot`), so each prefix here holds at least one object, but for a
        // directory an older version left empty, which the next retention removes.
        let dir = self.actor_dir(actor)?;
        let listed = self
            .store
            .list_with_delimiter(Some(&dir))
            .await
            .map_err(os_err)?;
        let mut ids: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .filter(|id| validate_id(id).is_ok())
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// Deletes one snapshot: its objects (manifest first), then, in a `file://` store,
    /// its directory.
    async fn delete_snapshot(&self, actor: &ActorRef, id: &str) -> Result<usize, SnapshotError> {
        let n = self.delete_prefix(&self.snapshot_dir(actor, id)?).await?;
        if let Some(root) = &self.local {
            let dir = root.join(&actor.atespace).join(&actor.id).join(id);
            // Best effort: a directory still holding something (a write racing the
            // delete) stays, and is listed and deleted again next time.
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir(dir)).await;
        }
        Ok(n)
    }

    async fn delete_prefix(&self, prefix: &Path) -> Result<usize, SnapshotError> {
        let objects: Vec<_> = self
            .store
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(os_err)?;
        // The manifest goes first, so an interrupted delete leaves an incomplete snapshot
        // that is never restored.
        let mut locations: Vec<Path> = objects.into_iter().map(|o| o.location).collect();
        locations.sort_by_key(|l| l.filename() != Some(MANIFEST));
        for l in &locations {
            match self.store.delete(l).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(os_err(e)),
            }
        }
        Ok(locations.len())
    }

    /// Keeps an actor's `keep` newest snapshots, and any in `protect` (snapshots the actor
    /// record still points to), and deletes the others; returns the deleted ids.
    pub async fn retain(
        &self,
        actor: &ActorRef,
        keep: usize,
        protect: &[&str],
    ) -> Result<Vec<String>, SnapshotError> {
        let ids = self.list(actor).await?;
        let old = ids.len().saturating_sub(keep);
        let mut deleted = Vec::new();
        for id in ids.into_iter().take(old) {
            if protect.contains(&id.as_str()) {
                continue;
            }
            self.delete_snapshot(actor, &id).await?;
            deleted.push(id);
        }
        Ok(deleted)
    }

    /// Deletes every snapshot of an actor (when the actor is deleted).
    pub async fn delete_actor(&self, actor: &ActorRef) -> Result<usize, SnapshotError> {
        let ids = self.list(actor).await?;
        for id in &ids {
            self.delete_snapshot(actor, id).await?;
        }
        Ok(ids.len())
    }
}
