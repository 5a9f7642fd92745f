//! The node's worker slots: which actor each hosts, its sandbox, and the snapshot each
//! worker keeps warm in memory after its actor leaves (so resuming that actor there again
//! reads nothing).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ate_model::{ActorRef, Eviction};
use ate_seam::{Evictable, SeamError, WorkerId};

use crate::process::ProcessHosted;
use crate::wasm::{Warm, WasmHosted};

/// The sandbox class of a hosted actor, known without taking its lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Wasm,
    Process,
}

/// What runs an actor, by sandbox class.
#[derive(Debug)]
pub(crate) enum Sandbox {
    Wasm(Box<WasmHosted>),
    Process(ProcessHosted),
}

/// An actor on a worker.
#[derive(Debug)]
pub(crate) struct Hosted {
    pub sandbox: Sandbox,
    /// Set under the write lock by the checkpoint of a suspend or pause: a request that
    /// was admitted but got the lock after it must not run (its effects would be lost).
    pub parked: bool,
}

impl Hosted {
    pub fn new(sandbox: Sandbox) -> Self {
        Self {
            sandbox,
            parked: false,
        }
    }

    pub fn class(&self) -> Class {
        match &self.sandbox {
            Sandbox::Wasm(_) => Class::Wasm,
            Sandbox::Process(_) => Class::Process,
        }
    }

    /// The snapshot the worker keeps warm once this actor leaves.
    fn warm(&self) -> Option<Warm> {
        match &self.sandbox {
            Sandbox::Wasm(w) => w.image.clone(),
            Sandbox::Process(_) => None,
        }
    }
}

/// Requests hold the lock shared (a process serves many at once) or exclusively (a wasm
/// guest serves one at a time); a checkpoint or stop holds it exclusively, so it waits for
/// the requests in flight.
pub(crate) type HostedRef = Arc<tokio::sync::RwLock<Hosted>>;

/// When an actor last worked and how much is under way, for idle suspension.
#[derive(Debug)]
pub(crate) struct Activity {
    epoch: Instant,
    in_flight: AtomicU32,
    /// Milliseconds after `epoch` of the last request's start or end.
    last_ms: AtomicU64,
    /// Whether the node currently asserts the actor idle.
    pub idle_asserted: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            in_flight: AtomicU32::new(0),
            last_ms: AtomicU64::new(0),
            idle_asserted: AtomicBool::new(false),
        }
    }

    fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// Counts a request in until the returned guard drops. Called under the slots' lock
    /// ([`Slots::serving`]), so an evicting seal sees every request admitted before it.
    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
        InFlight(self.clone())
    }

    /// How long nothing has been in flight; `None` while a request runs.
    pub fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let now = self.epoch.elapsed().as_millis() as u64;
        Some(Duration::from_millis(
            now.saturating_sub(self.last_ms.load(Ordering::Relaxed)),
        ))
    }
}

/// One request in flight; dropping it ends the request.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The actor a worker hosts.
#[derive(Debug, Clone)]
pub(crate) struct Tenant {
    pub actor: ActorRef,
    pub class: Class,
    pub hosted: HostedRef,
    pub activity: Arc<Activity>,
    pub idle_timeout: Duration,
    pub eviction: Eviction,
    /// No new requests: the actor is being checkpointed to leave.
    pub sealed: bool,
}

#[derive(Debug, Default)]
struct Slot {
    tenant: Option<Tenant>,
    warm: Option<Warm>,
}

#[derive(Debug, Default)]
pub(crate) struct Slots {
    map: Mutex<HashMap<WorkerId, Slot>>,
}

/// Whether a worker can take an actor.
pub(crate) enum Vacancy {
    Free,
    /// Already hosts this very actor: a retried run or restore is a no-op.
    AlreadyHosting,
    /// Holds this actor sealed: it was parked and never stopped.
    Sealed,
}

impl Slots {
    fn lock(&self) -> MutexGuard<'_, HashMap<WorkerId, Slot>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn vacancy(&self, worker: &WorkerId, actor: &ActorRef) -> Result<Vacancy, SeamError> {
        match self.lock().get(worker).and_then(|s| s.tenant.as_ref()) {
            None => Ok(Vacancy::Free),
            Some(t) if &t.actor == actor && t.sealed => Ok(Vacancy::Sealed),
            Some(t) if &t.actor == actor => Ok(Vacancy::AlreadyHosting),
            Some(t) => Err(SeamError::WorkerBusy {
                worker: worker.to_string(),
                actor: t.actor.to_string(),
            }),
        }
    }

    /// Puts `hosted` on the worker unless another actor got there first.
    pub fn install(
        &self,
        worker: &WorkerId,
        actor: &ActorRef,
        hosted: Hosted,
        idle_timeout: Duration,
        eviction: Eviction,
    ) -> Result<(), SeamError> {
        let mut map = self.lock();
        let slot = map.entry(worker.clone()).or_default();
        if let Some(t) = &slot.tenant {
            return Err(SeamError::WorkerBusy {
                worker: worker.to_string(),
                actor: t.actor.to_string(),
            });
        }
        if let Some(warm) = hosted.warm() {
            slot.warm = Some(warm);
        }
        let activity = Arc::new(Activity::new());
        activity.touch();
        slot.tenant = Some(Tenant {
            actor: actor.clone(),
            class: hosted.class(),
            hosted: Arc::new(tokio::sync::RwLock::new(hosted)),
            activity,
            idle_timeout,
            eviction,
            sealed: false,
        });
        Ok(())
    }

    /// The refusal of a call for an actor the worker does not (or no longer) serve.
    pub fn not_hosted(worker: &WorkerId, actor: &ActorRef) -> SeamError {
        SeamError::NotHosted {
            worker: worker.to_string(),
            actor: actor.to_string(),
        }
    }

    /// The actor on `worker`, sealed or not (checkpoint and stop still reach it).
    pub fn hosted(
        &self,
        worker: &WorkerId,
        actor: &ActorRef,
    ) -> Result<(Class, HostedRef), SeamError> {
        match self.lock().get(worker).and_then(|s| s.tenant.as_ref()) {
            Some(t) if &t.actor == actor => Ok((t.class, t.hosted.clone())),
            _ => Err(Self::not_hosted(worker, actor)),
        }
    }

    /// The actor on `worker` if it takes requests, with the request counted in flight
    /// from this moment (under the same lock as a seal, so no request slips between an
    /// evicting seal's look and the seal).
    pub fn serving(
        &self,
        worker: &WorkerId,
        actor: &ActorRef,
    ) -> Result<(Tenant, InFlight), SeamError> {
        match self.lock().get(worker).and_then(|s| s.tenant.as_ref()) {
            Some(t) if &t.actor == actor && !t.sealed => Ok((t.clone(), t.activity.begin())),
            _ => Err(Self::not_hosted(worker, actor)),
        }
    }

    /// Seals the actor for an eviction if nothing is in flight to it, in one step against
    /// new requests. `InUse` leaves it open; `NotHosted` if the worker does not host it (or
    /// it is already leaving).
    pub fn seal_if_quiet(
        &self,
        worker: &WorkerId,
        actor: &ActorRef,
    ) -> Result<Arc<Activity>, SeamError> {
        let mut map = self.lock();
        match map.get_mut(worker).and_then(|s| s.tenant.as_mut()) {
            Some(t) if &t.actor == actor && !t.sealed => {
                if t.activity.in_flight.load(Ordering::Acquire) > 0 {
                    return Err(SeamError::InUse {
                        actor: actor.to_string(),
                    });
                }
                t.sealed = true;
                Ok(t.activity.clone())
            }
            _ => Err(Self::not_hosted(worker, actor)),
        }
    }

    /// The actors that could be evicted now, least recently used first.
    pub fn evictable(&self) -> Vec<Evictable> {
        let mut list: Vec<Evictable> = self
            .lock()
            .iter()
            .filter_map(|(w, s)| {
                let t = s.tenant.as_ref()?;
                if t.sealed || t.eviction == Eviction::Never {
                    return None;
                }
                let idle = t.activity.idle_for()?;
                Some(Evictable {
                    worker: w.clone(),
                    actor: t.actor.clone(),
                    idle_ms: idle.as_millis() as u64,
                })
            })
            .collect();
        list.sort_by_key(|e| std::cmp::Reverse(e.idle_ms));
        list
    }

    /// Stops (or, with `false`, resumes) admitting requests for the actor. Returns its
    /// activity, or `None` if the worker does not host it.
    pub fn seal(&self, worker: &WorkerId, actor: &ActorRef, sealed: bool) -> Option<Arc<Activity>> {
        let mut map = self.lock();
        match map.get_mut(worker).and_then(|s| s.tenant.as_mut()) {
            Some(t) if &t.actor == actor => {
                t.sealed = sealed;
                Some(t.activity.clone())
            }
            _ => None,
        }
    }

    pub fn remove(&self, worker: &WorkerId, actor: &ActorRef) -> Option<Tenant> {
        let mut map = self.lock();
        let slot = map.get_mut(worker)?;
        match &slot.tenant {
            Some(t) if &t.actor == actor => slot.tenant.take(),
            _ => None,
        }
    }

    /// Every actor taking requests, with its worker.
    pub fn tenants(&self) -> Vec<(WorkerId, Tenant)> {
        self.lock()
            .iter()
            .filter_map(|(w, s)| {
                s.tenant
                    .clone()
                    .filter(|t| !t.sealed)
                    .map(|t| (w.clone(), t))
            })
            .collect()
    }

    pub fn warm(&self, worker: &WorkerId) -> Option<Warm> {
        self.lock().get(worker).and_then(|s| s.warm.clone())
    }

    pub fn set_warm(&self, worker: &WorkerId, warm: Warm) {
        self.lock().entry(worker.clone()).or_default().warm = Some(warm);
    }

    /// What the worker advertises as hot.
    pub fn hot(&self, worker: &WorkerId) -> Vec<String> {
        self.warm(worker).map(|w| vec![w.key]).unwrap_or_default()
    }

    pub fn drain(&self) -> Vec<Tenant> {
        self.lock()
            .values_mut()
            .filter_map(|s| s.tenant.take())
            .collect()
    }
}
