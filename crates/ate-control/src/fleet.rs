//! The fleet: turns declared worker pools into worker records on live nodes. Nodes are
//! learned from their dataspace registrations; pools and workers live in the store. A
//! reconcile runs when a node joins or leaves, a pool or node record changes (a drain or
//! uncordon), and periodically. A cordoned node counts as eligible for no pool: its free
//! workers are removed and none are created there, while busy ones stay until their actor
//! leaves. It also copies what each worker advertises as hot into the worker's
//! `cached_snapshots`, and each node's capabilities into its workers' `capabilities`: the
//! fields the scheduler selects on. A node is taken only from a registration asserted under
//! its own name, and an advert is recorded only on a worker of the node that sent it: one
//! node never changes what the fleet knows of another.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use ate_dataspace::{Event, Filter, Id};
use ate_model::{Kind, Node, NodeAssertion, Worker, WorkerPool};
use ate_seam::{NodeDirectory, NodeRegistration, WorkerAdvert};
use ate_store::{ListOptions, Store, StoreError};
use tokio::task::JoinHandle;

use crate::lifecycle::{Lifecycle, LifecycleError};
use crate::placement::{Action, NodeSlots, plan};

/// Node status while its registration is asserted.
pub const NODE_READY: &str = "Ready";
/// Node status once its registration is gone.
pub const NODE_LOST: &str = "NotReady";

/// How often the fleet reconciles with nothing to trigger it.
pub const RESYNC_EVERY: Duration = Duration::from_secs(10);

/// What one reconcile changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FleetReport {
    pub created: usize,
    pub deleted: usize,
    /// Actors whose node was lost under them, returned to their last durable snapshot.
    pub recovered: usize,
}

/// Pools to worker slots.
#[derive(Clone)]
pub struct Fleet {
    store: Arc<dyn Store>,
    nodes: Arc<dyn NodeDirectory>,
    lifecycle: Lifecycle,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("nodes", &self.nodes)
            .finish_non_exhaustive()
    }
}

fn eligible(node: &NodeRegistration, pool: &WorkerPool) -> bool {
    node.sandbox_classes.contains(&pool.spec.sandbox_class)
        && pool
            .spec
            .node_selector
            .iter()
            .all(|(k, v)| node.labels.get(k) == Some(v))
}

impl Fleet {
    /// A fleet with default lifecycle settings for the actors it recovers.
    pub fn new(store: Arc<dyn Store>, nodes: Arc<dyn NodeDirectory>) -> Self {
        let lifecycle = Lifecycle::new(store.clone(), Some(nodes.clone()), Default::default());
        Self {
            store,
            nodes,
            lifecycle,
        }
    }

    /// A fleet that recovers actors through `lifecycle` (which must drive the same nodes).
    pub fn with_lifecycle(self, lifecycle: Lifecycle) -> Self {
        Self { lifecycle, ..self }
    }

    fn live_nodes(&self) -> BTreeMap<String, NodeRegistration> {
        self.nodes
            .dataspace()
            .list::<NodeRegistration>(&Filter::All)
            .into_iter()
            .filter(|(id, n)| *id == Id::Str(n.name.clone()))
            .map(|(_, n)| (n.name.clone(), n))
            .collect()
    }

    /// Brings node records, and every pool's workers, in line with the live nodes.
    pub async fn reconcile(&self) -> Result<FleetReport, StoreError> {
        let live = self.live_nodes();
        let cordoned = self.sync_nodes(&live).await?;
        let mut report = FleetReport::default();
        let mut all = self
            .store
            .list_all::<Worker>(&ListOptions::default())
            .await?;
        let pools = self
            .store
            .list_all::<WorkerPool>(&ListOptions::default())
            .await?;
        let pool_keys: HashSet<String> = pools.iter().map(|p| p.id().key()).collect();
        let mut used: BTreeMap<String, u32> = BTreeMap::new();
        let mut gone: HashSet<String> = HashSet::new();
        // Workers rewritten below, at their new version, for the pool pass.
        let mut rewritten: BTreeMap<String, Worker> = BTreeMap::new();
        for w in &all {
            let node_gone = live
                .get(&w.node_name)
                .is_none_or(|n| n.incarnation != w.node_incarnation);
            let orphan = node_gone || !pool_keys.contains(&format!("{}/{}", w.namespace, w.pool));
            let mut w = w.clone();
            if node_gone && !w.is_free() {
                // The actor's worker died with its node: it goes back to its last durable
                // snapshot, and the freed worker is removed below.
                match self.recover(&w).await? {
                    Some(freed) => {
                        report.recovered += 1;
                        w = freed;
                    }
                    None => {
                        *used.entry(w.node_name.clone()).or_default() += 1;
                        continue;
                    }
                }
            }
            // A busy worker of a deleted pool is removed once its actor leaves it.
            if orphan && w.is_free() && self.delete_free(&w).await? {
                report.deleted += 1;
                gone.insert(w.key());
                continue;
            }
            if let Some(n) = live.get(&w.node_name).filter(|_| !node_gone)
                && n.capabilities != w.capabilities
                && let Some(now) = self.record_capabilities(&w, &n.capabilities).await?
            {
                rewritten.insert(now.key(), now);
            }
            *used.entry(w.node_name.clone()).or_default() += 1;
        }
        for w in &mut all {
            if let Some(now) = rewritten.remove(&w.key()) {
                *w = now;
            }
        }
        for pool in &pools {
            let mine: Vec<&Worker> = all
                .iter()
                .filter(|w| w.namespace == pool.namespace && w.pool == pool.name)
                .filter(|w| !gone.contains(&w.key()))
                .collect();
            // The pool's worker count as this pass leaves it.
            let mut count = mine.len();
            let mut slots = Vec::new();
            for node in live.values() {
                let here: Vec<&Worker> = mine
                    .iter()
                    .copied()
                    .filter(|w| w.node_name == node.name)
                    .collect();
                if !eligible(node, pool) || cordoned.contains(&node.name) {
                    for w in here.iter().filter(|w| w.is_free()) {
                        if self.delete_free(w).await? {
                            report.deleted += 1;
                            count -= 1;
                        }
                    }
                    continue;
                }
                slots.push(NodeSlots {
                    node: node.name.clone(),
                    room: node
                        .capacity
                        .saturating_sub(used.get(&node.name).copied().unwrap_or(0)),
                    workers: here.iter().map(|w| (w.name.clone(), w.is_free())).collect(),
                });
            }
            for action in plan(pool.spec.replicas, &slots) {
                match action {
                    Action::Create { node } => {
                        if let Some(n) = live.get(&node) {
                            self.create_worker(pool, n, &mine).await?;
                            *used.entry(node).or_default() += 1;
                            report.created += 1;
                            count += 1;
                        }
                    }
                    Action::Delete { worker, .. } => {
                        if let Some(w) = mine.iter().find(|w| w.name == worker)
                            && self.delete_free(w).await?
                        {
                            report.deleted += 1;
                            count -= 1;
                        }
                    }
                }
            }
            self.set_pool_status(pool, count as u32).await?;
        }
        let busy = all.iter().filter(|w| !w.is_free()).count();
        metrics::gauge!(crate::metrics::WORKERS, "state" => "busy").set(busy as f64);
        metrics::gauge!(crate::metrics::WORKERS, "state" => "free").set((all.len() - busy) as f64);
        if report != FleetReport::default() {
            tracing::info!(
                created = report.created,
                deleted = report.deleted,
                recovered = report.recovered,
                nodes = live.len(),
                "fleet reconciled"
            );
        }
        Ok(report)
    }

    /// Writes node records from the live registrations; returns the cordoned nodes.
    async fn sync_nodes(
        &self,
        live: &BTreeMap<String, NodeRegistration>,
    ) -> Result<HashSet<String>, StoreError> {
        let stored = self.store.list_all::<Node>(&ListOptions::default()).await?;
        for reg in live.values() {
            let have = stored.iter().find(|n| n.name == reg.name);
            let want = Node {
                name: reg.name.clone(),
                version: 0,
                address: reg.address.clone(),
                labels: reg.labels.clone(),
                sandbox_classes: reg.sandbox_classes.clone(),
                capacity: reg.capacity,
                status: NODE_READY.into(),
                incarnation: reg.incarnation.clone(),
                // The operator's, not the registration's: kept as it is. A drain landing
                // between the list above and the update below wins (the update conflicts).
                cordoned: have.is_some_and(|n| n.cordoned),
                capabilities: reg.capabilities.clone(),
            };
            match have {
                None => ignore_race(self.store.create(want).await.map(drop))?,
                Some(have)
                    if Node {
                        version: 0,
                        ..have.clone()
                    } != want =>
                {
                    ignore_race(
                        self.store
                            .update(Node {
                                version: have.version,
                                ..want
                            })
                            .await
                            .map(drop),
                    )?
                }
                Some(_) => {}
            }
        }
        for have in stored
            .iter()
            .filter(|n| !live.contains_key(&n.name) && n.status != NODE_LOST)
        {
            let lost = Node {
                status: NODE_LOST.into(),
                ..have.clone()
            };
            ignore_race(self.store.update(lost).await.map(drop))?;
            tracing::warn!(node = %have.name, "node lost");
        }
        Ok(stored
            .iter()
            .filter(|n| n.cordoned)
            .map(|n| n.name.clone())
            .collect())
    }

    async fn create_worker(
        &self,
        pool: &WorkerPool,
        node: &NodeRegistration,
        taken: &[&Worker],
    ) -> Result<(), StoreError> {
        let base = format!("{}-{}", pool.name, node.name);
        let base = &base[..base.len().min(55)];
        for n in 0.. {
            let name = format!("{}-{n}", base.trim_end_matches('-'));
            if taken.iter().any(|w| w.name == name) {
                continue;
            }
            let worker = Worker {
                namespace: pool.namespace.clone(),
                pool: pool.name.clone(),
                name,
                version: 0,
                node_name: node.name.clone(),
                node_incarnation: node.incarnation.clone(),
                address: node.address.clone(),
                sandbox_class: pool.spec.sandbox_class.clone(),
                labels: pool.spec.labels.clone(),
                assignment: None,
                cached_snapshots: Vec::new(),
                capabilities: node.capabilities.clone(),
            };
            match self.store.create(worker).await {
                Ok(_) => return Ok(()),
                Err(StoreError::AlreadyExists { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Recovers the actor on a worker whose node is gone; the worker as it is now if it
    /// was freed, `None` if the actor is busy (the next pass tries again).
    async fn recover(&self, w: &Worker) -> Result<Option<Worker>, StoreError> {
        if self.registered_in_store(w).await? {
            // This replica's view of the nodes lags the store (it was stalled, or its
            // mirror is catching up): the worker's node incarnation is registered.
            return Ok(None);
        }
        let why = format!("node {} was lost", w.node_name);
        match self.lifecycle.recover_lost_worker(w, &why).await {
            Ok(true) => match self.store.get::<Worker>(&w.key()).await {
                Ok(w) => Ok(Some(w)),
                Err(StoreError::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            },
            Ok(false) => Ok(None),
            Err(LifecycleError::Store(e)) => Err(e),
            Err(e) => {
                tracing::warn!(worker = %w.key(), error = %e, "cannot recover the actor of a lost worker");
                Ok(None)
            }
        }
    }

    /// Whether the store, which a replica's mirror follows, holds a registration of the
    /// worker's node incarnation: the last word before an actor is declared lost with it.
    /// Nodes in process (no registry) have none there, and are judged by the view alone.
    async fn registered_in_store(&self, w: &Worker) -> Result<bool, StoreError> {
        let key = NodeAssertion {
            node: w.node_name.clone(),
            type_tag: <NodeRegistration as ate_dataspace::Assertion>::TYPE.into(),
            id: w.node_name.clone(),
            ..Default::default()
        }
        .key();
        match self.store.get::<NodeAssertion>(&key).await {
            Ok(a) => Ok(a.incarnation == w.node_incarnation),
            Err(StoreError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes a worker only at the version seen free: a claim in between wins.
    async fn delete_free(&self, w: &Worker) -> Result<bool, StoreError> {
        match self.store.delete::<Worker>(&w.key(), Some(w.version)).await {
            Ok(()) => Ok(true),
            Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn set_pool_status(&self, pool: &WorkerPool, count: u32) -> Result<(), StoreError> {
        if pool.status.replicas != count {
            let mut p = pool.clone();
            p.status.replicas = count;
            ignore_race(self.store.update(p).await.map(drop))?;
        }
        Ok(())
    }

    /// Gives a worker its node's current capabilities, so a node re-registered without
    /// one (CRIU uninstalled) stops getting actors that need it. Retries over concurrent
    /// claims; a worker deleted meanwhile is left alone. Returns the worker as written.
    async fn record_capabilities(
        &self,
        w: &Worker,
        want: &[String],
    ) -> Result<Option<Worker>, StoreError> {
        let mut w = w.clone();
        for _ in 0..5 {
            if w.capabilities == want {
                return Ok(Some(w));
            }
            w.capabilities = want.to_vec();
            match self.store.update(w.clone()).await {
                Ok(now) => {
                    tracing::info!(worker = %now.key(), node = %now.node_name, capabilities = ?want, "worker capabilities changed");
                    return Ok(Some(now));
                }
                Err(StoreError::Conflict { .. }) => {}
                Err(StoreError::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e),
            }
            w = match self.store.get::<Worker>(&w.key()).await {
                Ok(w) => w,
                Err(StoreError::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e),
            };
        }
        Ok(None)
    }

    /// Copies a worker's advert into its record, retrying over concurrent claims. An
    /// advert from a node other than the worker's is ignored: a worker id does not name its
    /// node, and a removed worker's name may be reused on another node.
    pub async fn record_advert(&self, advert: &WorkerAdvert) -> Result<(), StoreError> {
        for _ in 0..5 {
            let mut w = match self.store.get::<Worker>(&advert.worker.to_string()).await {
                Ok(w) => w,
                Err(StoreError::NotFound { .. }) => return Ok(()),
                Err(e) => return Err(e),
            };
            if w.node_name != advert.node {
                tracing::debug!(worker = %advert.worker, node = %advert.node, owner = %w.node_name, "ignoring an advert for another node's worker");
                return Ok(());
            }
            if w.cached_snapshots == advert.snapshots {
                return Ok(());
            }
            w.cached_snapshots = advert.snapshots.clone();
            match self.store.update(w).await {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Runs the fleet until the handle is dropped.
    pub fn start(self) -> FleetHandle {
        FleetHandle(tokio::spawn(self.run()))
    }

    async fn run(self) {
        let ds = self.nodes.dataspace().clone();
        let (Ok(mut nodes), Ok(mut adverts)) = (
            ds.subscribe::<NodeRegistration>(Filter::All),
            ds.subscribe::<WorkerAdvert>(Filter::All),
        ) else {
            tracing::error!("fleet cannot subscribe to node registrations");
            return;
        };
        let mut pools = self.store.watch(Kind::WorkerPool).await.ok();
        // Node records change on a drain or uncordon (and on the fleet's own writes, which
        // settle in one more pass): a drain takes effect at once, not at the next tick.
        let mut node_records = self.store.watch(Kind::Node).await.ok();
        let mut tick = tokio::time::interval(RESYNC_EVERY);
        loop {
            tokio::select! {
                ev = nodes.recv() => if ev.is_none() { return },
                ev = adverts.recv() => match ev {
                    None => return,
                    Some(Event::Asserted { id, value }) => {
                        // The latest advert, not this event's: a late event must not
                        // overwrite newer knowledge (a suspend records the hot snapshot
                        // on the worker before the fleet gets here).
                        let value = ds.get::<WorkerAdvert>(&id).unwrap_or(value);
                        if let Err(e) = self.record_advert(&value).await {
                            tracing::warn!(worker = %value.worker, error = %e, "cannot record worker advert");
                        }
                        continue;
                    }
                    Some(_) => continue,
                },
                ev = async { match pools.as_mut() { Some(w) => w.recv().await, None => std::future::pending().await } } => {
                    if ev.is_none() {
                        pools = self.store.watch(Kind::WorkerPool).await.ok();
                    }
                }
                ev = async { match node_records.as_mut() { Some(w) => w.recv().await, None => std::future::pending().await } } => {
                    if ev.is_none() {
                        node_records = self.store.watch(Kind::Node).await.ok();
                    }
                }
                _ = tick.tick() => {}
            }
            // Let a burst of changes settle into one pass.
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let Err(e) = self.reconcile().await {
                tracing::warn!(error = %e, "fleet reconcile failed; retrying");
            }
        }
    }
}

fn ignore_race(r: Result<(), StoreError>) -> Result<(), StoreError> {
    match r {
        Err(
            StoreError::Conflict { .. }
            | StoreError::AlreadyExists { .. }
            | StoreError::NotFound { .. },
        ) => Ok(()),
        other => other,
    }
}

/// The running fleet loop; dropping it stops the loop.
#[derive(Debug)]
pub struct FleetHandle(JoinHandle<()>);

impl Drop for FleetHandle {
    fn drop(&mut self) {
        self.0.abort();
    }
}
