//! `ate up` (everything on one machine, embedded defaults) and `ate serve` (chosen roles,
//! explicit settings).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use ate_store::Store;
use clap::Args;
use tokio::net::TcpListener;

use ate_control::{ControlService, LifecycleConfig};

use crate::cli::default_data_dir;
use crate::{local, stores};

/// Where `ate up` serves the control API unless told otherwise.
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:7420";

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Address of the control API (gRPC). Port 0 picks a free port.
    #[arg(long, default_value = DEFAULT_API_LISTEN)]
    pub api_listen: SocketAddr,
    /// Directory for ate's data (store file, snapshots).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Store URL (sqlite://PATH, redis://HOST:PORT/DB, postgres://USER@HOST:PORT/DB);
    /// defaults to an SQLite file in the data directory.
    #[arg(long)]
    pub store: Option<String>,
    /// How long to wait for a store server that does not answer yet, in seconds.
    #[arg(long, default_value_t = 60)]
    pub store_timeout: u64,
    /// Lifetime of an actor's operation lease: after a crash, an interrupted operation is
    /// settled once it expires.
    #[arg(long, default_value = "15s")]
    pub lease_ttl: ate_model::Duration,
}

/// The roles `ate serve` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    Api,
    Node,
    Router,
    Dns,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Roles to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', required = true)]
    pub roles: Vec<Role>,
    /// Store URL: sqlite://PATH, redis://HOST:PORT/DB or postgres://USER@HOST:PORT/DB.
    #[arg(long)]
    pub store: String,
    /// How long to wait for a store server that does not answer yet, in seconds.
    #[arg(long, default_value_t = 60)]
    pub store_timeout: u64,
    /// Address of the control API (gRPC).
    #[arg(long, default_value = DEFAULT_API_LISTEN)]
    pub listen: SocketAddr,
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

async fn bind(addr: SocketAddr) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

async fn start_api(store: &Arc<dyn Store>) -> anyhow::Result<()> {
    ate_control::ensure_system_atespaces(store)
        .await
        .context("cannot create the system atespaces")
}

pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir.unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let store_url = args
        .store
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("ate.db").display()));
    let store = stores::open(&store_url, Duration::from_secs(args.store_timeout)).await?;
    start_api(&store).await?;
    let (listener, addr) = bind(args.api_listen).await?;
    let config = LifecycleConfig {
        lease_ttl: args.lease_ttl.0,
        ..Default::default()
    };
    let data_plane = local::start(&store, &data_dir, config).await?;
    println!("ate is up");
    println!("  control API   http://{addr} (gRPC)");
    println!("  store         {}", stores::redact(&store_url));
    println!("  data dir      {}", data_dir.display());
    println!(
        "  node          {} (pool {}/{}, {} wasm workers)",
        local::LOCAL_NODE,
        local::DEFAULT_POOL.0,
        local::DEFAULT_POOL.1,
        local::DEFAULT_POOL_REPLICAS
    );
    println!();
    println!("Try:");
    let endpoint = if addr.to_string() == DEFAULT_API_LISTEN {
        String::new()
    } else {
        format!(" --endpoint http://{addr}")
    };
    println!("  ate{endpoint} get nodes");
    println!("  ate{endpoint} get workers");
    println!("  ate{endpoint} create atespace team-a");
    println!("  ate{endpoint} create actor counter-1 -t demo/counter -a team-a");
    println!("  ate{endpoint} resume actor counter-1 -a team-a");
    println!("  ate{endpoint} get actors -A");
    println!("  ate{endpoint} suspend actor counter-1 -a team-a");
    println!();
    println!("Press Ctrl-C to stop (running actors are suspended first).");
    let control = ControlService::new(store).with_lifecycle(data_plane.lifecycle.clone());
    ate_control::serve(listener, control, shutdown_signal()).await?;
    match data_plane.drain().await {
        Ok(0) => {}
        Ok(n) => println!("suspended {n} running actor(s)"),
        Err(e) => tracing::warn!(error = %e, "cannot suspend the running actors"),
    }
    drop(data_plane);
    println!("ate stopped");
    Ok(())
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    if let Some(r) = args.roles.iter().find(|r| **r != Role::Api) {
        bail!("role {r:?} is not available in this build (available: api)");
    }
    let store = stores::open(&args.store, Duration::from_secs(args.store_timeout)).await?;
    start_api(&store).await?;
    let (listener, addr) = bind(args.listen).await?;
    tracing::info!(%addr, store = %stores::redact(&args.store), "control API serving");
    println!("control API   http://{addr} (gRPC)");
    ate_control::serve(listener, ControlService::new(store), shutdown_signal()).await?;
    Ok(())
}
