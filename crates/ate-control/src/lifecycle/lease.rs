//! The per-actor lease: the lock every workflow holds. Its key carries the atespace, so
//! two actors with the same id in different atespaces never block each other.

use std::sync::Arc;
use std::time::Duration;

use ate_model::ActorRef;
use ate_store::{Store, StoreError};
use tokio::task::JoinHandle;

/// A held actor lease, renewed in the background until released or dropped. A workflow
/// that crashes stops renewing, and the lease expires after its TTL.
pub(crate) struct ActorLease {
    store: Arc<dyn Store>,
    key: String,
    owner: String,
    renewer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ActorLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActorLease")
            .field("key", &self.key)
            .field("owner", &self.owner)
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
        match store.acquire_lease(&key, &owner, ttl).await {
            Ok(_) => {}
            Err(StoreError::LeaseHeld { .. }) => return Ok(None),
            Err(e) => return Err(e),
        }
        let renewer = {
            let (store, key, owner) = (store.clone(), key.clone(), owner.clone());
            tokio::spawn(async move {
                let every = ttl / 3;
                loop {
                    tokio::time::sleep(every).await;
                    if let Err(e) = store.acquire_lease(&key, &owner, ttl).await {
                        tracing::warn!(lease = %key, error = %e, "cannot renew actor lease");
                    }
                }
            })
        };
        Ok(Some(Self {
            store: store.clone(),
            key,
            owner,
            renewer: Some(renewer),
        }))
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
