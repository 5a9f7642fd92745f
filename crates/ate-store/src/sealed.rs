//! A store that keeps the records of some kinds sealed at rest. [`SealedStore`] wraps any
//! backend: what callers write of a kind its [`Sealer`] seals is sealed before the backend
//! sees it, and what they read (gets, lists, watch events) is unsealed on the way back, so
//! the backend, its backups and its change notifications only ever hold sealed bodies while
//! callers keep working with plain records. Every other kind passes through untouched.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ate_model::{Assignment, FieldSelector, Kind};

use crate::{
    Lease, ListOptions, Page, Record, RecordWrite, Result, Store, StoreError, WATCH_BUFFER, Watch,
    WatchEvent,
};

/// A stored body, unsealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsealed {
    pub body: Vec<u8>,
    /// Whether it was stored sealed. A record stored in the clear (written before sealing
    /// was on) reads as it is, and [`SealedStore::wrap`] seals it.
    pub was_sealed: bool,
}

/// Seals and unseals the bodies of the kinds it [`seals`](Sealer::seals). Both directions
/// know the record's kind and key, so a sealed body can be bound to the record it belongs to
/// (one moved to another key does not unseal).
pub trait Sealer: Send + Sync + 'static {
    fn seals(&self, kind: Kind) -> bool;

    /// The body to store for record `key`, from the body a caller wrote.
    fn seal(&self, kind: Kind, key: &str, body: &[u8]) -> Result<Vec<u8>>;

    /// The body a caller reads, from the stored one.
    fn unseal(&self, kind: Kind, key: &str, stored: &[u8]) -> Result<Unsealed>;
}

/// A [`Store`] that seals the kinds of its [`Sealer`] (see the module documentation).
pub struct SealedStore {
    inner: Arc<dyn Store>,
    sealer: Arc<dyn Sealer>,
}

impl std::fmt::Debug for SealedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedStore").finish_non_exhaustive()
    }
}

impl SealedStore {
    /// Wraps `inner`, after sealing every record of a sealed kind that it holds in the clear
    /// (written by a version that did not seal). Fails, naming the record, when a stored
    /// record does not unseal: a store sealed with another key is never half-used.
    pub async fn wrap(inner: Arc<dyn Store>, sealer: Arc<dyn Sealer>) -> Result<Arc<dyn Store>> {
        let store = SealedStore { inner, sealer };
        for kind in Kind::ALL.into_iter().filter(|k| store.sealer.seals(*k)) {
            store.seal_stored(kind).await?;
        }
        Ok(Arc::new(store))
    }

    /// Seals the records of `kind` stored in the clear; returns how many it sealed.
    async fn seal_stored(&self, kind: Kind) -> Result<usize> {
        let mut opts = ListOptions::default();
        let mut sealed = 0;
        loop {
            let page = self.inner.list_records(kind, &opts).await?;
            for rec in &page.items {
                let plain = self.sealer.unseal(kind, &rec.key, &rec.body)?;
                if plain.was_sealed {
                    continue;
                }
                let write = RecordWrite {
                    key: rec.key.clone(),
                    body: self.sealer.seal(kind, &rec.key, &plain.body)?,
                    index: kind
                        .index_values_from_json(&plain.body)
                        .map_err(StoreError::internal)?,
                };
                match self.inner.update_record(kind, write, rec.version).await {
                    Ok(_) => sealed += 1,
                    // Changed or deleted meanwhile, by a writer that sealed it or by one
                    // of an older version, whose record the next start seals.
                    Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            match page.continue_token {
                Some(t) => opts.continue_token = Some(t),
                None => break,
            }
        }
        if sealed > 0 {
            tracing::info!(%kind, sealed, "records stored in the clear are now sealed");
        }
        Ok(sealed)
    }

    fn seal(&self, kind: Kind, mut rec: RecordWrite) -> Result<RecordWrite> {
        if self.sealer.seals(kind) {
            rec.body = self.sealer.seal(kind, &rec.key, &rec.body)?;
        }
        Ok(rec)
    }

    fn unseal(&self, kind: Kind, mut rec: Record) -> Result<Record> {
        if self.sealer.seals(kind) {
            rec.body = self.sealer.unseal(kind, &rec.key, &rec.body)?.body;
        }
        Ok(rec)
    }
}

#[async_trait]
impl Store for SealedStore {
    async fn create_record(&self, kind: Kind, rec: RecordWrite) -> Result<u64> {
        let rec = self.seal(kind, rec)?;
        self.inner.create_record(kind, rec).await
    }

    async fn get_record(&self, kind: Kind, key: &str) -> Result<Record> {
        let rec = self.inner.get_record(kind, key).await?;
        self.unseal(kind, rec)
    }

    async fn update_record(
        &self,
        kind: Kind,
        rec: RecordWrite,
        expected_version: u64,
    ) -> Result<u64> {
        let rec = self.seal(kind, rec)?;
        self.inner.update_record(kind, rec, expected_version).await
    }

    async fn delete_record(
        &self,
        kind: Kind,
        key: &str,
        expected_version: Option<u64>,
    ) -> Result<()> {
        self.inner.delete_record(kind, key, expected_version).await
    }

    async fn list_records(&self, kind: Kind, opts: &ListOptions) -> Result<Page<Record>> {
        let page = self.inner.list_records(kind, opts).await?;
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(|r| self.unseal(kind, r))
                .collect::<Result<_>>()?,
            continue_token: page.continue_token,
        })
    }

    async fn claim_worker(
        &self,
        selector: &FieldSelector,
        assignment: &Assignment,
    ) -> Result<Option<Record>> {
        let claimed = self.inner.claim_worker(selector, assignment).await?;
        claimed.map(|r| self.unseal(Kind::Worker, r)).transpose()
    }

    async fn acquire_lease(&self, key: &str, owner: &str, ttl: Duration) -> Result<Lease> {
        self.inner.acquire_lease(key, owner, ttl).await
    }

    async fn release_lease(&self, key: &str, owner: &str) -> Result<()> {
        self.inner.release_lease(key, owner).await
    }

    async fn retire_lease(&self, key: &str, owner: &str) -> Result<()> {
        self.inner.retire_lease(key, owner).await
    }

    async fn watch(&self, kind: Kind) -> Result<Watch> {
        let mut events = self.inner.watch(kind).await?;
        if !self.sealer.seals(kind) {
            return Ok(events);
        }
        let sealer = self.sealer.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(WATCH_BUFFER);
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    _ = tx.closed() => return,
                    e = events.recv() => match e {
                        Some(e) => e,
                        None => return,
                    },
                };
                let unsealed = |rec: Record| -> Result<Record> {
                    let body = sealer.unseal(kind, &rec.key, &rec.body)?.body;
                    Ok(Record { body, ..rec })
                };
                let event = match event {
                    WatchEvent::Created(r) => unsealed(r).map(WatchEvent::Created),
                    WatchEvent::Updated(r) => unsealed(r).map(WatchEvent::Updated),
                    other => Ok(other),
                };
                // A record that does not unseal is not passed on half-read: the watcher
                // relists, and meets the error where it can report it.
                let event = event.unwrap_or_else(|e| {
                    tracing::warn!(%kind, error = %e, "cannot unseal a changed record; asking for resync");
                    WatchEvent::Resync
                });
                if tx.send(event).await.is_err() {
                    return;
                }
            }
        });
        Ok(rx)
    }
}
