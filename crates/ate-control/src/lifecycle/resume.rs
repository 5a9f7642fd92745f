//! Resume: RESUMING is persisted, a worker is claimed and recorded, the node restores
//! (or boots) the actor, and RUNNING is persisted. The restore source is, in order: the
//! actor's latest snapshot, the template's golden snapshot, a cold boot.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ate_model::{
    Actor, ActorCondition, ActorRef, ActorStatus, ActorTemplate, SnapshotInfo, SnapshotScope,
    WorkerPlacement, parse_snapshot_uri,
};
use ate_seam::{RestoreRequest, Route, RunRequest, SnapshotRef};
use ate_snapshots::cache_key;

use super::lease::ActorLease;
use super::schedule::Locality;
use super::{Lifecycle, LifecycleError, crashpoint, placement, state_lost, worker_id, worker_key};

/// How often a resume waiting for another control plane's resume looks again.
const RESUME_POLL: Duration = Duration::from_millis(20);

/// What the node is asked to start from, and what the actor's record says afterwards.
struct Start {
    snapshot: Option<SnapshotRef>,
    latest: Option<SnapshotInfo>,
    lost: Option<ActorCondition>,
}

fn snapshot(uri: &str, scope: SnapshotScope) -> Result<SnapshotRef, LifecycleError> {
    SnapshotRef::from_uri(uri, scope).ok_or_else(|| {
        LifecycleError::Snapshot(ate_snapshots::SnapshotError::InvalidName {
            what: "snapshot uri",
            name: uri.into(),
        })
    })
}

/// The cache key workers and nodes advertise for the snapshot a URI names.
fn hot_key(uri: &str) -> Option<String> {
    parse_snapshot_uri(uri).map(|(_, owner, id)| cache_key(&owner, &id))
}

impl Lifecycle {
    /// Resumes an actor onto a worker and returns it RUNNING. Resuming a running actor is
    /// a read. Concurrent resumes of one actor share one workflow: on this control plane
    /// they queue behind it, across control planes they wait for the lease holder's
    /// resume to finish. A suspend or pause in progress makes it `Busy`.
    pub async fn resume(&self, aref: &ActorRef, boot: bool) -> Result<Actor, LifecycleError> {
        self.resume_reporting(aref, boot).await.map(|(a, _)| a)
    }

    /// [`Lifecycle::resume`], saying whether it changed anything: `false` when the actor
    /// was running already.
    pub async fn resume_reporting(
        &self,
        aref: &ActorRef,
        boot: bool,
    ) -> Result<(Actor, bool), LifecycleError> {
        self.nodes()?;
        let a = self.actor(aref).await?;
        if a.status == ActorStatus::Running {
            return Ok((a, false));
        }
        let gate = {
            let mut gates = self
                .inner
                .resume_gates
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            gates.entry(aref.key()).or_default().clone()
        };
        let result = {
            let _turn = gate.lock().await;
            self.resume_gated(a, boot).await
        };
        let mut gates = self
            .inner
            .resume_gates
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // The map's reference and ours: nobody else is waiting.
        if Arc::strong_count(&gate) == 2 {
            gates.remove(&aref.key());
        }
        let outcome = result.as_ref().map_or_else(LifecycleError::label, |_| "ok");
        metrics::counter!(crate::metrics::RESUMES, "outcome" => outcome).increment(1);
        result.map(|a| (a, true))
    }

    /// Takes the lease and resumes. `seen` is the record read before: it is carried into
    /// the workflow and re-read only when the lease is not to be had at once or a write
    /// finds it outdated (another resume finished while this one waited at the gate).
    async fn resume_gated(&self, seen: Actor, boot: bool) -> Result<Actor, LifecycleError> {
        let aref = seen.actor_ref();
        let deadline = Instant::now() + self.inner.config.lease_ttl * 2;
        let mut a = seen;
        let lease = loop {
            if let Some(l) =
                ActorLease::acquire(self.store(), &aref, self.inner.config.lease_ttl).await?
            {
                break l;
            }
            let parking = matches!(a.status, ActorStatus::Suspending | ActorStatus::Pausing);
            if parking || Instant::now() >= deadline {
                return Err(LifecycleError::Busy {
                    actor: aref.to_string(),
                });
            }
            tokio::time::sleep(RESUME_POLL).await;
            a = self.actor(&aref).await?;
            if a.status == ActorStatus::Running {
                return Ok(a);
            }
        };
        let result = lease.fenced(self.resume_locked(a, boot)).await;
        lease.release().await;
        result
    }

    /// Persists RESUMING over `a` (the record as last read). `None` if the write found the
    /// record outdated; the caller re-reads and decides again.
    async fn mark_resuming(&self, a: Actor) -> Result<Option<Actor>, LifecycleError> {
        let mut x = a;
        x.status = ActorStatus::Resuming;
        self.write_if_unchanged(x).await
    }

    async fn resume_locked(&self, seen: Actor, boot: bool) -> Result<Actor, LifecycleError> {
        let aref = seen.actor_ref();
        let mut a = seen;
        let (a, template) = loop {
            if Self::in_transition(a.status) {
                a = self.settle(a).await?;
            }
            if a.status == ActorStatus::Running {
                return Ok(a);
            }
            let template = self.template(&a.template).await?;
            match self.mark_resuming(a).await? {
                Some(marked) => break (marked, template),
                None => a = self.actor(&aref).await?,
            }
        };
        crashpoint("resume.marked");
        let locality = Self::locality(&a, &template, boot);
        let worker = match self.claim(&a, &template, &locality).await {
            Ok(w) => w,
            Err(e) => {
                self.update_actor(a, |x| x.status = x.resting_status())
                    .await?;
                return Err(e);
            }
        };
        crashpoint("resume.claimed");
        // The worker is recorded on the actor only with RUNNING: until then the claim on
        // the worker's record is what a rollback finds (`free_workers_of`).
        let p = placement(&worker);
        match self.start_on(&a, &template, &p, boot).await {
            Ok(start) => {
                crashpoint("resume.started");
                let a = self
                    .update_actor(a, |x| {
                        x.status = ActorStatus::Running;
                        x.worker = Some(p.clone());
                        x.latest_snapshot = start.latest.clone();
                        if let Some(c) = &start.lost {
                            x.set_condition(c.clone());
                        }
                    })
                    .await?;
                tracing::info!(actor = %aref, worker = %worker_key(&p), node = %p.node_name, "actor resumed");
                Ok(a)
            }
            Err(e) => {
                tracing::warn!(actor = %aref, worker = %worker_key(&p), error = %e, "resume failed; rolling back");
                self.stop_on(&p, &aref).await;
                self.release_worker(&worker_key(&p), &aref, None).await?;
                self.update_actor(a, |x| {
                    x.status = x.resting_status();
                    x.worker = None;
                })
                .await?;
                Err(e)
            }
        }
    }

    /// Where a running actor takes requests, as its node publishes it: for callers that
    /// want to forward at once rather than wait for the node's route assertion. `None`
    /// for an actor that is not running.
    pub async fn route_of(&self, a: &Actor) -> Result<Option<Route>, LifecycleError> {
        let Some(p) = a
            .worker
            .as_ref()
            .filter(|_| a.status == ActorStatus::Running)
        else {
            return Ok(None);
        };
        let t = self.template(&a.template).await?;
        Ok(Some(Route {
            actor: a.actor_ref(),
            node: p.node_name.clone(),
            worker: worker_id(p),
            template: a.template.clone(),
            timeout_ms: t.spec.route_timeout.0.as_millis() as u64,
        }))
    }

    /// Where the snapshot the actor will start from is, for the scheduler.
    fn locality(a: &Actor, t: &ActorTemplate, boot: bool) -> Locality {
        if boot {
            return Locality::default();
        }
        match &a.latest_snapshot {
            Some(SnapshotInfo::External { uri_prefix }) => Locality {
                hot_key: hot_key(uri_prefix),
                nodes: Vec::new(),
            },
            Some(SnapshotInfo::Local { prefix, nodes, .. }) => Locality {
                hot_key: hot_key(prefix),
                nodes: nodes.clone(),
            },
            None => Locality {
                hot_key: hot_key(&t.status.golden_snapshot),
                nodes: Vec::new(),
            },
        }
    }

    /// Decides what the worker on `node` starts the actor from.
    async fn start_plan(
        &self,
        a: &Actor,
        t: &ActorTemplate,
        node: &str,
        boot: bool,
    ) -> Result<Start, LifecycleError> {
        let scopes = &t.spec.snapshots;
        let template_start = || -> Result<Start, LifecycleError> {
            let golden = &t.status.golden_snapshot;
            Ok(Start {
                snapshot: (!boot && !golden.is_empty())
                    .then(|| snapshot(golden, scopes.on_commit))
                    .transpose()?,
                latest: None,
                lost: None,
            })
        };
        if boot {
            return Ok(Start {
                latest: a.latest_snapshot.clone(),
                ..template_start()?
            });
        }
        match &a.latest_snapshot {
            None => template_start(),
            Some(SnapshotInfo::External { uri_prefix }) => Ok(Start {
                snapshot: Some(snapshot(uri_prefix, scopes.on_commit)?),
                latest: a.latest_snapshot.clone(),
                lost: None,
            }),
            Some(SnapshotInfo::Local {
                prefix,
                nodes,
                fallback,
            }) => {
                if nodes.iter().any(|n| n == node) {
                    return Ok(Start {
                        snapshot: Some(snapshot(prefix, scopes.on_pause)?),
                        latest: a.latest_snapshot.clone(),
                        lost: None,
                    });
                }
                if self.inner.snapshots.exists(prefix).await? {
                    return Ok(Start {
                        snapshot: Some(snapshot(prefix, scopes.on_pause)?),
                        latest: Some(SnapshotInfo::External {
                            uri_prefix: prefix.clone(),
                        }),
                        lost: None,
                    });
                }
                let from = if fallback.is_empty() {
                    "the template".to_string()
                } else {
                    format!("snapshot {fallback}")
                };
                let lost = Some(state_lost(
                    "PausedSnapshotUnavailable",
                    format!(
                        "the paused snapshot on node {} was unavailable before its upload \
                         finished; resumed from {from}",
                        nodes.join(", ")
                    ),
                ));
                if fallback.is_empty() {
                    return Ok(Start {
                        lost,
                        ..template_start()?
                    });
                }
                Ok(Start {
                    snapshot: Some(snapshot(fallback, scopes.on_commit)?),
                    latest: Some(SnapshotInfo::External {
                        uri_prefix: fallback.clone(),
                    }),
                    lost,
                })
            }
        }
    }

    /// Asks the worker's node to restore or boot the actor; returns once it is ready.
    async fn start_on(
        &self,
        a: &Actor,
        t: &ActorTemplate,
        p: &WorkerPlacement,
        boot: bool,
    ) -> Result<Start, LifecycleError> {
        let start = self.start_plan(a, t, &p.node_name, boot).await?;
        let exec = self.executor(&p.node_name)?;
        let (worker, actor, workload) = (worker_id(p), a.actor_ref(), Self::workload(t));
        match &start.snapshot {
            Some(s) => {
                exec.restore(RestoreRequest {
                    worker,
                    actor,
                    actor_uid: a.uid.clone(),
                    workload,
                    snapshot: s.clone(),
                })
                .await?
            }
            None => {
                exec.run(RunRequest {
                    worker,
                    actor,
                    actor_uid: a.uid.clone(),
                    workload,
                })
                .await?
            }
        }
        Ok(start)
    }
}
