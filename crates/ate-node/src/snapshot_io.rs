//! Moving snapshots between a worker and storage, for every sandbox class: a checkpoint's
//! files go to the snapshot store (suspend) or into the local cache first and to the store
//! in the background (pause); a restore reads them from the local cache, fetching and
//! verifying them from the store on a miss.
//!
//! Invariant: a checkpoint's files pass through disk, never whole through memory. They
//! are staged in the cache (files the node wrote are moved there, bytes it already holds
//! are written out), streamed to the store from there, and become the cache's entry once
//! written; a checkpoint over its template's `spec.snapshots.maxBytes` is refused before
//! anything is staged or stored, and a failed one leaves nothing in the cache or the store.

use ate_model::SnapshotScope;
use ate_seam::{CheckpointRequest, Durability, SeamError, SnapshotRef};
use ate_snapshots::{CachedSnapshot, Manifest, SnapshotFile, SnapshotStore, Staged, check_size};

use crate::executor::{NodeService, blocking_failed, snapshot_error};

impl NodeService {
    /// The snapshot store at `location` (empty: the node's default), opened once.
    pub(crate) fn store(&self, location: &str) -> Result<SnapshotStore, SeamError> {
        let location = if location.is_empty() {
            self.config.snapshot_location.as_str()
        } else {
            location
        };
        let mut stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = stores.get(location) {
            return Ok(s.clone());
        }
        let store = SnapshotStore::open(location).map_err(snapshot_error)?;
        stores.insert(location.to_string(), store.clone());
        Ok(store)
    }

    /// The snapshot's files on this node's disk, checked to be of sandbox class `class`
    /// and at most `max_bytes` (the restoring template's `spec.snapshots.maxBytes`).
    pub(crate) async fn fetch(
        &self,
        snapshot: &SnapshotRef,
        class: &str,
        max_bytes: u64,
    ) -> Result<CachedSnapshot, SeamError> {
        let store = self.store(&snapshot.location)?;
        let cached = self
            .cache
            .get_or_fetch(&store, &snapshot.owner, &snapshot.id, max_bytes)
            .await
            .map_err(snapshot_error)?;
        if cached.manifest.sandbox_class != class {
            return Err(SeamError::Snapshot(format!(
                "snapshot {} was written by sandbox class {:?}, not {class}",
                snapshot.id, cached.manifest.sandbox_class
            )));
        }
        Ok(cached)
    }

    /// Writes a checkpoint's files as the snapshot `req` names, durably or (a pause) to
    /// the local cache with the upload in the background, within the template's size
    /// limit. Path sources are handed over (moved into the cache). Returns the store and
    /// the snapshot's size.
    pub(crate) async fn write_snapshot(
        &self,
        req: &CheckpointRequest,
        class: &str,
        scope: SnapshotScope,
        runtime: &str,
        files: Vec<SnapshotFile>,
    ) -> Result<(SnapshotStore, u64), SeamError> {
        let max_bytes = req.workload.spec.snapshots.max_bytes();
        let store = self.store(&req.location)?;
        check_size(&req.actor, &req.id, &files, max_bytes).map_err(snapshot_error)?;
        let mut staged = self
            .cache
            .stage(&req.actor, &req.id)
            .map_err(snapshot_error)?;
        let staged = tokio::task::spawn_blocking(move || {
            for f in files {
                staged.add(f)?;
            }
            Ok::<_, ate_snapshots::SnapshotError>(staged)
        })
        .await
        .map_err(blocking_failed)?
        .map_err(snapshot_error)?;
        let bytes = match req.durability {
            Durability::Durable => {
                let manifest = store
                    .write(
                        &req.actor,
                        &req.id,
                        class,
                        scope,
                        runtime,
                        staged.files(),
                        max_bytes,
                    )
                    .await
                    .map_err(snapshot_error)?;
                let bytes = manifest.total_size();
                if let Err(e) = self.cache.commit(staged, manifest) {
                    tracing::warn!(actor = %req.actor, error = %e, "checkpoint not kept in the local cache");
                }
                bytes
            }
            Durability::Local => {
                self.keep_and_upload(req, staged, &store, class, scope, runtime)
                    .await?
            }
        };
        Ok((store, bytes))
    }

    /// A pause: the staged checkpoint becomes the cache's now and goes to the snapshot
    /// store in the background. Returns the snapshot's size.
    async fn keep_and_upload(
        &self,
        req: &CheckpointRequest,
        staged: Staged,
        store: &SnapshotStore,
        class: &str,
        scope: SnapshotScope,
        runtime: &str,
    ) -> Result<u64, SeamError> {
        let (staged, entries) = tokio::task::spawn_blocking(move || {
            let entries = staged.describe();
            (staged, entries)
        })
        .await
        .map_err(blocking_failed)?;
        let entries = entries.map_err(snapshot_error)?;
        let manifest = Manifest::new(&req.actor, &req.id, class, scope, runtime, entries);
        let bytes = manifest.total_size();
        let cached = self
            .cache
            .commit(staged, manifest)
            .map_err(snapshot_error)?;
        // Opened now: the cache may evict the snapshot before the upload reads it, and an
        // open file outlives its name.
        let mut files = Vec::with_capacity(cached.manifest.files.len());
        for f in &cached.manifest.files {
            let path = cached.file(&f.name).map_err(snapshot_error)?;
            let file = std::fs::File::open(&path)
                .map_err(|e| SeamError::Internal(format!("{}: {e}", path.display())))?;
            files.push(SnapshotFile::reader(f.name.clone(), file));
        }
        let (store, actor, id, class, runtime, max_bytes) = (
            store.clone(),
            req.actor.clone(),
            req.id.clone(),
            class.to_string(),
            runtime.to_string(),
            req.workload.spec.snapshots.max_bytes(),
        );
        tokio::spawn(async move {
            match store
                .write(&actor, &id, &class, scope, &runtime, files, max_bytes)
                .await
            {
                Ok(_) => {
                    tracing::debug!(actor = %actor, snapshot = %id, "paused snapshot uploaded")
                }
                Err(e) => {
                    tracing::warn!(actor = %actor, snapshot = %id, error = %e, "paused snapshot upload failed")
                }
            }
        });
        Ok(bytes)
    }
}
