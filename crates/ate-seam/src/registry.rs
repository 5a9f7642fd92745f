//! Node registration and liveness as dataspace assertions. A node's assertions are held by
//! its membership owner, so they vanish the moment the node leaves or dies: there is no
//! separate "node lost" message to forget to send.

use std::sync::Arc;

use ate_dataspace::{Assertion, Dataspace};
use ate_model::Labels;
use serde::{Deserialize, Serialize};

use crate::{NodeExecutor, SeamError, WorkerId};

/// A live node, asserted under its name for as long as it is alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRegistration {
    pub name: String,
    /// Where the node's services listen (empty for an in-process node).
    pub address: String,
    pub labels: Labels,
    pub sandbox_classes: Vec<String>,
    /// Most worker slots the node hosts, over all pools.
    pub capacity: u32,
    /// Random per start of the node daemon: workers the control plane recorded for an
    /// earlier incarnation host nothing any more.
    pub incarnation: String,
    /// The snapshot store the node writes to for templates that name none, so the control
    /// plane can name a snapshot before the node writes it and check it afterwards.
    pub snapshot_location: String,
    /// What the node can do beyond running its sandbox classes, e.g.
    /// [`ate_model::CAPABILITY_CRIU`] (Full snapshots of `process` actors). The fleet copies
    /// them onto the node's workers, where the scheduler selects on them; absent (a node
    /// from before capabilities) means none.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// How long the control plane waits for the node's heartbeats before it may declare
    /// the node lost: a router that cannot hear any replica stops forwarding to the node
    /// within it (see `follow_control`). `None` for an in-process node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_timeout_ms: Option<u64>,
}

impl Assertion for NodeRegistration {
    const TYPE: &'static str = "ate.node.v1";
}

/// The snapshots one worker holds hot in memory, asserted under the worker's key
/// (`namespace/pool/name`). The scheduler's first choice for an actor is a free worker
/// that holds its latest snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerAdvert {
    pub node: String,
    pub worker: WorkerId,
    pub snapshots: Vec<String>,
}

impl Assertion for WorkerAdvert {
    const TYPE: &'static str = "ate.worker-snapshots.v1";
}

/// The snapshots in a node's local cache (`atespace/actor/id`), asserted under the node's
/// name: the scheduler's second choice is any free worker on such a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCacheAdvert {
    pub node: String,
    pub snapshots: Vec<String>,
}

impl Assertion for NodeCacheAdvert {
    const TYPE: &'static str = "ate.node-cache.v1";
}

/// How the control plane finds nodes: the dataspace in which they assert themselves, and
/// an executor for each live one.
pub trait NodeDirectory: Send + Sync + std::fmt::Debug {
    fn dataspace(&self) -> &Dataspace;
    fn executor(&self, node: &str) -> Result<Arc<dyn NodeExecutor>, SeamError>;
}
