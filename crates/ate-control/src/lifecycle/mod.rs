//! The actor lifecycle: resume, suspend, pause and delete as workflows over the store and
//! the nodes.
//!
//! Every workflow holds the actor's lease (`actor/<atespace>/<id>`) while it runs, so one
//! operation at a time touches an actor, on this control plane or any other sharing the
//! store. Each step persists before the next begins, and the persisted status says which
//! step was reached: RESUMING, SUSPENDING and PAUSING are only ever seen while a workflow
//! holds the lease or after one died. Whoever takes the lease next (the next call, or the
//! recovery sweep) first settles such an actor: a resume is rolled back, a suspend or
//! pause is rolled forward when its checkpoint can still be taken or already landed, and
//! otherwise the actor goes back to its last durable snapshot with the loss recorded.

mod error;
mod evict;
mod exits;
mod holders;
mod idle;
mod lease;
mod park;
mod recovery;
mod resume;
mod schedule;
mod snapshots;
mod specs;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ate_model::{
    Actor, ActorCondition, ActorRef, ActorStatus, ActorTemplate, Assignment, NamespacedName,
    STATE_LOST, Worker, WorkerPlacement,
};
use ate_seam::{NodeDirectory, NodeExecutor, NodeRegistration, WorkerId, Workload};
use ate_store::{Store, StoreError};

pub use error::LifecycleError;
pub use exits::{ExitHandle, PROCESS_EXITED};
pub use idle::IdleHandle;
use lease::ActorLease;
pub use recovery::{RecoveryHandle, RecoveryReport};
use snapshots::SnapshotStores;

/// How the workflows behave.
#[derive(Debug, Clone)]
pub struct LifecycleConfig {
    /// Lifetime of an actor's lease. A workflow renews it while it runs; after a crash the
    /// actor is free again once it expires.
    pub lease_ttl: Duration,
    /// How long a suspend or delete of a paused actor waits for the background upload of
    /// its snapshot.
    pub upload_wait: Duration,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(15),
            upload_wait: Duration::from_secs(30),
        }
    }
}

/// The lifecycle workflows. Cheap to clone.
#[derive(Clone)]
pub struct Lifecycle {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    store: Arc<dyn Store>,
    nodes: Option<Arc<dyn NodeDirectory>>,
    config: LifecycleConfig,
    /// One in-process resume per actor at a time; the others wait for it and then see
    /// the actor RUNNING.
    resume_gates: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    snapshots: SnapshotStores,
    /// Templates and pools, kept by store watches.
    specs: specs::Specs,
    /// Which nodes cache which snapshot.
    holders: holders::Holders,
    /// Actors the recovery sweep could not settle, tried again after a backoff.
    recovery_backoff: recovery::Backoff,
}

impl std::fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lifecycle")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    ate_store::now_ms()
}

/// The environment variable naming a step at which the process aborts, for tests that
/// prove a control plane killed at that step leaves state that recovery completes.
pub const CRASH_AT_ENV: &str = "ATE_CRASH_AT";

/// Aborts the process (no unwinding, no cleanup: as a kill would) if `ATE_CRASH_AT`
/// names this step.
fn crashpoint(step: &str) {
    static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if AT
        .get_or_init(|| std::env::var(CRASH_AT_ENV).ok())
        .as_deref()
        == Some(step)
    {
        tracing::error!(step, "aborting at the requested crash point");
        std::process::abort();
    }
}

fn placement(w: &Worker) -> WorkerPlacement {
    WorkerPlacement {
        namespace: w.namespace.clone(),
        pool: w.pool.clone(),
        name: w.name.clone(),
        node_name: w.node_name.clone(),
        address: w.address.clone(),
    }
}

fn worker_id(p: &WorkerPlacement) -> WorkerId {
    WorkerId::new(&p.namespace, &p.pool, &p.name)
}

fn worker_key(p: &WorkerPlacement) -> String {
    worker_id(p).to_string()
}

/// A `StateLost` condition: the actor will resume from older state than it last had.
fn state_lost(reason: &str, message: String) -> ActorCondition {
    ActorCondition {
        kind: STATE_LOST.into(),
        reason: reason.into(),
        message,
        time_ms: now_ms(),
    }
}

impl Lifecycle {
    /// Workflows over `store`, driving the nodes in `nodes` (none: an API-only control
    /// plane, which refuses to resume, suspend or pause).
    pub fn new(
        store: Arc<dyn Store>,
        nodes: Option<Arc<dyn NodeDirectory>>,
        config: LifecycleConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                nodes,
                config,
                resume_gates: Mutex::new(HashMap::new()),
                snapshots: SnapshotStores::default(),
                specs: specs::Specs::default(),
                holders: holders::Holders::default(),
                recovery_backoff: recovery::Backoff::default(),
            }),
        }
    }

    pub fn config(&self) -> &LifecycleConfig {
        &self.inner.config
    }

    /// The nodes the workflows drive, if any.
    pub fn node_directory(&self) -> Option<Arc<dyn NodeDirectory>> {
        self.inner.nodes.clone()
    }

    fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    fn nodes(&self) -> Result<&Arc<dyn NodeDirectory>, LifecycleError> {
        self.inner.nodes.as_ref().ok_or(LifecycleError::NoDataPlane)
    }

    fn executor(&self, node: &str) -> Result<Arc<dyn NodeExecutor>, LifecycleError> {
        Ok(self.nodes()?.executor(node)?)
    }

    /// The live registration of `node`, if it is asserting itself.
    fn registration(&self, node: &str) -> Option<NodeRegistration> {
        self.inner
            .nodes
            .as_ref()?
            .dataspace()
            .get::<NodeRegistration>(&node.into())
    }

    async fn actor(&self, aref: &ActorRef) -> Result<Actor, LifecycleError> {
        Ok(self.store().get::<Actor>(&aref.key()).await?)
    }

    async fn template(&self, id: &NamespacedName) -> Result<ActorTemplate, LifecycleError> {
        match self.inner.specs.template(self.store(), id).await {
            Ok(t) => Ok(t),
            Err(StoreError::NotFound { .. }) => {
                Err(LifecycleError::TemplateMissing { template: id.key() })
            }
            Err(e) => Err(e.into()),
        }
    }

    fn workload(t: &ActorTemplate) -> Workload {
        Workload {
            template: t.id(),
            spec: t.spec.clone(),
        }
    }

    /// Applies `change` to the stored actor and writes it, re-reading and re-applying on
    /// a version conflict (an `UpdateActor` of the selector may land in between).
    async fn mutate(
        &self,
        aref: &ActorRef,
        change: impl Fn(&mut Actor),
    ) -> Result<Actor, LifecycleError> {
        let mut attempts = 0;
        loop {
            let mut a = self.actor(aref).await?;
            a.lease_generation = lease::fence_write(a.lease_generation, aref)?;
            change(&mut a);
            match self.store().update(a).await {
                Ok(a) => return Ok(a),
                Err(StoreError::Conflict { .. }) if attempts < 8 => attempts += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Applies `change` to `current` (the record the workflow holds under the actor's
    /// lease) and writes it: one store call while nobody else wrote the actor, which under
    /// the lease only a selector update can. On a conflict it re-reads and re-applies.
    async fn update_actor(
        &self,
        current: Actor,
        change: impl Fn(&mut Actor),
    ) -> Result<Actor, LifecycleError> {
        let aref = current.actor_ref();
        let mut a = current;
        a.lease_generation = lease::fence_write(a.lease_generation, &aref)?;
        change(&mut a);
        match self.store().update(a).await {
            Ok(a) => Ok(a),
            Err(StoreError::Conflict { .. }) => self.mutate(&aref, change).await,
            Err(e) => Err(e.into()),
        }
    }

    /// Takes the actor's lease, or says the actor is busy.
    async fn lease(&self, aref: &ActorRef) -> Result<ActorLease, LifecycleError> {
        ActorLease::acquire(self.store(), aref, self.inner.config.lease_ttl)
            .await?
            .ok_or_else(|| LifecycleError::Busy {
                actor: aref.to_string(),
            })
    }

    /// Frees `worker` if it still hosts `actor`, remembering `hot` as the snapshot the
    /// worker now holds warm (so the next resume of the actor can find it at once).
    async fn release_worker(
        &self,
        key: &str,
        actor: &ActorRef,
        hot: Option<String>,
    ) -> Result<(), LifecycleError> {
        self.rebind_worker(key, actor, None, hot).await.map(drop)
    }

    /// Moves `worker` from `from` (which just left it) to `to`, or frees it with `None`,
    /// in one conditional write (no claim can take it in between), keeping `hot` as the
    /// snapshot it holds warm. `to` carries the generation of its own actor's lease. Returns the worker as written; `None` if it no longer
    /// hosts `from` (the fleet removed it, say): `from` has left it either way.
    async fn rebind_worker(
        &self,
        key: &str,
        from: &ActorRef,
        to: Option<&Assignment>,
        hot: Option<String>,
    ) -> Result<Option<Worker>, LifecycleError> {
        for _ in 0..8 {
            let mut w = match self.store().get::<Worker>(key).await {
                Ok(w) => w,
                Err(StoreError::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let Some(held) = w.assignment.as_ref().filter(|a| &a.actor == from) else {
                return Ok(None);
            };
            // The binding is the leaving actor's: only a holder of its lease as new as the
            // one that wrote it may undo it.
            lease::fence_write(held.lease_generation, from)?;
            w.assignment = to.cloned();
            if let Some(h) = &hot {
                w.cached_snapshots = vec![h.clone()];
            }
            match self.store().update(w).await {
                Ok(w) => return Ok(Some(w)),
                Err(StoreError::Conflict { .. }) => continue,
                Err(StoreError::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        Err(LifecycleError::Store(StoreError::Conflict {
            kind: ate_model::Kind::Worker,
            key: key.into(),
        }))
    }

    /// Writes `a` if nobody wrote the actor since it was read; `None` if someone did, for
    /// a step that must then read it again and decide afresh rather than re-apply itself.
    async fn write_if_unchanged(&self, mut a: Actor) -> Result<Option<Actor>, LifecycleError> {
        a.lease_generation = lease::fence_write(a.lease_generation, &a.actor_ref())?;
        match self.store().update(a).await {
            Ok(a) => Ok(Some(a)),
            Err(StoreError::Conflict { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Stops the actor on its worker, if the node is there to ask. A stop of an actor the
    /// worker no longer hosts is a no-op on the node.
    async fn stop_on(&self, p: &WorkerPlacement, actor: &ActorRef) {
        let Ok(exec) = self.executor(&p.node_name) else {
            return;
        };
        let req = ate_seam::StopRequest {
            worker: worker_id(p),
            actor: actor.clone(),
        };
        if let Err(e) = exec.stop(req).await {
            tracing::warn!(actor = %actor, worker = %worker_key(p), error = %e, "stop failed");
        }
    }

    /// Whether the actor's status is one only a running workflow should leave it in.
    fn in_transition(status: ActorStatus) -> bool {
        matches!(
            status,
            ActorStatus::Resuming | ActorStatus::Suspending | ActorStatus::Pausing
        )
    }
}
