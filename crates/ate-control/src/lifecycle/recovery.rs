//! Putting actors and workers back in order after a workflow or a node died. Everything
//! here runs under the actor's lease, so it never races a live workflow.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ate_model::{Actor, ActorRef, ActorStatus, FieldSelector, SnapshotInfo, Worker};
use ate_store::{ListOptions, StoreError};

use super::lease::ActorLease;
use super::park::Park;
use super::{Lifecycle, LifecycleError, placement, state_lost, worker_key};

/// What one recovery sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Actors a dead workflow had left in transition, now settled.
    pub settled: usize,
    /// Workers bound to an actor that did not point at them, now free.
    pub freed: usize,
    /// Items left for the next sweep because an operation holds the actor.
    pub busy: usize,
    /// Actors that could not be settled this time (each reported, retried with backoff).
    pub failed: usize,
    /// Actors skipped because their last failure's backoff has not run out.
    pub deferred: usize,
}

/// First wait before an actor that could not be settled is tried again; it doubles with
/// each failure up to [`RETRY_MAX`], so a broken actor (its snapshot bucket gone) costs
/// little while the others are settled on every sweep.
const RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest wait between attempts at an actor that keeps failing.
const RETRY_MAX: Duration = Duration::from_secs(300);

/// Actors the sweep failed to settle, and when each may be tried again.
#[derive(Debug, Default)]
pub(crate) struct Backoff(Mutex<HashMap<String, (Instant, Duration)>>);

impl Backoff {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Duration)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn waiting(&self, key: &str) -> bool {
        self.lock()
            .get(key)
            .is_some_and(|(next, _)| Instant::now() < *next)
    }

    fn failed(&self, key: &str) -> Duration {
        let mut m = self.lock();
        let wait = m
            .get(key)
            .map_or(RETRY_FIRST, |(_, last)| (*last * 2).min(RETRY_MAX));
        m.insert(key.to_string(), (Instant::now() + wait, wait));
        wait
    }

    fn settled(&self, key: &str) {
        self.lock().remove(key);
    }

    /// Forgets actors no longer in transition (settled by someone else, or deleted), so
    /// the map holds at most the actors the last sweep saw.
    fn keep_only(&self, seen: &std::collections::HashSet<String>) {
        self.lock().retain(|k, _| seen.contains(k));
    }
}

impl Lifecycle {
    /// Settles an actor a dead workflow left in transition (the caller holds its lease):
    /// a resume is rolled back; a suspend or pause is completed if its node can still
    /// checkpoint or its snapshot already landed, else the actor returns to its last
    /// durable snapshot with the loss recorded.
    pub(crate) async fn settle(&self, a: Actor) -> Result<Actor, LifecycleError> {
        tracing::info!(actor = %a.actor_ref(), status = %a.status, "settling an interrupted operation");
        match a.status {
            ActorStatus::Resuming => self.roll_back_resume(a).await,
            ActorStatus::Suspending | ActorStatus::Pausing => {
                let kind = Park::of(a.status);
                match self.template(&a.template).await {
                    Ok(t) => self.finish_park(a, &t, kind).await,
                    Err(LifecycleError::TemplateMissing { .. }) => {
                        self.return_to_durable(a, "TemplateMissing", "its template is gone".into())
                            .await
                    }
                    Err(e) => Err(e),
                }
            }
            _ => Ok(a),
        }
    }

    async fn roll_back_resume(&self, a: Actor) -> Result<Actor, LifecycleError> {
        let aref = a.actor_ref();
        let freed = self.free_workers_of(&a).await?;
        // Once a worker was bound, its node may have started the actor and answered
        // requests before the resume died: what it did since its snapshot is gone, and
        // the actor says so rather than silently going back.
        let lost = freed.first().map(|w| {
            state_lost(
                "ResumeInterrupted",
                format!(
                    "a resume onto worker {w} was interrupted; anything the actor did there was lost and it will resume from its last snapshot"
                ),
            )
        });
        self.mutate(&aref, |x| {
            x.status = x.resting_status();
            x.worker = None;
            if let Some(c) = &lost {
                x.set_condition(c.clone());
            }
        })
        .await
    }

    /// Stops the actor on, and frees, every worker bound to it: the one it records and
    /// any a claim bound before the record was written. Returns the workers' keys.
    pub(crate) async fn free_workers_of(&self, a: &Actor) -> Result<Vec<String>, LifecycleError> {
        let aref = a.actor_ref();
        let sel = FieldSelector::eq([
            ("actor_atespace", aref.atespace.as_str()),
            ("actor_id", aref.id.as_str()),
        ]);
        let mut bound: Vec<_> = self
            .store()
            .list_all::<Worker>(&ListOptions::with_fields(sel))
            .await?
            .iter()
            .map(placement)
            .collect();
        if let Some(p) = &a.worker
            && !bound.iter().any(|b| worker_key(b) == worker_key(p))
        {
            bound.push(p.clone());
        }
        let mut freed = Vec::with_capacity(bound.len());
        for p in bound {
            self.stop_on(&p, &aref).await;
            self.release_worker(&worker_key(&p), &aref, None).await?;
            freed.push(worker_key(&p));
        }
        Ok(freed)
    }

    /// The actor's worker (and what it held) is gone: frees its workers and makes it
    /// SUSPENDED from its last durable snapshot, recording that newer state was lost.
    pub(crate) async fn return_to_durable(
        &self,
        a: Actor,
        reason: &str,
        why: String,
    ) -> Result<Actor, LifecycleError> {
        let aref = a.actor_ref();
        self.free_workers_of(&a).await?;
        let durable = self
            .inner
            .snapshots
            .durable(a.latest_snapshot.as_ref())
            .await?;
        let from = durable
            .as_deref()
            .map_or("its template".to_string(), |u| format!("snapshot {u}"));
        let lost = state_lost(
            reason,
            format!("{why}; state since {from} was lost and the actor will resume from it"),
        );
        tracing::warn!(actor = %aref, reason, message = %lost.message, "actor state lost");
        self.mutate(&aref, |x| {
            x.status = ActorStatus::Suspended;
            x.worker = None;
            x.in_progress_snapshot.clear();
            x.latest_snapshot = durable
                .clone()
                .map(|uri_prefix| SnapshotInfo::External { uri_prefix });
            x.set_condition(lost.clone());
        })
        .await
    }

    /// Stops an actor wherever it runs and returns it to its last durable snapshot,
    /// without checkpointing: for a workload that cannot be suspended.
    pub async fn discard(&self, aref: &ActorRef, why: &str) -> Result<Actor, LifecycleError> {
        let lease = self.lease(aref).await?;
        let result = lease
            .fenced(async {
                let a = self.actor(aref).await?;
                self.return_to_durable(a, "Discarded", why.to_string())
                    .await
            })
            .await;
        lease.release().await;
        result
    }

    /// A busy worker whose node is gone (or restarted): its actor returns to its last
    /// durable snapshot and the worker is freed, ready to be removed. `Ok(false)` if an
    /// operation holds the actor; try again later.
    pub async fn recover_lost_worker(&self, w: &Worker, why: &str) -> Result<bool, LifecycleError> {
        let Some(asg) = &w.assignment else {
            return Ok(true);
        };
        let aref = asg.actor.clone();
        let Some(lease) =
            ActorLease::acquire(self.store(), &aref, self.inner.config.lease_ttl).await?
        else {
            return Ok(false);
        };
        let result = lease
            .fenced(async {
                let a = match self.actor(&aref).await {
                    Ok(a) => a,
                    Err(LifecycleError::Store(StoreError::NotFound { .. })) => {
                        return self.release_worker(&w.key(), &aref, None).await;
                    }
                    Err(e) => return Err(e),
                };
                let here = a.worker.as_ref().is_some_and(|p| worker_key(p) == w.key());
                match a.status {
                    _ if !here => self.release_worker(&w.key(), &aref, None).await,
                    ActorStatus::Running => self
                        .return_to_durable(a, "NodeLost", why.to_string())
                        .await
                        .map(drop),
                    _ => self.settle(a).await.map(drop),
                }
            })
            .await;
        lease.release().await;
        result.map(|()| true)
    }

    /// Settles every actor a dead workflow left in transition. Runs periodically (see
    /// [`Lifecycle::start_recovery`]); an actor held by a live operation is left for the
    /// next sweep. A dead resume's stray worker is freed with its RESUMING actor. An actor
    /// that cannot be settled is reported and tried again after a backoff; it never stops
    /// the sweep for the others.
    pub async fn recover(&self) -> Result<RecoveryReport, LifecycleError> {
        let mut report = RecoveryReport::default();
        let mut seen = std::collections::HashSet::new();
        for status in [
            ActorStatus::Resuming,
            ActorStatus::Suspending,
            ActorStatus::Pausing,
        ] {
            let sel = FieldSelector::eq([("status", status.as_str())]);
            for a in self
                .store()
                .list_all::<Actor>(&ListOptions::with_fields(sel))
                .await?
            {
                let aref = a.actor_ref();
                let key = aref.key();
                seen.insert(key.clone());
                if self.inner.recovery_backoff.waiting(&key) {
                    report.deferred += 1;
                    continue;
                }
                match self.settle_one(&aref).await {
                    Ok(Some(n)) => {
                        self.inner.recovery_backoff.settled(&key);
                        report.settled += n;
                    }
                    Ok(None) => report.busy += 1,
                    Err(e) => {
                        let retry_in = self.inner.recovery_backoff.failed(&key);
                        tracing::warn!(actor = %aref, error = %e, retry_in_ms = retry_in.as_millis() as u64, "cannot settle the actor; the sweep goes on");
                        report.failed += 1;
                    }
                }
            }
        }
        self.inner.recovery_backoff.keep_only(&seen);
        if report != RecoveryReport::default() {
            tracing::info!(
                settled = report.settled,
                busy = report.busy,
                failed = report.failed,
                deferred = report.deferred,
                "recovery sweep"
            );
        }
        Ok(report)
    }

    /// Settles one actor under its lease if it is still in transition: how many were
    /// settled (0 or 1), or `None` if an operation holds it.
    async fn settle_one(&self, aref: &ActorRef) -> Result<Option<usize>, LifecycleError> {
        let Some(lease) =
            ActorLease::acquire(self.store(), aref, self.inner.config.lease_ttl).await?
        else {
            return Ok(None);
        };
        let result = lease
            .fenced(async {
                match self.actor(aref).await {
                    Ok(a) if Self::in_transition(a.status) => self.settle(a).await.map(|_| 1),
                    Ok(_) | Err(LifecycleError::Store(StoreError::NotFound { .. })) => Ok(0),
                    Err(e) => Err(e),
                }
            })
            .await;
        lease.release().await;
        result.map(Some)
    }

    /// Frees every worker bound to an actor that does not record it. Every way to get
    /// there leaves the actor in transition, so [`Lifecycle::recover`] handles it; this
    /// scan of all busy workers is the start-up check that nothing else did.
    pub async fn recover_strays(&self) -> Result<RecoveryReport, LifecycleError> {
        let mut report = RecoveryReport::default();
        let bound = FieldSelector::parse("actor_id!=").map_err(StoreError::from)?;
        for w in self
            .store()
            .list_all::<Worker>(&ListOptions::with_fields(bound))
            .await?
        {
            if self.points_at(&w).await? {
                continue;
            }
            match self.free_stray(&w).await? {
                true => report.freed += 1,
                false => report.busy += 1,
            }
        }
        if report.freed > 0 {
            tracing::warn!(
                freed = report.freed,
                "freed workers bound to actors that had left them"
            );
        }
        Ok(report)
    }

    /// Whether the actor a worker is bound to records that worker.
    async fn points_at(&self, w: &Worker) -> Result<bool, LifecycleError> {
        let Some(asg) = &w.assignment else {
            return Ok(true);
        };
        match self.actor(&asg.actor).await {
            Ok(a) => Ok(a.worker.as_ref().is_some_and(|p| worker_key(p) == w.key())),
            Err(LifecycleError::Store(StoreError::NotFound { .. })) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Frees a worker bound to an actor that does not record it; `false` if the actor is
    /// busy (a resume between its claim and its record).
    async fn free_stray(&self, w: &Worker) -> Result<bool, LifecycleError> {
        let Some(asg) = &w.assignment else {
            return Ok(true);
        };
        let Some(lease) =
            ActorLease::acquire(self.store(), &asg.actor, self.inner.config.lease_ttl).await?
        else {
            return Ok(false);
        };
        let result = lease
            .fenced(async {
                if !self.points_at(w).await? {
                    let p = placement(w);
                    self.stop_on(&p, &asg.actor).await;
                    self.release_worker(&w.key(), &asg.actor, None).await?;
                }
                Ok(true)
            })
            .await;
        lease.release().await;
        result
    }
}

/// The periodic recovery sweep; dropping it stops the sweep.
#[derive(Debug)]
pub struct RecoveryHandle(tokio::task::JoinHandle<()>);

impl Drop for RecoveryHandle {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Lifecycle {
    /// Sweeps once for strays, then settles interrupted operations every `every` (at
    /// least as often as leases of dead workflows expire, to pick their actors up soon).
    pub fn start_recovery(&self, every: std::time::Duration) -> RecoveryHandle {
        let this = self.clone();
        RecoveryHandle(tokio::spawn(async move {
            if let Err(e) = this.recover_strays().await {
                tracing::warn!(error = %e, "stray worker check failed");
            }
            loop {
                if let Err(e) = this.recover().await {
                    tracing::warn!(error = %e, "recovery sweep failed; retrying");
                }
                tokio::time::sleep(every).await;
            }
        }))
    }
}
