//! The per-actor lease: the lock every workflow holds, and its fence. Its key carries the
//! atespace, so two actors with the same id in different atespaces never block each other.
//!
//! A workflow acts only while it may be sure nobody else holds the lease: its work runs in
//! [`ActorLease::fenced`], which drops it (as a crash would) at the holder's deadline, the
//! send time of the last confirmed renewal plus the TTL minus [`margin`]. Every actor and
//! worker record a fenced workflow writes carries the lease generation it holds, and a
//! write over a record carrying a newer generation is refused ([`LifecycleError::LeaseLost`]),
//! so a workflow that lost its lease (its replica stalled, its store link broke) can never
//! write over what the next holder did, even with a write already in flight.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ate_model::ActorRef;
use ate_store::{Store, StoreError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::LifecycleError;

tokio::task_local! {
    /// The lease generation of the fenced workflow running in this task.
    static FENCE: u64;
}

/// How long before the lease can expire its holder stops acting: room for a renewal's
/// round trip and for clocks that run at slightly different rates on two replicas.
pub(crate) fn margin(ttl: Duration) -> Duration {
    ttl / 5
}

/// The generation the running workflow holds, if it runs fenced.
pub(crate) fn current_fence() -> Option<u64> {
    FENCE.try_with(|g| *g).ok()
}

/// Checks a record last written under lease generation `written` against the running
/// workflow's fence, returning the generation to write it under. Outside a fenced
/// workflow the record keeps the generation it has.
pub(crate) fn fence_write(written: u64, actor: &ActorRef) -> Result<u64, LifecycleError> {
    match current_fence() {
        Some(mine) if written > mine => Err(LifecycleError::LeaseLost {
            actor: actor.to_string(),
        }),
        Some(mine) => Ok(mine),
        None => Ok(written),
    }
}

/// A held actor lease, renewed in the background until released or dropped. A workflow
/// that crashes stops renewing, and the lease expires after its TTL.
pub(crate) struct ActorLease {
    store: Arc<dyn Store>,
    aref: ActorRef,
    key: String,
    owner: String,
    generation: u64,
    /// Until when this holder may act; moved on by each confirmed renewal.
    valid_until: watch::Receiver<Instant>,
    renewer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ActorLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActorLease")
            .field("key", &self.key)
            .field("owner", &self.owner)
            .field("generation", &self.generation)
            .finish()
    }
}

pub(crate) fn lease_key(aref: &ActorRef) -> String {
    format!("actor/{}/{}", aref.atespace, aref.id)
}

impl ActorLease {
    /// Takes the lease; `None` if another owner holds it.
    pub(crate) async fn acquire(
        store: &Arc<dyn Store>,
        aref: &ActorRef,
        ttl: Duration,
    ) -> Result<Option<Self>, StoreError> {
        let key = lease_key(aref);
        let owner = ate_snapshots::new_snapshot_id();
        let sent = Instant::now();
        let lease = match store.acquire_lease(&key, &owner, ttl).await {
            Ok(l) => l,
            Err(StoreError::LeaseHeld { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let deadline = move |sent: Instant| sent + ttl.saturating_sub(margin(ttl));
        let (until_tx, valid_until) = watch::channel(deadline(sent));
        let renewer = {
            let (store, key, owner) = (store.clone(), key.clone(), owner.clone());
            let generation = lease.generation;
            tokio::spawn(async move {
                let every = ttl / 3;
                loop {
                    tokio::time::sleep(every).await;
                    let sent = Instant::now();
                    match store.acquire_lease(&key, &owner, ttl).await {
                        Ok(l) if l.generation == generation => {
                            let _ = until_tx.send(deadline(sent));
                        }
                        Ok(_) | Err(StoreError::LeaseHeld { .. }) => {
                            tracing::warn!(lease = %key, "actor lease taken over; the workflow stops");
                            let _ = until_tx.send(sent);
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(lease = %key, error = %e, "cannot renew actor lease")
                        }
                    }
                }
            })
        };
        Ok(Some(Self {
            store: store.clone(),
            aref: aref.clone(),
            key,
            owner,
            generation: lease.generation,
            valid_until,
            renewer: Some(renewer),
        }))
    }

    /// Runs a workflow's steps under this lease: its record writes carry the lease's
    /// generation, and it is dropped at the holder's deadline if renewals stop being
    /// confirmed, failing with `LeaseLost`.
    pub(crate) async fn fenced<T>(
        &self,
        work: impl Future<Output = Result<T, LifecycleError>>,
    ) -> Result<T, LifecycleError> {
        let work = FENCE.scope(self.generation, work);
        tokio::pin!(work);
        let mut until = self.valid_until.clone();
        let mut renewing = true;
        loop {
            let deadline = *until.borrow_and_update();
            if Instant::now() >= deadline {
                break;
            }
            tokio::select! {
                out = &mut work => return out,
                () = tokio::time::sleep_until(deadline) => {}
                // A renewal moved the deadline on; once the renewer stops, the last
                // deadline stands.
                changed = until.changed(), if renewing => renewing = changed.is_ok(),
            }
        }
        tracing::warn!(actor = %self.aref, generation = self.generation, "lease deadline passed; the workflow stops");
        Err(LifecycleError::LeaseLost {
            actor: self.aref.to_string(),
        })
    }

    /// Gives the lease up now.
    pub(crate) async fn release(self) {
        self.give_up(false).await
    }

    /// Gives the lease up and forgets it: its actor is deleted, and a new actor of the
    /// same name starts with a lease of its own. A crash before this leaves the lease to
    /// expire; the next actor of the name takes it over then.
    pub(crate) async fn retire(self) {
        self.give_up(true).await
    }

    async fn give_up(mut self, retire: bool) {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        let given = if retire {
            self.store.retire_lease(&self.key, &self.owner).await
        } else {
            self.store.release_lease(&self.key, &self.owner).await
        };
        match given {
            Ok(()) | Err(StoreError::LeaseNotHeld { .. }) => {}
            Err(e) => {
                tracing::warn!(lease = %self.key, retire, error = %e, "cannot give up actor lease")
            }
        }
    }
}

impl Drop for ActorLease {
    fn drop(&mut self) {
        // A workflow that returned early (an error) still gives the lease back.
        if let Some(r) = self.renewer.take() {
            r.abort();
            let (store, key, owner) = (self.store.clone(), self.key.clone(), self.owner.clone());
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = store.release_lease(&key, &owner).await;
                });
            }
        }
    }
}
