//! Suspend and pause ("parking" an actor): SUSPENDING or PAUSING is persisted together
//! with the URI the snapshot will have, the node checkpoints to exactly that URI (a
//! retry overwrites the same snapshot), the actor is stopped, its worker freed, and the
//! parked status persisted. A suspend's snapshot is durable before the worker is freed;
//! a pause's is kept on the node and uploaded in the background. Deleting an actor lives
//! here too, since a paused actor's upload must land before its snapshots go.

use std::time::{Duration, Instant};

use ate_model::{
    Actor, ActorCondition, ActorRef, ActorStatus, ActorTemplate, SNAPSHOT_TOO_LARGE, SnapshotInfo,
    SnapshotScope, Worker, WorkerPlacement, snapshot_uri,
};
use ate_seam::{CheckpointRequest, Durability, SeamError, SnapshotRef};
use ate_snapshots::{cache_key, new_snapshot_id};
use ate_store::StoreError;

use super::evict::Handover;
use super::{Lifecycle, LifecycleError, crashpoint, now_ms, worker_id, worker_key};

/// How often a wait for a background upload looks again.
const UPLOAD_POLL: Duration = Duration::from_millis(50);

/// Which way an actor is parked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Park {
    Suspend,
    Pause,
}

impl Park {
    fn name(self) -> &'static str {
        match self {
            Park::Suspend => "suspend",
            Park::Pause => "pause",
        }
    }

    fn done(self) -> ActorStatus {
        match self {
            Park::Suspend => ActorStatus::Suspended,
            Park::Pause => ActorStatus::Paused,
        }
    }

    pub(crate) fn of(status: ActorStatus) -> Self {
        if status == ActorStatus::Pausing {
            Park::Pause
        } else {
            Park::Suspend
        }
    }

    fn scope(self, t: &ActorTemplate) -> SnapshotScope {
        match self {
            Park::Suspend => t.spec.snapshots.on_commit,
            Park::Pause => t.spec.snapshots.on_pause,
        }
    }
}

/// The `SnapshotTooLarge` condition for a checkpoint the node refused as bigger than the
/// template allows: nothing of it was stored and the actor runs on, so its owner learns
/// why it did not park (and by how much it is over) from the actor itself.
fn too_large(e: &SeamError, kind: Park) -> Option<ActorCondition> {
    let SeamError::SnapshotTooLarge { size, limit, .. } = e else {
        return None;
    };
    Some(ActorCondition {
        kind: SNAPSHOT_TOO_LARGE.into(),
        reason: "MaxBytesExceeded".into(),
        message: format!(
            "the {} checkpoint is {size} bytes, over spec.snapshots.maxBytes of {limit}; the actor keeps running",
            kind.name()
        ),
        time_ms: now_ms(),
    })
}

impl Lifecycle {
    /// Suspends an actor to a durable snapshot and frees its worker. Suspending a
    /// suspended actor is a no-op; a paused actor's snapshot is made durable.
    pub async fn suspend(&self, aref: &ActorRef) -> Result<Actor, LifecycleError> {
        self.park(aref, Park::Suspend).await
    }

    /// Pauses an actor: a fast checkpoint kept on its node (uploaded in the background)
    /// and its worker freed. The next resume prefers that node.
    pub async fn pause(&self, aref: &ActorRef) -> Result<Actor, LifecycleError> {
        self.park(aref, Park::Pause).await
    }

    /// Suspends the actor if it is on `node`: on a worker there, or paused with its snapshot
    /// in that node's cache (which is then made durable, so the node can go). `None` if it
    /// is elsewhere or gone. The check is repeated under the actor's lease, so no workflow
    /// moves the actor between the check and the suspend. Draining a node uses it.
    pub async fn suspend_from(
        &self,
        aref: &ActorRef,
        node: &str,
    ) -> Result<Option<Actor>, LifecycleError> {
        self.nodes()?;
        let on_node = |a: &Actor| {
            let cached_there = match &a.latest_snapshot {
                Some(SnapshotInfo::Local { nodes, .. }) => nodes.iter().any(|n| n == node),
                _ => false,
            };
            a.worker.as_ref().is_some_and(|p| p.node_name == node)
                || (a.status == ActorStatus::Paused && cached_there)
        };
        match self.actor(aref).await {
            Ok(a) if on_node(&a) => {}
            Ok(_) | Err(LifecycleError::Store(StoreError::NotFound { .. })) => return Ok(None),
            Err(e) => return Err(e),
        }
        let lease = self.lease(aref).await?;
        let result = lease
            .fenced(async {
                match self.actor(aref).await {
                    Ok(a) if on_node(&a) => self.park_locked(a, Park::Suspend).await.map(Some),
                    Ok(_) | Err(LifecycleError::Store(StoreError::NotFound { .. })) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .await;
        lease.release().await;
        if !matches!(result, Ok(None)) {
            let outcome = result.as_ref().map_or_else(LifecycleError::label, |_| "ok");
            metrics::counter!(crate::metrics::SUSPENDS, "outcome" => outcome).increment(1);
        }
        result
    }

    async fn park(&self, aref: &ActorRef, kind: Park) -> Result<Actor, LifecycleError> {
        self.nodes()?;
        let a = self.actor(aref).await?;
        if a.status == kind.done() {
            return Ok(a);
        }
        let lease = self.lease(aref).await?;
        // The record read before the lease is carried in; a write that finds it outdated
        // makes the workflow read it again and decide afresh.
        let result = lease.fenced(self.park_locked(a, kind)).await;
        lease.release().await;
        if kind == Park::Suspend {
            let outcome = result.as_ref().map_or_else(LifecycleError::label, |_| "ok");
            metrics::counter!(crate::metrics::SUSPENDS, "outcome" => outcome).increment(1);
        }
        result
    }

    async fn park_locked(&self, seen: Actor, kind: Park) -> Result<Actor, LifecycleError> {
        let aref = seen.actor_ref();
        let mut a = seen;
        loop {
            if Self::in_transition(a.status) {
                a = self.settle(a).await?;
            }
            match (a.status, kind) {
                (s, k) if s == k.done() => return Ok(a),
                (ActorStatus::Paused, Park::Suspend) => return self.make_durable(a).await,
                (ActorStatus::Running, _) => {}
                (s, _) => {
                    return Err(LifecycleError::WrongState {
                        actor: aref.to_string(),
                        status: s.to_string(),
                        reason: format!("only a running actor can be {}d", kind.name()),
                    });
                }
            }
            let template = self.template(&a.template).await?;
            let Some(p) = a.worker.clone() else {
                return self
                    .return_to_durable(a, "WorkerMissing", "the actor had no worker".into())
                    .await;
            };
            let Some(location) = self.snapshot_location(&template, &p) else {
                return self
                    .return_to_durable(a, "NodeLost", format!("node {} is gone", p.node_name))
                    .await;
            };
            match self.mark_parking(a, &location, kind).await? {
                Some(marked) => {
                    crashpoint(&format!("{}.marked", kind.name()));
                    return self.finish_park(marked, &template, kind).await;
                }
                None => a = self.actor(&aref).await?,
            }
        }
    }

    /// The snapshot store an actor on `p` parks to: its template's, else its node's
    /// default; `None` if the node is gone and the template names none.
    pub(crate) fn snapshot_location(
        &self,
        t: &ActorTemplate,
        p: &WorkerPlacement,
    ) -> Option<String> {
        let location = match &t.spec.snapshots.location {
            l if !l.is_empty() => l.clone(),
            _ => self
                .registration(&p.node_name)
                .map(|r| r.snapshot_location)
                .unwrap_or_default(),
        };
        (!location.is_empty()).then_some(location)
    }

    /// Persists SUSPENDING or PAUSING over `a` (the record as last read), with the URI the
    /// snapshot will have. `None` if the write found the record outdated: the caller reads
    /// it again and decides afresh.
    pub(crate) async fn mark_parking(
        &self,
        a: Actor,
        location: &str,
        kind: Park,
    ) -> Result<Option<Actor>, LifecycleError> {
        let mut x = a;
        x.in_progress_snapshot = snapshot_uri(location, &x.actor_ref(), &new_snapshot_id());
        x.status = match kind {
            Park::Suspend => ActorStatus::Suspending,
            Park::Pause => ActorStatus::Pausing,
        };
        self.write_if_unchanged(x).await
    }

    /// Completes a park from SUSPENDING/PAUSING: checkpoint (again, to the same URI),
    /// stop, free the worker, persist. If the node cannot checkpoint any more the actor
    /// keeps whatever already landed, else returns to its last durable snapshot.
    pub(crate) async fn finish_park(
        &self,
        a: Actor,
        t: &ActorTemplate,
        kind: Park,
    ) -> Result<Actor, LifecycleError> {
        Ok(self.finish_park_for(a, t, kind, None).await?.0)
    }

    /// [`Self::finish_park`], handing the worker to `successor` instead of freeing it when
    /// one is named (an eviction): the checkpoint then refuses rather than waits if a
    /// request is in flight, and the worker is rebound in one conditional write, so no
    /// other claim can take it in between. Returns the parked actor and, for a hand-over,
    /// the worker now bound to the successor (`None` if it could not be handed over).
    pub(crate) async fn finish_park_for(
        &self,
        a: Actor,
        t: &ActorTemplate,
        kind: Park,
        successor: Option<&Handover<'_>>,
    ) -> Result<(Actor, Option<Worker>), LifecycleError> {
        let aref = a.actor_ref();
        let (Some(p), Some(snap)) = (
            a.worker.clone(),
            SnapshotRef::from_uri(&a.in_progress_snapshot, kind.scope(t)),
        ) else {
            return Ok((self.park_without_node(a).await?, None));
        };
        let durability = match kind {
            Park::Suspend => Durability::Durable,
            Park::Pause => Durability::Local,
        };
        let taken = match self.executor(&p.node_name) {
            Ok(exec) => {
                exec.checkpoint(CheckpointRequest {
                    worker: worker_id(&p),
                    actor: aref.clone(),
                    workload: Self::workload(t),
                    location: snap.location.clone(),
                    id: snap.id.clone(),
                    scope: snap.scope,
                    durability,
                    seal: true,
                    evict: successor.is_some(),
                })
                .await
            }
            Err(_) => Err(SeamError::NodeUnavailable {
                node: p.node_name.clone(),
            }),
        };
        match taken {
            Ok(_) => {}
            Err(SeamError::NodeUnavailable { .. } | SeamError::NotHosted { .. }) => {
                return Ok((self.park_without_node(a).await?, None));
            }
            Err(e) => {
                if successor.is_none() {
                    tracing::warn!(actor = %aref, error = %e, "checkpoint failed; the actor keeps running");
                }
                let too_large = too_large(&e, kind);
                self.update_actor(a, |x| {
                    x.status = ActorStatus::Running;
                    x.in_progress_snapshot.clear();
                    if let Some(c) = &too_large {
                        x.set_condition(c.clone());
                    }
                })
                .await?;
                return Err(e.into());
            }
        }
        crashpoint(&format!("{}.checkpointed", kind.name()));
        self.stop_on(&p, &aref).await;
        let hot = cache_key(&snap.owner, &snap.id);
        let handed = match successor {
            None => {
                self.release_worker(&worker_key(&p), &aref, Some(hot))
                    .await?;
                None
            }
            Some(e) => {
                self.rebind_worker(&worker_key(&p), &aref, Some(e.successor), Some(hot))
                    .await?
            }
        };
        crashpoint(&format!("{}.released", kind.name()));
        let latest = match kind {
            Park::Suspend => SnapshotInfo::External {
                uri_prefix: a.in_progress_snapshot.clone(),
            },
            Park::Pause => SnapshotInfo::Local {
                prefix: a.in_progress_snapshot.clone(),
                nodes: vec![p.node_name.clone()],
                fallback: self
                    .inner
                    .snapshots
                    .durable(a.latest_snapshot.as_ref())
                    .await?
                    .unwrap_or_default(),
            },
        };
        let evicted = successor.map(|e| e.condition(&p));
        let a = self
            .update_actor(a, |x| {
                x.status = kind.done();
                x.worker = None;
                x.in_progress_snapshot.clear();
                x.latest_snapshot = Some(latest.clone());
                if let Some(c) = &evicted {
                    x.set_condition(c.clone());
                }
            })
            .await?;
        tracing::info!(actor = %aref, snapshot = %latest.uri(), status = %kind.done(), "actor parked");
        if kind == Park::Suspend {
            // Off the workflow's path (an eviction's successor waits for this suspend):
            // retention only ever deletes snapshots older than the `keep` newest, so a
            // later suspend's retention racing this one deletes nothing either needs.
            let (me, parked, keep) = (self.clone(), a.clone(), t.spec.snapshots.keep);
            tokio::spawn(async move { me.apply_retention(&parked, keep).await });
        }
        Ok((a, handed))
    }

    /// A park whose node is gone: the snapshot it was taking counts if it landed durably,
    /// else the actor returns to its last durable snapshot.
    async fn park_without_node(&self, a: Actor) -> Result<Actor, LifecycleError> {
        let uri = a.in_progress_snapshot.clone();
        if !uri.is_empty() && self.inner.snapshots.exists(&uri).await? {
            let aref = a.actor_ref();
            if let Some(p) = &a.worker {
                self.stop_on(p, &aref).await;
                self.release_worker(&worker_key(p), &aref, None).await?;
            }
            return self
                .mutate(&aref, |x| {
                    x.status = ActorStatus::Suspended;
                    x.worker = None;
                    x.in_progress_snapshot.clear();
                    x.latest_snapshot = Some(SnapshotInfo::External {
                        uri_prefix: uri.clone(),
                    });
                })
                .await;
        }
        let node = a
            .worker
            .as_ref()
            .map(|p| p.node_name.clone())
            .unwrap_or_default();
        self.return_to_durable(
            a,
            "NodeLost",
            format!("node {node} could not checkpoint the actor"),
        )
        .await
    }

    async fn apply_retention(&self, a: &Actor, keep: u32) {
        let Some(latest) = &a.latest_snapshot else {
            return;
        };
        // A golden actor's baked snapshot is what new actors of its template start from:
        // it stays whatever the retention says, and if the template cannot be read now,
        // nothing is deleted.
        let mut golden = None;
        if a.atespace == ate_model::names::GOLDEN_ATESPACE {
            match self.inner.specs.template(self.store(), &a.template).await {
                Ok(t) => golden = Some(t.status.golden_snapshot),
                Err(ate_store::StoreError::NotFound { .. }) => {}
                Err(e) => {
                    tracing::warn!(actor = %a.actor_ref(), error = %e, "snapshot retention skipped: cannot read the template");
                    return;
                }
            }
        }
        let mut protect = vec![latest.uri()];
        protect.extend(golden.as_deref().filter(|g| !g.is_empty()));
        match self
            .inner
            .snapshots
            .retain(&a.actor_ref(), latest.uri(), keep, &protect)
            .await
        {
            Ok(gone) if !gone.is_empty() => {
                tracing::debug!(actor = %a.actor_ref(), deleted = gone.len(), "old snapshots deleted")
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(actor = %a.actor_ref(), error = %e, "snapshot retention failed")
            }
        }
    }

    /// Waits for a paused actor's background upload if its node is still there to finish
    /// it. `Ok(true)` once the snapshot is durable, `Ok(false)` if it never will be.
    async fn await_upload(&self, a: &Actor) -> Result<bool, LifecycleError> {
        let Some(SnapshotInfo::Local { prefix, nodes, .. }) = &a.latest_snapshot else {
            return Ok(true);
        };
        let deadline = Instant::now() + self.inner.config.upload_wait;
        loop {
            if self.inner.snapshots.exists(prefix).await? {
                return Ok(true);
            }
            let live = nodes.iter().find(|n| self.registration(n).is_some());
            let Some(node) = live else { return Ok(false) };
            if Instant::now() >= deadline {
                return Err(LifecycleError::UploadPending {
                    actor: a.actor_ref().to_string(),
                    node: node.clone(),
                });
            }
            tokio::time::sleep(UPLOAD_POLL).await;
        }
    }

    /// Suspends a paused actor: its snapshot becomes the durable one once uploaded, or,
    /// if its node died first, the actor falls back to the snapshot before it.
    async fn make_durable(&self, a: Actor) -> Result<Actor, LifecycleError> {
        let aref = a.actor_ref();
        if self.await_upload(&a).await? {
            let latest = a.latest_snapshot.as_ref().map(|l| SnapshotInfo::External {
                uri_prefix: l.uri().to_string(),
            });
            return self
                .mutate(&aref, |x| {
                    x.status = ActorStatus::Suspended;
                    x.latest_snapshot = latest.clone();
                })
                .await;
        }
        self.return_to_durable(
            a,
            "PausedSnapshotUnavailable",
            "the paused snapshot's node was lost before its upload finished".into(),
        )
        .await
    }

    /// Deletes a suspended or paused actor and every snapshot it has. Snapshots go first,
    /// so an interrupted delete is completed by the next one.
    pub async fn delete(&self, aref: &ActorRef) -> Result<(), LifecycleError> {
        let lease = self.lease(aref).await?;
        let result = lease.fenced(self.delete_locked(aref)).await;
        match result {
            Ok(()) => lease.retire().await,
            Err(_) => lease.release().await,
        }
        result
    }

    async fn delete_locked(&self, aref: &ActorRef) -> Result<(), LifecycleError> {
        let mut a = self.actor(aref).await?;
        if Self::in_transition(a.status) {
            a = self.settle(a).await?;
        }
        if !matches!(a.status, ActorStatus::Suspended | ActorStatus::Paused) {
            return Err(LifecycleError::WrongState {
                actor: aref.to_string(),
                status: a.status.to_string(),
                reason: "only a suspended or paused actor can be deleted".into(),
            });
        }
        // A background upload landing after the delete would leave files behind.
        self.await_upload(&a).await?;
        let mut uris: Vec<&str> = Vec::new();
        if let Some(l) = &a.latest_snapshot {
            uris.push(l.uri());
            if let SnapshotInfo::Local { fallback, .. } = l
                && !fallback.is_empty()
            {
                uris.push(fallback);
            }
        }
        let deleted = self.inner.snapshots.delete_actor(aref, &uris).await?;
        // A worker still bound to the actor (a stray of a resume that died) goes with it:
        // its binding carries this actor's lease generation, which a new actor of the name
        // (its lease retired below) could not overrule.
        self.free_workers_of(&a).await?;
        // The lease keeps workflows out; only a selector update can land in between.
        loop {
            match self
                .store()
                .delete::<Actor>(&aref.key(), Some(a.version))
                .await
            {
                Ok(()) => break,
                Err(StoreError::Conflict { .. }) => a = self.actor(aref).await?,
                Err(e) => return Err(e.into()),
            }
        }
        tracing::info!(actor = %aref, snapshots = deleted, "actor deleted");
        Ok(())
    }
}
