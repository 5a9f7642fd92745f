//! `ate serve --roles ...`: any combination of the control API (`api`), a node daemon
//! (`node`), the HTTP router (`router`) and the DNS responder (`dns`) in one process, for
//! the split deployment. Roles in different processes meet through the control plane:
//! nodes register with any replica (`--control`), replicas share one store, routers follow
//! a replica's view of the nodes and routes and resume actors through its API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use ate_control::Registry;
use ate_dataspace::Dataspace;
use ate_net::Activator;
use ate_seam::{Dialer, NodeDirectory, RegistrationConfig, RemoteNodes};
use ate_tls::{ClientCerts, PeerAuth, PeerIdentity, TlsDir};
use clap::Args;
use tokio::net::TcpListener;
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
    /// Directory with this process's certificate and key (tls.crt, tls.key) and the trust
    /// bundle (ca.crt), as `ate admin issue-cert --out` writes it: the process's listener
    /// serves TLS, and its channels to other components are mutual TLS. The files are
    /// re-read when they change. Without it, component traffic is plaintext and unchecked.
    #[arg(long)]
    pub tls_dir: Option<PathBuf>,
    /// File holding the bearer token a router of its own presents to the control API when
    /// it resumes actors (an editor of the atespaces it serves). Not needed with
    /// --tls-dir: the router's certificate identifies it.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// How often a router of its own with --require-token rereads the control plane's
    /// verification keys and revoked tokens: how soon a rotation or revocation reaches it.
    #[arg(long, default_value = "30s")]
    pub keys_refresh: ate_model::Duration,
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
    let tls = ComponentTls::open(&args)?;
    let data_dir = args
        .data_plane
        .data_dir
        .clone()
        .unwrap_or_else(default_data_dir);
    crate::secrets::private_data_dir(&data_dir)?;
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
        let kek_file = crate::secrets::kek_path(args.data_plane.kek_file.as_deref(), &data_dir);
        let store = crate::secrets::seal_store(store, &kek_file).await?;
        ate_control::ensure_system_atespaces(&store)
            .await
            .context("cannot create the system atespaces")?;
        let (registry, mirror) = Registry::start_with(store.clone(), Dataspace::new(), tls.auth());
        if tokio::time::timeout(MIRROR_SYNC_WAIT, registry.synced())
            .await
            .is_err()
        {
            bail!("--store: cannot read the registered nodes within {MIRROR_SYNC_WAIT:?}");
        }
        let nodes: Arc<dyn NodeDirectory> =
            Arc::new(RemoteNodes::new(registry.dataspace().clone()).with_dialer(tls.dialer()));
        let plane = ControlPlane::start(&store, nodes, args.data_plane.plane_config()).await?;
        let control = plane.control_service();
        crate::plane::write_bootstrap_token(&plane, &data_dir).await?;
        routes = Some(ate_control::control_routes(control, Some(&registry)).await?);
        api = Some((registry, mirror, plane));
    }
    let daemon = match has(Role::Node) {
        true => {
            let config = args.node.config(&data_dir, &advertise)?;
            tls.expect(&PeerIdentity::Node(config.name.clone()), "node")?;
            let daemon = NodeDaemon::start(
                config,
                RegistrationConfig {
                    controls: controls.clone(),
                    liveness_timeout: args.node.liveness_timeout.0,
                    dialer: tls.dialer(),
                },
            );
            let service = daemon.service(tls.auth());
            routes = Some(match routes.take() {
                Some(r) => r.add_service(service),
                None => Routes::new(service),
            });
            Some(daemon)
        }
        false => None,
    };
    let mut follower = None;
    let mut keys = api.as_ref().map(|(_, _, plane)| plane.auth.verifier());
    let router: Option<(Arc<dyn NodeDirectory>, Arc<dyn Activator>)> =
        match (has(Role::Router), &api) {
            (false, _) => None,
            (true, Some((_, _, plane))) => Some((
                plane.nodes.clone(),
                Arc::new(LifecycleActivator(plane.lifecycle.clone())),
            )),
            (true, None) => {
                let (dataspace, f) = ate_seam::follow_control_with(
                    controls.clone(),
                    &ate_seam::carry::ROUTER_TYPES,
                    tls.dialer(),
                );
                follower = Some(f);
                let token = match &args.token_file {
                    Some(path) => Some(
                        std::fs::read_to_string(path)
                            .with_context(|| {
                                format!("--token-file: cannot read {}", path.display())
                            })?
                            .trim()
                            .to_string(),
                    ),
                    None => None,
                };
                let activator = ControlActivator::new(&controls, &tls.dialer(), token.as_deref())?;
                if !args.edge.require_token.is_empty() {
                    keys = Some(activator.verification_keys(args.keys_refresh.0).await);
                }
                Some((
                    Arc::new(RemoteNodes::new(dataspace).with_dialer(tls.dialer())),
                    Arc::new(activator),
                ))
            }
        };
    let mut edge_args = args.edge.clone();
    if !has(Role::Dns) {
        edge_args.dns_listen = None;
    }
    let edge = Edge::start(&edge_args, router, keys).await?;

    let shutdown = shutdown_signal();
    println!("ate is serving {}", roles_text(&args.roles));
    if let Some((_, addr)) = &listener {
        let (scheme, how) = tls.scheme();
        if has(Role::Api) {
            println!("  control API   {scheme}://{addr} (gRPC{how})");
        }
        if has(Role::Node) {
            println!("  node service  {scheme}://{addr} (gRPC{how}, advertised as {advertise})");
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
            // CLI users reach the control API without a certificate (they bring tokens);
            // a node's service is for components only.
            let clients = match has(Role::Api) {
                true => ClientCerts::Optional,
                false => ClientCerts::Required,
            };
            tls.serve(listener, routes, clients, stop).await?
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

/// The component TLS of an `ate serve` process (`--tls-dir`), or its absence.
struct ComponentTls {
    dir: Option<TlsDir>,
}

impl ComponentTls {
    /// Reads `--tls-dir`, refusing role combinations one certificate cannot serve (a
    /// certificate names one component), or warns that there is none.
    fn open(args: &ServeArgs) -> anyhow::Result<Self> {
        let has = |r: Role| args.roles.contains(&r);
        let Some(path) = &args.tls_dir else {
            if has(Role::Api) || has(Role::Node) {
                tracing::warn!(roles = %roles_text(&args.roles), "serving without --tls-dir: traffic between components is plaintext and no caller is checked (see docs/security.md)");
            }
            return Ok(Self { dir: None });
        };
        if has(Role::Node) && (has(Role::Api) || has(Role::Router)) {
            bail!(
                "--tls-dir: role node needs a certificate of its own (NAME.node.ate); run it apart from roles api and router"
            );
        }
        let dir = TlsDir::open(path).map_err(|e| anyhow::anyhow!("--tls-dir: {e}"))?;
        let tls = Self { dir: Some(dir) };
        // The node's name is known once its configuration is: see the node role.
        if has(Role::Api) {
            tls.expect(&PeerIdentity::Control, "api")?;
        } else if has(Role::Router) {
            tls.expect(&PeerIdentity::Router, "router")?;
        }
        Ok(tls)
    }

    /// Checks that this process's certificate is `who`'s, as `role` needs.
    fn expect(&self, who: &PeerIdentity, role: &str) -> anyhow::Result<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        match dir.identity() {
            Some(id) if id == *who => Ok(()),
            found => bail!(
                "--tls-dir: role {role} needs a certificate for {who}, but {} is for {} (issue one with ate admin issue-cert)",
                dir.dir().join(ate_tls::CERT_FILE).display(),
                found.map_or_else(|| "no ate component".to_string(), |f| f.to_string()),
            ),
        }
    }

    fn dialer(&self) -> Dialer {
        self.dir.clone().map(Dialer::tls).unwrap_or_default()
    }

    fn auth(&self) -> PeerAuth {
        match self.dir {
            Some(_) => PeerAuth::Certificates,
            None => PeerAuth::Open,
        }
    }

    /// The URL scheme of the listener, and a note for the address lines.
    fn scheme(&self) -> (&'static str, &'static str) {
        match self.dir {
            Some(_) => ("https", ", mutual TLS"),
            None => ("http", ""),
        }
    }

    /// Serves `routes` on `listener` until `stop`: TLS (handshakes bounded in time, the
    /// client's certificate verified and handed to the services) or plaintext.
    async fn serve(
        &self,
        listener: TcpListener,
        routes: Routes,
        clients: ClientCerts,
        stop: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let Some(dir) = &self.dir else {
            return Ok(ate_control::serve_routes(listener, routes, stop).await?);
        };
        let config = dir
            .server_config(clients)
            .map_err(|e| anyhow::anyhow!("--tls-dir: {e}"))?;
        Ok(
            ate_control::serve_incoming(ate_tls::tls_incoming(listener, config), routes, stop)
                .await?,
        )
    }
}
