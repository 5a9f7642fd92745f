//! Idle suspension: nodes mark actors that have had no request in flight for their
//! template's idle timeout ([`IdleActor`]); the control plane suspends them. The node
//! withdraws the mark the moment a request arrives, and a suspend lets requests already
//! admitted finish before it saves the actor.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ate_dataspace::{Event, Filter};
use ate_model::{ActorRef, ActorStatus};
use ate_seam::{IdleActor, actor_key};

use super::{Lifecycle, LifecycleError, worker_id};

/// First and longest pause before an idle actor whose suspend failed is tried again.
const RETRY: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));

/// Suspends idle actors until dropped.
#[derive(Debug)]
pub struct IdleHandle(tokio::task::JoinHandle<()>);

impl Drop for IdleHandle {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Lifecycle {
    /// Starts suspending actors their nodes mark idle.
    pub fn start_idle_suspension(&self) -> Result<IdleHandle, LifecycleError> {
        let ds = self.nodes()?.dataspace().clone();
        let mut marks = ds
            .subscribe::<IdleActor>(Filter::All)
            .map_err(|e| LifecycleError::Node(ate_seam::SeamError::Internal(e.to_string())))?;
        let this = self.clone();
        let busy: Arc<Mutex<HashSet<ActorRef>>> = Arc::default();
        Ok(IdleHandle(tokio::spawn(async move {
            while let Some(event) = marks.recv().await {
                let Event::Asserted { value, .. } = event else {
                    continue;
                };
                if !busy
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(value.actor.clone())
                {
                    continue;
                }
                let (this, busy, ds) = (this.clone(), busy.clone(), ds.clone());
                tokio::spawn(async move {
                    this.suspend_idle(&ds, &value).await;
                    busy.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&value.actor);
                });
            }
        })))
    }

    /// Suspends an idle actor if it still runs where the mark says, retrying while the
    /// mark stands.
    async fn suspend_idle(&self, ds: &ate_dataspace::Dataspace, mark: &IdleActor) {
        let mut pause = RETRY.0;
        loop {
            let still_marked = ds
                .get::<IdleActor>(&actor_key(&mark.actor))
                .is_some_and(|m| m.worker == mark.worker);
            if !still_marked {
                return;
            }
            match self.actor(&mark.actor).await {
                Ok(a)
                    if a.status == ActorStatus::Running
                        && a.worker.as_ref().map(worker_id).as_ref() == Some(&mark.worker) => {}
                Ok(_) | Err(LifecycleError::Store(ate_store::StoreError::NotFound { .. })) => {
                    return;
                }
                Err(e) => {
                    tracing::warn!(actor = %mark.actor, error = %e, "cannot read an idle actor")
                }
            }
            match self.suspend(&mark.actor).await {
                Ok(_) => {
                    metrics::counter!(crate::metrics::IDLE_SUSPENDS).increment(1);
                    tracing::info!(actor = %mark.actor, worker = %mark.worker, "suspended idle actor");
                    return;
                }
                Err(e) => {
                    tracing::warn!(actor = %mark.actor, error = %e, retry_in_ms = pause.as_millis() as u64, "cannot suspend idle actor");
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RETRY.1);
        }
    }
}
