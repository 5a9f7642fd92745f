//! [`RemoteExecutor`]: a node daemon across the network, driven through the same
//! [`NodeExecutor`] trait as a node in process.

use ate_model::ActorRef;
use ate_proto::atenode as pb;
use ate_proto::atenode::node_client::NodeClient;
use ate_tls::PeerIdentity;
use tokio::sync::mpsc;
use tonic::transport::Channel;

use super::MAX_MESSAGE_BYTES;
use super::invoke;
use super::wire::{
    actor_to_pb, checkpoint_from_pb, checkpoint_request_to_pb, error_of, evictable_from_pb,
    log_from_pb, restore_to_pb, run_to_pb, stop_to_pb,
};
use crate::{
    Body, Checkpoint, CheckpointRequest, Dialer, Evictable, InvokeError, LogStream, NodeExecutor,
    RestoreRequest, RunRequest, SeamError, StopRequest, WorkerId,
};

/// Log lines buffered between the node's stream and the caller.
const LOG_BUFFER: usize = 256;

/// A node daemon reached over gRPC (`atenode.Node`). Every failure comes back as the
/// [`SeamError`] the node raised; a connection that cannot be made or breaks is
/// [`SeamError::NodeUnavailable`] naming [`Self::node`]. Cheap to clone: clones share one
/// HTTP/2 connection.
#[derive(Debug, Clone)]
pub struct RemoteExecutor {
    node: String,
    client: NodeClient<Channel>,
}

impl RemoteExecutor {
    /// An executor over an existing channel; `node` names the node in errors.
    pub fn new(node: impl Into<String>, channel: Channel) -> Self {
        Self {
            node: node.into(),
            client: NodeClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        }
    }

    /// An executor for the node at `address` (`host:port` or `http://host:port`), named by
    /// its address until [`Self::named`]. Nothing connects until the first call, so a node
    /// that is down fails that call (`NodeUnavailable`), not this one; the connection is
    /// re-established as needed. Must be called within a tokio runtime; an address that is
    /// not a URI is `NodeUnavailable` at once.
    pub fn connect_lazy(address: &str) -> Result<Self, SeamError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(SeamError::Internal(
                "a remote executor needs a tokio runtime".into(),
            ));
        }
        // The one endpoint setup (connect timeout, HTTP/2 keepalives) every ate channel
        // shares, so a node that vanished mid-stream is noticed in seconds.
        let channel = crate::endpoint(address)?.connect_lazy();
        Ok(Self::new(address, channel))
    }

    /// An executor for node `node` at `address`, through `dialer`: with component TLS the
    /// node must present the certificate of `node` (`NODE.node.ate`), so an address that
    /// now belongs to another node is refused rather than driven. Lazy like
    /// [`Self::connect_lazy`].
    pub fn dial_lazy(dialer: &Dialer, address: &str, node: &str) -> Result<Self, SeamError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(SeamError::Internal(
                "a remote executor needs a tokio runtime".into(),
            ));
        }
        let channel = dialer.lazy(address, &PeerIdentity::Node(node.to_string()))?;
        Ok(Self::new(node, channel))
    }

    /// The same executor, naming the node `node` in errors (its registered name rather
    /// than its address).
    pub fn named(mut self, node: impl Into<String>) -> Self {
        self.node = node.into();
        self
    }

    /// The node's name, as errors give it.
    pub fn node(&self) -> &str {
        &self.node
    }

    fn failed(&self, status: tonic::Status) -> SeamError {
        let e = error_of(&status, &self.node);
        if matches!(e, SeamError::NodeUnavailable { .. }) {
            tracing::debug!(node = %self.node, status = %status, "node unreachable");
        }
        e
    }
}

#[async_trait::async_trait]
impl NodeExecutor for RemoteExecutor {
    async fn run(&self, req: RunRequest) -> Result<(), SeamError> {
        let msg = run_to_pb(&req)?;
        self.client
            .clone()
            .run(msg)
            .await
            .map_err(|s| self.failed(s))?;
        Ok(())
    }

    async fn restore(&self, req: RestoreRequest) -> Result<(), SeamError> {
        let msg = restore_to_pb(&req)?;
        self.client
            .clone()
            .restore(msg)
            .await
            .map_err(|s| self.failed(s))?;
        Ok(())
    }

    async fn checkpoint(&self, req: CheckpointRequest) -> Result<Checkpoint, SeamError> {
        let msg = checkpoint_request_to_pb(&req)?;
        let reply = self
            .client
            .clone()
            .checkpoint(msg)
            .await
            .map_err(|s| self.failed(s))?;
        checkpoint_from_pb(reply.into_inner())
    }

    async fn evictable(&self) -> Result<Vec<Evictable>, SeamError> {
        let reply = self
            .client
            .clone()
            .evictable(pb::EvictableRequest {})
            .await
            .map_err(|s| self.failed(s))?;
        evictable_from_pb(reply.into_inner())
    }

    async fn stop(&self, req: StopRequest) -> Result<(), SeamError> {
        self.client
            .clone()
            .stop(stop_to_pb(&req))
            .await
            .map_err(|s| self.failed(s))?;
        Ok(())
    }

    async fn invoke(
        &self,
        worker: &WorkerId,
        actor: &ActorRef,
        request: http::Request<Body>,
    ) -> Result<http::Response<Body>, InvokeError> {
        invoke::call(self.client.clone(), &self.node, worker, actor, request).await
    }

    async fn logs(
        &self,
        actor: &ActorRef,
        actor_uid: Option<&str>,
        follow: bool,
    ) -> Result<LogStream, SeamError> {
        let req = pb::LogsRequest {
            actor: Some(actor_to_pb(actor)),
            follow,
            actor_uid: actor_uid.unwrap_or_default().to_string(),
        };
        let mut lines = self
            .client
            .clone()
            .logs(req)
            .await
            .map_err(|s| self.failed(s))?
            .into_inner();
        let (tx, rx) = mpsc::channel(LOG_BUFFER);
        let (node, actor) = (self.node.clone(), actor.clone());
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    biased;
                    // The caller stopped listening: end the node's stream too.
                    () = tx.closed() => return,
                    next = lines.message() => next,
                };
                match next {
                    Ok(Some(line)) => {
                        if tx.send(log_from_pb(line)).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(status) => {
                        tracing::warn!(node = %node, actor = %actor, status = %status, "log stream broke");
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }
}
