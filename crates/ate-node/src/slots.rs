//! The node's worker slots: which actor each hosts, its guest, and the snapshot each worker
//! keeps warm in memory after its actor leaves (so resuming that actor there again reads
//! nothing).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ate_model::ActorRef;
use ate_seam::{SeamError, WorkerId};
use ate_wasm::{
    CompiledModule, Guest, GuestConfig, GuestState, MappedMemory, MemoryImage, WasmEngine,
    WasmError,
};

/// A snapshot a worker can restore without fetching: its cache key (`atespace/actor/id`)
/// and the saved state.
#[derive(Debug, Clone)]
pub(crate) struct Warm {
    pub key: String,
    pub saved: Saved,
}

/// Where a snapshot's memory is: in this process (a checkpoint just taken), or in a file
/// of the node cache, mapped copy-on-write on restore.
#[derive(Debug, Clone)]
pub(crate) enum Saved {
    Copy(Arc<MemoryImage>),
    Mapped {
        state: Arc<GuestState>,
        memory: MappedMemory,
    },
}

impl Warm {
    pub fn restore(
        &self,
        engine: &WasmEngine,
        module: Arc<CompiledModule>,
        config: &GuestConfig,
    ) -> Result<Guest, WasmError> {
        match &self.saved {
            Saved::Copy(image) => Guest::restore(engine, module, config, image),
            Saved::Mapped { state, memory } => {
                Guest::restore_mapped(engine, module, config, state, memory)
            }
        }
    }
}

/// An actor on a worker.
#[derive(Debug)]
pub(crate) struct Hosted {
    pub guest: Option<Guest>,
    pub module: Arc<CompiledModule>,
    pub config: GuestConfig,
    /// The state the guest was last restored from or checkpointed to.
    pub image: Option<Warm>,
    /// Set under the lock by the checkpoint of a suspend or pause: a request that was
    /// admitted but got the lock after it must not run (its effects would be lost).
    pub parked: bool,
}

impl Hosted {
    /// The guest, ready for a request. A guest poisoned by a trap is replaced by one
    /// rebuilt from the last image (or a fresh boot), so the worker stays usable; state
    /// since that image is lost, as after a crash.
    pub fn guest(&mut self, engine: &WasmEngine) -> Result<&mut Guest, WasmError> {
        if self.guest.as_ref().is_none_or(Guest::is_poisoned) {
            self.guest = None;
            let fresh = match &self.image {
                Some(w) => w.restore(engine, self.module.clone(), &self.config)?,
                None => Guest::boot(engine, self.module.clone(), &self.config)?,
            };
            tracing::info!(actor = %self.config.actor, from_image = self.image.is_some(), "guest replaced");
            self.guest = Some(fresh);
        }
        self.guest
            .as_mut()
            .ok_or_else(|| WasmError::Internal("guest vanished".into()))
    }
}

pub(crate) type HostedRef = Arc<tokio::sync::Mutex<Hosted>>;

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

    /// Counts a request in until the returned guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
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
    pub hosted: HostedRef,
    pub activity: Arc<Activity>,
    pub idle_timeout: Duration,
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
    ) -> Result<(), SeamError> {
        let mut map = self.lock();
        let slot = map.entry(worker.clone()).or_default();
        if let Some(t) = &slot.tenant {
            return Err(SeamError::WorkerBusy {
                worker: worker.to_string(),
                actor: t.actor.to_string(),
            });
        }
        if hosted.image.is_some() {
            slot.warm = hosted.image.clone();
        }
        let activity = Arc::new(Activity::new());
        activity.touch();
        slot.tenant = Some(Tenant {
            actor: actor.clone(),
            hosted: Arc::new(tokio::sync::Mutex::new(hosted)),
            activity,
            idle_timeout,
            sealed: false,
        });
        Ok(())
    }

    fn not_hosted(worker: &WorkerId, actor: &ActorRef) -> SeamError {
        SeamError::NotHosted {
            worker: worker.to_string(),
            actor: actor.to_string(),
        }
    }

    /// The actor on `worker`, sealed or not (checkpoint and stop still reach it).
    pub fn hosted(&self, worker: &WorkerId, actor: &ActorRef) -> Result<HostedRef, SeamError> {
        match self.lock().get(worker).and_then(|s| s.tenant.as_ref()) {
            Some(t) if &t.actor == actor => Ok(t.hosted.clone()),
            _ => Err(Self::not_hosted(worker, actor)),
        }
    }

    /// The actor on `worker` if it takes requests.
    pub fn serving(&self, worker: &WorkerId, actor: &ActorRef) -> Result<Tenant, SeamError> {
        match self.lock().get(worker).and_then(|s| s.tenant.as_ref()) {
            Some(t) if &t.actor == actor && !t.sealed => Ok(t.clone()),
            _ => Err(Self::not_hosted(worker, actor)),
        }
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
