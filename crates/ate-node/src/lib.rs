//! The node daemon role. A node hosts worker slots and drives their sandboxes: it boots,
//! restores, checkpoints and stops actors when the control plane asks through the seam,
//! delivers HTTP requests to them, keeps their logs, and moves snapshots between the
//! snapshot store and its local cache. It registers itself in the seam and advertises
//! what each worker and its cache hold, for locality-aware scheduling; leaving (or dying)
//! retracts all of it at once.

mod executor;
mod logs;
mod slots;
mod workload;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ate_model::Labels;
use ate_seam::{LocalSeam, NodeExecutor, NodeMembership, NodeRegistration, SeamError};
use ate_snapshots::{SnapshotCache, SnapshotError};
use ate_wasm::{WasmEngine, WasmError};

pub use executor::NodeService;
pub use logs::{LINES_PER_ACTOR, LogBook};

/// The sandbox classes this node can run.
pub const SANDBOX_CLASSES: &[&str] = &["wasm"];

/// How a node is set up.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    /// Where the node's services listen (empty in process).
    pub address: String,
    pub labels: Labels,
    /// Most worker slots this node hosts.
    pub capacity: u32,
    /// Holds the snapshot cache and downloaded modules.
    pub data_dir: PathBuf,
    /// Snapshot store for templates that name none.
    pub snapshot_location: String,
    /// Size bound of the local snapshot cache.
    pub cache_bytes: u64,
    /// How long a guest's outbound call may take.
    pub egress_timeout: Duration,
}

impl NodeConfig {
    /// A node keeping everything under `data_dir`, snapshots in `data_dir/snapshots`.
    pub fn local(name: &str, data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        Self {
            name: name.into(),
            address: String::new(),
            labels: Labels::new(),
            capacity: 64,
            snapshot_location: format!("file://{}", data_dir.join("snapshots").display()),
            data_dir,
            cache_bytes: 1 << 30,
            egress_timeout: Duration::from_secs(120),
        }
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("node data dir {dir}: {reason}")]
    DataDir { dir: String, reason: String },
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Wasm(#[from] WasmError),
    #[error(transparent)]
    Seam(#[from] SeamError),
}

/// A running node, registered in a seam until dropped.
#[derive(Debug)]
pub struct Node {
    service: Arc<NodeService>,
    membership: Arc<Mutex<Option<NodeMembership>>>,
}

impl Node {
    /// Starts the node and registers it with `seam`. Needs a tokio runtime: the node
    /// watches its actors for idleness in the background.
    pub fn start(config: NodeConfig, seam: &LocalSeam) -> Result<Self, NodeError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| NodeError::DataDir {
            dir: config.data_dir.display().to_string(),
            reason: e.to_string(),
        })?;
        let cache = SnapshotCache::new(config.data_dir.join("cache"), config.cache_bytes)?;
        let engine = WasmEngine::new()?;
        let registration = NodeRegistration {
            name: config.name.clone(),
            address: config.address.clone(),
            labels: config.labels.clone(),
            sandbox_classes: SANDBOX_CLASSES.iter().map(|c| c.to_string()).collect(),
            capacity: config.capacity,
            incarnation: ate_snapshots::new_snapshot_id(),
            snapshot_location: config.snapshot_location.clone(),
        };
        let membership = Arc::new(Mutex::new(None));
        let service = Arc::new(NodeService::new(config, engine, cache, membership.clone()));
        let joined = seam.join(registration, service.clone() as Arc<dyn NodeExecutor>)?;
        *membership.lock().unwrap_or_else(|p| p.into_inner()) = Some(joined);
        tokio::spawn(NodeService::watch_idle(Arc::downgrade(&service)));
        Ok(Self {
            service,
            membership,
        })
    }

    pub fn name(&self) -> &str {
        self.service.name()
    }

    /// The node's executor, as the seam hands it out.
    pub fn service(&self) -> Arc<NodeService> {
        self.service.clone()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Leaving the seam retracts the registration and every advert; then the guests go.
        self.membership
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        self.service.stop_all();
    }
}
