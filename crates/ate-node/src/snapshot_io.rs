//! Moving snapshots between a worker and storage, for every sandbox class: a checkpoint's
//! files go to the snapshot store (suspend) or into the local cache first and to the store
//! in the background (pause); a restore reads them from the local cache, fetching and
//! verifying them from the store on a miss.

use ate_model::SnapshotScope;
use ate_seam::{CheckpointRequest, Durability, SeamError, SnapshotRef};
use ate_snapshots::{CachedSnapshot, Manifest, SnapshotStore, describe_files};

use crate::executor::{NodeService, snapshot_error};

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

    /// The snapshot's files on this node's disk, checked to be of sandbox class `class`.
    pub(crate) async fn fetch(
        &self,
        snapshot: &SnapshotRef,
        class: &str,
    ) -> Result<CachedSnapshot, SeamError> {
        let store = self.store(&snapshot.location)?;
        let cached = self
            .cache
            .get_or_fetch(&store, &snapshot.owner, &snapshot.id)
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
    /// the local cache with the upload in the background. Returns the store and the
    /// snapshot's size.
    pub(crate) async fn write_snapshot(
        &self,
        req: &CheckpointRequest,
        class: &str,
        scope: SnapshotScope,
        runtime: &str,
        files: Vec<(String, bytes::Bytes)>,
    ) -> Result<(SnapshotStore, u64), SeamError> {
        let store = self.store(&req.location)?;
        let bytes = match req.durability {
            Durability::Durable => {
                let manifest = store
                    .write(&req.actor, &req.id, class, scope, runtime, files.clone())
                    .await
                    .map_err(snapshot_error)?;
                let bytes = manifest.total_size();
                if let Err(e) = self.cache.insert(&req.actor, manifest, &files) {
                    tracing::warn!(actor = %req.actor, error = %e, "checkpoint not kept in the local cache");
                }
                bytes
            }
            Durability::Local => self.keep_and_upload(req, &store, class, scope, runtime, files)?,
        };
        Ok((store, bytes))
    }

    /// A pause: the checkpoint goes into the local cache now and to the snapshot store in
    /// the background. Returns the snapshot's size.
    fn keep_and_upload(
        &self,
        req: &CheckpointRequest,
        store: &SnapshotStore,
        class: &str,
        scope: SnapshotScope,
        runtime: &str,
        files: Vec<(String, bytes::Bytes)>,
    ) -> Result<u64, SeamError> {
        let entries = describe_files(&files).map_err(snapshot_error)?;
        let manifest = Manifest::new(&req.actor, &req.id, class, scope, runtime, entries);
        let bytes = manifest.total_size();
        self.cache
            .insert(&req.actor, manifest, &files)
            .map_err(snapshot_error)?;
        let (store, actor, id, class, runtime) = (
            store.clone(),
            req.actor.clone(),
            req.id.clone(),
            class.to_string(),
            runtime.to_string(),
        );
        tokio::spawn(async move {
            match store
                .write(&actor, &id, &class, scope, &runtime, files)
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
