//! Where a resuming actor goes. Eligible pools are those of the template's sandbox class
//! whose labels satisfy the template's and the actor's selectors. Within them, the actor
//! takes, in order: a free worker holding its snapshot hot, a free worker on a node that
//! holds the snapshot in its cache, any free worker. Each try is one atomic
//! `claim_worker` with a field selector, answered from the store's indexes. A worker on a
//! cordoned node (`ate drain node`) is never kept: the fleet removes them, and a claim that
//! gets one before it does gives it back. A template that needs node capabilities
//! ([`ate_model::TemplateSpec::required_capabilities`]: CRIU for Full snapshots of a
//! `process` actor) adds `capability=<each>` to every claim; if no worker of the eligible
//! pools has one at all, the resume fails with `MissingCapability` rather than "no free
//! worker", since no amount of waiting frees one. When every eligible worker is taken, an
//! idle actor on one of them is evicted and its worker handed over (`evict.rs`).

use ate_model::{Actor, ActorTemplate, Assignment, FieldSelector, Node, Worker, WorkerPool};
use ate_store::{ListOptions, StoreError};

use super::{Lifecycle, LifecycleError, placement};

/// What the scheduler knows about where the actor's snapshot is.
#[derive(Debug, Default, Clone)]
pub(crate) struct Locality {
    /// The snapshot's cache key (`atespace/actor/id` of its owner), as workers and node
    /// caches advertise it.
    pub hot_key: Option<String>,
    /// Nodes known to hold it (a paused actor's node).
    pub nodes: Vec<String>,
}

impl Lifecycle {
    async fn eligible_pools(
        &self,
        actor: &Actor,
        template: &ActorTemplate,
    ) -> Result<Vec<WorkerPool>, LifecycleError> {
        let class = &template.spec.sandbox_class;
        let mut pools: Vec<WorkerPool> = self
            .inner
            .specs
            .pools(self.store())
            .await?
            .into_iter()
            .filter(|p| {
                &p.spec.sandbox_class == class
                    && template.spec.worker_selector.matches(&p.spec.labels)
                    && actor.worker_selector.matches(&p.spec.labels)
            })
            .collect();
        // The order the store lists them in, so claims try pools in a stable order.
        pools.sort_by_key(|p| p.id().key());
        if pools.is_empty() {
            return Err(LifecycleError::NoEligiblePool {
                class: class.clone(),
            });
        }
        Ok(pools)
    }

    /// Nodes that hold the snapshot: those named, then those whose cache advertises it.
    fn holders(&self, locality: &Locality) -> Vec<String> {
        let mut nodes = locality.nodes.clone();
        if let (Some(key), Some(dir)) = (&locality.hot_key, self.inner.nodes.as_ref()) {
            for node in self.inner.holders.of(dir.dataspace(), key) {
                if !nodes.contains(&node) {
                    nodes.push(node);
                }
            }
        }
        nodes.retain(|n| self.registration(n).is_some());
        nodes
    }

    /// How many nodes assert themselves now.
    fn live_nodes(&self) -> usize {
        self.inner.nodes.as_ref().map_or(0, |d| {
            d.dataspace()
                .list::<ate_seam::NodeRegistration>(&ate_dataspace::Filter::All)
                .len()
        })
    }

    /// Whether a worker belongs to the live incarnation of its node.
    fn current(&self, w: &Worker) -> bool {
        self.registration(&w.node_name)
            .is_some_and(|r| r.incarnation == w.node_incarnation)
    }

    /// Whether an operator took `node` out of placement. Read after a claim: a claim that
    /// lands after a drain's cordon is seen here, one that landed before it is found by the
    /// drain, which then suspends the actor.
    pub(crate) async fn cordoned(&self, node: &str) -> Result<bool, LifecycleError> {
        match self.store().get::<Node>(node).await {
            Ok(n) => Ok(n.cordoned),
            Err(StoreError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// After no worker could be claimed: fails with `MissingCapability` if no worker of
    /// `pools`, free or busy, has one of the `needs`.
    async fn check_capabilities(
        &self,
        template: &ActorTemplate,
        pools: &[WorkerPool],
        needs: &[&str],
    ) -> Result<(), LifecycleError> {
        for c in needs {
            let mut found = false;
            for pool in pools {
                let sel = FieldSelector::eq([
                    ("namespace", pool.namespace.as_str()),
                    ("pool", pool.name.as_str()),
                    ("capability", c),
                ]);
                let opts = ListOptions {
                    limit: 1,
                    ..ListOptions::with_fields(sel)
                };
                let page = self.store().list::<Worker>(&opts).await?;
                if !page.items.is_empty() {
                    found = true;
                    break;
                }
            }
            if !found {
                return Err(LifecycleError::MissingCapability {
                    class: template.spec.sandbox_class.clone(),
                    capability: c.to_string(),
                });
            }
        }
        Ok(())
    }

    /// A claimed worker that an earlier attempt had bound is rebound under this lease, so
    /// that attempt can no longer free it. The claim holds the actor's lease, the newest
    /// there is for this actor; a binding carrying another generation is an older
    /// attempt's (or, newer-looking, one of a deleted actor of the same name, whose lease
    /// was retired), so it is overwritten either way.
    async fn fence_claim(&self, w: Worker, mine: &Assignment) -> Result<Worker, LifecycleError> {
        let key = w.key();
        let mut w = w;
        for _ in 0..8 {
            let theirs = w.assignment.as_ref().map(|a| a.lease_generation);
            if theirs == Some(mine.lease_generation) || mine.lease_generation == 0 {
                return Ok(w);
            }
            if w.assignment.as_ref().map(|a| &a.actor) != Some(&mine.actor) {
                break;
            }
            w.assignment = Some(mine.clone());
            match self.store().update(w).await {
                Ok(w) => return Ok(w),
                Err(StoreError::Conflict { .. }) => w = self.store().get::<Worker>(&key).await?,
                Err(e) => return Err(e.into()),
            }
        }
        Err(LifecycleError::Busy {
            actor: mine.actor.to_string(),
        })
    }

    /// Binds the actor to a worker, preferring snapshot locality. A worker already bound
    /// to the actor (an earlier attempt that died) is returned as it is.
    pub(crate) async fn claim(
        &self,
        actor: &Actor,
        template: &ActorTemplate,
        locality: &Locality,
    ) -> Result<Worker, LifecycleError> {
        let pools = self.eligible_pools(actor, template).await?;
        let needs = template.spec.required_capabilities();
        let assignment = Assignment {
            actor: actor.actor_ref(),
            template: actor.template.clone(),
            lease_generation: super::lease::current_fence().unwrap_or_default(),
        };
        let mut tiers: Vec<(&str, String)> = Vec::new();
        if let Some(key) = &locality.hot_key {
            tiers.push(("cached_snapshot", key.clone()));
        }
        let holders = self.holders(locality);
        // When every live node holds the snapshot, "a node that has it" is "any node": the
        // last tier alone asks the same, one claim fewer (`ate up` runs one node).
        if holders.len() < self.live_nodes() {
            for node in holders {
                tiers.push(("node_name", node));
            }
        }
        tiers.push(("", String::new()));
        for (field, value) in &tiers {
            for pool in &pools {
                let mut sel = FieldSelector::eq([
                    ("namespace", pool.namespace.as_str()),
                    ("pool", pool.name.as_str()),
                    ("actor_id", ""),
                ]);
                if !field.is_empty() {
                    sel = sel.and_eq(field, value);
                }
                // After the locality field, so a SQL store drives the claim from the more
                // selective index (a hot snapshot is on few workers, a capability on many).
                for c in &needs {
                    sel = sel.and_eq("capability", c);
                }
                while let Some(w) = self.store().claim(&sel, &assignment).await? {
                    let stale = !self.current(&w);
                    if stale || self.cordoned(&w.node_name).await? {
                        // A worker of a node that restarted, left or was cordoned, not yet
                        // removed by the fleet: it is ours now, so remove it and claim
                        // again. A live node is asked to stop the actor there first, in case
                        // the worker was bound to it by an earlier attempt.
                        if !stale {
                            self.stop_on(&placement(&w), &assignment.actor).await;
                        }
                        match self
                            .store()
                            .delete::<Worker>(&w.key(), Some(w.version))
                            .await
                        {
                            Ok(())
                            | Err(StoreError::NotFound { .. } | StoreError::Conflict { .. }) => {}
                            Err(e) => return Err(e.into()),
                        }
                        tracing::info!(worker = %w.key(), node = %w.node_name, "removed a stale worker");
                        continue;
                    }
                    tracing::debug!(
                        actor = %assignment.actor,
                        worker = %w.key(),
                        node = %w.node_name,
                        tier = if field.is_empty() { "any" } else { *field },
                        "worker claimed"
                    );
                    return self.fence_claim(w, &assignment).await;
                }
            }
        }
        self.check_capabilities(template, &pools, &needs).await?;
        let class = &template.spec.sandbox_class;
        if let Some(w) = self.evict_for(class, &pools, &needs, &assignment).await? {
            return Ok(w);
        }
        Err(LifecycleError::NoFreeWorker {
            pools: pools
                .iter()
                .map(|p| p.id().key())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}
