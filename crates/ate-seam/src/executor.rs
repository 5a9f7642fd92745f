//! What the control plane asks of a node: run, checkpoint, restore and stop an actor on one
//! of the node's workers, deliver HTTP requests to it, and read its logs.

use std::fmt;

use ate_model::{
    ActorRef, NamespacedName, SnapshotScope, TemplateSpec, parse_snapshot_uri, snapshot_uri,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::{Body, InvokeError, SeamError};

/// One worker slot, as the store names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WorkerId {
    pub namespace: String,
    pub pool: String,
    pub name: String,
}

impl WorkerId {
    pub fn new(namespace: &str, pool: &str, name: &str) -> Self {
        Self {
            namespace: namespace.into(),
            pool: pool.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.namespace, self.pool, self.name)
    }
}

/// What to run: the template's identity (nodes cache compiled workloads by it) and spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub template: NamespacedName,
    pub spec: TemplateSpec,
}

/// A snapshot: the store it lives in, the actor whose snapshot it is (a template's golden
/// snapshot belongs to its golden actor, not to the actor restored from it), its id under
/// `<location>/<atespace>/<actor>/`, and its scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRef {
    pub location: String,
    pub owner: ActorRef,
    pub id: String,
    pub scope: SnapshotScope,
}

impl SnapshotRef {
    /// The URI actor records keep (`<location>/<atespace>/<actor>/<id>`).
    pub fn uri(&self) -> String {
        snapshot_uri(&self.location, &self.owner, &self.id)
    }

    /// The snapshot a URI names; `None` if it is not one.
    pub fn from_uri(uri: &str, scope: SnapshotScope) -> Option<Self> {
        let (location, owner, id) = parse_snapshot_uri(uri)?;
        Some(Self {
            location,
            owner,
            id,
            scope,
        })
    }
}

/// Boot an actor from nothing on a free worker.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub worker: WorkerId,
    pub actor: ActorRef,
    /// The actor's incarnation ([`ate_model::Actor::uid`]): the node keeps log lines per
    /// incarnation, so a new actor of a deleted one's name starts with none.
    pub actor_uid: Option<String>,
    pub workload: Workload,
}

/// Bring an actor back from a snapshot on a free worker.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    pub worker: WorkerId,
    pub actor: ActorRef,
    /// As in [`RunRequest::actor_uid`].
    pub actor_uid: Option<String>,
    pub workload: Workload,
    pub snapshot: SnapshotRef,
}

/// How soon a checkpoint must be durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// In the snapshot store before the call returns (suspend).
    Durable,
    /// In the node's cache when the call returns, uploaded to the snapshot store in the
    /// background (pause): a manifest in the store means the upload finished.
    Local,
}

/// Save a running actor, between requests, as snapshot `id` of the actor in `location`
/// (empty = the node's default). The caller picks the id so a retried checkpoint writes
/// the same snapshot.
#[derive(Debug, Clone)]
pub struct CheckpointRequest {
    pub worker: WorkerId,
    pub actor: ActorRef,
    pub workload: Workload,
    pub location: String,
    pub id: String,
    pub scope: SnapshotScope,
    pub durability: Durability,
    /// The actor leaves after this checkpoint (suspend, pause): the node stops taking
    /// requests for it before saving, lets those already admitted finish, and retracts its
    /// route, so nothing it answers afterwards is lost. A failed checkpoint reopens it.
    pub seal: bool,
    /// With `seal`: the actor is evicted to make room for another, so it must not wait
    /// for anyone. The node seals it only if nothing is in flight to it (no request, no
    /// response still streaming), in one step against new requests, and otherwise fails
    /// with [`SeamError::InUse`], leaving the actor as it was.
    pub evict: bool,
}

/// A running actor the node could evict now: nothing is in flight to it, it takes
/// requests, and its template allows eviction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evictable {
    pub worker: WorkerId,
    pub actor: ActorRef,
    /// Milliseconds since its last request started or ended (least recently used first).
    pub idle_ms: u64,
}

/// A checkpoint taken: where it is (or, for a local one, will be once uploaded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub snapshot: SnapshotRef,
    /// Uncompressed size of everything saved.
    pub bytes: u64,
}

/// Stop the actor and free the worker. Stopping a worker that does not host the actor is
/// a no-op, so a retried stop after a crash succeeds.
#[derive(Debug, Clone)]
pub struct StopRequest {
    pub worker: WorkerId,
    pub actor: ActorRef,
}

/// One line the guest wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// `stdout` or `stderr`.
    pub stream: String,
    pub text: String,
}

/// Log lines as they arrive; closed when the node stops following.
pub type LogStream = mpsc::Receiver<LogLine>;

/// A node as the control plane drives it. Every call names the worker and the actor, so a
/// call that arrives late (after the actor moved) is refused instead of acting on a
/// stranger.
#[async_trait::async_trait]
pub trait NodeExecutor: Send + Sync + fmt::Debug {
    /// Cold-boots the workload and returns once it is ready for requests.
    async fn run(&self, req: RunRequest) -> Result<(), SeamError>;
    /// Restores the actor from a snapshot and returns once it is ready.
    async fn restore(&self, req: RestoreRequest) -> Result<(), SeamError>;
    /// Saves the actor between requests; it keeps running.
    async fn checkpoint(&self, req: CheckpointRequest) -> Result<Checkpoint, SeamError>;
    /// Stops the actor and frees the worker.
    async fn stop(&self, req: StopRequest) -> Result<(), SeamError>;
    /// Delivers one HTTP request to the actor and streams its response back. A request
    /// refused before it was read (`NotHosted`: the actor left or is leaving) comes back
    /// in the error.
    async fn invoke(
        &self,
        worker: &WorkerId,
        actor: &ActorRef,
        request: http::Request<Body>,
    ) -> Result<http::Response<Body>, InvokeError>;
    /// The actors this node could evict now, least recently used first. A snapshot: a
    /// request may arrive for any of them the next moment, which an evicting checkpoint
    /// (`evict`) then refuses.
    async fn evictable(&self) -> Result<Vec<Evictable>, SeamError>;
    /// The recent log lines of this incarnation of the actor (`actor_uid`, as in
    /// [`RunRequest::actor_uid`]), then (with `follow`) new ones as they are written.
    async fn logs(
        &self,
        actor: &ActorRef,
        actor_uid: Option<&str>,
        follow: bool,
    ) -> Result<LogStream, SeamError>;
}
