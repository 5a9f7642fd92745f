//! The `wasm` sandbox class on a node: guests of wasmtime, restored from memory images
//! (mapped copy-on-write from the node cache, or kept warm in the worker after a
//! checkpoint), one request at a time per guest.

use std::sync::Arc;

use ate_model::{ActorRef, SnapshotScope};
use ate_seam::{
    Body, Checkpoint, CheckpointRequest, InvokeError, RestoreRequest, SeamError, SnapshotRef,
    WorkerId, Workload, channel_body, full_body,
};
use ate_snapshots::{SnapshotFile, cache_key};
use ate_wasm::{
    CompiledModule, EgressPolicy, Guest, GuestConfig, GuestState, MappedMemory, MemoryImage,
    ResponsePart, WasmEngine, WasmError,
};
use http_body_util::BodyExt;

use crate::executor::{NodeService, blocking_failed};
use crate::slots::{Hosted, HostedRef, InFlight, Sandbox, Slots};
use crate::workload;

/// Largest request body a guest is handed.
pub const MAX_REQUEST_BYTES: usize = 16 << 20;

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
    fn restore(
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

/// A wasm actor on a worker.
#[derive(Debug)]
pub(crate) struct WasmHosted {
    /// In a mutex only so the hosted actor is `Sync` (requests to other classes share
    /// it); reached through `get_mut`, never locked.
    guest: std::sync::Mutex<Option<Guest>>,
    module: Arc<CompiledModule>,
    config: GuestConfig,
    /// The state the guest was last restored from or checkpointed to.
    pub image: Option<Warm>,
}

impl WasmHosted {
    /// The guest, ready for a request. A guest poisoned by a trap is replaced by one
    /// rebuilt from the last image (or a fresh boot), so the worker stays usable; state
    /// since that image is lost, as after a crash.
    fn guest(&mut self, engine: &WasmEngine) -> Result<&mut Guest, WasmError> {
        let slot = self.guest.get_mut().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_none_or(Guest::is_poisoned) {
            *slot = None;
            let fresh = match &self.image {
                Some(w) => w.restore(engine, self.module.clone(), &self.config)?,
                None => Guest::boot(engine, self.module.clone(), &self.config)?,
            };
            tracing::info!(actor = %self.config.actor, from_image = self.image.is_some(), "guest replaced");
            *slot = Some(fresh);
        }
        slot.as_mut()
            .ok_or_else(|| WasmError::Internal("guest vanished".into()))
    }
}

fn guest_error(actor: &ActorRef, e: WasmError) -> SeamError {
    match e {
        WasmError::BudgetExceeded { .. } | WasmError::Trap(_) | WasmError::Poisoned => {
            SeamError::unavailable(actor, e.to_string())
        }
        WasmError::Snapshot(_) => SeamError::Snapshot(e.to_string()),
        other => workload::wasm_error(other),
    }
}

/// The wasm guest behind a hosted actor, for code holding its lock.
fn wasm(hosted: &mut Hosted) -> Result<&mut WasmHosted, WasmError> {
    match &mut hosted.sandbox {
        Sandbox::Wasm(w) => Ok(w),
        Sandbox::Process(_) => Err(WasmError::Internal("not a wasm actor".into())),
    }
}

impl NodeService {
    fn guest_config(&self, actor: &ActorRef, w: &Workload) -> GuestConfig {
        GuestConfig {
            actor: actor.clone(),
            env: w
                .spec
                .env
                .iter()
                .map(|e| (e.name.clone(), e.value.clone()))
                .collect(),
            limits: w.spec.limits,
            egress: EgressPolicy::new(&w.spec.egress),
            egress_timeout: self.config.egress_timeout,
            log: self.logs.sink(actor),
        }
    }

    /// The image of a durable snapshot: from the worker's warm copy, else the local cache,
    /// else the snapshot store (verified on the way in). `None` for a Data snapshot: a
    /// wasm guest keeps nothing outside its memory, so it boots afresh.
    pub(crate) async fn wasm_image(&self, req: &RestoreRequest) -> Result<Option<Warm>, SeamError> {
        if req.snapshot.scope == SnapshotScope::Data {
            return Ok(None);
        }
        let key = cache_key(&req.snapshot.owner, &req.snapshot.id);
        if let Some(w) = self.slots.warm(&req.worker).filter(|w| w.key == key) {
            return Ok(Some(w));
        }
        let max_bytes = req.workload.spec.snapshots.max_bytes();
        let cached = self.fetch(&req.snapshot, "wasm", max_bytes).await?;
        let saved = tokio::task::spawn_blocking(move || {
            let state_path = cached
                .file(ate_wasm::STATE_FILE)
                .map_err(|e| e.to_string())?;
            let memory_path = cached
                .file(ate_wasm::MEMORY_FILE)
                .map_err(|e| e.to_string())?;
            let state =
                std::fs::read(&state_path).map_err(|e| format!("{}: {e}", state_path.display()))?;
            let state = GuestState::parse(&state).map_err(|e| e.to_string())?;
            let memory = MappedMemory::open(&memory_path).map_err(|e| e.to_string())?;
            Ok::<_, String>(Saved::Mapped {
                state: Arc::new(state),
                memory,
            })
        })
        .await
        .map_err(blocking_failed)?
        .map_err(SeamError::Snapshot)?;
        Ok(Some(Warm { key, saved }))
    }

    /// Boots the guest, or restores it from `image`, ready to install on a worker.
    pub(crate) async fn wasm_start(
        &self,
        actor: &ActorRef,
        w: &Workload,
        image: Option<Warm>,
    ) -> Result<Sandbox, SeamError> {
        let module =
            workload::compile(&self.engine, w, &self.config.data_dir.join("modules")).await?;
        let config = self.guest_config(actor, w);
        let (engine, m, cfg, img) = (
            self.engine.clone(),
            module.clone(),
            config.clone(),
            image.clone(),
        );
        let guest = tokio::task::spawn_blocking(move || match &img {
            Some(warm) => warm.restore(&engine, m, &cfg),
            None => Guest::boot(&engine, m, &cfg),
        })
        .await
        .map_err(blocking_failed)?
        .map_err(|e| guest_error(actor, e))?;
        Ok(Sandbox::Wasm(Box::new(WasmHosted {
            guest: std::sync::Mutex::new(Some(guest)),
            module,
            config,
            image,
        })))
    }

    /// Checkpoints the guest (its lock held: no request runs meanwhile) and writes the
    /// snapshot durably or to the cache first.
    pub(crate) async fn wasm_save(
        &self,
        req: &CheckpointRequest,
        hosted: HostedRef,
    ) -> Result<Checkpoint, SeamError> {
        let mut guard = hosted.write_owned().await;
        guard.parked = req.seal;
        let engine = self.engine.clone();
        let max_bytes = req.workload.spec.snapshots.max_bytes();
        let (image, guard_back) = tokio::task::spawn_blocking(move || {
            let r = wasm(&mut guard).and_then(|h| {
                let guest = h.guest(&engine)?;
                // Refused before the memory is copied: a guest bigger than its template's
                // snapshots may be never costs the node a second copy of itself.
                let size = guest.memory_size() as u64;
                if size > max_bytes {
                    return Ok(Err(size));
                }
                guest.checkpoint().map(Ok)
            });
            (r, guard)
        })
        .await
        .map_err(blocking_failed)?;
        let mut guard = guard_back;
        let image = match image.map_err(|e| guest_error(&req.actor, e))? {
            Ok(image) => image,
            Err(size) => {
                return Err(SeamError::SnapshotTooLarge {
                    actor: req.actor.to_string(),
                    size,
                    limit: max_bytes,
                });
            }
        };
        // The memory goes out as the bytes the worker keeps warm anyway: no copy of it
        // is made on the way to the cache and the store.
        let files = image
            .to_files()
            .map_err(|e| SeamError::Snapshot(e.to_string()))?
            .into_iter()
            .map(|(name, bytes)| SnapshotFile::bytes(name, bytes))
            .collect();
        let runtime = format!("ate/{} {}", env!("CARGO_PKG_VERSION"), ate_wasm::RUNTIME);
        let (store, bytes) = self
            .write_snapshot(req, "wasm", SnapshotScope::Full, &runtime, files)
            .await?;
        let warm = Warm {
            key: cache_key(&req.actor, &req.id),
            saved: Saved::Copy(Arc::new(image)),
        };
        if let Ok(h) = wasm(&mut guard) {
            h.image = Some(warm.clone());
        }
        drop(guard);
        self.slots.set_warm(&req.worker, warm);
        self.advertise(&req.worker);
        Ok(Checkpoint {
            snapshot: SnapshotRef {
                location: store.location().to_string(),
                owner: req.actor.clone(),
                id: req.id.clone(),
                scope: SnapshotScope::Full,
            },
            bytes,
        })
    }

    /// Runs one request in the guest, which takes it whole and answers in parts.
    pub(crate) async fn wasm_invoke(
        &self,
        worker: &WorkerId,
        actor: &ActorRef,
        hosted: HostedRef,
        in_flight: InFlight,
        request: http::Request<Body>,
    ) -> Result<http::Response<Body>, InvokeError> {
        let (parts, body) = request.into_parts();
        let body = read_body(body)
            .await
            .map_err(|e| SeamError::unavailable(actor, e))?;
        let mut guard = hosted.write_owned().await;
        if guard.parked {
            // Admitted before the actor started to leave, but its state is saved already.
            let request = http::Request::from_parts(parts, full_body(body));
            return Err(InvokeError::refused(
                Slots::not_hosted(worker, actor),
                request,
            ));
        }
        let raw = encode_request(&parts, &body);
        drop(body);
        let (head_tx, head_rx) = tokio::sync::oneshot::channel();
        let (body_tx, body) = channel_body(16);
        let engine = self.engine.clone();
        let mut head_tx = Some(head_tx);
        let task = tokio::task::spawn_blocking(move || {
            let _in_flight = in_flight;
            let sink_body = body_tx.clone();
            let sink = Box::new(move |part: ResponsePart| match part {
                ResponsePart::Head { status, headers } => head_tx
                    .take()
                    .is_some_and(|tx| tx.send((status, headers)).is_ok()),
                ResponsePart::Chunk(c) => sink_body.blocking_send(Ok(c)).is_ok(),
            });
            let result = wasm(&mut guard)
                .and_then(|h| h.guest(&engine))
                .and_then(|g| g.handle(&raw, sink));
            if let Err(e) = &result {
                let _ = body_tx.blocking_send(Err(e.to_string().into()));
            }
            result
        });
        let (status, headers) = match head_rx.await {
            Ok(head) => head,
            Err(_) => {
                let e = match task.await.map_err(blocking_failed)? {
                    Err(e) => e,
                    Ok(()) => WasmError::Internal("guest finished without a response".into()),
                };
                tracing::warn!(actor = %actor, error = %e, "request failed in the guest");
                return Err(guest_error(actor, e).into());
            }
        };
        let mut response = http::Response::builder().status(status);
        for (k, v) in headers {
            response = response.header(k, v);
        }
        Ok(response.body(body).map_err(|e| {
            SeamError::unavailable(actor, format!("guest sent a bad response head: {e}"))
        })?)
    }
}

/// Reads a request body whole (a wasm guest takes its request in one piece), up to
/// [`MAX_REQUEST_BYTES`].
async fn read_body(mut stream: Body) -> Result<bytes::Bytes, String> {
    let mut body = bytes::BytesMut::new();
    while let Some(frame) = stream.frame().await {
        let frame = frame.map_err(|e| format!("reading the request body: {e}"))?;
        if let Ok(data) = frame.into_data() {
            if body.len() + data.len() > MAX_REQUEST_BYTES {
                return Err(format!(
                    "request body larger than {MAX_REQUEST_BYTES} bytes"
                ));
            }
            body.extend_from_slice(&data);
        }
    }
    Ok(body.freeze())
}

/// Encodes a request as the HTTP/1.1 message a guest receives.
fn encode_request(parts: &http::request::Parts, body: &[u8]) -> Vec<u8> {
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = format!("{} {target} HTTP/1.1\r\n", parts.method).into_bytes();
    for (k, v) in &parts.headers {
        if k == http::header::CONTENT_LENGTH || k == http::header::TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(k.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}
