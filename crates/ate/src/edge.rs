//! The network edge of `ate up` and `ate serve`: the HTTP router (resuming actors through
//! the in-process lifecycle), the optional DNS responder, and the admin port with the
//! Prometheus metrics of every role in the process.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use ate_auth::{SharedVerifier, VerificationKey, Verifier};
use ate_control::{Lifecycle, LifecycleError};
use ate_model::{ActorRef, ErrorKind};
use ate_net::dns::{DnsConfig, DnsServer};
use ate_net::{ActivateError, Activator, Router, RouterConfig, RouterHandle, TokenGate};
use ate_proto::ateapi::admin_client::AdminClient;
use ate_proto::ateapi::control_client::ControlClient;
use ate_proto::ateapi::{ListVerificationKeysRequest, ResumeActorRequest};
use ate_proto::bearer::Bearer;
use ate_seam::{Dialer, NodeDirectory, Route};
use ate_tls::PeerIdentity;
use clap::Args;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;

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
    /// Most requests that may wait over all actors (for an activation or for a worker to
    /// free up); more are answered 503.
    #[arg(long, default_value_t = 4096)]
    pub queue_total: usize,
    /// Most actors this router starts at once (activations under way, those waiting for a
    /// worker included); a request that would start one more is answered 503.
    #[arg(long, default_value_t = ate_net::DEFAULT_MAX_ACTIVATIONS)]
    pub max_activations: usize,
    /// Longest a request waits for its actor to start: then it is answered 503 with
    /// Retry-After if no worker freed up for it, else 504.
    #[arg(long, default_value = "30s")]
    pub queue_wait: ate_model::Duration,
    /// Atespaces whose actor traffic needs a bearer token (editor or admin of the actor's
    /// atespace), comma-separated, `*` for all. Off by default: actors are public.
    #[arg(long, value_delimiter = ',', value_parser = atespace_or_all)]
    pub require_token: Vec<String>,
}

/// An atespace name, or `*`.
fn atespace_or_all(text: &str) -> Result<String, String> {
    if text != ate_auth::ALL_ATESPACES {
        ate_model::names::validate_label("atespace", text).map_err(|e| e.to_string())?;
    }
    Ok(text.to_string())
}

impl EdgeArgs {
    /// The router's token checks, if `--require-token` names atespaces; `keys` are the
    /// control plane's verification keys.
    fn token_gate(&self, keys: Option<SharedVerifier>) -> anyhow::Result<Option<TokenGate>> {
        if self.require_token.is_empty() {
            return Ok(None);
        }
        let keys = keys.context("--require-token: this process has no router")?;
        Ok(Some(TokenGate::new(self.require_token.clone(), keys)))
    }
}

/// Resumes actors for the router through the lifecycle in this process.
#[derive(Debug)]
pub struct LifecycleActivator(pub Lifecycle);

#[async_trait::async_trait]
impl Activator for LifecycleActivator {
    async fn activate(&self, actor: &ActorRef) -> Result<Option<Route>, ActivateError> {
        let a = self
            .0
            .resume(actor, false)
            .await
            .map_err(activation_error)?;
        self.0.route_of(&a).await.map_err(activation_error)
    }
}

/// The largest control API message the router sends or accepts: the control plane's own
/// limit (`ate-control`'s server), though resume calls are small.
const CONTROL_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Resumes actors for the router through the control API of any replica, moving to the
/// next when one is unreachable.
#[derive(Debug)]
pub struct ControlActivator {
    /// One lazy channel per replica, made by the process's [`Dialer`] (TLS to
    /// `control.ate` with the router's certificate, when the process has one).
    channels: Vec<tonic::transport::Channel>,
    next: std::sync::atomic::AtomicUsize,
    /// The token resumes present (`--token-file`), when the router has no certificate that
    /// the control plane accepts instead.
    bearer: Bearer,
}

impl ControlActivator {
    /// An activator over the replicas `controls`, reached through `dialer`. Nothing
    /// connects before the first resume.
    pub fn new(controls: &[String], dialer: &Dialer, token: Option<&str>) -> anyhow::Result<Self> {
        let channels = controls
            .iter()
            .map(|c| Ok(dialer.lazy(c, &PeerIdentity::Control)?))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if channels.is_empty() {
            anyhow::bail!("--control: name at least one control-plane address");
        }
        if token.is_none() && !dialer.is_tls() {
            anyhow::bail!(
                "--token-file: a router of its own needs a token (editor in the atespaces it \
                 serves) or a router certificate (--tls-dir) to resume actors"
            );
        }
        Ok(Self {
            channels,
            next: Default::default(),
            bearer: Bearer::new(token).context("--token-file")?,
        })
    }

    /// The control API client of replica `k`: every call goes through here, so what each
    /// request carries (limits, credentials) is set in one place.
    fn client(
        &self,
        k: usize,
    ) -> ControlClient<InterceptedService<tonic::transport::Channel, Bearer>> {
        ControlClient::with_interceptor(self.channels[k].clone(), self.bearer.clone())
            .max_decoding_message_size(CONTROL_MESSAGE_BYTES)
            .max_encoding_message_size(CONTROL_MESSAGE_BYTES)
    }

    /// The control plane's token verification keys and revoked tokens, reread from any
    /// replica every `refresh` for as long as the process runs (a rotation or a revocation
    /// reaches the router within that time; a retired key stops verifying as soon).
    pub async fn verification_keys(&self, refresh: Duration) -> SharedVerifier {
        let keys = SharedVerifier::default();
        let (shared, channels) = (keys.clone(), self.channels.clone());
        let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let mut first = Some(first_tx);
            let mut tick = tokio::time::interval(refresh.max(Duration::from_millis(100)));
            loop {
                tick.tick().await;
                match fetch_keys(&channels).await {
                    Ok(v) => {
                        shared.replace(v);
                        if let Some(tx) = first.take() {
                            let _ = tx.send(());
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot fetch token verification keys"),
                }
            }
        });
        // Serve with the keys loaded if a replica answers soon; otherwise requests that
        // need a token are refused until one does.
        let _ = tokio::time::timeout(Duration::from_secs(5), first_rx).await;
        keys
    }
}

async fn fetch_keys(channels: &[tonic::transport::Channel]) -> anyhow::Result<Verifier> {
    let mut last = None;
    for channel in channels {
        match AdminClient::new(channel.clone())
            .list_verification_keys(ListVerificationKeysRequest {})
            .await
        {
            Ok(reply) => {
                let reply = reply.into_inner();
                let keys = reply.keys.into_iter().map(|k| VerificationKey {
                    kid: k.kid,
                    public_key: k.public_key,
                });
                return Ok(Verifier::new(keys).with_revoked(reply.revoked_jtis));
            }
            Err(status) => last = Some(status),
        }
    }
    anyhow::bail!(
        "no control plane answered: {}",
        last.map(|s| s.message().to_string()).unwrap_or_default()
    )
}

#[async_trait::async_trait]
impl Activator for ControlActivator {
    async fn activate(&self, actor: &ActorRef) -> Result<Option<Route>, ActivateError> {
        use std::sync::atomic::Ordering;
        let start = self.next.load(Ordering::Relaxed);
        let mut last = None;
        for i in 0..self.channels.len() {
            let k = (start + i) % self.channels.len();
            let request = ResumeActorRequest {
                actor_ref: Some(ate_proto::convert::actor_ref(actor)),
                boot: false,
            };
            match self.client(k).resume_actor(request).await {
                Ok(reply) => {
                    self.next.store(k, Ordering::Relaxed);
                    return Ok(route_of_reply(&reply.into_inner()));
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

/// The route a resume's reply describes: the worker the actor runs on and its template's
/// route timeout. `None` if the reply names no worker (a reply from an older replica).
fn route_of_reply(reply: &ate_proto::ateapi::ResumeActorResponse) -> Option<Route> {
    let a = ate_proto::convert::actor_from_pb(reply.actor.as_ref()?);
    let p = a.worker.as_ref().filter(|p| !p.node_name.is_empty())?;
    Some(Route {
        actor: a.actor_ref(),
        node: p.node_name.clone(),
        worker: ate_seam::WorkerId::new(&p.namespace, &p.pool, &p.name),
        template: a.template.clone(),
        timeout_ms: reply.route_timeout_ms,
    })
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
        (_, tonic::Code::Unauthenticated | tonic::Code::PermissionDenied) => {
            ActivateError::Refused(message)
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
        keys: Option<SharedVerifier>,
    ) -> anyhow::Result<Self> {
        let token_gate = args.token_gate(keys)?;
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
            queue_total: args.queue_total,
            max_activations: args.max_activations,
            queue_wait: args.queue_wait.0,
            token_gate,
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
