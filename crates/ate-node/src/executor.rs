//! The node's side of the seam: every `NodeExecutor` call. What is common to the sandbox
//! classes lives here (worker slots, sealing, routes, idle marks); starting, saving and
//! serving an actor is the class's (`wasm.rs`, `process.rs`).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ate_model::ActorRef;
use ate_process::ProcessHost;
use ate_seam::{
    Body, Checkpoint, CheckpointRequest, Evictable, IdleActor, InvokeError, LogStream,
    NodeCacheAdvert, NodeExecutor, NodeMembership, RestoreRequest, Route, RunRequest, SeamError,
    StopRequest, WorkerAdvert, WorkerId, Workload, actor_key,
};
use ate_snapshots::{SnapshotCache, SnapshotError, SnapshotStore};
use ate_wasm::WasmEngine;

use crate::NodeConfig;
use crate::exits::Exits;
use crate::logs::LogBook;
use crate::slots::{Activity, Class, Hosted, Sandbox, Slots, Vacancy};

/// How often the node looks for actors that have gone idle.
const IDLE_TICK: Duration = Duration::from_millis(200);

/// The node's executor.
#[derive(Debug)]
pub struct NodeService {
    pub(crate) config: NodeConfig,
    pub(crate) engine: Arc<WasmEngine>,
    /// The process class's driver, on a node that can run it.
    pub(crate) process: Option<Arc<ProcessHost>>,
    /// The sandbox classes this node runs.
    classes: Vec<String>,
    pub(crate) cache: SnapshotCache,
    pub(crate) stores: Mutex<HashMap<String, SnapshotStore>>,
    pub(crate) slots: Slots,
    pub(crate) logs: LogBook,
    pub(crate) exits: Exits,
    membership: Arc<Mutex<Option<NodeMembership>>>,
    /// The routes this node wants asserted, and whether they are.
    routes: Mutex<HashMap<ActorRef, (Route, bool)>>,
}

pub(crate) fn blocking_failed(e: tokio::task::JoinError) -> SeamError {
    SeamError::Internal(format!("node task failed: {e}"))
}

pub(crate) fn snapshot_error(e: SnapshotError) -> SeamError {
    match e {
        SnapshotError::Unavailable(_) => SeamError::Internal(e.to_string()),
        SnapshotError::TooLarge {
            actor, size, limit, ..
        } => SeamError::SnapshotTooLarge { actor, size, limit },
        other => SeamError::Snapshot(other.to_string()),
    }
}

impl NodeService {
    pub(crate) fn new(
        config: NodeConfig,
        engine: WasmEngine,
        process: Option<Arc<ProcessHost>>,
        cache: SnapshotCache,
        membership: Arc<Mutex<Option<NodeMembership>>>,
    ) -> Self {
        let mut classes = vec!["wasm".to_string()];
        if process.is_some() {
            classes.push("process".into());
        }
        Self {
            config,
            engine: Arc::new(engine),
            process,
            classes,
            cache,
            stores: Mutex::new(HashMap::new()),
            slots: Slots::default(),
            logs: LogBook::default(),
            exits: Exits::default(),
            membership,
            routes: Mutex::new(HashMap::new()),
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The sandbox classes this node runs.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Whether `process` actors get Full snapshots here (CRIU works).
    pub fn full_process_snapshots(&self) -> bool {
        self.process.as_ref().is_some_and(|p| p.can_checkpoint())
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
        let gone = self.slots.drain();
        for t in &gone {
            self.logs.leave(&t.actor);
        }
        let n = gone.len();
        if n > 0 {
            tracing::info!(node = %self.config.name, actors = n, "node stopped its guests");
        }
    }

    /// Re-asserts what `worker` and the cache hold, so the scheduler sees it.
    pub(crate) fn advertise(&self, worker: &WorkerId) {
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
    pub(crate) fn with_owner(&self, f: impl FnOnce(&ate_dataspace::Owner)) {
        let guard = self.membership.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = guard.as_ref() {
            f(m.owner());
        }
    }

    /// Tells routers the actor takes requests on `worker`. A route the dataspace refuses
    /// (another node still holds the actor's) is tried again every tick until it lands or
    /// the actor leaves.
    pub(crate) fn publish_route(&self, worker: &WorkerId, actor: &ActorRef, w: &Workload) {
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
    pub(crate) fn withdraw(&self, worker: &WorkerId, actor: &ActorRef, activity: &Activity) {
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
        if self.classes.contains(&w.spec.sandbox_class) {
            return Ok(());
        }
        Err(SeamError::UnsupportedClass {
            node: self.config.name.clone(),
            class: w.spec.sandbox_class.clone(),
        })
    }

    /// Puts a started sandbox on the worker and opens it to requests.
    fn install(
        &self,
        worker: &WorkerId,
        actor: &ActorRef,
        w: &Workload,
        mut sandbox: Sandbox,
    ) -> Result<(), SeamError> {
        let exits = match &mut sandbox {
            Sandbox::Process(p) => Some(p.exits()),
            Sandbox::Wasm(_) => None,
        };
        // On a race lost to another actor, what was started here is dropped, and goes.
        self.slots.install(
            worker,
            actor,
            Hosted::new(sandbox),
            w.spec.idle_timeout.0,
            w.spec.eviction,
        )?;
        if let Some(exits) = exits {
            self.watch_exit(worker, actor, exits);
        }
        self.advertise(worker);
        self.publish_route(worker, actor, w);
        tracing::info!(node = %self.config.name, worker = %worker, actor = %actor, "actor started");
        Ok(())
    }

    fn class_of(&self, w: &Workload) -> Class {
        if w.spec.sandbox_class == "process" {
            Class::Process
        } else {
            Class::Wasm
        }
    }

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

    /// Saves the actor. A sealing checkpoint marks it parked under the write lock, so a
    /// request admitted earlier that gets the lock afterwards is handed back, not run.
    async fn save(&self, req: CheckpointRequest) -> Result<Checkpoint, SeamError> {
        let (class, hosted) = self.slots.hosted(&req.worker, &req.actor)?;
        match class {
            Class::Wasm => self.wasm_save(&req, hosted).await,
            Class::Process => self.process_save(&req, hosted).await,
        }
    }
}

#[async_trait::async_trait]
impl NodeExecutor for NodeService {
    async fn run(&self, req: RunRequest) -> Result<(), SeamError> {
        self.check_class(&req.workload)?;
        if self.take_vacancy(&req.worker, &req.actor).await? {
            return Ok(());
        }
        let arriving = self.logs.arriving(&req.actor, req.actor_uid.as_deref());
        let sandbox = match self.class_of(&req.workload) {
            Class::Wasm => self.wasm_start(&req.actor, &req.workload, None).await?,
            Class::Process => {
                self.process_start(&req.worker, &req.actor, &req.workload, None)
                    .await?
            }
        };
        self.install(&req.worker, &req.actor, &req.workload, sandbox)?;
        arriving.arrived();
        Ok(())
    }

    async fn restore(&self, req: RestoreRequest) -> Result<(), SeamError> {
        self.check_class(&req.workload)?;
        if self.take_vacancy(&req.worker, &req.actor).await? {
            return Ok(());
        }
        let arriving = self.logs.arriving(&req.actor, req.actor_uid.as_deref());
        let sandbox = match self.class_of(&req.workload) {
            Class::Wasm => {
                let image = self.wasm_image(&req).await?;
                self.wasm_start(&req.actor, &req.workload, image).await?
            }
            Class::Process => {
                let max_bytes = req.workload.spec.snapshots.max_bytes();
                let cached = self.fetch(&req.snapshot, "process", max_bytes).await?;
                self.process_start(&req.worker, &req.actor, &req.workload, Some(cached))
                    .await?
            }
        };
        self.install(&req.worker, &req.actor, &req.workload, sandbox)?;
        arriving.arrived();
        Ok(())
    }

    async fn checkpoint(&self, req: CheckpointRequest) -> Result<Checkpoint, SeamError> {
        if !req.seal {
            return self.save(req).await;
        }
        if req.evict {
            let activity = self.slots.seal_if_quiet(&req.worker, &req.actor)?;
            self.withdraw(&req.worker, &req.actor, &activity);
        } else if let Some(activity) = self.slots.seal(&req.worker, &req.actor, true) {
            self.withdraw(&req.worker, &req.actor, &activity);
        }
        let (worker, actor, workload) =
            (req.worker.clone(), req.actor.clone(), req.workload.clone());
        let taken = self.save(req).await;
        if taken.is_err()
            && let Ok((_, h)) = self.slots.hosted(&worker, &actor)
        {
            // The actor stays: it takes requests here again (unparked first, so no
            // request admitted after the reopening is handed back).
            h.write().await.parked = false;
            if self.slots.seal(&worker, &actor, false).is_some() {
                self.publish_route(&worker, &actor, &workload);
            }
        }
        taken
    }

    async fn stop(&self, req: StopRequest) -> Result<(), SeamError> {
        if let Some(t) = self.slots.remove(&req.worker, &req.actor) {
            self.withdraw(&req.worker, &req.actor, &t.activity);
            // Waits for the requests in flight to finish before the sandbox goes.
            let hosted = t.hosted.write().await;
            if let Sandbox::Process(p) = &hosted.sandbox {
                p.stop().await;
            }
            drop(hosted);
            self.logs.leave(&req.actor);
            self.advertise(&req.worker);
            tracing::info!(node = %self.config.name, worker = %req.worker, actor = %req.actor, "actor stopped");
        }
        self.clear_exit(&req.worker, &req.actor);
        Ok(())
    }

    async fn invoke(
        &self,
        worker: &WorkerId,
        actor: &ActorRef,
        request: http::Request<Body>,
    ) -> Result<http::Response<Body>, InvokeError> {
        let (tenant, in_flight) = match self.slots.serving(worker, actor) {
            Ok(t) => t,
            Err(e) => return Err(InvokeError::refused(e, request)),
        };
        if tenant.activity.idle_asserted.swap(false, Ordering::AcqRel) {
            self.with_owner(|o| {
                let _ = o.retract::<IdleActor>(actor_key(actor));
            });
        }
        match tenant.class {
            Class::Wasm => {
                self.wasm_invoke(worker, actor, tenant.hosted, in_flight, request)
                    .await
            }
            Class::Process => {
                self.process_invoke(worker, actor, tenant.hosted, in_flight, request)
                    .await
            }
        }
    }

    async fn evictable(&self) -> Result<Vec<Evictable>, SeamError> {
        Ok(self.slots.evictable())
    }

    async fn logs(
        &self,
        actor: &ActorRef,
        actor_uid: Option<&str>,
        follow: bool,
    ) -> Result<LogStream, SeamError> {
        Ok(self.logs.read(actor, actor_uid, follow))
    }
}
