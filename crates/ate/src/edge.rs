//! The network edge of `ate up` and `ate serve`: the HTTP router (resuming actors through
//! the in-process lifecycle), the optional DNS responder, and the admin port with the
//! Prometheus metrics of every role in the process.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use ate_control::{Lifecycle, LifecycleError};
use ate_model::{ActorRef, ErrorKind};
use ate_net::dns::{DnsConfig, DnsServer};
use ate_net::{ActivateError, Activator, Router, RouterConfig, RouterHandle};
use ate_proto::ateapi::ResumeActorRequest;
use ate_proto::ateapi::control_client::ControlClient;
use ate_seam::NodeDirectory;
use clap::Args;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

/// Where the router listens unless told otherwise.
pub const DEFAULT_ROUTER_LISTEN: &str = "127.0.0.1:8080";
/// Where the admin port (metrics) listens unless told otherwise.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:7421";

#[derive(Debug, Clone, Args)]
pub struct EdgeArgs {
    /// Address of the HTTP router. Port 0 picks a free port.
    #[arg(long, default_value = DEFAULT_ROUTER_LISTEN)]
    pub router_listen: SocketAddr,
    /// Address (UDP and TCP) of the DNS responder for actor names; off unless given.
    #[arg(long)]
    pub dns_listen: Option<SocketAddr>,
    /// Addresses the DNS responder answers with (default: the router's address, or
    /// 127.0.0.1 when the router listens on every interface).
    #[arg(long, value_delimiter = ',')]
    pub dns_answer: Vec<IpAddr>,
    /// Address of the admin port: Prometheus metrics at /metrics.
    #[arg(long, default_value = DEFAULT_ADMIN_LISTEN)]
    pub admin_listen: SocketAddr,
    /// Domain of actor hosts: <actor>.<atespace>.actors.<domain>.
    #[arg(long, default_value = ate_net::DEFAULT_DOMAIN)]
    pub domain: String,
    /// Most requests that may wait for one actor to start; more are answered 503.
    #[arg(long, default_value_t = 1024)]
    pub queue_len: usize,
    /// Longest a request waits for its actor to start before it is answered 504.
    #[arg(long, default_value = "30s")]
    pub queue_wait: ate_model::Duration,
}

/// Resumes actors for the router through the lifecycle in this process.
#[derive(Debug)]
pub struct LifecycleActivator(pub Lifecycle);

#[async_trait::async_trait]
impl Activator for LifecycleActivator {
    async fn activate(&self, actor: &ActorRef) -> Result<(), ActivateError> {
        self.0
            .resume(actor, false)
            .await
            .map(|_| ())
            .map_err(activation_error)
    }
}

/// Resumes actors for the router through the control API of any replica, moving to the
/// next when one is unreachable.
#[derive(Debug)]
pub struct ControlActivator {
    clients: Vec<ControlClient<tonic::transport::Channel>>,
    next: std::sync::atomic::AtomicUsize,
}

impl ControlActivator {
    pub fn new(controls: &[String]) -> anyhow::Result<Self> {
        let clients = controls
            .iter()
            .map(|c| Ok(ControlClient::new(ate_seam::endpoint(c)?.connect_lazy())))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if clients.is_empty() {
            anyhow::bail!("--control: name at least one control-plane address");
        }
        Ok(Self {
            clients,
            next: Default::default(),
        })
    }
}

#[async_trait::async_trait]
impl Activator for ControlActivator {
    async fn activate(&self, actor: &ActorRef) -> Result<(), ActivateError> {
        use std::sync::atomic::Ordering;
        let start = self.next.load(Ordering::Relaxed);
        let mut last = None;
        for i in 0..self.clients.len() {
            let k = (start + i) % self.clients.len();
            let request = ResumeActorRequest {
                actor_ref: Some(ate_proto::convert::actor_ref(actor)),
                boot: false,
            };
            match self.clients[k].clone().resume_actor(request).await {
                Ok(_) => {
                    self.next.store(k, Ordering::Relaxed);
                    return Ok(());
                }
                // The replica is down or died mid-call (the connection broke: `Unknown`,
                // `Cancelled`). Resuming is idempotent, so the next replica may finish it.
                Err(status)
                    if matches!(
                        status.code(),
                        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
                    ) =>
                {
                    last = Some(status);
                    continue;
                }
                Err(status) => return Err(remote_activation_error(status)),
            }
        }
        Err(ActivateError::Unavailable(match last {
            Some(s) => format!("no control plane answered: {}", s.message()),
            None => "no control plane answered".into(),
        }))
    }
}

fn remote_activation_error(status: tonic::Status) -> ActivateError {
    let reason = status
        .metadata()
        .get(ate_control::REASON_KEY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let message = status.message().to_string();
    match (reason, status.code()) {
        ("no_capacity", _) => ActivateError::NoCapacity(message),
        (_, tonic::Code::NotFound) => ActivateError::NotFound(message),
        (_, tonic::Code::Aborted) => ActivateError::Busy(message),
        (_, tonic::Code::Unavailable | tonic::Code::FailedPrecondition) => {
            ActivateError::Unavailable(message)
        }
        _ => ActivateError::Failed(message),
    }
}

fn activation_error(e: LifecycleError) -> ActivateError {
    let message = e.to_string();
    match (&e, e.kind()) {
        (LifecycleError::NoEligiblePool { .. } | LifecycleError::NoFreeWorker { .. }, _) => {
            ActivateError::NoCapacity(message)
        }
        (_, ErrorKind::NotFound) => ActivateError::NotFound(message),
        (_, ErrorKind::Aborted) => ActivateError::Busy(message),
        (_, ErrorKind::Unavailable | ErrorKind::FailedPrecondition) => {
            ActivateError::Unavailable(message)
        }
        _ => ActivateError::Failed(message),
    }
}

/// The process's metrics recorder, installed once.
pub fn metrics_handle() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(ate_net::metrics::ACTIVATION_SECONDS.into()),
            ate_net::metrics::ACTIVATION_BUCKETS,
        )
        .context("cannot set the metrics buckets")?
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// The running edge. [`Self::shutdown`] lets open requests finish.
#[derive(Debug)]
pub struct Edge {
    pub router_addr: Option<SocketAddr>,
    pub admin_addr: SocketAddr,
    pub dns_addr: Option<SocketAddr>,
    router: Option<RouterHandle>,
    admin: tokio::task::JoinHandle<()>,
    dns: Option<DnsServer>,
}

impl Edge {
    /// Starts the admin port, the router when nodes to route to (and a way to resume
    /// actors) are given, and the DNS responder when `--dns-listen` is.
    pub async fn start(
        args: &EdgeArgs,
        data_plane: Option<(Arc<dyn NodeDirectory>, Arc<dyn Activator>)>,
    ) -> anyhow::Result<Self> {
        let metrics = metrics_handle()?;
        let admin_listener = TcpListener::bind(args.admin_listen)
            .await
            .with_context(|| {
                format!("cannot listen on {} for the admin port", args.admin_listen)
            })?;
        let admin_addr = admin_listener.local_addr()?;
        let render: ate_net::RenderMetrics = Arc::new(move || metrics.render());
        let admin = tokio::spawn(ate_net::serve_admin(
            admin_listener,
            render,
            std::future::pending(),
        ));
        let config = RouterConfig {
            domain: args.domain.clone(),
            queue_len: args.queue_len,
            queue_wait: args.queue_wait.0,
            ..Default::default()
        };
        let router = match data_plane {
            Some((nodes, activator)) => {
                let router = Router::new(config, nodes, activator)
                    .context("cannot start the router")?
                    .start(args.router_listen)
                    .await
                    .with_context(|| {
                        format!("cannot listen on {} for the router", args.router_listen)
                    })?;
                Some(router)
            }
            None => None,
        };
        let router_addr = router.as_ref().map(RouterHandle::local_addr);
        let dns = match args.dns_listen {
            Some(listen) => {
                let answers = if args.dns_answer.is_empty() {
                    match router_addr.map_or(args.router_listen.ip(), |a| a.ip()) {
                        ip if ip.is_unspecified() => vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
                        ip => vec![ip],
                    }
                } else {
                    args.dns_answer.clone()
                };
                let server = DnsServer::start(DnsConfig::new(listen, &args.domain, answers))
                    .await
                    .context("cannot start the dns responder")?;
                Some(server)
            }
            None => None,
        };
        Ok(Self {
            router_addr,
            admin_addr,
            dns_addr: dns.as_ref().map(DnsServer::local_addr),
            router,
            admin,
            dns,
        })
    }

    pub async fn shutdown(self) {
        if let Some(dns) = self.dns {
            dns.shutdown().await;
        }
        if let Some(router) = self.router {
            router.shutdown().await;
        }
        self.admin.abort();
    }
}
