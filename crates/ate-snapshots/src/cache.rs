//! The node-local snapshot cache: recently used snapshots kept decompressed and verified on
//! the node's disk, up to a size bound, least recently used evicted first. What it holds is
//! what the node advertises to the scheduler for snapshot locality. A snapshot newer than
//! those cached for the same actor supersedes them: an actor resumes from its latest
//! snapshot, so the older ones would only take room (and grow every advert) until evicted.

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
    /// The ids cached per actor (`atespace/actor`), to find superseded snapshots at once.
    by_actor: HashMap<String, Vec<String>>,
    total: u64,
    clock: u64,
}

impl Inner {
    /// Forgets the entry (and its files) of `actor_key`'s snapshot `id`.
    fn remove(&mut self, actor_key: &str, id: &str) {
        if let Some(e) = self.entries.remove(&format!("{actor_key}/{id}")) {
            self.total -= e.bytes;
            let _ = std::fs::remove_dir_all(&e.snapshot.dir);
        }
        if let Some(ids) = self.by_actor.get_mut(actor_key) {
            ids.retain(|i| i != id);
            if ids.is_empty() {
                self.by_actor.remove(actor_key);
            }
        }
    }
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
        crate::private::create_dir(&dir).map_err(io)?;
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
        crate::private::create_dir(&staging).map_err(io)?;
        for (name, data) in files {
            validate_file_name(name)?;
            crate::private::write_file(&staging.join(name), data).map_err(io)?;
        }
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&staging, &dir).map_err(io)?;
        let id = manifest.id.clone();
        let snapshot = CachedSnapshot { manifest, dir };
        let actor_key = format!("{}/{}", actor.atespace, actor.id);
        let mut inner = self.lock();
        inner.clock += 1;
        let used = inner.clock;
        if let Some(old) = inner.entries.remove(&k) {
            inner.total -= old.bytes;
        }
        // Ids sort by the time they were made: an older one fetched again (a fallback)
        // leaves the newer ones alone.
        let superseded: Vec<String> = inner
            .by_actor
            .get(&actor_key)
            .map(|ids| ids.iter().filter(|i| **i < id).cloned().collect())
            .unwrap_or_default();
        for old in superseded {
            inner.remove(&actor_key, &old);
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
        let ids = inner.by_actor.entry(actor_key).or_default();
        if !ids.contains(&id) {
            ids.push(id);
        }
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
            let Some((actor_key, id)) = victim.rsplit_once('/') else {
                break;
            };
            inner.remove(actor_key, id);
            tracing::debug!(snapshot = %victim, "evicted from the snapshot cache");
        }
    }
}
