//! Workflows are fenced by their lease: a replica whose lease renewals fail while its
//! resume is stuck on the node stops before its lease can expire, and the replica that
//! takes the actor over and rolls the resume back wins. Real wasm node, real SQLite store;
//! the stuck node call and the failing renewals are the two faults injected.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ate_control::{Lifecycle, LifecycleError};
use ate_dataspace::Dataspace;
use ate_model::{ActorRef, ActorStatus, Assignment, FieldSelector, Kind};
use ate_seam::{
    Body, Checkpoint, CheckpointRequest, Evictable, InvokeError, LogStream, NodeDirectory,
    NodeExecutor, RestoreRequest, RunRequest, SeamError, StopRequest, WorkerId,
};
use ate_store::{Lease, ListOptions, Page, Record, RecordWrite, Store, StoreError, Watch};
use common::{System, config};
use tokio::sync::Notify;

/// The shared store, except that once `fail_renewals` is set no actor lease can be taken
/// or renewed through it: the replica's link to the store broke for leases.
struct FlakyStore {
    inner: Arc<dyn Store>,
    fail_renewals: AtomicBool,
}

#[async_trait::async_trait]
impl Store for FlakyStore {
    async fn create_record(&self, kind: Kind, r: RecordWrite) -> ate_store::Result<u64> {
        self.inner.create_record(kind, r).await
    }
    async fn get_record(&self, kind: Kind, key: &str) -> ate_store::Result<Record> {
        self.inner.get_record(kind, key).await
    }
    async fn update_record(
        &self,
        kind: Kind,
        r: RecordWrite,
        expected_version: u64,
    ) -> ate_store::Result<u64> {
        self.inner.update_record(kind, r, expected_version).await
    }
    async fn delete_record(
        &self,
        kind: Kind,
        key: &str,
        version: Option<u64>,
    ) -> ate_store::Result<()> {
        self.inner.delete_record(kind, key, version).await
    }
    async fn list_records(&self, kind: Kind, o: &ListOptions) -> ate_store::Result<Page<Record>> {
        self.inner.list_records(kind, o).await
    }
    async fn claim_worker(
        &self,
        selector: &FieldSelector,
        assignment: &Assignment,
    ) -> ate_store::Result<Option<Record>> {
        self.inner.claim_worker(selector, assignment).await
    }
    async fn acquire_lease(
        &self,
        key: &str,
        owner: &str,
        ttl: Duration,
    ) -> ate_store::Result<Lease> {
        if self.fail_renewals.load(Ordering::SeqCst) && key.starts_with("actor/") {
            return Err(StoreError::Unavailable("the lease link is down".into()));
        }
        self.inner.acquire_lease(key, owner, ttl).await
    }
    async fn release_lease(&self, key: &str, owner: &str) -> ate_store::Result<()> {
        self.inner.release_lease(key, owner).await
    }
    async fn retire_lease(&self, key: &str, owner: &str) -> ate_store::Result<()> {
        self.inner.retire_lease(key, owner).await
    }
    async fn watch(&self, kind: Kind) -> ate_store::Result<Watch> {
        self.inner.watch(kind).await
    }
}

/// The seam's nodes, except that a run or restore waits for `open` before it reaches the
/// node: a node call stuck in flight.
#[derive(Debug)]
struct StuckNodes {
    inner: Arc<dyn NodeDirectory>,
    reached: Arc<Notify>,
    open: Arc<Notify>,
}

#[derive(Debug)]
struct StuckNode {
    inner: Arc<dyn NodeExecutor>,
    reached: Arc<Notify>,
    open: Arc<Notify>,
}

impl NodeDirectory for StuckNodes {
    fn dataspace(&self) -> &Dataspace {
        self.inner.dataspace()
    }
    fn executor(&self, node: &str) -> Result<Arc<dyn NodeExecutor>, SeamError> {
        Ok(Arc::new(StuckNode {
            inner: self.inner.executor(node)?,
            reached: self.reached.clone(),
            open: self.open.clone(),
        }))
    }
}

impl StuckNode {
    async fn stuck(&self) {
        self.reached.notify_one();
        self.open.notified().await;
    }
}

#[async_trait::async_trait]
impl NodeExecutor for StuckNode {
    async fn run(&self, req: RunRequest) -> Result<(), SeamError> {
        self.stuck().await;
        self.inner.run(req).await
    }
    async fn restore(&self, req: RestoreRequest) -> Result<(), SeamError> {
        self.stuck().await;
        self.inner.restore(req).await
    }
    async fn checkpoint(&self, req: CheckpointRequest) -> Result<Checkpoint, SeamError> {
        self.inner.checkpoint(req).await
    }
    async fn stop(&self, req: StopRequest) -> Result<(), SeamError> {
        self.inner.stop(req).await
    }
    async fn invoke(
        &self,
        worker: &WorkerId,
        actor: &ActorRef,
        request: http::Request<Body>,
    ) -> Result<http::Response<Body>, InvokeError> {
        self.inner.invoke(worker, actor, request).await
    }
    async fn evictable(&self) -> Result<Vec<Evictable>, SeamError> {
        self.inner.evictable().await
    }
    async fn logs(
        &self,
        actor: &ActorRef,
        actor_uid: Option<&str>,
        follow: bool,
    ) -> Result<LogStream, SeamError> {
        self.inner.logs(actor, actor_uid, follow).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_lost_its_lease_never_writes_over_the_rollback() {
    let s = System::with_workers(&["node-a"], 2).await;
    let t = s.template("counter", 2).await;
    let a = s.actor("c1", &t).await;
    let flaky = Arc::new(FlakyStore {
        inner: s.store.clone(),
        fail_renewals: AtomicBool::new(false),
    });
    let (reached, open) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let stuck = StuckNodes {
        inner: Arc::new(s.seam.clone()),
        reached: reached.clone(),
        open: open.clone(),
    };
    let ttl = config().lease_ttl;
    let first = Lifecycle::new(flaky.clone(), Some(Arc::new(stuck)), config());

    // The first replica marks the actor RESUMING, claims a worker and asks the node,
    // which does not answer; then its lease can no longer be renewed.
    let resume = {
        let (first, a) = (first.clone(), a.clone());
        tokio::spawn(async move { (first.resume(&a, false).await, Instant::now()) })
    };
    reached.notified().await;
    let stuck_at = Instant::now();
    flaky.fail_renewals.store(true, Ordering::SeqCst);
    assert_eq!(s.get(&a).await.status, ActorStatus::Resuming);
    assert_eq!(s.bound_to(&a).await.len(), 1);

    // The second replica takes the actor over once the lease expires and rolls back.
    let taken_over = loop {
        let report = s.lifecycle.recover().await.expect("sweep");
        if report.settled == 1 {
            break Instant::now();
        }
        assert!(stuck_at.elapsed() < ttl * 4, "the lease never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (result, stopped_at) = resume.await.expect("resume task");
    assert!(
        matches!(result, Err(LifecycleError::LeaseLost { .. })),
        "{result:?}"
    );
    assert!(
        stopped_at < taken_over,
        "the stale replica stopped only after the takeover"
    );
    assert!(
        stopped_at.duration_since(stuck_at) < ttl,
        "stopped before its lease expired"
    );

    // The stuck node call is let go: nothing the first replica had in flight lands.
    open.notify_waiters();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = s.get(&a).await;
    assert_eq!(after.status, ActorStatus::Suspended);
    assert!(after.worker.is_none());
    // The node might have started the actor before the resume died: the rollback says
    // that anything it did there is lost.
    let lost = after
        .conditions
        .iter()
        .find(|c| c.kind == ate_model::STATE_LOST)
        .expect("a StateLost condition");
    assert_eq!(lost.reason, "ResumeInterrupted");
    assert!(s.bound_to(&a).await.is_empty());
    s.assert_consistent().await;

    // The second replica's resume works, and a worker is bound once.
    let running = s.lifecycle.resume(&a, false).await.expect("resume");
    assert_eq!(running.status, ActorStatus::Running);
    assert_eq!(s.hit(&a).await, "1");
    s.assert_consistent().await;
}
