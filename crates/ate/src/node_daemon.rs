//! The node role of `ate serve`: a node daemon that serves the node service over gRPC and
//! registers with the control plane. When the control plane declares it lost (fencing), it
//! stops every actor it hosts and starts over as a new incarnation, so an actor recovered
//! elsewhere never runs here as well.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use ate_dataspace::Dataspace;
use ate_model::ActorRef;
use ate_node::{Node, NodeConfig, NodeService};
use ate_seam::{
    Body, Checkpoint, CheckpointRequest, Evictable, InvokeError, LocalSeam, LogStream,
    NodeDirectory, NodeExecutor, Registration, RegistrationConfig, RestoreRequest, RunRequest,
    SeamError, StopRequest, WorkerId,
};
use clap::Args;
use tokio::task::JoinHandle;

/// Flags of the node role.
#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    /// Name of this node (DNS label); defaults to the host name.
    #[arg(long)]
    pub node_name: Option<String>,
    /// Labels of this node for pool node selectors, `key=value`, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub node_label: Vec<String>,
    /// Most worker slots this node hosts.
    #[arg(long, default_value_t = 64)]
    pub capacity: u32,
    /// How long the control plane waits for this node's heartbeat before declaring it
    /// lost and recovering its actors elsewhere.
    #[arg(long, default_value = "10s")]
    pub liveness_timeout: ate_model::Duration,
    /// Snapshot store for templates that name none (file://, s3://, gs://). Every node
    /// must share it for actors to move between nodes. Default: <data-dir>/snapshots.
    #[arg(long)]
    pub snapshots: Option<String>,
    /// The runc binary that runs `process` actors, or `off` to run `wasm` actors only.
    /// Default: runc in PATH (the class needs root; without it the node runs wasm only).
    #[arg(long)]
    pub runc: Option<String>,
    /// The CRIU binary for Full snapshots of `process` actors, or `off`. Default: $ATE_CRIU,
    /// criu in PATH, or ~/.cache/ate/criu-4.2.1/criu (where scripts/criu.sh builds it).
    #[arg(long)]
    pub criu: Option<String>,
}

impl NodeArgs {
    /// The node's configuration: `advertise` is where others reach its node service.
    pub fn config(
        &self,
        data_dir: &std::path::Path,
        advertise: &str,
    ) -> anyhow::Result<NodeConfig> {
        let name = match &self.node_name {
            Some(n) => n.clone(),
            None => host_name()?,
        };
        ate_model::names::validate_label("--node-name", &name)?;
        let mut config = NodeConfig::local(&name, data_dir.join("node"));
        // The whole data dir (the store file of `ate up` too) is hidden from process actors.
        config.private_dirs =
            vec![std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf())];
        config.address = advertise.to_string();
        config.capacity = self.capacity;
        if let Some(s) = &self.snapshots {
            config.snapshot_location = s.clone();
        }
        for label in &self.node_label {
            let Some((k, v)) = label.split_once('=') else {
                anyhow::bail!("--node-label: {label:?} is not key=value");
            };
            config.labels.insert(k.to_string(), v.to_string());
        }
        match self.runc.as_deref() {
            Some("off") => config.process.enabled = false,
            Some(path) => config.process.runc = Some(path.into()),
            None => {}
        }
        match self.criu.as_deref() {
            Some("off") => config.process.criu = None,
            Some(path) => config.process.criu = Some(path.into()),
            None => {}
        }
        Ok(config)
    }
}

fn host_name() -> anyhow::Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if name.is_empty() {
        anyhow::bail!("--node-name: cannot read the host name; name the node");
    }
    Ok(name)
}

/// The node's current incarnation, as the gRPC node service sees it: calls between two
/// incarnations find no node.
#[derive(Debug, Default)]
struct CurrentNode(RwLock<Option<Arc<NodeService>>>);

impl CurrentNode {
    fn get(&self) -> Result<Arc<NodeService>, SeamError> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| SeamError::NodeUnavailable {
                node: "this node (restarting)".into(),
            })
    }

    fn set(&self, node: Option<Arc<NodeService>>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = node;
    }
}

#[async_trait::async_trait]
impl NodeExecutor for CurrentNode {
    async fn run(&self, req: RunRequest) -> Result<(), SeamError> {
        self.get()?.run(req).await
    }
    async fn restore(&self, req: RestoreRequest) -> Result<(), SeamError> {
        self.get()?.restore(req).await
    }
    async fn checkpoint(&self, req: CheckpointRequest) -> Result<Checkpoint, SeamError> {
        self.get()?.checkpoint(req).await
    }
    async fn stop(&self, req: StopRequest) -> Result<(), SeamError> {
        self.get()?.stop(req).await
    }
    async fn invoke(
        &self,
        worker: &WorkerId,
        actor: &ActorRef,
        request: hyper::Request<Body>,
    ) -> Result<hyper::Response<Body>, InvokeError> {
        match self.get() {
            Ok(node) => node.invoke(worker, actor, request).await,
            Err(e) => Err(InvokeError::refused(e, request)),
        }
    }
    async fn evictable(&self) -> Result<Vec<Evictable>, SeamError> {
        self.get()?.evictable().await
    }
    async fn logs(
        &self,
        actor: &ActorRef,
        actor_uid: Option<&str>,
        follow: bool,
    ) -> Result<LogStream, SeamError> {
        self.get()?.logs(actor, actor_uid, follow).await
    }
}

/// A running node daemon. Dropping it stops the node and every actor on it.
#[derive(Debug)]
pub struct NodeDaemon {
    current: Arc<CurrentNode>,
    task: JoinHandle<()>,
}

impl NodeDaemon {
    /// Starts the node and keeps it registered with the control plane.
    pub fn start(mut config: NodeConfig, registration: RegistrationConfig) -> Self {
        config.liveness_timeout = Some(registration.liveness_timeout);
        let current = Arc::new(CurrentNode::default());
        let task = tokio::spawn(keep_registered(config, registration, current.clone()));
        Self { current, task }
    }

    /// The gRPC node service of this daemon, checking its callers as `auth` says (with
    /// certificates: the control plane drives actors, routers deliver requests).
    pub fn service(
        &self,
        auth: ate_tls::PeerAuth,
    ) -> ate_proto::atenode::node_server::NodeServer<ate_seam::NodeGrpc> {
        ate_seam::node_service_with(self.current.clone(), auth)
    }
}

impl Drop for NodeDaemon {
    fn drop(&mut self) {
        self.task.abort();
        self.current.set(None);
    }
}

/// A node and its registration. The node is dropped first (fields drop in order), also
/// when the daemon is dropped mid-run: the actors stop before the stream closes, since a
/// replica takes a closed stream as the node gone and recovers its actors at once.
struct Running {
    _node: Node,
    reg: Registration,
}

async fn keep_registered(
    config: NodeConfig,
    registration: RegistrationConfig,
    current: Arc<CurrentNode>,
) {
    loop {
        let seam = LocalSeam::new(Dataspace::new());
        let node = match Node::start(config.clone(), &seam) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(node = %config.name, error = %e, "cannot start the node; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        current.set(Some(node.service()));
        let mut running = Running {
            reg: Registration::start(seam.dataspace().clone(), registration.clone()),
            _node: node,
        };
        let reason = running.reg.fenced().await;
        tracing::warn!(node = %config.name, %reason, "stopping every actor on this node and registering again");
        current.set(None);
        drop(running);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
