//! The node-local snapshot cache: recently used snapshots kept decompressed and verified on
//! the node's disk, up to a size bound, least recently used evicted first. What it holds is
//! what the node advertises to the scheduler for snapshot locality.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ate_model::ActorRef;

use crate::{
    Manifest, SnapshotError, SnapshotStore, validate_actor, validate_file_name, validate_id,
};

/// A snapshot present in the cache: its manifest and the directory of its files.
#[derive(Debug, Clone)]
pub struct CachedSnapshot {
    pub manifest: Manifest,
    pub dir: PathBuf,
}

impl CachedSnapshot {
    /// The path of one file (names are validated, so the path stays inside the directory).
    pub fn file(&self, name: &str) -> Result<PathBuf, SnapshotError> {
        validate_file_name(name)?;
        Ok(self.dir.join(name))
    }
}

struct Entry {
    snapshot: CachedSnapshot,
    bytes: u64,
    used: u64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    total: u64,
    clock: u64,
}

/// A size-bounded LRU cache of snapshots in a directory.
pub struct SnapshotCache {
    dir: PathBuf,
    max_bytes: u64,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for SnapshotCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotCache")
            .field("dir", &self.dir)
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

fn io(e: std::io::Error) -> SnapshotError {
    SnapshotError::Io(e.to_string())
}

/// The cache key of a snapshot, also the id the node advertises.
pub fn key(actor: &ActorRef, id: &str) -> String {
    format!("{}/{}/{id}", actor.atespace, actor.id)
}

impl SnapshotCache {
    /// A cache in `dir` (emptied: a node restarts with a cold cache) holding at most
    /// `max_bytes` of uncompressed snapshot data.
    pub fn new(dir: impl AsRef<Path>, max_bytes: u64) -> Result<Self, SnapshotError> {
        let dir = dir.as_ref().to_path_buf();
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io)?;
        }
        std::fs::create_dir_all(&dir).map_err(io)?;
        Ok(Self {
            dir,
            max_bytes,
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The snapshots held, as `atespace/actor/id`, sorted.
    pub fn held(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.lock().entries.keys().cloned().collect();
        keys.sort();
        keys
    }

    pub fn total_bytes(&self) -> u64 {
        self.lock().total
    }

    /// The snapshot from the cache, else fetched (and verified) from `store` into it.
    pub async fn get_or_fetch(
        &self,
        store: &SnapshotStore,
        actor: &ActorRef,
        id: &str,
    ) -> Result<CachedSnapshot, SnapshotError> {
        validate_id(id)?;
        let k = key(actor, id);
        {
            let mut inner = self.lock();
            inner.clock += 1;
            let now = inner.clock;
            if let Some(e) = inner.entries.get_mut(&k) {
                e.used = now;
                return Ok(e.snapshot.clone());
            }
        }
        let (manifest, files) = store.read(actor, id).await?;
        self.insert(actor, manifest, &files)
    }

    /// Puts a snapshot the node has in hand (one it just wrote) into the cache, so the
    /// next restore of it on this node reads no object storage.
    pub fn insert(
        &self,
        actor: &ActorRef,
        manifest: Manifest,
        files: &[(String, bytes::Bytes)],
    ) -> Result<CachedSnapshot, SnapshotError> {
        // The actor names two directories below the cache's: it must be checked here as
        // the store checks it, or `..` would leave the cache.
        validate_actor(actor)?;
        validate_id(&manifest.id)?;
        let k = key(actor, &manifest.id);
        let dir = self
            .dir
            .join(&actor.atespace)
            .join(&actor.id)
            .join(&manifest.id);
        let bytes = manifest.total_size();
        let staging = dir.with_extension("partial");
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).map_err(io)?;
        for (name, data) in files {
            validate_file_name(name)?;
            std::fs::write(staging.join(name), data).map_err(io)?;
        }
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&staging, &dir).map_err(io)?;
        let snapshot = CachedSnapshot { manifest, dir };
        let mut inner = self.lock();
        inner.clock += 1;
        let used = inner.clock;
        if let Some(old) = inner.entries.remove(&k) {
            inner.total -= old.bytes;
        }
        inner.total += bytes;
        inner.entries.insert(
            k.clone(),
            Entry {
                snapshot: snapshot.clone(),
                bytes,
                used,
            },
        );
        self.evict(&mut inner, &k);
        Ok(snapshot)
    }

    /// Evicts least recently used snapshots (never `keep`) until the cache fits.
    fn evict(&self, inner: &mut Inner, keep: &str) {
        while inner.total > self.max_bytes {
            let victim = inner
                .entries
                .iter()
                .filter(|(k, _)| k.as_str() != keep)
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone());
            let Some(victim) = victim else { break };
            if let Some(e) = inner.entries.remove(&victim) {
                inner.total -= e.bytes;
                let _ = std::fs::remove_dir_all(&e.snapshot.dir);
                tracing::debug!(snapshot = %victim, bytes = e.bytes, "evicted from the snapshot cache");
            }
        }
    }
}
