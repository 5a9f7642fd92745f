//! The router as a server: HTTP/1.1 and HTTP/2 (cleartext, prior knowledge) on one port.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ate_seam::{BodyError, NodeDirectory};
use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::activate::{Activations, Activator, Limits};
use crate::gate::TokenGate;
use crate::limits::{MAX_REQUEST_BODY_BYTES, bound_heads};
use crate::names::{ActorNames, DEFAULT_DOMAIN};
use crate::proxy::Proxy;
use crate::routes::RouteTable;

/// How the router behaves.
/// Default for [`RouterConfig::max_activations`]: far more actors than a node has workers
/// starting at one moment, yet a bounded number of store writes for a burst of names.
pub const DEFAULT_MAX_ACTIVATIONS: usize = 1024;

#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// The domain actor hosts live under (`<actor>.<atespace>.actors.<domain>`).
    pub domain: String,
    /// Most requests that may wait for one actor to start; more get 503.
    pub queue_len: usize,
    /// Most requests that may wait over all actors (for an activation or a free worker);
    /// more get 503.
    pub queue_total: usize,
    /// Most actors starting at once (activations under way, parked ones included); a
    /// request that would start one more gets 503.
    pub max_activations: usize,
    /// Longest a request waits for its actor to start: then it gets 503 with
    /// `Retry-After` if no worker freed up for it, else 504.
    pub queue_wait: Duration,
    /// How long open connections may finish their requests at shutdown.
    pub drain_timeout: Duration,
    /// Largest request body forwarded to an actor (see [`MAX_REQUEST_BODY_BYTES`]).
    pub max_request_body: u64,
    /// Atespaces whose actor traffic needs a bearer token; `None` lets every request in.
    pub token_gate: Option<TokenGate>,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            domain: DEFAULT_DOMAIN.into(),
            queue_len: 1024,
            queue_total: 4096,
            max_activations: DEFAULT_MAX_ACTIVATIONS,
            queue_wait: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(10),
            max_request_body: MAX_REQUEST_BODY_BYTES,
            token_gate: None,
        }
    }
}

/// Why the router could not start.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("router: cannot follow routes: {0}")]
    Routes(#[from] ate_dataspace::DataspaceError),
    #[error("router: {0}")]
    Io(#[from] std::io::Error),
}

/// The HTTP router: forwards requests for running actors from its route table and
/// resumes stopped ones on demand.
#[derive(Debug, Clone)]
pub struct Router {
    proxy: Arc<Proxy>,
    drain_timeout: Duration,
    _follower: Arc<AbortOnDrop>,
}

#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Router {
    /// A router over the nodes of `nodes` (their route assertions and executors), resuming
    /// actors through `activator`. Needs a tokio runtime.
    pub fn new(
        config: RouterConfig,
        nodes: Arc<dyn NodeDirectory>,
        activator: Arc<dyn Activator>,
    ) -> Result<Self, RouterError> {
        let (routes, follower) = RouteTable::follow(nodes.dataspace())?;
        let limits = Limits {
            queue_len: config.queue_len.max(1),
            queue_total: config.queue_total.max(1),
            activations: config.max_activations.max(1),
            wait: config.queue_wait,
        };
        let proxy = Proxy {
            names: ActorNames::new(&config.domain),
            activations: Activations::new(activator, routes.clone(), limits),
            routes,
            nodes,
            wait: config.queue_wait,
            max_body: config.max_request_body,
            gate: config.token_gate,
        };
        Ok(Self {
            proxy: Arc::new(proxy),
            drain_timeout: config.drain_timeout,
            _follower: Arc::new(AbortOnDrop(follower)),
        })
    }

    /// Running actors the router knows of.
    pub fn routes(&self) -> usize {
        self.proxy.routes.len()
    }

    /// Requests waiting for an actor to start.
    pub fn queued(&self) -> usize {
        self.proxy.activations.queued()
    }

    /// Serves on `listener` until `shutdown` resolves, then lets open requests finish (up
    /// to the drain timeout).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), RouterError> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        bound_heads(&mut builder);
        let graceful = GracefulShutdown::new();
        // Connections still open after the drain timeout are cut: a stream that never
        // ends must not hold the process (its guest stops when its client is gone).
        let (cut, cut_rx) = tokio::sync::watch::channel(false);
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors and the like: pause rather than spin.
                        tracing::warn!(error = %e, "router cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let proxy = self.proxy.clone();
            let client = peer.ip();
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let proxy = proxy.clone();
                async move {
                    let req = req.map(|b| b.map_err(|e| Box::new(e) as BodyError).boxed());
                    Ok::<_, std::convert::Infallible>(proxy.handle(req, client).await)
                }
            });
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            let conn = graceful.watch(conn);
            let mut cut_rx = cut_rx.clone();
            tokio::spawn(async move {
                tokio::select! {
                    r = conn => if let Err(e) = r {
                        tracing::debug!(client = %peer, error = %e, "router connection ended");
                    },
                    _ = cut_rx.wait_for(|c| *c) => {
                        tracing::debug!(client = %peer, "router connection cut at shutdown");
                    }
                }
            });
        }
        drop(listener);
        if tokio::time::timeout(self.drain_timeout, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("router connections still open after the drain timeout; closing them");
        }
        let _ = cut.send(true);
        Ok(())
    }

    /// Binds `addr` and serves in the background.
    pub async fn start(self, addr: SocketAddr) -> Result<RouterHandle, RouterError> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            if let Err(e) = self
                .serve(listener, async {
                    let _ = rx.await;
                })
                .await
            {
                tracing::warn!(error = %e, "router stopped");
            }
        });
        Ok(RouterHandle {
            addr: local,
            stop: Some(tx),
            task,
        })
    }
}

/// A router serving in the background; dropping it stops it at once, [`Self::shutdown`]
/// lets open requests finish.
#[derive(Debug)]
pub struct RouterHandle {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RouterHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for RouterHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}
