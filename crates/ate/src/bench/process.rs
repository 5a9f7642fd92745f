//! The `process` sandbox class: activation latency through the HTTP router for the Python
//! demo agent with Full snapshots (CRIU) and with Data snapshots (cold start), the time a
//! suspend takes (checkpoint, upload to the snapshot store, stop) and the snapshot's size.
//! Everything runs in this process on the local data plane of `ate up` (one node, SQLite
//! store, file snapshot store); it needs what the class needs: root and runc, and CRIU for
//! the Full rows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ate_control::PHASE_READY;
use ate_model::{
    Actor, ActorRef, ActorStatus, ActorTemplate, Atespace, NamespacedName, SnapshotInfo,
    SnapshotScope,
};
use ate_seam::SnapshotRef;
use ate_store::{Store, StoreError};
use clap::Args;

use super::in_process::InProcess;
use super::router::{Conn, fmt, spread};
use super::store_ops::Scratch;
use crate::stores;

#[derive(Debug, Args)]
pub struct ProcessBenchArgs {
    /// Activations measured per scope (each: suspend, then one request through the router).
    #[arg(long, default_value_t = 50)]
    pub activations: usize,
}

const ATESPACE: &str = "bench";

/// The demo template, and a copy of it that keeps Data snapshots only.
async fn templates(store: &Arc<dyn Store>) -> anyhow::Result<Vec<(SnapshotScope, String)>> {
    let demo: ActorTemplate = store
        .get(&NamespacedName::new("demo", "py-agent").key())
        .await
        .context("demo/py-agent is not registered: this machine does not run process actors (root and runc)")?;
    let mut out = Vec::new();
    if demo.spec.snapshots.on_commit == SnapshotScope::Full {
        out.push((SnapshotScope::Full, demo.name.clone()));
    }
    let mut data = demo.clone();
    data.name = "py-agent-data".into();
    data.version = 0;
    data.status = Default::default();
    data.spec.snapshots.on_pause = SnapshotScope::Data;
    data.spec.snapshots.on_commit = SnapshotScope::Data;
    match store.create(data).await {
        Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
        Err(e) => return Err(e).context("cannot create the Data-scope template"),
    }
    out.push((SnapshotScope::Data, "py-agent-data".into()));
    Ok(out)
}

async fn wait_ready(store: &Arc<dyn Store>, name: &str) -> anyhow::Result<()> {
    let key = NamespacedName::new("demo", name).key();
    let start = Instant::now();
    loop {
        let t: ActorTemplate = store.get(&key).await?;
        if t.status.phase == PHASE_READY {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(120) {
            bail!("{key} is not ready after 120 s: {}", t.status.message);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn create_actor(store: &Arc<dyn Store>, template: &str) -> anyhow::Result<ActorRef> {
    match store
        .create(Atespace {
            name: ATESPACE.into(),
            version: 0,
        })
        .await
    {
        Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
        Err(e) => return Err(e).context("cannot create the bench atespace"),
    }
    let aref = ActorRef::new(ATESPACE, template);
    let actor = Actor {
        atespace: aref.atespace.clone(),
        id: aref.id.clone(),
        template: NamespacedName::new("demo", template),
        status: ActorStatus::Suspended,
        ..Default::default()
    };
    store.create(actor).await?;
    Ok(aref)
}

fn request(method: &str, actor: &ActorRef, path: &str, body: &str) -> Vec<u8> {
    format!(
        "{method} /a/{}/{}/{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{body}",
        actor.atespace,
        actor.id,
        body.len()
    )
    .into_bytes()
}

/// Size (uncompressed, stored) of the actor's latest snapshot.
async fn snapshot_size(store: &Arc<dyn Store>, aref: &ActorRef) -> anyhow::Result<(u64, u64)> {
    let a: Actor = store.get(&aref.key()).await?;
    let Some(SnapshotInfo::External { uri_prefix }) = a.latest_snapshot else {
        bail!("{aref} has no durable snapshot");
    };
    let snap = SnapshotRef::from_uri(&uri_prefix, SnapshotScope::Full)
        .with_context(|| format!("not a snapshot uri: {uri_prefix}"))?;
    let manifest = ate_snapshots::SnapshotStore::open(&snap.location)?
        .manifest(&snap.owner, &snap.id)
        .await?;
    let stored = manifest.files.iter().map(|f| f.compressed_size).sum();
    Ok((manifest.total_size(), stored))
}

pub async fn run(args: ProcessBenchArgs) -> anyhow::Result<()> {
    let scratch = Scratch::new("ate-bench-process")?;
    let url = format!("sqlite://{}", scratch.0.join("ate.db").display());
    let store = stores::open(&url, stores::DEFAULT_PATIENCE).await?;
    let local = InProcess::start(&store, &scratch.0).await?;
    let plane = &local.plane;
    let scopes = templates(&store).await?;
    let mut conn = Conn::open(local.router_addr()).await?;
    println!(
        "demo/py-agent (python3, stdlib HTTP server) through the router; {} activations per scope; SQLite store, file snapshot store",
        args.activations
    );
    println!(
        "| scope | activation p50 | p95 | p99 | max | suspend p50 | p95 | snapshot (raw / stored) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (scope, template) in scopes {
        wait_ready(&store, &template).await?;
        let actor = create_actor(&store, &template).await?;
        let r = conn
            .get(&request("POST", &actor, "notes", "kept on disk"))
            .await?;
        if r.status != 200 {
            bail!("{actor}: notes answered {}", r.status);
        }
        let r = conn.get(&request("POST", &actor, "chat", "hello")).await?;
        if r.status != 200 {
            bail!("{actor}: chat answered {}", r.status);
        }
        let (mut activations, mut suspends) = (Vec::new(), Vec::new());
        for _ in 0..args.activations.max(1) {
            let t = Instant::now();
            plane
                .control
                .lifecycle
                .suspend(&actor)
                .await
                .with_context(|| format!("cannot suspend {actor}"))?;
            suspends.push(t.elapsed());
            let (path, want) = match scope {
                SnapshotScope::Full => ("history", "> hello"),
                SnapshotScope::Data => ("notes", "kept on disk"),
            };
            let r = conn.get(&request("GET", &actor, path, "")).await?;
            let body = String::from_utf8_lossy(r.body());
            if r.status != 200 || !body.contains(want) {
                bail!(
                    "{actor} answered {} {body:?} after a resume: the {scope:?} snapshot lost its state",
                    r.status
                );
            }
            activations.push(r.first_byte);
        }
        let (raw, stored) = snapshot_size(&store, &actor).await?;
        let (p50, p95, p99, max) = spread(activations);
        let (s50, s95, _, _) = spread(suspends);
        println!(
            "| {scope:?} | {} | {} | {} | {} | {} | {} | {:.1} MB / {:.1} MB |",
            fmt(p50),
            fmt(p95),
            fmt(p99),
            fmt(max),
            fmt(s50),
            fmt(s95),
            raw as f64 / 1e6,
            stored as f64 / 1e6
        );
    }
    drop(conn);
    drop(local);
    let _ = std::fs::remove_dir_all(&scratch.0);
    Ok(())
}
