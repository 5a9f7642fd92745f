//! The node-local snapshot cache: recently used snapshots kept decompressed and verified on
//! the node's disk, up to a size bound, least recently used evicted first. What it holds is
//! what the node advertises to the scheduler for snapshot locality. A snapshot newer than
//! those cached for the same actor supersedes them: an actor resumes from its latest
//! snapshot, so the older ones would only take room (and grow every advert) until evicted.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ate_model::ActorRef;
use sha2::Digest;

use crate::source::{FileSource, SnapshotFile, read_chunks};
use crate::{
    FileEntry, Manifest, SnapshotError, SnapshotStore, validate_actor, validate_file_name,
    validate_id,
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

    /// The snapshot from the cache, else fetched (and verified) from `store` into it,
    /// streamed to disk file by file. A snapshot over `max_bytes` is refused before it is
    /// read (see [`SnapshotStore::read_into`]).
    pub async fn get_or_fetch(
        &self,
        store: &SnapshotStore,
        actor: &ActorRef,
        id: &str,
        max_bytes: u64,
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
        let staged = self.stage(actor, id)?;
        let manifest = store.read_into(actor, id, staged.dir(), max_bytes).await?;
        self.commit(staged, manifest)
    }

    /// A new staging directory for `actor`'s snapshot `id`. Each staging has a directory
    /// of its own, so two fetches of one snapshot at once do not mix their files.
    pub fn stage(&self, actor: &ActorRef, id: &str) -> Result<Staged, SnapshotError> {
        // The actor names two directories below the cache's: it must be checked here as
        // the store checks it, or `..` would leave the cache.
        validate_actor(actor)?;
        validate_id(id)?;
        let mut r = [0u8; 4];
        let _ = getrandom::fill(&mut r);
        let parent = self.dir.join(&actor.atespace).join(&actor.id);
        let dir = parent.join(format!("{id}.{}.partial", crate::hex(&r)));
        crate::private::create_dir(&dir).map_err(io)?;
        Ok(Staged {
            dir,
            actor: actor.clone(),
            id: id.into(),
            names: Vec::new(),
        })
    }

    /// Makes a staged snapshot, described by `manifest`, the cache's entry for its id
    /// (replacing an earlier one), and evicts what no longer fits.
    pub fn commit(
        &self,
        mut staged: Staged,
        manifest: Manifest,
    ) -> Result<CachedSnapshot, SnapshotError> {
        let actor = staged.actor.clone();
        if manifest.id != staged.id {
            return Err(SnapshotError::Io(format!(
                "manifest of snapshot {} committed for {}",
                manifest.id, staged.id
            )));
        }
        let k = key(&actor, &manifest.id);
        let dir = self
            .dir
            .join(&actor.atespace)
            .join(&actor.id)
            .join(&manifest.id);
        let bytes = manifest.total_size();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&staged.dir, &dir).map_err(io)?;
        staged.names.clear();
        staged.dir = PathBuf::new();
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

/// A snapshot being put together in the cache (see [`SnapshotCache::stage`]). Its methods
/// do blocking file I/O. Dropped without [`SnapshotCache::commit`], its directory goes.
#[derive(Debug)]
pub struct Staged {
    dir: PathBuf,
    actor: ActorRef,
    id: String,
    /// The files added so far, in order.
    names: Vec<String>,
}

impl Staged {
    /// The staging directory (files written here directly are the caller's to describe).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Puts one file in: a [`FileSource::Path`] is moved (renamed: the caller hands the
    /// file over, and on the same filesystem nothing is copied), or copied across
    /// filesystems; bytes and readers are written out in chunks.
    pub fn add(&mut self, file: SnapshotFile) -> Result<(), SnapshotError> {
        validate_file_name(&file.name)?;
        if self.names.contains(&file.name) {
            return Err(SnapshotError::InvalidName {
                what: "file name (given twice)",
                name: file.name,
            });
        }
        let to = self.dir.join(&file.name);
        let failed = |e: std::io::Error| SnapshotError::Io(format!("{}: {e}", to.display()));
        match file.source {
            FileSource::Path(from) => {
                if std::fs::rename(&from, &to).is_err() {
                    copy_into(&mut std::fs::File::open(&from).map_err(failed)?, &to)
                        .map_err(failed)?;
                }
                crate::private::tighten(&to, crate::private::FILE_MODE).map_err(failed)?;
            }
            FileSource::Bytes(b) => crate::private::write_file(&to, &b).map_err(failed)?,
            FileSource::Reader(mut r) => copy_into(&mut r, &to).map_err(failed)?,
        }
        self.names.push(file.name);
        Ok(())
    }

    /// The staged files as sources for [`SnapshotStore::write`], in the order added.
    pub fn files(&self) -> Vec<SnapshotFile> {
        self.names
            .iter()
            .map(|n| SnapshotFile::path(n.clone(), self.dir.join(n)))
            .collect()
    }

    /// Entries for the staged files, read back from disk chunk by chunk: sizes and
    /// digests, `compressed_size` 0 (a node-local snapshot is not compressed).
    pub fn describe(&self) -> Result<Vec<FileEntry>, SnapshotError> {
        self.names
            .iter()
            .map(|name| {
                let path = self.dir.join(name);
                let failed =
                    |e: std::io::Error| SnapshotError::Io(format!("{}: {e}", path.display()));
                let mut file = std::fs::File::open(&path).map_err(failed)?;
                let mut hasher = sha2::Sha256::new();
                let size = read_chunks(
                    &mut file,
                    |chunk| {
                        hasher.update(chunk);
                        Ok(())
                    },
                    failed,
                )?;
                Ok(FileEntry {
                    name: name.clone(),
                    size,
                    compressed_size: 0,
                    sha256: crate::hex(&hasher.finalize()),
                })
            })
            .collect()
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Copies `from` into the new owner-only file `to`, a buffer at a time.
fn copy_into(from: &mut dyn Read, to: &Path) -> std::io::Result<()> {
    let mut file = crate::private::create_file(to)?;
    std::io::copy(from, &mut file)?;
    Ok(())
}
