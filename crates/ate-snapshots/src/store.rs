use std::sync::Arc;

use ate_model::{ActorRef, SnapshotScope};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::manifest::{
    FileEntry, MAX_MANIFEST_BYTES, Manifest, too_big, validate_file_name, validate_id,
};
use crate::{SnapshotError, sha256};

const MANIFEST: &str = "manifest.json";
/// zstd level: fast enough to stay off the critical path of a suspend.
const LEVEL: i32 = 3;

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

/// Most memory reserved up front for a decompressed file; beyond it the buffer grows with
/// the data actually decompressed, so a manifest claiming a huge size cannot make a read
/// allocate it.
const PREALLOC_LIMIT: u64 = 64 << 20;

/// Decompresses a snapshot file the manifest says is `size` bytes, reading at most one
/// byte more (so a larger file is caught by the size check without being inflated whole).
fn decompress(packed: &[u8], size: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::with_capacity(size.min(PREALLOC_LIMIT) as usize);
    zstd::stream::read::Decoder::with_buffer(packed)?
        .take(size.saturating_add(1))
        .read_to_end(&mut out)?;
    Ok(out)
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

    /// Writes a snapshot: every file compressed, then the manifest, so a snapshot is either
    /// complete or has no manifest.
    pub async fn write(
        &self,
        actor: &ActorRef,
        id: &str,
        sandbox_class: &str,
        scope: SnapshotScope,
        runtime: &str,
        files: Vec<(String, Bytes)>,
    ) -> Result<Manifest, SnapshotError> {
        let dir = self.snapshot_dir(actor, id)?;
        if let Some(local) = self.local_path(&dir) {
            // Made here, owner-only, before the object store makes it with the umask's mode.
            crate::private::create_dir(&local).map_err(|e| SnapshotError::Io(e.to_string()))?;
        }
        let mut entries = Vec::with_capacity(files.len());
        for (name, data) in files {
            validate_file_name(&name)?;
            let raw = data.clone();
            let (digest, packed) = tokio::task::spawn_blocking(move || {
                let packed = zstd::bulk::compress(&raw, LEVEL);
                (sha256(&raw), packed)
            })
            .await
            .map_err(|e| SnapshotError::Io(e.to_string()))?;
            let packed = packed.map_err(|e| SnapshotError::Io(e.to_string()))?;
            entries.push(FileEntry {
                name: name.clone(),
                size: data.len() as u64,
                compressed_size: packed.len() as u64,
                sha256: digest,
            });
            self.put(&dir.clone().join(format!("{name}.zst")), packed)
                .await?;
        }
        let manifest = Manifest::new(actor, id, sandbox_class, scope, runtime, entries);
        let json =
            serde_json::to_vec_pretty(&manifest).map_err(|e| SnapshotError::Io(e.to_string()))?;
        self.put(&dir.join(MANIFEST), json).await?;
        tracing::debug!(actor = %actor, id, bytes = manifest.total_size(), "snapshot written");
        Ok(manifest)
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

    /// Reads and verifies a whole snapshot: every file's size and SHA-256 must match the
    /// manifest.
    pub async fn read(
        &self,
        actor: &ActorRef,
        id: &str,
    ) -> Result<(Manifest, Vec<(String, Bytes)>), SnapshotError> {
        let manifest = self.manifest(actor, id).await?;
        let dir = self.snapshot_dir(actor, id)?;
        let mut out = Vec::with_capacity(manifest.files.len());
        for f in &manifest.files {
            let fail = |reason: String| SnapshotError::Corrupt {
                actor: actor.to_string(),
                id: id.into(),
                reason: format!("{}: {reason}", f.name),
            };
            let packed = match self
                .store
                .get(&dir.clone().join(format!("{}.zst", f.name)))
                .await
            {
                Ok(r) => r.bytes().await.map_err(os_err)?,
                Err(object_store::Error::NotFound { .. }) => {
                    return Err(SnapshotError::Incomplete {
                        actor: actor.to_string(),
                        id: id.into(),
                        reason: format!("{} is missing", f.name),
                    });
                }
                Err(e) => return Err(os_err(e)),
            };
            let size = f.size;
            let data = tokio::task::spawn_blocking(move || decompress(&packed, size))
                .await
                .map_err(|e| SnapshotError::Io(e.to_string()))?
                .map_err(|e| fail(format!("cannot decompress: {e}")))?;
            if data.len() as u64 != f.size {
                return Err(fail(format!(
                    "{} bytes, manifest says {}",
                    data.len(),
                    f.size
                )));
            }
            let digest = sha256(&data);
            if digest != f.sha256 {
                return Err(fail("sha256 does not match the manifest".into()));
            }
            out.push((f.name.clone(), Bytes::from(data)));
        }
        Ok((manifest, out))
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
