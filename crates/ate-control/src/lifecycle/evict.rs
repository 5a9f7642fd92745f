//! Eviction: when a resume finds no free worker, it suspends a running actor that has
//! nothing in flight (least recently used first, over every eligible worker) and takes its
//! worker. The victim goes through the normal durable suspend under its own lease, so it
//! loses nothing and its next request resumes it; the worker passes from victim to
//! successor in one conditional write, so no concurrent claim can take it in between.
//! The node seals the victim only if nothing is in flight to it, in one step against new
//! requests (`CheckpointRequest::evict`), so an actor answering a request or streaming a
//! response is never chosen; a request reaching it once sealed is handed back and resumes
//! it afterwards. A victim another workflow holds is skipped, never waited for.

use ate_dataspace::Filter;
use ate_model::{
    ActorCondition, ActorStatus, Assignment, Eviction, Worker, WorkerPlacement, WorkerPool,
};
use ate_seam::{Evictable, NodeRegistration};
use ate_store::StoreError;

use super::lease::ActorLease;
use super::park::Park;
use super::{Lifecycle, LifecycleError, crashpoint, now_ms, worker_id, worker_key};

/// The condition an evicted actor carries: when it left its worker and for whom.
pub const EVICTED: &str = "Evicted";

/// Most victims one resume tries before it gives up: each try that fails found its
/// candidate busy (a request arrived, another workflow holds it), and a resume must not
/// walk a whole fleet while its caller waits.
const MAX_VICTIMS: usize = 8;

/// The actor a worker is handed to by an eviction.
#[derive(Debug)]
pub(crate) struct Handover<'a> {
    pub successor: &'a Assignment,
}

impl Handover<'_> {
    /// The `Evicted` condition recorded on the victim.
    pub fn condition(&self, p: &WorkerPlacement) -> ActorCondition {
        ActorCondition {
            kind: EVICTED.into(),
            reason: "WorkerNeeded".into(),
            message: format!(
                "suspended to make room for actor {} on worker {}",
                self.successor.actor,
                worker_key(p)
            ),
            time_ms: now_ms(),
        }
    }
}

/// A running actor that could give its worker up, and the node hosting it.
struct Candidate {
    node: String,
    evictable: Evictable,
}

impl Lifecycle {
    /// Frees a worker of `pools` for `successor` by evicting an idle actor, and returns it
    /// bound to the successor; `None` if no actor could be evicted (every eligible worker
    /// has a request in flight, or holds an actor that is never evicted).
    pub(crate) async fn evict_for(
        &self,
        class: &str,
        pools: &[WorkerPool],
        needs: &[&str],
        successor: &Assignment,
    ) -> Result<Option<Worker>, LifecycleError> {
        let candidates = self.candidates(class, pools, needs, successor).await?;
        for c in candidates.into_iter().take(MAX_VICTIMS) {
            match self.evict(&c, successor).await {
                Ok(Some(w)) => {
                    metrics::counter!(crate::metrics::EVICTIONS, "outcome" => "ok").increment(1);
                    return Ok(Some(w));
                }
                Ok(None) => {}
                Err(e) => {
                    let outcome = match &e {
                        LifecycleError::Node(ate_seam::SeamError::InUse { .. }) => "in_use",
                        other => other.label(),
                    };
                    metrics::counter!(crate::metrics::EVICTIONS, "outcome" => outcome).increment(1);
                    tracing::debug!(victim = %c.evictable.actor, error = %e, "eviction skipped");
                }
            }
        }
        Ok(None)
    }

    /// Actors on live, uncordoned nodes with the class and capabilities, on workers of
    /// `pools`, least recently used first.
    async fn candidates(
        &self,
        class: &str,
        pools: &[WorkerPool],
        needs: &[&str],
        successor: &Assignment,
    ) -> Result<Vec<Candidate>, LifecycleError> {
        let nodes = self.nodes()?;
        let mut out = Vec::new();
        for (_, reg) in nodes.dataspace().list::<NodeRegistration>(&Filter::All) {
            let capable = reg.sandbox_classes.iter().any(|c| c == class)
                && needs
                    .iter()
                    .all(|n| reg.capabilities.iter().any(|c| c == n));
            if !capable || self.cordoned(&reg.name).await? {
                continue;
            }
            let list = match nodes.executor(&reg.name) {
                Ok(exec) => exec.evictable().await,
                Err(e) => Err(e),
            };
            let list = match list {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(node = %reg.name, error = %e, "cannot list evictable actors");
                    continue;
                }
            };
            out.extend(
                list.into_iter()
                    .filter(|e| {
                        e.actor != successor.actor
                            && pools.iter().any(|p| {
                                p.namespace == e.worker.namespace && p.name == e.worker.pool
                            })
                    })
                    .map(|evictable| Candidate {
                        node: reg.name.clone(),
                        evictable,
                    }),
            );
        }
        out.sort_by_key(|c| std::cmp::Reverse(c.evictable.idle_ms));
        Ok(out)
    }

    /// Evicts one candidate under its lease. `None` when it turned out not to be one (it
    /// moved, its template forbids it); `Busy` when another workflow holds it.
    async fn evict(
        &self,
        c: &Candidate,
        successor: &Assignment,
    ) -> Result<Option<Worker>, LifecycleError> {
        let victim = &c.evictable.actor;
        let Some(lease) =
            ActorLease::acquire(self.store(), victim, self.inner.config.lease_ttl).await?
        else {
            return Err(LifecycleError::Busy {
                actor: victim.to_string(),
            });
        };
        let result = lease.fenced(self.evict_locked(c, successor)).await;
        lease.release().await;
        result
    }

    async fn evict_locked(
        &self,
        c: &Candidate,
        successor: &Assignment,
    ) -> Result<Option<Worker>, LifecycleError> {
        let a = match self.actor(&c.evictable.actor).await {
            Ok(a) => a,
            Err(LifecycleError::Store(StoreError::NotFound { .. })) => return Ok(None),
            Err(e) => return Err(e),
        };
        let on_worker = a
            .worker
            .as_ref()
            .is_some_and(|p| p.node_name == c.node && worker_id(p) == c.evictable.worker);
        if a.status != ActorStatus::Running || !on_worker {
            return Ok(None);
        }
        let template = self.template(&a.template).await?;
        if template.spec.eviction == Eviction::Never {
            return Ok(None);
        }
        let Some(p) = a.worker.clone() else {
            return Ok(None);
        };
        let Some(location) = self.snapshot_location(&template, &p) else {
            return Ok(None);
        };
        // Under the victim's lease only a selector update can have landed since the read.
        let Some(a) = self.mark_parking(a, &location, Park::Suspend).await? else {
            return Ok(None);
        };
        crashpoint("evict.marked");
        let handover = Handover { successor };
        let (a, worker) = self
            .finish_park_for(a, &template, Park::Suspend, Some(&handover))
            .await?;
        tracing::info!(
            victim = %a.actor_ref(),
            successor = %successor.actor,
            worker = %worker_key(&p),
            handed_over = worker.is_some(),
            "actor evicted"
        );
        Ok(worker)
    }
}
