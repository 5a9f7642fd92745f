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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use ate_model::ActorRef;
    use tokio::sync::mpsc;
    use tokio_stream::wrappers::TcpListenerStream;

    use super::*;
    use crate::{
        Body, Checkpoint, CheckpointRequest, Evictable, InvokeError, LogLine, LogStream,
        RemoteExecutor, RestoreRequest, RunRequest, StopRequest, WorkerId,
    };

    /// A node that only has logs: every follow gets one line, and the node keeps the
    /// sending end, as a node's log book does.
    #[derive(Debug, Default)]
    struct Followed {
        senders: Mutex<Vec<mpsc::Sender<LogLine>>>,
    }

    fn unused() -> SeamError {
        SeamError::Internal("not in this test".into())
    }

    #[async_trait::async_trait]
    impl NodeExecutor for Followed {
        async fn run(&self, _: RunRequest) -> Result<(), SeamError> {
            Err(unused())
        }
        async fn restore(&self, _: RestoreRequest) -> Result<(), SeamError> {
            Err(unused())
        }
        async fn checkpoint(&self, _: CheckpointRequest) -> Result<Checkpoint, SeamError> {
            Err(unused())
        }
        async fn stop(&self, _: StopRequest) -> Result<(), SeamError> {
            Err(unused())
        }
        async fn invoke(
            &self,
            _: &WorkerId,
            _: &ActorRef,
            request: http::Request<Body>,
        ) -> Result<http::Response<Body>, InvokeError> {
            Err(InvokeError::refused(unused(), request))
        }
        async fn evictable(&self) -> Result<Vec<Evictable>, SeamError> {
            Err(unused())
        }
        async fn logs(
            &self,
            _: &ActorRef,
            _: Option<&str>,
            _: bool,
        ) -> Result<LogStream, SeamError> {
            let (tx, rx) = mpsc::channel(8);
            let _ = tx.try_send(LogLine {
                time_ms: 1,
                stream: "stdout".into(),
                text: "hello".into(),
            });
            self.senders.lock().unwrap().push(tx);
            Ok(rx)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_follow_the_caller_leaves_is_dropped_on_the_node() {
        let node = Arc::new(Followed::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let service = node_service(node.clone() as Arc<dyn NodeExecutor>);
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        let remote = RemoteExecutor::connect_lazy(&address).unwrap();
        let actor = ActorRef::new("team-a", "x");

        let mut follow = remote.logs(&actor, None, true).await.unwrap();
        assert_eq!(follow.recv().await.unwrap().text, "hello");
        let sender = node.senders.lock().unwrap()[0].clone();
        assert!(
            !sender.is_closed(),
            "the node follows while the caller listens"
        );

        // The caller leaves with no new line written: the node's receiver goes all the same.
        drop(follow);
        tokio::time::timeout(Duration::from_secs(5), sender.closed())
            .await
            .expect("the node-side receiver is dropped once the caller leaves");
        server.abort();
    }
}
