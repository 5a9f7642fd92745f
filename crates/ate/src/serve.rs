//! `ate serve --roles ...`: any combination of the control API (`api`), a node daemon
//! (`node`), the HTTP router (`router`) and the DNS responder (`dns`) in one process, for
//! the split deployment. Roles in different processes meet through the control plane:
//! nodes register with any replica (`--control`), replicas share one store, routers follow
//! a replica's view of the nodes and routes and resume actors through its API.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use ate_control::{ControlService, LifecycleConfig, Registry};
use ate_dataspace::Dataspace;
use ate_net::Activator;
use ate_seam::{NodeDirectory, RegistrationConfig, RemoteNodes};
use clap::Args;
use tonic::service::Routes;

use crate::cli::default_data_dir;
use crate::edge::{ControlActivator, Edge, EdgeArgs, LifecycleActivator};
use crate::node_daemon::{NodeArgs, NodeDaemon};
use crate::plane::ControlPlane;
use crate::stores;
use crate::up::{DEFAULT_API_LISTEN, DataPlaneArgs, bind, shutdown_signal};

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
    /// Store URL for role api: sqlite://PATH, redis://HOST:PORT/DB or
    /// postgres://USER@HOST:PORT/DB. Replicas share one (Redis or PostgreSQL).
    #[arg(long)]
    pub store: Option<String>,
    /// Address of this process's gRPC services: the control API and node registry (role
    /// api), the node service (role node).
    #[arg(long, default_value = DEFAULT_API_LISTEN)]
    pub listen: SocketAddr,
    /// Address at which other machines reach --listen (default: --listen itself).
    #[arg(long)]
    pub advertise: Option<String>,
    /// Control-plane replicas for roles node and router, comma-separated `host:port`,
    /// tried in turn (default: this process, when it runs role api).
    #[arg(long, value_delimiter = ',')]
    pub control: Vec<String>,
    #[command(flatten)]
    pub data_plane: DataPlaneArgs,
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub edge: EdgeArgs,
}

/// How long a replica waits for the store before it starts placing work anyway.
const MIRROR_SYNC_WAIT: Duration = Duration::from_secs(30);

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let has = |r: Role| args.roles.contains(&r);
    if has(Role::Api) && args.store.is_none() {
        bail!("--store: role api needs a store URL");
    }
    if !has(Role::Api) && args.store.is_some() {
        bail!("--store: only role api uses a store; nodes and routers reach it through --control");
    }
    if has(Role::Dns) && args.edge.dns_listen.is_none() {
        bail!("--dns-listen: role dns needs an address");
    }
    let grpc = has(Role::Api) || has(Role::Node);
    let data_dir = args
        .data_plane
        .data_dir
        .clone()
        .unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let listener = match grpc {
        true => Some(bind(args.listen).await?),
        false => None,
    };
    let advertise = match (&args.advertise, &listener) {
        (Some(a), _) => a.clone(),
        (None, Some((_, addr))) if addr.ip().is_unspecified() => {
            bail!("--advertise: --listen {addr} names no host others can reach; say which")
        }
        (None, Some((_, addr))) => addr.to_string(),
        (None, None) => String::new(),
    };
    let controls = match (args.control.is_empty(), has(Role::Api)) {
        (false, _) => args.control.clone(),
        (true, true) => vec![advertise.clone()],
        (true, false) if has(Role::Node) || has(Role::Router) => {
            bail!("--control: roles node and router need the address of a control plane")
        }
        (true, false) => Vec::new(),
    };

    let mut routes: Option<Routes> = None;
    let mut api = None;
    if let Some(url) = &args.store {
        let store = stores::open(url, Duration::from_secs(args.data_plane.store_timeout)).await?;
        ate_control::ensure_system_atespaces(&store)
            .await
            .context("cannot create the system atespaces")?;
        let (registry, mirror) = Registry::start(store.clone(), Dataspace::new());
        if tokio::time::timeout(MIRROR_SYNC_WAIT, registry.synced())
            .await
            .is_err()
        {
            bail!("--store: cannot read the registered nodes within {MIRROR_SYNC_WAIT:?}");
        }
        let nodes: Arc<dyn NodeDirectory> =
            Arc::new(RemoteNodes::new(registry.dataspace().clone()));
        let config = LifecycleConfig {
            lease_ttl: args.data_plane.lease_ttl.0,
            ..Default::default()
        };
        let plane = ControlPlane::start(&store, nodes, config).await?;
        let control = ControlService::new(store).with_lifecycle(plane.lifecycle.clone());
        routes = Some(ate_control::control_routes(control, Some(&registry)).await?);
        api = Some((registry, mirror, plane));
    }
    let daemon = match has(Role::Node) {
        true => {
            let config = args.node.config(&data_dir, &advertise)?;
            let daemon = NodeDaemon::start(
                config,
                RegistrationConfig {
                    controls: controls.clone(),
                    liveness_timeout: args.node.liveness_timeout.0,
                },
            );
            routes = Some(match routes.take() {
                Some(r) => r.add_service(daemon.service()),
                None => Routes::new(daemon.service()),
            });
            Some(daemon)
        }
        false => None,
    };
    let mut follower = None;
    let router: Option<(Arc<dyn NodeDirectory>, Arc<dyn Activator>)> =
        match (has(Role::Router), &api) {
            (false, _) => None,
            (true, Some((_, _, plane))) => Some((
                plane.nodes.clone(),
                Arc::new(LifecycleActivator(plane.lifecycle.clone())),
            )),
            (true, None) => {
                let (dataspace, f) =
                    ate_seam::follow_control(controls.clone(), &ate_seam::carry::ROUTER_TYPES);
                follower = Some(f);
                Some((
                    Arc::new(RemoteNodes::new(dataspace)),
                    Arc::new(ControlActivator::new(&controls)?),
                ))
            }
        };
    let mut edge_args = args.edge.clone();
    if !has(Role::Dns) {
        edge_args.dns_listen = None;
    }
    let edge = Edge::start(&edge_args, router).await?;

    let shutdown = shutdown_signal();
    println!("ate is serving {}", roles_text(&args.roles));
    if let Some((_, addr)) = &listener {
        if has(Role::Api) {
            println!("  control API   http://{addr} (gRPC)");
        }
        if has(Role::Node) {
            println!("  node service  http://{addr} (gRPC, advertised as {advertise})");
        }
    }
    if !controls.is_empty() && (has(Role::Node) || has(Role::Router)) {
        println!("  control       {}", controls.join(", "));
    }
    if let Some(addr) = edge.router_addr {
        println!("  router        http://{addr}");
    }
    if let Some(addr) = edge.dns_addr {
        println!("  dns           {addr}");
    }
    println!("  metrics       http://{}/metrics", edge.admin_addr);

    let registry = api.as_ref().map(|(r, _, _)| r.clone());
    let stop = async move {
        shutdown.await;
        // Node streams end without retracting anything: the nodes move to another replica.
        if let Some(r) = registry {
            r.stop();
        }
    };
    match (listener, routes) {
        (Some((listener, _)), Some(routes)) => {
            ate_control::serve_routes(listener, routes, stop).await?
        }
        _ => stop.await,
    }
    edge.shutdown().await;
    drop(follower);
    drop(daemon);
    drop(api);
    println!("ate stopped");
    Ok(())
}

fn roles_text(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| match r {
            Role::Api => "api",
            Role::Node => "node",
            Role::Router => "router",
            Role::Dns => "dns",
        })
        .collect::<Vec<_>>()
        .join(",")
}
