//! Draining a node, as `kubectl drain` does: the node is cordoned (taken out of placement),
//! then every actor on it is suspended to a durable snapshot, so that the node can be
//! taken down for maintenance without losing any actor's state. Uncordoning puts it back.
//!
//! The cordon is the `cordoned` flag of the node's record. From the moment it is written:
//! the fleet keeps no free worker on the node and creates none there (busy workers stay
//! until their actor leaves), and a claim that still gets a worker there gives it back
//! (`lifecycle::schedule`), so no resume can land on the node. A claim that landed before
//! the cordon is on a busy worker the drain lists afterwards, so its actor is suspended
//! too. Each suspend goes through the actor's lease, like any other workflow, and checks
//! under it that the actor is still on the node.
//!
//! Paused actors whose snapshot is in the node's cache are made durable as well. A pause
//! keeps its snapshot on the node and uploads it in the background; until the upload lands
//! the node holds the only copy, and a node taken down first would send the actor back to
//! the snapshot before the pause (`StateLost`). Suspending a paused actor waits for the
//! upload (up to the lifecycle's upload wait), so after a drain that reports no failure the
//! node holds nothing an actor needs.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ate_model::names::validate_subdomain;
use ate_model::{Actor, ActorRef, ActorStatus, FieldSelector, Kind, Node, SnapshotInfo, Worker};
use ate_proto::ateapi as pb;
use ate_proto::convert::node_to_pb;
use ate_proto::status::invalid;
use ate_store::{ListOptions, Store, StoreError};
use tonic::Status;

use crate::{ControlService, Lifecycle, LifecycleError, errors};

/// How many actors of a node are suspended at once.
const SUSPEND_CONCURRENCY: usize = 8;
/// How often a suspend of a busy actor (another workflow holds its lease) is tried again.
const BUSY_RETRY: Duration = Duration::from_millis(100);
/// How many times a cordon or uncordon retries after losing a race with another writer.
const CORDON_ATTEMPTS: usize = 8;

/// What a drain did.
#[derive(Debug, Default)]
struct Drained {
    /// `atespace/id` of every actor this drain suspended.
    suspended: Vec<String>,
    /// `atespace/id: reason` of every actor it could not.
    failed: Vec<String>,
}

impl ControlService {
    pub(crate) async fn drain_node_impl(
        &self,
        name: &str,
    ) -> Result<pb::DrainNodeResponse, Status> {
        validate_subdomain("name", name).map_err(invalid)?;
        self.store.get::<Node>(name).await.map_err(errors::store)?;
        if self.lifecycle.node_directory().is_none() {
            return Err(errors::lifecycle(LifecycleError::NoDataPlane));
        }
        // Its own task: a client that hangs up does not cut the drain between two steps.
        let (store, lifecycle, node) =
            (self.store.clone(), self.lifecycle.clone(), name.to_string());
        let (node, drained) = tokio::spawn(drain(store, lifecycle, node))
            .await
            .map_err(|e| Status::internal(format!("drain task failed: {e}")))??;
        Ok(pb::DrainNodeResponse {
            node: Some(node_to_pb(&node)),
            suspended: drained.suspended,
            failed: drained.failed,
        })
    }

    pub(crate) async fn uncordon_node_impl(
        &self,
        name: &str,
    ) -> Result<pb::UncordonNodeResponse, Status> {
        validate_subdomain("name", name).map_err(invalid)?;
        let (node, changed) = set_cordon(&self.store, name, false)
            .await
            .map_err(errors::store)?;
        if changed {
            tracing::info!(node = %name, "node uncordoned");
        }
        Ok(pb::UncordonNodeResponse {
            node: Some(node_to_pb(&node)),
        })
    }
}

async fn drain(
    store: Arc<dyn Store>,
    lifecycle: Lifecycle,
    name: String,
) -> Result<(Node, Drained), Status> {
    let (mut node, changed) = set_cordon(&store, &name, true)
        .await
        .map_err(errors::store)?;
    if changed {
        tracing::info!(node = %name, "node cordoned");
    }
    // The fleet removes them too, on the pass the cordon triggers; doing it here makes the
    // cordon hold at once, whether or not a fleet runs in this process.
    remove_free_workers(&store, &name)
        .await
        .map_err(errors::store)?;
    let targets = actors_on(&store, &name).await.map_err(errors::store)?;
    let permits = Arc::new(tokio::sync::Semaphore::new(SUSPEND_CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    for aref in targets {
        let (lifecycle, node, permits) = (lifecycle.clone(), name.clone(), permits.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let outcome = suspend(&lifecycle, &aref, &node).await;
            (aref, outcome)
        });
    }
    let mut drained = Drained::default();
    while let Some(joined) = tasks.join_next().await {
        let (aref, outcome) =
            joined.map_err(|e| Status::internal(format!("suspend task failed: {e}")))?;
        match outcome {
            Ok(Some(a)) if a.status == ActorStatus::Suspended => {
                drained.suspended.push(aref.key());
            }
            Ok(Some(a)) => {
                drained
                    .failed
                    .push(format!("{}: left {}", aref.key(), a.status));
            }
            // It left the node (or was deleted) before its turn.
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(node = %name, actor = %aref, error = %e, "cannot suspend an actor of a draining node");
                drained.failed.push(format!("{}: {e}", aref.key()));
            }
        }
    }
    drained.suspended.sort();
    drained.failed.sort();
    // The workers the suspends freed.
    remove_free_workers(&store, &name)
        .await
        .map_err(errors::store)?;
    match store.get::<Node>(&name).await {
        Ok(n) => node = n,
        Err(StoreError::NotFound { .. }) => {}
        Err(e) => return Err(errors::store(e)),
    }
    tracing::info!(
        node = %name,
        suspended = drained.suspended.len(),
        failed = drained.failed.len(),
        "node drained"
    );
    Ok((node, drained))
}

/// Suspends one actor of the node, waiting out another workflow on it (a resume that
/// claimed a worker there just before the cordon finishes first) for up to two lease TTLs.
async fn suspend(
    lifecycle: &Lifecycle,
    aref: &ActorRef,
    node: &str,
) -> Result<Option<Actor>, LifecycleError> {
    let deadline = Instant::now() + lifecycle.config().lease_ttl * 2;
    loop {
        match lifecycle.suspend_from(aref, node).await {
            Err(LifecycleError::Busy { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(BUSY_RETRY).await;
            }
            other => return other,
        }
    }
}

/// Every actor with something on the node: a worker bound to it there (read from the
/// workers, which a claim binds atomically, and from the actors), or a paused snapshot
/// in the node's cache.
async fn actors_on(store: &Arc<dyn Store>, node: &str) -> Result<BTreeSet<ActorRef>, StoreError> {
    let mut out = BTreeSet::new();
    let busy = FieldSelector::eq([("node_name", node)]).and_not_eq("actor_id", "");
    for w in store
        .list_all::<Worker>(&ListOptions::with_fields(busy))
        .await?
    {
        if let Some(a) = w.assignment {
            out.insert(a.actor);
        }
    }
    let placed = FieldSelector::eq([("node_name", node)]);
    for a in store
        .list_all::<Actor>(&ListOptions::with_fields(placed))
        .await?
    {
        out.insert(a.actor_ref());
    }
    let paused = FieldSelector::eq([("status", ActorStatus::Paused.as_str())]);
    for a in store
        .list_all::<Actor>(&ListOptions::with_fields(paused))
        .await?
    {
        if let Some(SnapshotInfo::Local { nodes, .. }) = &a.latest_snapshot
            && nodes.iter().any(|n| n == node)
        {
            out.insert(a.actor_ref());
        }
    }
    Ok(out)
}

/// Deletes the node's free workers, each at the version seen free (a claim in between
/// wins, and gives the worker back itself).
async fn remove_free_workers(store: &Arc<dyn Store>, node: &str) -> Result<usize, StoreError> {
    let free = FieldSelector::eq([("node_name", node), ("actor_id", "")]);
    let mut removed = 0;
    for w in store
        .list_all::<Worker>(&ListOptions::with_fields(free))
        .await?
    {
        match store.delete::<Worker>(&w.key(), Some(w.version)).await {
            Ok(()) => removed += 1,
            Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    if removed > 0 {
        tracing::debug!(node = %node, removed, "free workers of a cordoned node removed");
    }
    Ok(removed)
}

/// Sets the node's cordon; the record as it is now, and whether it changed. Retries over
/// the fleet's concurrent writes of the same record.
async fn set_cordon(
    store: &Arc<dyn Store>,
    name: &str,
    cordoned: bool,
) -> Result<(Node, bool), StoreError> {
    for _ in 0..CORDON_ATTEMPTS {
        let mut n = store.get::<Node>(name).await?;
        if n.cordoned == cordoned {
            return Ok((n, false));
        }
        n.cordoned = cordoned;
        match store.update(n).await {
            Ok(n) => return Ok((n, true)),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Conflict {
        kind: Kind::Node,
        key: name.into(),
    })
}
