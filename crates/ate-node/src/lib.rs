//! The node daemon role. A node hosts worker slots and drives their sandboxes: it boots,
//! restores, checkpoints and stops actors when the control plane asks through the seam,
//! delivers HTTP requests to them, keeps their logs, and moves snapshots between the
//! snapshot store and its local cache. It registers itself in the seam and advertises
//! what each worker and its cache hold, for locality-aware scheduling; leaving (or dying)
//! retracts all of it at once.

mod executor;
mod exits;
mod logs;
mod process;
mod slots;
mod snapshot_io;
mod wasm;
mod workload;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ate_model::Labels;
use ate_process::{HostConfig, ProcessHost};
use ate_seam::{LocalSeam, NodeExecutor, NodeMembership, NodeRegistration, SeamError};
use ate_snapshots::{SnapshotCache, SnapshotError};
use ate_wasm::{WasmEngine, WasmError};

pub use executor::NodeService;
pub use logs::{LINES_PER_ACTOR, LogBook};
pub use wasm::MAX_REQUEST_BYTES;

/// How the node runs `process` actors.
#[derive(Debug, Clone, Default)]
pub struct ProcessConfig {
    /// Run the class at all. Off, or on a machine where runc cannot run containers (it
    /// needs root), the node advertises `wasm` only.
    pub enabled: bool,
    /// The runc binary; `None` looks in `PATH`.
    pub runc: Option<PathBuf>,
    /// The CRIU binary for Full snapshots; `None` means no Full snapshots here.
    pub criu: Option<PathBuf>,
}

impl ProcessConfig {
    /// The class on, with CRIU from `ATE_CRIU`, else `criu` in `PATH`, else where
    /// `scripts/criu.sh` builds it (`~/.cache/ate/criu-4.2.1/criu`).
    pub fn detect() -> Self {
        Self {
            enabled: true,
            runc: None,
            criu: default_criu(),
        }
    }
}

fn default_criu() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ATE_CRIU").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let in_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("criu"))
            .find(|p| p.is_file())
    });
    in_path.or_else(|| {
        let home = std::env::var_os("HOME")?;
        let built = PathBuf::from(home).join(".cache/ate/criu-4.2.1/criu");
        built.is_file().then_some(built)
    })
}

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
    pub process: ProcessConfig,
    /// Directories of this machine no process actor may see (the data dir, holding other
    /// actors' snapshots, and a store file next to it).
    pub private_dirs: Vec<PathBuf>,
    /// The liveness timeout the node registers with over the network, announced in its
    /// registration; `None` in process.
    pub liveness_timeout: Option<Duration>,
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
            private_dirs: vec![data_dir.clone()],
            data_dir,
            cache_bytes: 1 << 30,
            egress_timeout: Duration::from_secs(120),
            process: ProcessConfig::detect(),
            liveness_timeout: None,
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
        // Owner-only: it holds the snapshot cache (actors' memory) and the default
        // `file://` snapshot store.
        std::os::unix::fs::DirBuilderExt::mode(
            std::fs::DirBuilder::new().recursive(true),
            ate_snapshots::DIR_MODE,
        )
        .create(&config.data_dir)
        .map_err(|e| NodeError::DataDir {
            dir: config.data_dir.display().to_string(),
            reason: e.to_string(),
        })?;
        let cache = SnapshotCache::new(config.data_dir.join("cache"), config.cache_bytes)?;
        let engine = WasmEngine::new()?;
        let process = process_host(&config);
        let mut capabilities = Vec::new();
        if process.as_ref().is_some_and(|p| p.can_checkpoint()) {
            capabilities.push(ate_model::CAPABILITY_CRIU.to_string());
        }
        let membership = Arc::new(Mutex::new(None));
        let service = Arc::new(NodeService::new(
            config,
            engine,
            process,
            cache,
            membership.clone(),
        ));
        let config = &service.config;
        let registration = NodeRegistration {
            name: config.name.clone(),
            address: config.address.clone(),
            labels: config.labels.clone(),
            sandbox_classes: service.classes().to_vec(),
            capabilities,
            capacity: config.capacity,
            incarnation: ate_snapshots::new_snapshot_id(),
            snapshot_location: config.snapshot_location.clone(),
            liveness_timeout_ms: config.liveness_timeout.map(|t| t.as_millis() as u64),
        };
        let joined = seam.join(registration, service.clone() as Arc<dyn NodeExecutor>)?;
        *membership.lock().unwrap_or_else(|p| p.into_inner()) = Some(joined);
        tokio::spawn(NodeService::watch_idle(Arc::downgrade(&service)));
        tokio::spawn(NodeService::report_exits(Arc::downgrade(&service)));
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

/// The process class's driver, if this machine can run it; containers an earlier run of
/// this node left behind (it was killed) are swept first.
fn process_host(config: &NodeConfig) -> Option<Arc<ProcessHost>> {
    if !config.process.enabled {
        return None;
    }
    let host = ProcessHost::detect(HostConfig {
        state_dir: config.data_dir.join("process-state"),
        runc: config.process.runc.clone(),
        criu: config.process.criu.clone(),
    });
    match host {
        Ok(host) => {
            host.sweep();
            tracing::info!(node = %config.name, full_snapshots = host.can_checkpoint(), "process sandbox class available");
            Some(Arc::new(host))
        }
        Err(e) => {
            tracing::info!(node = %config.name, reason = %e, "process sandbox class not available");
            None
        }
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
