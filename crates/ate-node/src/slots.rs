//! The node's worker slots: which actor each hosts, its guest, and the snapshot each worker
//! keeps warm in memory after its actor leaves (so resuming that actor there again reads
//! nothing).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

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

#[derive(Debug, Default)]
struct Slot {
    hosted: Option<(ActorRef, HostedRef)>,
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
}

impl Slots {
    fn lock(&self) -> MutexGuard<'_, HashMap<WorkerId, Slot>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn vacancy(&self, worker: &WorkerId, actor: &ActorRef) -> Result<Vacancy, SeamError> {
        match self.lock().get(worker).and_then(|s| s.hosted.as_ref()) {
            None => Ok(Vacancy::Free),
            Some((a, _)) if a == actor => Ok(Vacancy::AlreadyHosting),
            Some((a, _)) => Err(SeamError::WorkerBusy {
                worker: worker.to_string(),
                actor: a.to_string(),
            }),
        }
    }

    /// Puts `hosted` on the worker unless another actor got there first.
    pub fn install(
        &self,
        worker: &WorkerId,
        actor: &ActorRef,
        hosted: Hosted,
    ) -> Result<(), SeamError> {
        let mut map = self.lock();
        let slot = map.entry(worker.clone()).or_default();
        if let Some((a, _)) = &slot.hosted {
            return Err(SeamError::WorkerBusy {
                worker: worker.to_string(),
                actor: a.to_string(),
            });
        }
        if hosted.image.is_some() {
            slot.warm = hosted.image.clone();
        }
        slot.hosted = Some((actor.clone(), Arc::new(tokio::sync::Mutex::new(hosted))));
        Ok(())
    }

    pub fn hosted(&self, worker: &WorkerId, actor: &ActorRef) -> Result<HostedRef, SeamError> {
        match self.lock().get(worker).and_then(|s| s.hosted.as_ref()) {
            Some((a, h)) if a == actor => Ok(h.clone()),
            _ => Err(SeamError::NotHosted {
                worker: worker.to_string(),
                actor: actor.to_string(),
            }),
        }
    }

    pub fn remove(&self, worker: &WorkerId, actor: &ActorRef) -> Option<HostedRef> {
        let mut map = self.lock();
        let slot = map.get_mut(worker)?;
        match &slot.hosted {
            Some((a, _)) if a == actor => slot.hosted.take().map(|(_, h)| h),
            _ => None,
        }
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

    pub fn drain(&self) -> Vec<HostedRef> {
        self.lock()
            .values_mut()
            .filter_map(|s| s.hosted.take().map(|(_, h)| h))
            .collect()
    }
}
