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
use crate::edge::{Edge, EdgeArgs};
use crate::{local, stores};

/// Where `ate up` serves the control API unless told otherwise.
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:7420";

/// Settings of the data plane and lifecycle, shared by `up` and `serve`.
#[derive(Debug, Args)]
pub struct DataPlaneArgs {
    /// Directory for ate's data (store file, snapshots).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// How long to wait for a store server that does not answer yet, in seconds.
    #[arg(long, default_value_t = 60)]
    pub store_timeout: u64,
    /// Lifetime of an actor's operation lease: after a crash, an interrupted operation is
    /// settled once it expires.
    #[arg(long, default_value = "15s")]
    pub lease_ttl: ate_model::Duration,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Address of the control API (gRPC). Port 0 picks a free port.
    #[arg(long, default_value = DEFAULT_API_LISTEN)]
    pub api_listen: SocketAddr,
    /// Store URL (sqlite://PATH, redis://HOST:PORT/DB, postgres://USER@HOST:PORT/DB);
    /// defaults to an SQLite file in the data directory.
    #[arg(long)]
    pub store: Option<String>,
    #[command(flatten)]
    pub data_plane: DataPlaneArgs,
    #[command(flatten)]
    pub edge: EdgeArgs,
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
    /// Address of the control API (gRPC).
    #[arg(long, default_value = DEFAULT_API_LISTEN)]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub data_plane: DataPlaneArgs,
    #[command(flatten)]
    pub edge: EdgeArgs,
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

/// What one process runs.
struct Plan {
    api: Option<SocketAddr>,
    node: bool,
    router: bool,
    store_url: String,
    data_plane: DataPlaneArgs,
    edge: EdgeArgs,
    walkthrough: bool,
}

pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    let data_dir = args
        .data_plane
        .data_dir
        .clone()
        .unwrap_or_else(default_data_dir);
    let store_url = args
        .store
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("ate.db").display()));
    run(Plan {
        api: Some(args.api_listen),
        node: true,
        router: true,
        store_url,
        data_plane: DataPlaneArgs {
            data_dir: Some(data_dir),
            ..args.data_plane
        },
        edge: args.edge,
        walkthrough: true,
    })
    .await
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let has = |r: Role| args.roles.contains(&r);
    if has(Role::Router) && !has(Role::Node) {
        bail!(
            "role router needs role node in the same process in this build (--roles node,router)"
        );
    }
    if has(Role::Dns) && args.edge.dns_listen.is_none() {
        bail!("role dns needs --dns-listen ADDR");
    }
    let mut edge = args.edge;
    if !has(Role::Dns) {
        edge.dns_listen = None;
    }
    run(Plan {
        api: has(Role::Api).then_some(args.listen),
        node: has(Role::Node),
        router: has(Role::Router),
        store_url: args.store,
        data_plane: args.data_plane,
        edge,
        walkthrough: false,
    })
    .await
}

async fn run(plan: Plan) -> anyhow::Result<()> {
    let data_dir = plan
        .data_plane
        .data_dir
        .clone()
        .unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let store = stores::open(
        &plan.store_url,
        Duration::from_secs(plan.data_plane.store_timeout),
    )
    .await?;
    start_api(&store).await?;
    let api = match plan.api {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let config = LifecycleConfig {
        lease_ttl: plan.data_plane.lease_ttl.0,
        ..Default::default()
    };
    let data_plane = match plan.node {
        true => Some(local::start(&store, &data_dir, config).await?),
        false => None,
    };
    let edge = Edge::start(
        &plan.edge,
        data_plane
            .as_ref()
            .filter(|_| plan.router)
            .map(|d| (d.nodes(), &d.lifecycle)),
    )
    .await?;
    let api_addr = api.as_ref().map(|(_, a)| *a);
    print_summary(
        &plan,
        &stores::redact(&plan.store_url),
        &data_dir,
        api_addr,
        &edge,
    );
    match api {
        Some((listener, _)) => {
            let control = match &data_plane {
                Some(d) => ControlService::new(store).with_lifecycle(d.lifecycle.clone()),
                None => ControlService::new(store),
            };
            ate_control::serve(listener, control, shutdown_signal()).await?;
        }
        None => shutdown_signal().await,
    }
    edge.shutdown().await;
    if let Some(d) = data_plane {
        match d.drain().await {
            Ok(0) => {}
            Ok(n) => println!("suspended {n} running actor(s)"),
            Err(e) => tracing::warn!(error = %e, "cannot suspend the running actors"),
        }
    }
    println!("ate stopped");
    Ok(())
}

fn print_summary(
    plan: &Plan,
    store: &str,
    data_dir: &std::path::Path,
    api: Option<SocketAddr>,
    edge: &Edge,
) {
    println!("ate is up");
    if let Some(addr) = api {
        println!("  control API   http://{addr} (gRPC)");
    }
    if let Some(addr) = edge.router_addr {
        println!("  router        http://{addr}");
    }
    if let Some(addr) = edge.dns_addr {
        println!(
            "  dns           {addr} (udp+tcp, *.actors.{})",
            plan.edge.domain
        );
    }
    println!("  metrics       http://{}/metrics", edge.admin_addr);
    println!("  store         {store}");
    println!("  data dir      {}", data_dir.display());
    if plan.node {
        println!(
            "  node          {} (pool {}/{}, {} wasm workers)",
            local::LOCAL_NODE,
            local::DEFAULT_POOL.0,
            local::DEFAULT_POOL.1,
            local::DEFAULT_POOL_REPLICAS
        );
    }
    if !plan.walkthrough {
        return;
    }
    let (Some(addr), Some(router)) = (api, edge.router_addr) else {
        return;
    };
    let endpoint = if addr.to_string() == DEFAULT_API_LISTEN {
        String::new()
    } else {
        format!(" --endpoint http://{addr}")
    };
    println!();
    println!("Try:");
    println!("  ate{endpoint} create atespace team-a");
    println!("  ate{endpoint} create actor counter-1 -t demo/counter -a team-a");
    println!("  curl http://{router}/a/team-a/counter-1/    (1, 2, 3, ...)");
    println!("  ate{endpoint} suspend actor counter-1 -a team-a");
    println!("  curl http://{router}/a/team-a/counter-1/    (resumes it; the count goes on)");
    println!("  ate{endpoint} get actors -A    (30 s after the last request: SUSPENDED)");
    println!();
    println!("Press Ctrl-C to stop (running actors are suspended first).");
}
