//! One running guest: boot, restore from an image, handle requests, checkpoint.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ate_model::{ActorRef, Limits};
use bytes::Bytes;
use wasmtime::{Global, Instance, Memory, Store, StoreLimitsBuilder, Trap, TypedFunc, Val};

use crate::egress::EgressPolicy;
use crate::engine::{CompiledModule, EPOCH_TICK, WasmEngine};
use crate::host::{Budget, HostState, LogSink, ResponsePart, ResponseSink};
use crate::image::{GlobalValue, GuestState, MemoryImage};
use crate::mapped::MappedMemory;
use crate::{PAGE, WasmError};

/// How a guest is set up: who it is, what it may do.
#[derive(Clone)]
pub struct GuestConfig {
    pub actor: ActorRef,
    /// Extra environment (`ATE_ACTOR_ID` and `ATE_ATESPACE` are always set).
    pub env: Vec<(String, String)>,
    pub limits: Limits,
    pub egress: EgressPolicy,
    pub egress_timeout: Duration,
    pub log: LogSink,
}

impl std::fmt::Debug for GuestConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestConfig")
            .field("actor", &self.actor)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// A live instance. After a trap it is poisoned: its memory may be half-updated, so the
/// owner must replace it (from the last image, or a fresh boot).
pub struct Guest {
    store: Store<HostState>,
    memory: Memory,
    globals: Vec<(String, Global)>,
    alloc: TypedFunc<i32, i32>,
    handle: TypedFunc<(i32, i32), i32>,
    module: Arc<CompiledModule>,
    poisoned: bool,
}

impl std::fmt::Debug for Guest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guest")
            .field("module", &self.module.sha256)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

fn trap_error(e: wasmtime::Error, budget: Duration) -> WasmError {
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => WasmError::BudgetExceeded { budget },
        _ => WasmError::Trap(format!("{e:#}")),
    }
}

impl Guest {
    fn instantiate(
        engine: &WasmEngine,
        module: Arc<CompiledModule>,
        config: &GuestConfig,
    ) -> Result<(Self, Vec<TypedFunc<(), ()>>), WasmError> {
        let mut env = vec![
            format!("ATE_ACTOR_ID={}", config.actor.id),
            format!("ATE_ATESPACE={}", config.actor.atespace),
        ];
        env.extend(config.env.iter().map(|(k, v)| format!("{k}={v}")));
        let state = HostState {
            limits: StoreLimitsBuilder::new()
                .memory_size(config.limits.memory_pages as usize * PAGE)
                .instances(1)
                .build(),
            actor_id: config.actor.id.clone(),
            atespace: config.actor.atespace.clone(),
            env,
            egress: config.egress.clone(),
            egress_timeout: config.egress_timeout,
            log: config.log.clone(),
            response: None,
            responded: false,
            pending_egress: None,
            budget: Budget {
                limit: config.limits.request_budget.0,
                used: Duration::ZERO,
                entered: Instant::now(),
                tick: EPOCH_TICK,
            },
        };
        let mut store = Store::new(engine.engine(), state);
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(store.data().budget.ticks());
        let instance = module
            .pre
            .instantiate(&mut store)
            .map_err(|e| WasmError::Instantiate(format!("{e:#}")))?;
        Self::from_instance(store, instance, module)
    }

    fn from_instance(
        mut store: Store<HostState>,
        instance: Instance,
        module: Arc<CompiledModule>,
    ) -> Result<(Self, Vec<TypedFunc<(), ()>>), WasmError> {
        let missing =
            |what: &str| WasmError::InvalidModule(format!("module does not export {what}"));
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| missing("`memory`"))?;
        let mut globals = Vec::with_capacity(module.mutable_globals.len());
        for name in &module.mutable_globals {
            let g = instance
                .get_global(&mut store, name)
                .ok_or_else(|| missing(name))?;
            globals.push((name.clone(), g));
        }
        let alloc = instance
            .get_typed_func::<i32, i32>(&mut store, "ate_alloc")
            .map_err(|e| WasmError::InvalidModule(format!("ate_alloc: {e:#}")))?;
        let handle = instance
            .get_typed_func::<(i32, i32), i32>(&mut store, "ate_handle")
            .map_err(|e| WasmError::InvalidModule(format!("ate_handle: {e:#}")))?;
        let init = ["_initialize", "ate_init"]
            .into_iter()
            .filter_map(|n| instance.get_typed_func::<(), ()>(&mut store, n).ok())
            .collect();
        let guest = Self {
            store,
            memory,
            globals,
            alloc,
            handle,
            module,
            poisoned: false,
        };
        Ok((guest, init))
    }

    /// A fresh guest: instantiated, then its `_initialize` (WASI reactors) and `ate_init`
    /// exports run once, within the request budget.
    pub fn boot(
        engine: &WasmEngine,
        module: Arc<CompiledModule>,
        config: &GuestConfig,
    ) -> Result<Self, WasmError> {
        let (mut guest, init) = Self::instantiate(engine, module, config)?;
        for f in init {
            guest.arm_budget();
            if let Err(e) = f.call(&mut guest.store, ()) {
                return Err(trap_error(e, guest.store.data().budget.limit));
            }
        }
        Ok(guest)
    }

    /// A guest rebuilt from `image` in a fresh instance. No guest code runs: the instance's
    /// memory and mutable globals are overwritten with the saved ones.
    pub fn restore(
        engine: &WasmEngine,
        module: Arc<CompiledModule>,
        config: &GuestConfig,
        image: &MemoryImage,
    ) -> Result<Self, WasmError> {
        if image.state.module_sha256 != module.sha256 {
            return Err(WasmError::Snapshot(format!(
                "snapshot was taken from module {}, not {}",
                image.state.module_sha256, module.sha256
            )));
        }
        let (mut guest, _) = Self::instantiate(engine, module, config)?;
        guest.load(image)?;
        Ok(guest)
    }

    /// Like [`Guest::restore`], but the saved memory is mapped copy-on-write from `memory`
    /// rather than copied: constant time in the memory size, pages read on first touch.
    pub fn restore_mapped(
        engine: &WasmEngine,
        module: Arc<CompiledModule>,
        config: &GuestConfig,
        state: &GuestState,
        memory: &MappedMemory,
    ) -> Result<Self, WasmError> {
        if state.module_sha256 != module.sha256 {
            return Err(WasmError::Snapshot(format!(
                "snapshot was taken from module {}, not {}",
                state.module_sha256, module.sha256
            )));
        }
        if memory.len() as u64 != state.memory_bytes {
            return Err(WasmError::Snapshot(format!(
                "memory file holds {} bytes, state says {}",
                memory.len(),
                state.memory_bytes
            )));
        }
        let (mut guest, _) = Self::instantiate(engine, module, config)?;
        guest.grow_to(memory.len())?;
        let base = guest.memory.data_ptr(&guest.store);
        let accessible = guest.memory.data_size(&guest.store);
        memory.map_over(base, accessible)?;
        guest.set_globals(state)?;
        Ok(guest)
    }

    fn load(&mut self, image: &MemoryImage) -> Result<(), WasmError> {
        let want = image.memory.len();
        self.grow_to(want)?;
        self.memory.data_mut(&mut self.store)[..want].copy_from_slice(&image.memory);
        self.set_globals(&image.state)
    }

    /// Grows the memory to `want` bytes; refuses a snapshot smaller than the module's
    /// initial memory.
    fn grow_to(&mut self, want: usize) -> Result<(), WasmError> {
        let have = self.memory.data_size(&self.store);
        if want < have {
            return Err(WasmError::Snapshot(format!(
                "snapshot memory ({want} bytes) is smaller than the module's initial memory ({have} bytes)"
            )));
        }
        if want > have {
            self.memory
                .grow(&mut self.store, ((want - have) / PAGE) as u64)
                .map_err(|e| {
                    WasmError::Snapshot(format!("cannot grow memory to {want} bytes: {e:#}"))
                })?;
        }
        Ok(())
    }

    fn set_globals(&mut self, state: &GuestState) -> Result<(), WasmError> {
        let image_globals = &state.globals;
        if image_globals.len() != self.globals.len() {
            return Err(WasmError::Snapshot(format!(
                "snapshot has {} mutable globals, the module {}",
                image_globals.len(),
                self.globals.len()
            )));
        }
        for ((name, global), saved) in self.globals.iter().zip(image_globals) {
            if *name != saved.name {
                return Err(WasmError::Snapshot(format!(
                    "global {} is not {name}",
                    saved.name
                )));
            }
            let v = match saved.ty.as_str() {
                "i32" => Val::I32(saved.bits as u32 as i32),
                "i64" => Val::I64(saved.bits as i64),
                "f32" => Val::F32(saved.bits as u32),
                "f64" => Val::F64(saved.bits),
                other => {
                    return Err(WasmError::Snapshot(format!(
                        "global {name} has type {other}"
                    )));
                }
            };
            global
                .set(&mut self.store, v)
                .map_err(|e| WasmError::Snapshot(format!("global {name}: {e:#}")))?;
        }
        Ok(())
    }

    /// Captures memory and globals. Only between requests: a request in flight holds the
    /// guest exclusively, so a checkpoint can never see half a request.
    pub fn checkpoint(&mut self) -> Result<MemoryImage, WasmError> {
        if self.poisoned {
            return Err(WasmError::Poisoned);
        }
        let memory = Bytes::copy_from_slice(self.memory.data(&self.store));
        let mut globals = Vec::with_capacity(self.globals.len());
        for (name, g) in &self.globals {
            let (ty, bits) = match g.get(&mut self.store) {
                Val::I32(v) => ("i32", v as u32 as u64),
                Val::I64(v) => ("i64", v as u64),
                Val::F32(v) => ("f32", u64::from(v)),
                Val::F64(v) => ("f64", v),
                other => {
                    return Err(WasmError::Snapshot(format!(
                        "global {name} holds a {:?}, which cannot be saved",
                        other.ty(&self.store)
                    )));
                }
            };
            globals.push(GlobalValue {
                name: name.clone(),
                ty: ty.into(),
                bits,
            });
        }
        Ok(MemoryImage {
            state: GuestState {
                module_sha256: self.module.sha256.clone(),
                memory_bytes: memory.len() as u64,
                globals,
            },
            memory,
        })
    }

    fn arm_budget(&mut self) {
        let b = &mut self.store.data_mut().budget;
        b.used = Duration::ZERO;
        b.entered = Instant::now();
        let ticks = b.ticks();
        self.store.set_epoch_deadline(ticks);
    }

    /// Delivers one request (an HTTP/1.1 message, see `docs/sandboxes.md`) and sends the
    /// response to `sink` as the guest writes it. A guest that returns without responding
    /// gets a 500 (non-zero return) or an empty 200 sent for it.
    pub fn handle(&mut self, request: &[u8], sink: ResponseSink) -> Result<(), WasmError> {
        if self.poisoned {
            return Err(WasmError::Poisoned);
        }
        let len = i32::try_from(request.len())
            .map_err(|_| WasmError::Trap("request larger than 2 GiB".into()))?;
        {
            let st = self.store.data_mut();
            st.response = Some(sink);
            st.responded = false;
            st.pending_egress = None;
        }
        let result = self.call_handle(request, len);
        let st = self.store.data_mut();
        let mut sink = st.response.take();
        let responded = st.responded;
        match result {
            Ok(code) => {
                if !responded && let Some(sink) = sink.as_mut() {
                    let (status, body) = if code == 0 {
                        (200, Bytes::new())
                    } else {
                        (500, Bytes::from(format!("guest failed with code {code}\n")))
                    };
                    if sink(ResponsePart::Head {
                        status,
                        headers: Vec::new(),
                    }) && !body.is_empty()
                    {
                        sink(ResponsePart::Chunk(body));
                    }
                }
                Ok(())
            }
            Err(e) => {
                self.poisoned = true;
                Err(e)
            }
        }
    }

    fn call_handle(&mut self, request: &[u8], len: i32) -> Result<i32, WasmError> {
        let budget = self.store.data().budget.limit;
        self.arm_budget();
        let ptr = self
            .alloc
            .call(&mut self.store, len)
            .map_err(|e| trap_error(e, budget))?;
        let size = self.memory.data_size(&self.store);
        let start = ptr as u32 as usize;
        if start
            .checked_add(request.len())
            .is_none_or(|end| end > size)
        {
            return Err(WasmError::Trap(format!(
                "ate_alloc returned {start}, which cannot hold {} bytes",
                request.len()
            )));
        }
        self.memory.data_mut(&mut self.store)[start..start + request.len()]
            .copy_from_slice(request);
        self.handle
            .call(&mut self.store, (ptr, len))
            .map_err(|e| trap_error(e, budget))
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Current linear memory size in bytes.
    pub fn memory_size(&self) -> usize {
        self.memory.data_size(&self.store)
    }

    pub fn module_sha256(&self) -> &str {
        &self.module.sha256
    }
}
