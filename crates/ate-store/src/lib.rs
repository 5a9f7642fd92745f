//! The storage contract of ate. Backends implement [`Store`] over raw records (key, version,
//! JSON body, index values derived from the model's field registry); the typed methods on
//! `dyn Store` in [`typed`] turn those into atespaces, actors, templates, pools, nodes and
//! workers. Field and label selectors travel down to the backend, which must answer them
//! from indexes. [`SealedStore`] wraps any backend to keep the kinds of a [`Sealer`] sealed
//! at rest. The `testsuite` feature exports the conformance suite.

mod error;
mod options;
pub mod sealed;
pub mod sql;
pub mod typed;

#[cfg(feature = "testsuite")]
pub mod secret_channel;
#[cfg(feature = "testsuite")]
pub mod testsuite;

use std::time::Duration;

use async_trait::async_trait;
use ate_model::fields::IndexValues;
use ate_model::{Assignment, FieldSelector, Kind};

pub use error::{Result, StoreError, singular};
pub use options::{ListOptions, MAX_PAGE, Page, decode_token, encode_token};
pub use sealed::{SealedStore, Sealer, Unsealed};
pub use typed::Object;

/// A stored record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: String,
    pub version: u64,
    pub body: Vec<u8>,
}

/// A record to write: its key, JSON body and the index values the registry derives from it.
#[derive(Debug, Clone)]
pub struct RecordWrite {
    pub key: String,
    pub body: Vec<u8>,
    pub index: IndexValues,
}

impl RecordWrite {
    /// The parent this record needs (`Kind::parent`) and its key, read from the index values.
    pub fn parent(&self, kind: Kind) -> Option<(Kind, String)> {
        kind.parent().map(|(parent, field)| {
            let key = self
                .index
                .iter()
                .find(|(f, _)| *f == field)
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            (parent, key)
        })
    }
}

/// A change to one record, as a watch reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    Created(Record),
    Updated(Record),
    Deleted {
        key: String,
    },
    /// Events may have been missed (the notification channel was lost and is back, or the
    /// watcher fell behind): relist to converge.
    Resync,
}

/// A stream of events of one kind. Dropping it ends the watch.
pub type Watch = tokio::sync::mpsc::Receiver<WatchEvent>;

/// How many events a watch buffers before the watcher is told to resync.
pub const WATCH_BUFFER: usize = 4096;

/// A held lease: an owner-scoped lock with an expiry. `generation` grows every time the
/// lease changes hands, so a holder can fence its writes against a successor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub key: String,
    pub owner: String,
    pub expires_at_ms: u64,
    pub generation: u64,
}

/// A storage backend. Every write is conditional or atomic as documented; no method may be
/// implemented as a read followed by an unguarded write.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores a new record at version 1. `AlreadyExists` if the key is taken;
    /// `ParentMissing` if the kind has a parent (`Kind::parent`) that does not exist, checked
    /// atomically with the insert.
    async fn create_record(&self, kind: Kind, rec: RecordWrite) -> Result<u64>;

    async fn get_record(&self, kind: Kind, key: &str) -> Result<Record>;

    /// Replaces a record if its version is `expected_version`, returning the new version
    /// (`expected_version + 1`). `Conflict` otherwise, `NotFound` if it is gone.
    async fn update_record(
        &self,
        kind: Kind,
        rec: RecordWrite,
        expected_version: u64,
    ) -> Result<u64>;

    /// Deletes a record, if `expected_version` is given only at that version. `NotEmpty` if
    /// the kind has children (`Kind::children`) that still exist, checked atomically.
    async fn delete_record(
        &self,
        kind: Kind,
        key: &str,
        expected_version: Option<u64>,
    ) -> Result<()>;

    /// One page of records in key order, filtered by the options' selectors (validated by
    /// the caller against the registry).
    async fn list_records(&self, kind: Kind, opts: &ListOptions) -> Result<Page<Record>>;

    /// Atomically binds the assignment's actor to one free worker matching `selector`, and
    /// returns that worker. If a worker already hosts this actor it is returned unchanged,
    /// so an actor never holds two workers. `None` if no free worker matches.
    async fn claim_worker(
        &self,
        selector: &FieldSelector,
        assignment: &Assignment,
    ) -> Result<Option<Record>>;

    /// Takes or renews a lease. Succeeds when the lease is free, expired, or already held by
    /// `owner`; `LeaseHeld` otherwise.
    async fn acquire_lease(&self, key: &str, owner: &str, ttl: Duration) -> Result<Lease>;

    /// Gives a lease up. `LeaseNotHeld` if `owner` does not hold it.
    async fn release_lease(&self, key: &str, owner: &str) -> Result<()>;

    /// Gives a lease up and forgets it, for a lease whose subject is gone (a deleted
    /// actor): nothing of it remains, and a later lease of the same key (a new actor of
    /// the same name) starts afresh at generation 1. `LeaseNotHeld` if `owner` does not
    /// hold it.
    async fn retire_lease(&self, key: &str, owner: &str) -> Result<()>;

    /// Watches one kind: every committed create, update (claims included) and delete, in
    /// commit order, from the moment this returns. A `Resync` event says some may have been
    /// lost; callers subscribe first, then list, then apply events. For a secret kind
    /// (`Kind::is_secret`) the notification the backend sends carries the key only, never
    /// the body: the watch reads the record before it reports the change (it may then
    /// report a later version than the change's; a record deleted meanwhile is reported by
    /// its `Deleted` event only).
    async fn watch(&self, kind: Kind) -> Result<Watch>;
}

/// Milliseconds since the Unix epoch, the clock leases expire by.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
