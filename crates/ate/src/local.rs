//! The data plane of `ate up`: one node in this process, the fleet that gives it workers,
//! the lifecycle workflows with their recovery sweep, golden snapshots, default `wasm`
//! and (where the machine can run them) `process` pools, and the demo templates.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use ate_dataspace::Dataspace;
use ate_model::{Actor, ActorStatus, FieldSelector, PoolSpec, WorkerPool};
use ate_node::{Node, NodeConfig};
use ate_seam::{LocalSeam, NodeDirectory};
use ate_store::{ListOptions, Store, StoreError};

use crate::plane::{ControlPlane, PlaneConfig};

/// The node `ate up` runs.
pub const LOCAL_NODE: &str = "local";
/// The pool `ate up` creates when it is missing.
pub const DEFAULT_POOL: (&str, &str) = ("default", "wasm");
/// The pool for `process` actors, created when the node can run them.
pub const PROCESS_POOL: (&str, &str) = ("default", "process");
pub const DEFAULT_POOL_REPLICAS: u32 = 4;

/// The running local data plane. Dropping it stops the node and the background loops.
pub struct LocalDataPlane {
    pub control: ControlPlane,
    store: Arc<dyn Store>,
    _node: Node,
}

pub async fn start(
    store: &Arc<dyn Store>,
    data_dir: &Path,
    config: PlaneConfig,
) -> anyhow::Result<LocalDataPlane> {
    let seam = LocalSeam::new(Dataspace::new());
    let mut node_config = NodeConfig::local(LOCAL_NODE, data_dir.join("node"));
    // The whole data dir (the store file of `ate up` too) is hidden from process actors.
    node_config.private_dirs =
        vec![std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf())];
    // The node lives in this process, on this machine.
    node_config.address = "127.0.0.1".into();
    let node = Node::start(node_config, &seam).context("cannot start the local node")?;
    let service = node.service();
    let process = service
        .classes()
        .iter()
        .any(|c| c == "process")
        .then(|| service.full_process_snapshots());
    ensure_pool(store, DEFAULT_POOL, "wasm").await?;
    if process.is_some() {
        ensure_pool(store, PROCESS_POOL, "process").await?;
    }
    crate::demos::register(store, &data_dir.join("demo"), process).await?;
    let nodes: Arc<dyn NodeDirectory> = Arc::new(seam);
    Ok(LocalDataPlane {
        control: ControlPlane::start(store, nodes, config).await?,
        store: store.clone(),
        _node: node,
    })
}

impl std::fmt::Debug for LocalDataPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalDataPlane")
            .field("node", &self._node)
            .finish_non_exhaustive()
    }
}

impl LocalDataPlane {
    /// Suspends every actor running on the local node, so a restart loses nothing.
    pub async fn drain(&self) -> anyhow::Result<usize> {
        let sel = FieldSelector::eq([
            ("node_name", LOCAL_NODE),
            ("status", ActorStatus::Running.as_str()),
        ]);
        let running = self
            .store
            .list_all::<Actor>(&ListOptions::with_fields(sel))
            .await?;
        let mut suspends = tokio::task::JoinSet::new();
        for a in &running {
            let (l, aref) = (self.control.lifecycle.clone(), a.actor_ref());
            suspends.spawn(async move {
                if let Err(e) = l.suspend(&aref).await {
                    tracing::warn!(actor = %aref, error = %e, "cannot suspend on shutdown");
                }
            });
        }
        suspends.join_all().await;
        Ok(running.len())
    }
}

async fn ensure_pool(
    store: &Arc<dyn Store>,
    (namespace, name): (&str, &str),
    class: &str,
) -> anyhow::Result<()> {
    let pool = WorkerPool {
        namespace: namespace.into(),
        name: name.into(),
        version: 0,
        spec: PoolSpec {
            replicas: DEFAULT_POOL_REPLICAS,
            sandbox_class: class.into(),
            labels: Default::default(),
            node_selector: Default::default(),
        },
        status: Default::default(),
    };
    match store.create(pool).await {
        Ok(_) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create the pool {namespace}/{name}")),
    }
}
