//! [`node_service`]: any [`NodeExecutor`] (in practice the node daemon's own) served as
//! `atenode.Node`, so a control plane or router elsewhere drives it through a
//! [`super::RemoteExecutor`].

use std::pin::Pin;
use std::sync::Arc;

use ate_proto::atenode as pb;
use ate_proto::atenode::node_server::{Node, NodeServer};
use ate_tls::{PeerAuth, PeerIdentity};
use futures::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::MAX_MESSAGE_BYTES;
use super::invoke::{self, ResponseFrames};
use super::wire::{
    actor_from_pb, checkpoint_request_from_pb, checkpoint_to_pb, evictable_to_pb, log_to_pb,
    restore_from_pb, run_from_pb, status_of, stop_from_pb, uid_from_pb,
};
use crate::{NodeExecutor, SeamError};

/// The `atenode.Node` service over `executor`, open to every caller (plaintext, or a
/// process without component TLS). Every failure is a status whose code is the error's
/// kind (`ate_proto::status::code`) and which carries the [`SeamError`] whole, so the
/// client reconstructs exactly what the executor returned.
pub fn node_service(executor: Arc<dyn NodeExecutor>) -> NodeServer<NodeGrpc> {
    node_service_with(executor, PeerAuth::Open)
}

/// [`node_service`], checking callers as `auth` says: with certificates, only the control
/// plane may place, move or stop actors and read their logs, and routers may in addition
/// deliver requests (`Invoke`); everyone else is refused before the executor is reached.
pub fn node_service_with(executor: Arc<dyn NodeExecutor>, auth: PeerAuth) -> NodeServer<NodeGrpc> {
    NodeServer::new(NodeGrpc { executor, auth })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// The gRPC face of a [`NodeExecutor`]; built by [`node_service`].
#[derive(Debug, Clone)]
pub struct NodeGrpc {
    executor: Arc<dyn NodeExecutor>,
    auth: PeerAuth,
}

impl NodeGrpc {
    /// Lets the control plane through.
    fn control_only<T>(&self, request: &Request<T>, call: &str) -> Result<(), Status> {
        self.auth
            .authorize(request, call, |p| *p == PeerIdentity::Control)
            .map(drop)
    }
}

fn fail(e: SeamError) -> Status {
    status_of(&e)
}

/// A node's log lines, as tonic streams them.
pub type LogLines = Pin<Box<dyn Stream<Item = Result<pb::LogLine, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Node for NodeGrpc {
    async fn run(&self, request: Request<pb::RunRequest>) -> Result<Response<pb::Done>, Status> {
        self.control_only(&request, "node.run")?;
        let req = run_from_pb(request.into_inner()).map_err(fail)?;
        self.executor.run(req).await.map_err(fail)?;
        Ok(Response::new(pb::Done {}))
    }

    async fn restore(
        &self,
        request: Request<pb::RestoreRequest>,
    ) -> Result<Response<pb::Done>, Status> {
        self.control_only(&request, "node.restore")?;
        let req = restore_from_pb(request.into_inner()).map_err(fail)?;
        self.executor.restore(req).await.map_err(fail)?;
        Ok(Response::new(pb::Done {}))
    }

    async fn checkpoint(
        &self,
        request: Request<pb::CheckpointRequest>,
    ) -> Result<Response<pb::CheckpointReply>, Status> {
        self.control_only(&request, "node.checkpoint")?;
        let req = checkpoint_request_from_pb(request.into_inner()).map_err(fail)?;
        let taken = self.executor.checkpoint(req).await.map_err(fail)?;
        Ok(Response::new(checkpoint_to_pb(&taken)))
    }

    async fn stop(&self, request: Request<pb::StopRequest>) -> Result<Response<pb::Done>, Status> {
        self.control_only(&request, "node.stop")?;
        let req = stop_from_pb(request.into_inner()).map_err(fail)?;
        self.executor.stop(req).await.map_err(fail)?;
        Ok(Response::new(pb::Done {}))
    }

    type InvokeStream = ResponseFrames;

    async fn invoke(
        &self,
        request: Request<Streaming<pb::HttpFrame>>,
    ) -> Result<Response<ResponseFrames>, Status> {
        self.auth.authorize(&request, "node.invoke", |p| {
            matches!(p, PeerIdentity::Control | PeerIdentity::Router)
        })?;
        let frames = invoke::serve(self.executor.clone(), request.into_inner()).await?;
        Ok(Response::new(frames))
    }

    async fn evictable(
        &self,
        request: Request<pb::EvictableRequest>,
    ) -> Result<Response<pb::EvictableReply>, Status> {
        self.control_only(&request, "node.evictable")?;
        let list = self.executor.evictable().await.map_err(fail)?;
        Ok(Response::new(evictable_to_pb(&list)))
    }

    type LogsStream = LogLines;

    async fn logs(&self, request: Request<pb::LogsRequest>) -> Result<Response<LogLines>, Status> {
        self.control_only(&request, "node.logs")?;
        let req = request.into_inner();
        let actor = actor_from_pb(req.actor, "actor").map_err(fail)?;
        let uid = uid_from_pb(req.actor_uid, "actor_uid").map_err(fail)?;
        let lines = self
            .executor
            .logs(&actor, uid.as_deref(), req.follow)
            .await
            .map_err(fail)?;
        let lines = tokio_stream::StreamExt::map(ReceiverStream::new(lines), |l| Ok(log_to_pb(l)));
        Ok(Response::new(Box::pin(lines)))
    }
}
