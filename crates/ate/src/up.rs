//! `ate up` (everything on one machine, embedded defaults) and `ate serve` (chosen roles,
//! explicit settings).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ate_store::Store;
use clap::Args;
use tokio::net::TcpListener;

use ate_control::LifecycleConfig;

use crate::cli::default_data_dir;
use crate::edge::{Edge, EdgeArgs, LifecycleActivator};
use crate::plane::PlaneConfig;
use crate::{local, secrets, stores};

/// Where `ate up` serves the control API unless told otherwise.
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:7420";

/// Settings of the data plane and lifecycle, shared by `up` and `serve`.
#[derive(Debug, Args)]
pub struct DataPlaneArgs {
    /// Directory for ate's data (store file, snapshots, key-encryption key). It is made
    /// the owner's only.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// File of the key-encryption key that seals the token signing keys in the store (32
    /// bytes; created with a random key if missing). Every api replica of one store needs
    /// the same file. Default: <data-dir>/kek.
    #[arg(long, env = "ATE_KEK_FILE")]
    pub kek_file: Option<PathBuf>,
    /// How long to wait for a store server that does not answer yet, in seconds.
    #[arg(long, default_value_t = 60)]
    pub store_timeout: u64,
    /// Lifetime of an actor's operation lease: after a crash, an interrupted operation is
    /// settled once it expires.
    #[arg(long, default_value = "15s")]
    pub lease_ttl: ate_model::Duration,
    /// How long audit events are kept before they are deleted; 0 keeps them forever.
    #[arg(long, default_value = "90d")]
    pub audit_retention: ate_model::Duration,
}

impl DataPlaneArgs {
    /// The control plane's settings these flags make.
    pub fn plane_config(&self) -> PlaneConfig {
        PlaneConfig {
            lifecycle: LifecycleConfig {
                lease_ttl: self.lease_ttl.0,
                ..Default::default()
            },
            audit_retention: (!self.audit_retention.0.is_zero()).then_some(self.audit_retention.0),
        }
    }
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

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed by the call, not on the first
/// poll: a signal that arrives between the call and the wait (a supervisor stopping ate
/// right after it printed its addresses) is kept, not fatal. Needs a tokio runtime.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let (mut term, mut int) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            async fn on(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                _ = on(&mut term) => {},
                _ = on(&mut int) => {},
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    }
}

/// Binds a TCP listener, naming the address when it cannot.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<(TcpListener, SocketAddr)> {
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

/// What `ate up` runs.
struct Plan {
    api: SocketAddr,
    store_url: String,
    data_plane: DataPlaneArgs,
    edge: EdgeArgs,
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
        api: args.api_listen,
        store_url,
        data_plane: DataPlaneArgs {
            data_dir: Some(data_dir),
            ..args.data_plane
        },
        edge: args.edge,
    })
    .await
}

async fn run(plan: Plan) -> anyhow::Result<()> {
    let data_dir = plan
        .data_plane
        .data_dir
        .clone()
        .unwrap_or_else(default_data_dir);
    secrets::private_data_dir(&data_dir)?;
    let store = stores::open(
        &plan.store_url,
        Duration::from_secs(plan.data_plane.store_timeout),
    )
    .await?;
    let kek_file = secrets::kek_path(plan.data_plane.kek_file.as_deref(), &data_dir);
    let store = secrets::seal_store(store, &kek_file).await?;
    start_api(&store).await?;
    let (listener, api_addr) = bind(plan.api).await?;
    let data_plane = local::start(&store, &data_dir, plan.data_plane.plane_config()).await?;
    let lifecycle = data_plane.control.lifecycle.clone();
    let config_path = login_local_user(&data_plane.control, api_addr).await?;
    let edge = Edge::start(
        &plan.edge,
        Some((
            data_plane.control.nodes.clone(),
            Arc::new(LifecycleActivator(lifecycle.clone())),
        )),
        Some(data_plane.control.auth.verifier()),
    )
    .await?;
    let shutdown = shutdown_signal();
    print_summary(
        &plan,
        &stores::redact(&plan.store_url),
        &data_dir,
        api_addr,
        &edge,
        config_path.as_deref(),
    );
    let control = data_plane.control.control_service();
    ate_control::serve(listener, control, shutdown).await?;
    edge.shutdown().await;
    match data_plane.drain().await {
        Ok(0) => {}
        Ok(n) => println!("suspended {n} running actor(s)"),
        Err(e) => tracing::warn!(error = %e, "cannot suspend the running actors"),
    }
    println!("ate stopped");
    Ok(())
}

/// Points the CLI's config file at this control API with an admin token for the local
/// user, so `ate` commands work without flags: the token saved there by an earlier start
/// while it is good (see [`secrets::reusable_admin_token`]), else a new one. Returns the
/// file's path (`None` when there is no place for it: no `$ATE_CONFIG` and no home
/// directory).
async fn login_local_user(
    plane: &crate::plane::ControlPlane,
    api: SocketAddr,
) -> anyhow::Result<Option<std::path::PathBuf>> {
    let Some(path) = ate_cli::config::path() else {
        tracing::warn!("no home directory and no $ATE_CONFIG: the admin token is not saved");
        return Ok(None);
    };
    let user = std::env::var("USER").unwrap_or_else(|_| "local".into());
    let subject = format!("{user}@local");
    let mut config = match ate_cli::config::CliConfig::load(&path) {
        Ok(c) => c,
        Err(e) => {
            // Never overwrite what the user may want to repair.
            tracing::warn!(error = %e, "the CLI config is unreadable: not saving the admin token");
            return Ok(None);
        }
    };
    let saved = match config.token.as_deref() {
        Some(t) => secrets::reusable_admin_token(&plane.auth, t, &subject).await,
        None => false,
    };
    if !saved {
        config.token = Some(plane.admin_token(&subject).await?);
    }
    config.endpoint = Some(format!("http://{api}"));
    config
        .save(&path)
        .with_context(|| format!("cannot write the CLI config {}", path.display()))?;
    Ok(Some(path))
}

fn print_summary(
    plan: &Plan,
    store: &str,
    data_dir: &std::path::Path,
    api: SocketAddr,
    edge: &Edge,
    cli_config: Option<&std::path::Path>,
) {
    println!("ate is up");
    println!("  control API   http://{api} (gRPC)");
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
    if let Some(path) = cli_config {
        println!("  cli config    {} (admin token)", path.display());
    }
    println!(
        "  node          {} (pool {}/{}, {} wasm workers)",
        local::LOCAL_NODE,
        local::DEFAULT_POOL.0,
        local::DEFAULT_POOL.1,
        local::DEFAULT_POOL_REPLICAS
    );
    let (addr, Some(router)) = (api, edge.router_addr) else {
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
