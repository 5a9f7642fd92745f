//! Crash reaction: the program of a `process` actor can stop by itself (crash, OOM kill,
//! exit) while the store still says RUNNING. Its node asserts [`ActorExited`]; the control
//! plane then stops the actor there, frees the worker and makes the actor SUSPENDED from
//! its last durable snapshot with a `StateLost` condition saying what happened. The next
//! request through the router resumes it like any suspended actor. The stop is what makes
//! the node withdraw the assertion.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ate_dataspace::{Dataspace, Event, Filter};
use ate_model::{ActorRef, ActorStatus, Worker};
use ate_seam::{ActorExited, actor_key};
use ate_store::StoreError;

use super::lease::ActorLease;
use super::{Lifecycle, LifecycleError, worker_id};

/// First and longest pause before an exit whose handling failed is tried again.
const RETRY: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));

/// The condition reason recorded on an actor whose program stopped by itself.
pub const PROCESS_EXITED: &str = "ProcessExited";

/// What the reaction did with one exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The actor ran there: it is SUSPENDED now.
    Returned,
    /// The actor does not run there (it moved, was suspended, or is gone).
    Ignored,
}

/// Reacts to exited programs until dropped.
#[derive(Debug)]
pub struct ExitHandle(tokio::task::JoinHandle<()>);

impl Drop for ExitHandle {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Actors being handled, each with whether a newer assertion arrived meanwhile (the task
/// then looks again instead of leaving it unhandled).
type Pending = Arc<Mutex<HashMap<ActorRef, bool>>>;

fn lock(p: &Pending) -> std::sync::MutexGuard<'_, HashMap<ActorRef, bool>> {
    // Every mutation is one insert or remove, so a poisoned lock holds a whole map.
    p.lock().unwrap_or_else(|e| e.into_inner())
}

impl Lifecycle {
    /// Starts returning actors whose program exited to their last durable snapshot.
    pub fn start_exit_reaction(&self) -> Result<ExitHandle, LifecycleError> {
        let ds = self.nodes()?.dataspace().clone();
        let mut exits = ds
            .subscribe::<ActorExited>(Filter::All)
            .map_err(|e| LifecycleError::Node(ate_seam::SeamError::Internal(e.to_string())))?;
        let this = self.clone();
        let pending: Pending = Arc::default();
        Ok(ExitHandle(tokio::spawn(async move {
            while let Some(event) = exits.recv().await {
                let Event::Asserted { value, .. } = event else {
                    continue;
                };
                let actor = value.actor;
                {
                    let mut p = lock(&pending);
                    if let Some(again) = p.get_mut(&actor) {
                        *again = true;
                        continue;
                    }
                    p.insert(actor.clone(), false);
                }
                let (this, pending, ds) = (this.clone(), pending.clone(), ds.clone());
                tokio::spawn(async move {
                    loop {
                        this.react_to_exit(&ds, &actor).await;
                        let mut p = lock(&pending);
                        match p.get_mut(&actor) {
                            Some(again) if *again => *again = false,
                            _ => {
                                p.remove(&actor);
                                return;
                            }
                        }
                    }
                });
            }
        })))
    }

    /// Handles what the actor's exit assertion says, retrying while it stands.
    async fn react_to_exit(&self, ds: &Dataspace, actor: &ActorRef) {
        let mut pause = RETRY.0;
        while let Some(exit) = ds.get::<ActorExited>(&actor_key(actor)) {
            match self.handle_exit(&exit).await {
                Ok(Outcome::Returned) => {
                    metrics::counter!(crate::metrics::PROCESS_EXITS).increment(1);
                    tracing::info!(actor = %exit.actor, worker = %exit.worker, node = %exit.node, message = %exit.message, "actor's program exited; actor suspended");
                    return;
                }
                Ok(Outcome::Ignored) => {
                    tracing::debug!(actor = %exit.actor, worker = %exit.worker, node = %exit.node, "exit of an actor not running there; ignored");
                    return;
                }
                Err(e) => {
                    tracing::warn!(actor = %exit.actor, worker = %exit.worker, error = %e, retry_in_ms = pause.as_millis() as u64, "cannot react to an exited actor");
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RETRY.1);
        }
    }

    /// Under the actor's lease: if the actor is RUNNING on the worker that saw its program
    /// exit, stops it there and returns it to its last durable snapshot. Otherwise the
    /// records are left alone; if the worker is not bound to the actor either, the node is
    /// still asked to stop the actor there (a no-op on a worker that does not host it), so
    /// it withdraws a stale assertion.
    async fn handle_exit(&self, exit: &ActorExited) -> Result<Outcome, LifecycleError> {
        let Some(lease) =
            ActorLease::acquire(self.store(), &exit.actor, self.inner.config.lease_ttl).await?
        else {
            return Err(LifecycleError::Busy {
                actor: exit.actor.to_string(),
            });
        };
        let result = lease.fenced(async {
            let a = match self.actor(&exit.actor).await {
                Ok(a) => Some(a),
                Err(LifecycleError::Store(StoreError::NotFound { .. })) => None,
                Err(e) => return Err(e),
            };
            let here = a.as_ref().is_some_and(|a| {
                a.status == ActorStatus::Running
                    && a.worker
                        .as_ref()
                        .is_some_and(|p| worker_id(p) == exit.worker && p.node_name == exit.node)
            });
            if let (true, Some(a)) = (here, a) {
                let why = format!(
                    "the actor's program {} on node {}",
                    exit.message, exit.node
                );
                self.return_to_durable(a, PROCESS_EXITED, why).await?;
                return Ok(Outcome::Returned);
            }
            let bound = match self.store().get::<Worker>(&exit.worker.to_string()).await {
                Ok(w) => w.assignment.is_some_and(|x| x.actor == exit.actor),
                Err(StoreError::NotFound { .. }) => false,
                Err(e) => return Err(e.into()),
            };
            if !bound && let Ok(exec) = self.executor(&exit.node) {
                let req = ate_seam::StopRequest {
                    worker: exit.worker.clone(),
                    actor: exit.actor.clone(),
                };
                if let Err(e) = exec.stop(req).await {
                    tracing::debug!(actor = %exit.actor, worker = %exit.worker, error = %e, "stop of a stale exit failed");
                }
            }
            Ok(Outcome::Ignored)
        })
        .await;
        lease.release().await;
        result
    }
}
