//! The node's side of the seam: every `NodeExecutor` call, on real wasm guests.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ate_model::{ActorRef, SnapshotScope};
use ate_seam::{
    Body, Checkpoint, CheckpointRequest, Durability, IdleActor, InvokeError, LogStream,
    NodeCacheAdvert, NodeExecutor, NodeMembership, RestoreRequest, Route, RunRequest, SeamError,
    SnapshotRef, StopRequest, WorkerAdvert, WorkerId, Workload, actor_key, channel_body, full_body,
};
use ate_snapshots::{
    Manifest, SnapshotCache, SnapshotError, SnapshotStore, cache_key, describe_files,
};
use ate_wasm::{
    EgressPolicy, GuestConfig, GuestState, MappedMemory, ResponsePart, WasmEngine, WasmError,
};
use http_body_util::BodyExt;

use crate::logs::LogBook;
use crate::slots::{Activity, Hosted, Saved, Slots, Vacancy, Warm};
use crate::{NodeConfig, SANDBOX_CLASSES, workload};

/// Largest request body a guest is handed.
pub const MAX_REQUEST_BYTES: usize = 16 << 20;

/// How often the node looks for actors that have gone idle.
const IDLE_TICK: Duration = Duration::from_millis(200);

/// The node's executor.
#[derive(Debug)]
pub struct NodeService {
    config: NodeConfig,
    engine: Arc<WasmEngine>,
    cache: SnapshotCache,
    stores: Mutex<HashMap<String, SnapshotStore>>,
    slots: Slots,
    logs: LogBook,
    membership: Arc<Mutex<Option<NodeMembership>>>,
    /// The routes this node wants asserted, and whether they are.
    routes: Mutex<HashMap<ActorRef, (Route, bool)>>,
}

fn blocking_failed(e: tokio::task::JoinError) -> SeamError {
    SeamError::Internal(format!("node task failed: {e}"))
}

fn snapshot_error(e: SnapshotError) -> SeamError {
    match e {
        SnapshotError::Unavailable(_) => SeamError::Internal(e.to_string()),
        other => SeamError::Snapshot(other.to_string()),
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

impl NodeService {
    pub(crate) fn new(
        config: NodeConfig,
        engine: WasmEngine,
        cache: SnapshotCache,
        membership: Arc<Mutex<Option<NodeMembership>>>,
    ) -> Self {
        Self {
            config,
            engine: Arc::new(engine),
            cache,
            stores: Mutex::new(HashMap::new()),
            slots: Slots::default(),
            logs: LogBook::default(),
            membership,
            routes: Mutex::new(HashMap::new()),
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Modules compiled on this node so far.
    pub fn compiled_modules(&self) -> usize {
        self.engine.cached_modules()
    }

    /// Snapshots in the local cache, as `atespace/actor/id`.
    pub fn cached_snapshots(&self) -> Vec<String> {
        self.cache.held()
    }

    pub(crate) fn stop_all(&self) {
        let n = self.slots.drain().len();
        if n > 0 {
            tracing::info!(node = %self.config.name, actors = n, "node stopped its guests");
        }
    }

    fn store(&self, location: &str) -> Result<SnapshotStore, SeamError> {
        let location = if location.is_empty() {
            self.config.snapshot_location.as_str()
        } else {
            location
        };
        let mut stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = stores.get(location) {
            return Ok(s.clone());
        }
        let store = SnapshotStore::open(location).map_err(snapshot_error)?;
        stores.insert(location.to_string(), store.clone());
        Ok(store)
    }

    /// Re-asserts what `worker` and the cache hold, so the scheduler sees it.
    fn advertise(&self, worker: &WorkerId) {
        let guard = self.membership.lock().unwrap_or_else(|p| p.into_inner());
        let Some(m) = guard.as_ref() else { return };
        let advert = WorkerAdvert {
            node: self.config.name.clone(),
            worker: worker.clone(),
            snapshots: self.slots.hot(worker),
        };
        let cache = NodeCacheAdvert {
            node: self.config.name.clone(),
            snapshots: self.cache.held(),
        };
        if let Err(e) = m
            .owner()
            .assert(worker.to_string(), advert)
            .and_then(|_| m.owner().assert(self.config.name.as_str(), cache))
        {
            tracing::warn!(node = %self.config.name, error = %e, "cannot advertise snapshots");
        }
    }

    /// Runs `f` with the node's dataspace owner, if the node is still a member.
    fn with_owner(&self, f: impl FnOnce(&ate_dataspace::Owner)) {
        let guard = self.membership.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = guard.as_ref() {
            f(m.owner());
        }
    }

    /// Tells routers the actor takes requests on `worker`. A route the dataspace refuses
    /// (another node still holds the actor's) is tried again every tick until it lands or
    /// the actor leaves.
    fn publish_route(&self, worker: &WorkerId, actor: &ActorRef, w: &Workload) {
        let route = Route {
            actor: actor.clone(),
            node: self.config.name.clone(),
            worker: worker.clone(),
            template: w.template.clone(),
            timeout_ms: w.spec.route_timeout.0.as_millis() as u64,
        };
        self.routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(actor.clone(), (route, false));
        self.assert_routes();
    }

    /// Asserts every wanted route not asserted yet.
    fn assert_routes(&self) {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        for (actor, (route, asserted)) in routes.iter_mut().filter(|(_, (_, a))| !*a) {
            self.with_owner(|o| match o.assert(actor_key(actor), route.clone()) {
                Ok(()) => *asserted = true,
                Err(e) => {
                    tracing::warn!(actor = %actor, error = %e, "cannot publish the actor's route yet")
                }
            });
        }
    }

    /// Withdraws the actor's route (if it names `worker`: a late stop of an old worker
    /// leaves the new one's alone) and idle mark: it takes no more requests there.
    fn withdraw(&self, worker: &WorkerId, actor: &ActorRef, activity: &Activity) {
        let key = actor_key(actor);
        let route = {
            let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
            match routes.get(actor) {
                Some((r, _)) if &r.worker == worker => routes.remove(actor),
                _ => None,
            }
        };
        let idle = activity.idle_asserted.swap(false, Ordering::AcqRel);
        self.with_owner(|o| {
            if let Some((_, true)) = route {
                let _ = o.retract::<Route>(key.clone());
            }
            if idle {
                let _ = o.retract::<IdleActor>(key);
            }
        });
    }

    /// Asserts every actor that has had nothing in flight for its idle timeout as idle,
    /// once; a request retracts the mark (see `invoke`).
    fn mark_idle(&self) {
        for (worker, t) in self.slots.tenants() {
            if t.idle_timeout.is_zero() {
                continue;
            }
            let Some(idle) = t.activity.idle_for() else {
                continue;
            };
            if idle < t.idle_timeout || t.activity.idle_asserted.swap(true, Ordering::AcqRel) {
                continue;
            }
            let since = SystemTime::now()
                .checked_sub(idle)
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as u64);
            let mark = IdleActor {
                actor: t.actor.clone(),
                node: self.config.name.clone(),
                worker,
                idle_since_ms: since,
            };
            tracing::debug!(actor = %t.actor, idle_ms = idle.as_millis() as u64, "actor idle");
            self.with_owner(|o| {
                if let Err(e) = o.assert(actor_key(&t.actor), mark) {
                    tracing::warn!(actor = %t.actor, error = %e, "cannot mark the actor idle");
                }
            });
        }
    }

    /// Looks for idle actors, and retries routes not published yet, until the node goes
    /// away.
    pub(crate) async fn watch_idle(node: Weak<NodeService>) {
        let mut tick = tokio::time::interval(IDLE_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(node) = node.upgrade() else { return };
            node.assert_routes();
            node.mark_idle();
        }
    }

    fn check_class(&self, w: &Workload) -> Result<(), SeamError> {
        if SANDBOX_CLASSES.contains(&w.spec.sandbox_class.as_str()) {
            return Ok(());
        }
        Err(SeamError::UnsupportedClass {
            node: self.config.name.clone(),
            class: w.spec.sandbox_class.clone(),
        })
    }

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
    /// else the snapshot store (verified on the way in).
    async fn image(&self, req: &RestoreRequest) -> Result<Warm, SeamError> {
        let key = cache_key(&req.snapshot.owner, &req.snapshot.id);
        if let Some(w) = self.slots.warm(&req.worker).filter(|w| w.key == key) {
            return Ok(w);
        }
        let store = self.store(&req.snapshot.location)?;
        let cached = self
            .cache
            .get_or_fetch(&store, &req.snapshot.owner, &req.snapshot.id)
            .await
            .map_err(snapshot_error)?;
        if cached.manifest.sandbox_class != "wasm" {
            return Err(SeamError::Snapshot(format!(
                "snapshot {} was written by sandbox class {:?}, not wasm",
                req.snapshot.id, cached.manifest.sandbox_class
            )));
        }
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
        Ok(Warm { key, saved })
    }

    /// A pause: the checkpoint goes into the local cache now and to the snapshot store in
    /// the background. Returns the snapshot's size.
    fn keep_and_upload(
        &self,
        req: &CheckpointRequest,
        store: &SnapshotStore,
        runtime: &str,
        files: Vec<(String, bytes::Bytes)>,
    ) -> Result<u64, SeamError> {
        let entries = describe_files(&files).map_err(snapshot_error)?;
        let manifest = Manifest::new(
            &req.actor,
            &req.id,
            "wasm",
            SnapshotScope::Full,
            runtime,
            entries,
        );
        let bytes = manifest.total_size();
        self.cache
            .insert(&req.actor, manifest, &files)
            .map_err(snapshot_error)?;
        let (store, actor, id, runtime) = (
            store.clone(),
            req.actor.clone(),
            req.id.clone(),
            runtime.to_string(),
        );
        tokio::spawn(async move {
            match store
                .write(&actor, &id, "wasm", SnapshotScope::Full, &runtime, files)
                .await
            {
                Ok(_) => {
                    tracing::debug!(actor = %actor, snapshot = %id, "paused snapshot uploaded")
                }
                Err(e) => {
                    tracing::warn!(actor = %actor, snapshot = %id, error = %e, "paused snapshot upload failed")
                }
            }
        });
        Ok(bytes)
    }

    async fn start(
        &self,
        worker: &WorkerId,
        actor: &ActorRef,
        w: &Workload,
        image: Option<Warm>,
    ) -> Result<(), SeamError> {
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
            None => ate_wasm::Guest::boot(&engine, m, &cfg),
        })
        .await
        .map_err(blocking_failed)?
        .map_err(|e| guest_error(actor, e))?;
        let hosted = Hosted {
            guest: Some(guest),
            module,
            config,
            image,
            parked: false,
        };
        self.slots
            .install(worker, actor, hosted, w.spec.idle_timeout.0)?;
        self.advertise(worker);
        self.publish_route(worker, actor, w);
        tracing::info!(node = %self.config.name, worker = %worker, actor = %actor, "actor started");
        Ok(())
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

#[async_trait::async_trait]
impl NodeExecutor for NodeService {
    async fn run(&self, req: RunRequest) -> Result<(), SeamError> {
        self.check_class(&req.workload)?;
        if self.take_vacancy(&req.worker, &req.actor).await? {
            return Ok(());
        }
        self.start(&req.worker, &req.actor, &req.workload, None)
            .await
    }

    async fn restore(&self, req: RestoreRequest) -> Result<(), SeamError> {
        self.check_class(&req.workload)?;
        if self.take_vacancy(&req.worker, &req.actor).await? {
            return Ok(());
        }
        if req.snapshot.scope == SnapshotScope::Data {
            // A wasm guest keeps nothing outside its memory: a Data snapshot is a cold boot.
            return self
                .start(&req.worker, &req.actor, &req.workload, None)
                .await;
        }
        let image = self.image(&req).await?;
        self.start(&req.worker, &req.actor, &req.workload, Some(image))
            .await
    }

    async fn checkpoint(&self, req: CheckpointRequest) -> Result<Checkpoint, SeamError> {
        if !req.seal {
            return self.save(req).await;
        }
        if let Some(activity) = self.slots.seal(&req.worker, &req.actor, true) {
            self.withdraw(&req.worker, &req.actor, &activity);
        }
        let (worker, actor, workload) =
            (req.worker.clone(), req.actor.clone(), req.workload.clone());
        let taken = self.save(req).await;
        if taken.is_err()
            && let Ok(h) = self.slots.hosted(&worker, &actor)
        {
            // The actor stays: it takes requests here again (unparked first, so no
            // request admitted after the reopening is handed back).
            h.lock().await.parked = false;
            if self.slots.seal(&worker, &actor, false).is_some() {
                self.publish_route(&worker, &actor, &workload);
            }
        }
        taken
    }

    async fn stop(&self, req: StopRequest) -> Result<(), SeamError> {
        if let Some(t) = self.slots.remove(&req.worker, &req.actor) {
            self.withdraw(&req.worker, &req.actor, &t.activity);
            // Waits for a request in flight to finish before the guest is dropped.
            drop(t.hosted.lock().await);
            self.advertise(&req.worker);
            tracing::info!(node = %self.config.name, worker = %req.worker, actor = %req.actor, "actor stopped");
        }
        Ok(())
    }

    async fn invoke(
        &self,
        worker: &WorkerId,
        actor: &ActorRef,
        request: http::Request<Body>,
    ) -> Result<http::Response<Body>, InvokeError> {
        let tenant = match self.slots.serving(worker, actor) {
            Ok(t) => t,
            Err(e) => return Err(InvokeError::refused(e, request)),
        };
        let in_flight = tenant.activity.begin();
        if tenant.activity.idle_asserted.swap(false, Ordering::AcqRel) {
            self.with_owner(|o| {
                let _ = o.retract::<IdleActor>(actor_key(actor));
            });
        }
        let (parts, body) = request.into_parts();
        let body = read_body(body)
            .await
            .map_err(|e| SeamError::unavailable(actor, e))?;
        let mut guard = tenant.hosted.lock_owned().await;
        if guard.parked {
            // Admitted before the actor started to leave, but its state is saved already.
            let request = http::Request::from_parts(parts, full_body(body));
            return Err(InvokeError::refused(
                SeamError::NotHosted {
                    worker: worker.to_string(),
                    actor: actor.to_string(),
                },
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
            let result = guard.guest(&engine).and_then(|g| g.handle(&raw, sink));
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

    async fn logs(&self, actor: &ActorRef, follow: bool) -> Result<LogStream, SeamError> {
        Ok(self.logs.read(actor, follow))
    }
}

impl NodeService {
    /// Whether `worker` already serves `actor` (a retried run or restore); a sealed
    /// leftover of the actor (a park whose stop never arrived) is stopped first so the
    /// actor can start there afresh.
    async fn take_vacancy(&self, worker: &WorkerId, actor: &ActorRef) -> Result<bool, SeamError> {
        match self.slots.vacancy(worker, actor)? {
            Vacancy::Free => Ok(false),
            Vacancy::AlreadyHosting => Ok(true),
            Vacancy::Sealed => {
                self.stop(StopRequest {
                    worker: worker.clone(),
                    actor: actor.clone(),
                })
                .await?;
                Ok(false)
            }
        }
    }

    /// Saves the actor. A sealing checkpoint marks it parked under the guest lock, so a
    /// request admitted earlier that gets the lock afterwards is handed back, not run.
    async fn save(&self, req: CheckpointRequest) -> Result<Checkpoint, SeamError> {
        let hosted = self.slots.hosted(&req.worker, &req.actor)?;
        let mut guard = hosted.lock_owned().await;
        guard.parked = req.seal;
        let engine = self.engine.clone();
        let (image, guard_back) = tokio::task::spawn_blocking(move || {
            let r = guard.guest(&engine).and_then(|g| g.checkpoint());
            (r, guard)
        })
        .await
        .map_err(blocking_failed)?;
        let mut guard = guard_back;
        let image = image.map_err(|e| guest_error(&req.actor, e))?;
        let store = self.store(&req.location)?;
        let files = image
            .to_files()
            .map_err(|e| SeamError::Snapshot(e.to_string()))?;
        let runtime = format!("ate/{} {}", env!("CARGO_PKG_VERSION"), ate_wasm::RUNTIME);
        let bytes = match req.durability {
            Durability::Durable => {
                let manifest = store
                    .write(
                        &req.actor,
                        &req.id,
                        "wasm",
                        SnapshotScope::Full,
                        &runtime,
                        files.clone(),
                    )
                    .await
                    .map_err(snapshot_error)?;
                let bytes = manifest.total_size();
                if let Err(e) = self.cache.insert(&req.actor, manifest, &files) {
                    tracing::warn!(actor = %req.actor, error = %e, "checkpoint not kept in the local cache");
                }
                bytes
            }
            Durability::Local => self.keep_and_upload(&req, &store, &runtime, files)?,
        };
        let warm = Warm {
            key: cache_key(&req.actor, &req.id),
            saved: Saved::Copy(Arc::new(image)),
        };
        guard.image = Some(warm.clone());
        drop(guard);
        self.slots.set_warm(&req.worker, warm);
        self.advertise(&req.worker);
        Ok(Checkpoint {
            snapshot: SnapshotRef {
                location: store.location().to_string(),
                owner: req.actor.clone(),
                id: req.id,
                scope: SnapshotScope::Full,
            },
            bytes,
        })
    }
}
