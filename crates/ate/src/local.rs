//! The data plane of `ate up`: one node in this process, the fleet that gives it workers,
//! the lifecycle workflows with their recovery sweep, golden snapshots, a default `wasm`
//! pool and the demo templates.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use ate_control::LifecycleConfig;
use ate_dataspace::Dataspace;
use ate_model::{
    Actor, ActorStatus, ActorTemplate, FieldSelector, PoolSpec, TemplateSpec, WorkerPool,
};
use ate_node::{Node, NodeConfig};
use ate_seam::{LocalSeam, NodeDirectory};
use ate_store::{ListOptions, Store, StoreError};

use crate::plane::ControlPlane;

/// The node `ate up` runs.
pub const LOCAL_NODE: &str = "local";
/// The pool `ate up` creates when it is missing.
pub const DEFAULT_POOL: (&str, &str) = ("default", "wasm");
pub const DEFAULT_POOL_REPLICAS: u32 = 4;

/// A demo workload shipped inside the binary.
struct Demo {
    name: &'static str,
    file: &'static str,
    bytes: &'static [u8],
    env: &'static [(&'static str, &'static str)],
    egress: &'static [&'static str],
    /// Idle time before the router's traffic stops and the actor is suspended.
    idle_timeout: std::time::Duration,
}

/// Where the demo agent looks for a model: a local endpoint, allowed by its template.
/// Nothing listens there by default, and the agent falls back to a local summary.
pub const DEMO_MODEL_URL: &str = "http://127.0.0.1:8088/v1/summarize";

const DEMOS: &[Demo] = &[
    Demo {
        name: "counter",
        file: "counter.wat",
        bytes: include_bytes!("../../../demo/counter/counter.wat"),
        env: &[],
        egress: &[],
        // Short, so the walkthrough shows idle suspension without a long wait.
        idle_timeout: std::time::Duration::from_secs(30),
    },
    Demo {
        name: "agent",
        file: "agent.wasm",
        bytes: include_bytes!("../../../demo/agent/agent.wasm"),
        env: &[("MODEL_URL", DEMO_MODEL_URL)],
        egress: &["127.0.0.1:8088"],
        idle_timeout: std::time::Duration::from_secs(300),
    },
    Demo {
        name: "ticker",
        file: "ticker.wat",
        bytes: include_bytes!("../../../demo/ticker/ticker.wat"),
        env: &[("TICK_COUNT", "10"), ("TICK_INTERVAL_MS", "1000")],
        egress: &[],
        idle_timeout: std::time::Duration::from_secs(30),
    },
];

/// The running local data plane. Dropping it stops the node and the background loops.
pub struct LocalDataPlane {
    pub control: ControlPlane,
    store: Arc<dyn Store>,
    _node: Node,
}

pub async fn start(
    store: &Arc<dyn Store>,
    data_dir: &Path,
    config: LifecycleConfig,
) -> anyhow::Result<LocalDataPlane> {
    let seam = LocalSeam::new(Dataspace::new());
    let mut node_config = NodeConfig::local(LOCAL_NODE, data_dir.join("node"));
    // The node lives in this process, on this machine.
    node_config.address = "127.0.0.1".into();
    let node = Node::start(node_config, &seam).context("cannot start the local node")?;
    ensure_default_pool(store).await?;
    register_demos(store, &data_dir.join("demo")).await?;
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

async fn ensure_default_pool(store: &Arc<dyn Store>) -> anyhow::Result<()> {
    let pool = WorkerPool {
        namespace: DEFAULT_POOL.0.into(),
        name: DEFAULT_POOL.1.into(),
        version: 0,
        spec: PoolSpec {
            replicas: DEFAULT_POOL_REPLICAS,
            sandbox_class: "wasm".into(),
            labels: Default::default(),
            node_selector: Default::default(),
        },
        status: Default::default(),
    };
    match store.create(pool).await {
        Ok(_) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e).context("cannot create the default pool"),
    }
}

/// Writes each demo module under `dir` and registers its template `demo/<name>`. A demo
/// template that already exists with another spec (an older build's) is left alone:
/// templates are immutable.
async fn register_demos(store: &Arc<dyn Store>, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for demo in DEMOS {
        let path = dir.join(demo.file);
        std::fs::write(&path, demo.bytes)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let template = ActorTemplate {
            namespace: "demo".into(),
            name: demo.name.into(),
            version: 0,
            spec: TemplateSpec {
                sandbox_class: "wasm".into(),
                module: path.display().to_string(),
                module_sha256: ate_wasm::sha256_hex(demo.bytes),
                egress: demo.egress.iter().map(|e| e.to_string()).collect(),
                idle_timeout: ate_model::Duration(demo.idle_timeout),
                env: demo
                    .env
                    .iter()
                    .map(|(name, value)| ate_model::EnvVar {
                        name: name.to_string(),
                        value: value.to_string(),
                    })
                    .collect(),
                ..Default::default()
            },
            status: Default::default(),
        };
        match store.create(template.clone()).await {
            Ok(_) => tracing::info!(template = %template.id(), "registered demo template"),
            Err(StoreError::AlreadyExists { .. }) => {
                let have = store.get::<ActorTemplate>(&template.id().key()).await?;
                if have.spec != template.spec {
                    tracing::warn!(template = %template.id(), "demo template exists with another spec; left as it is");
                }
            }
            Err(e) => return Err(e).context("cannot register the demo templates"),
        }
    }
    Ok(())
}
