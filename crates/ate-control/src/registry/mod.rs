//! The node registry of a control-plane replica, for the split deployment. Node daemons
//! hold a `Register` stream to any replica; the replica keeps the node's liveness lease in
//! the store while heartbeats arrive and writes the node's assertions to the store as
//! [`NodeAssertion`] records, only those a node may make about itself (see `trust`). Every
//! replica mirrors those records into its own dataspace, so the fleet, the scheduler and
//! idle suspension see every node whichever replica it is connected to, and routers follow
//! them with `Watch`. A stream that ends retracts the node's assertions; a lease nobody
//! renews is found expired by the next replica that looks, which takes it over (so the
//! node, should it come back, learns it was declared lost) and deletes what the node left
//! behind.

mod mirror;
mod session;
mod trust;

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ate_dataspace::Dataspace;
use ate_model::{FieldSelector, NodeAssertion};
use ate_proto::atenode::{self as pb, registry_server};
use ate_seam::MAX_MESSAGE_BYTES;
use ate_seam::carry::{self, RawEvent};
use ate_store::{ListOptions, Store, StoreError};
use ate_tls::{PeerAuth, PeerIdentity};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// The store lease that stands for a node's liveness.
pub fn node_lease(node: &str) -> String {
    format!("node/{node}")
}

/// Shortest and longest liveness timeout a node may ask for.
pub const LIVENESS_BOUNDS: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(300));

/// How often a replica looks for nodes whose lease expired.
pub const REAP_EVERY: Duration = Duration::from_secs(1);

/// One replica's registry: the gRPC service and the mirror it feeds. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    dataspace: Dataspace,
    replica: String,
    /// Nodes whose stream this replica holds: the reaper leaves them to their session.
    local: Mutex<HashSet<String>>,
    stopping: watch::Sender<bool>,
    /// Whether the mirror has loaded the store's records once.
    synced: watch::Sender<bool>,
    /// Who may register and watch: anyone (plaintext), or by certificate.
    auth: PeerAuth,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("replica", &self.inner.replica)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// A registry over `store`, mirroring every node's assertions into `dataspace`, with
    /// the mirror and the reaper running until the handle is dropped. Open to every
    /// caller; see [`Self::start_with`].
    pub fn start(store: Arc<dyn Store>, dataspace: Dataspace) -> (Self, RegistryHandle) {
        Self::start_with(store, dataspace, PeerAuth::Open)
    }

    /// [`Self::start`], checking callers as `auth` says. With certificates, a node
    /// registers only under the name its certificate carries (another node's certificate
    /// cannot register, replace or fence it), and only control planes and routers may
    /// watch.
    pub fn start_with(
        store: Arc<dyn Store>,
        dataspace: Dataspace,
        auth: PeerAuth,
    ) -> (Self, RegistryHandle) {
        let replica = format!("replica-{}", ate_snapshots::new_snapshot_id());
        let registry = Self {
            inner: Arc::new(Inner {
                store,
                dataspace,
                replica,
                local: Mutex::new(HashSet::new()),
                stopping: watch::channel(false).0,
                synced: watch::channel(false).0,
                auth,
            }),
        };
        let task = tokio::spawn(mirror::run(registry.clone()));
        (registry, RegistryHandle(task))
    }

    /// The dataspace every live node's assertions are mirrored into.
    pub fn dataspace(&self) -> &Dataspace {
        &self.inner.dataspace
    }

    /// Waits until the mirror shows every node registered at the time of the call (or
    /// at least once, the store's view when it first listed). The fleet must not run before:
    /// it would take the nodes it does not see yet for lost.
    pub async fn synced(&self) {
        let mut rx = self.inner.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await.map(drop);
    }

    /// Ends every registration stream without retracting anything: the replica is going
    /// away, and its nodes carry on with another one.
    pub fn stop(&self) {
        self.inner.stopping.send_replace(true);
    }

    /// The gRPC service.
    pub fn service(&self) -> registry_server::RegistryServer<Self> {
        registry_server::RegistryServer::new(self.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    fn local(&self) -> MutexGuard<'_, HashSet<String>> {
        // Every mutation is one insert or remove.
        self.inner.local.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }
}

/// Keeps the mirror running; dropping it stops it.
#[derive(Debug)]
pub struct RegistryHandle(JoinHandle<()>);

impl Drop for RegistryHandle {
    fn drop(&mut self) {
        self.0.abort();
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl registry_server::Registry for Registry {
    type RegisterStream = BoxStream<pb::RegistryMessage>;
    type WatchStream = BoxStream<pb::WatchEvent>;

    async fn register(
        &self,
        request: Request<Streaming<pb::NodeMessage>>,
    ) -> Result<Response<Self::RegisterStream>, Status> {
        let peer = self
            .inner
            .auth
            .authorize(&request, "registry.register", |p| {
                matches!(p, PeerIdentity::Node(_))
            })?;
        // The name the node must register under, when certificates say who it is.
        let certified = match peer {
            Some(PeerIdentity::Node(name)) => Some(name),
            _ => None,
        };
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(session::run(self.clone(), inbound, tx, certified));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        self.inner.auth.authorize(&request, "registry.watch", |p| {
            matches!(p, PeerIdentity::Control | PeerIdentity::Router)
        })?;
        let types = request.into_inner().types;
        if types.is_empty() {
            return Err(Status::invalid_argument("types: name at least one type"));
        }
        if let Some(t) = types.iter().find(|t| !carry::is_carried(t)) {
            return Err(Status::invalid_argument(format!(
                "types: unknown assertion type {t:?} (known: {})",
                carry::NODE_TYPES.join(", ")
            )));
        }
        let types: Vec<&str> = types.iter().map(String::as_str).collect();
        let (mut events, follow) = carry::follow(&self.inner.dataspace, &types)
            .map_err(|e| Status::internal(e.to_string()))?;
        let (tx, rx) = mpsc::channel(256);
        let mut stopping = self.inner.stopping.subscribe();
        tokio::spawn(async move {
            let _follow = follow;
            let mut beat = tokio::time::interval(ate_seam::WATCH_HEARTBEAT);
            beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let event = tokio::select! {
                    e = events.recv() => match e {
                        Some(e) => Some(e),
                        None => return,
                    },
                    _ = beat.tick() => None,
                    _ = stopped(&mut stopping) => {
                        let _ = tx.send(Err(Status::unavailable("control plane shutting down"))).await;
                        return;
                    }
                };
                let event = match event {
                    None => pb::watch_event::Event::Heartbeat(pb::Done {}),
                    Some(RawEvent::Asserted(a)) => pb::watch_event::Event::Asserted(pb::Asserted {
                        r#type: a.type_tag,
                        id: a.id,
                        value_json: a.value_json,
                    }),
                    Some(RawEvent::Retracted { type_tag, id }) => {
                        pb::watch_event::Event::Retracted(pb::Retracted {
                            r#type: type_tag,
                            id,
                        })
                    }
                    Some(RawEvent::Synced) => pb::watch_event::Event::Synced(pb::Done {}),
                };
                if tx
                    .send(Ok(pb::WatchEvent { event: Some(event) }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Resolves once the replica is stopping.
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not held across an await.
    let _ = stopping.wait_for(|s| *s).await.map(drop);
}

/// Deletes the records of `node` that `which` picks.
async fn delete_assertions(
    store: &Arc<dyn Store>,
    node: &str,
    which: impl Fn(&NodeAssertion) -> bool,
) -> Result<usize, StoreError> {
    let opts = ListOptions::with_fields(FieldSelector::eq([("node", node)]));
    let mut deleted = 0;
    for a in store.list_all::<NodeAssertion>(&opts).await? {
        if !which(&a) {
            continue;
        }
        match store.delete::<NodeAssertion>(&a.key(), None).await {
            Ok(()) => deleted += 1,
            Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}
