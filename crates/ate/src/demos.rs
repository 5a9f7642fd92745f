//! The demo templates `ate up` registers: wasm agents shipped inside the binary, and the
//! Python agent `demo/py-agent` where the node can run `process` actors (with Full
//! snapshots where it has CRIU, Data snapshots otherwise).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use ate_model::{
    ActorTemplate, EnvVar, ReadinessProbe, SnapshotScope, SnapshotsConfig, TemplateSpec,
};
use ate_store::{Store, StoreError};

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

/// The Python agent: its conversation lives in memory, its notes in the durable dir `/data`.
const PY_AGENT: &[u8] = include_bytes!("../../../demo/py-agent/agent.py");

/// Writes each demo module under `dir` and registers its template `demo/<name>`; the
/// Python agent only when `process` says the node runs that class (`Some(full)`: whether
/// it takes Full snapshots). A demo template that already exists with another spec (an
/// older build's) is left alone: templates are immutable.
pub async fn register(
    store: &Arc<dyn Store>,
    dir: &Path,
    process: Option<bool>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for demo in DEMOS {
        let path = write(dir, demo.file, demo.bytes)?;
        let spec = TemplateSpec {
            sandbox_class: "wasm".into(),
            module: path,
            module_sha256: ate_wasm::sha256_hex(demo.bytes),
            egress: demo.egress.iter().map(|e| e.to_string()).collect(),
            idle_timeout: ate_model::Duration(demo.idle_timeout),
            env: demo
                .env
                .iter()
                .map(|(name, value)| EnvVar {
                    name: name.to_string(),
                    value: value.to_string(),
                })
                .collect(),
            ..Default::default()
        };
        create(store, demo.name, spec).await?;
    }
    if let Some(full) = process {
        let scope = if full {
            SnapshotScope::Full
        } else {
            SnapshotScope::Data
        };
        let spec = TemplateSpec {
            sandbox_class: "process".into(),
            module: write(dir, "py-agent.py", PY_AGENT)?,
            module_sha256: ate_wasm::sha256_hex(PY_AGENT),
            command: vec!["python3".into(), "/ate/module".into()],
            env: vec![EnvVar {
                name: "NOTES_DIR".into(),
                value: "/data".into(),
            }],
            readiness: Some(ReadinessProbe {
                path: "/readyz".into(),
                ..Default::default()
            }),
            durable_dirs: vec!["/data".into()],
            snapshots: SnapshotsConfig {
                on_pause: scope,
                on_commit: scope,
                ..Default::default()
            },
            idle_timeout: ate_model::Duration(std::time::Duration::from_secs(60)),
            ..Default::default()
        };
        create(store, "py-agent", spec).await?;
    }
    Ok(())
}

fn write(dir: &Path, file: &str, bytes: &[u8]) -> anyhow::Result<String> {
    let path = dir.join(file);
    std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path.display().to_string())
}

async fn create(store: &Arc<dyn Store>, name: &str, spec: TemplateSpec) -> anyhow::Result<()> {
    let template = ActorTemplate {
        namespace: "demo".into(),
        name: name.into(),
        version: 0,
        spec,
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
    Ok(())
}
