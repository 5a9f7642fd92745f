//! `Invoke`, both ends: one HTTP exchange as a stream of `HttpFrame`s each way.
//!
//! Client to node: `head` (with `end_of_body` when the request has no body), then, only
//! once the node answers `admitted`, the body as `data` frames and `end`. Node to client:
//! `admitted` when the executor first reads the body; then either `head`, the response body
//! as `data` frames and `end` (or `failed` part way), or `refused` (the request comes back)
//! or `failed` (it does not). A request the node refuses after it admitted it (read, but
//! never delivered to the guest) is followed by its body, as the executor handed it back,
//! as `data` frames and `end`: the client rebuilds it from its own head and that body.
//!
//! Bodies are streamed frame by frame and never buffered whole, so server-sent events flow
//! as the guest writes them. Both sides stop as soon as the other end goes away.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use ate_model::ActorRef;
use ate_proto::atenode as pb;
use ate_proto::atenode::http_frame::Frame;
use ate_proto::atenode::node_client::NodeClient;
use bytes::Bytes;
use futures::Stream;
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Status, Streaming};

use super::wire::{
    actor_from_pb, actor_to_pb, error_of, failure, from_failure, headers_from_pb, headers_to_pb,
    status_of, worker_from_pb, worker_to_pb,
};
use crate::{Body, BodyError, InvokeError, NodeExecutor, SeamError, WorkerId, empty_body};

/// The largest `data` frame either side sends; bigger chunks are split.
const MAX_DATA_FRAME: usize = 1 << 20;

/// Frames buffered per direction: enough to keep a stream moving, little enough that a
/// slow reader holds back the writer.
const FRAMES: usize = 16;

fn frame(f: Frame) -> pb::HttpFrame {
    pb::HttpFrame {
        frame: Some(f),
        end_of_body: false,
    }
}

/// Sends `body` as `data` frames (none above [`MAX_DATA_FRAME`], one chunk per frame
/// otherwise), then `end`; a body error sends `failed` with the error `on_error` makes of
/// it. Returns early, dropping the body, once the receiving side has gone.
async fn send_body(
    mut body: Body,
    tx: &mpsc::Sender<pb::HttpFrame>,
    on_error: impl Fn(BodyError) -> SeamError,
) {
    loop {
        let next = tokio::select! {
            biased;
            () = tx.closed() => return,
            next = body.frame() => next,
        };
        match next {
            Some(Ok(f)) => {
                // Trailers have no place on the wire; data is all there is.
                let Ok(mut data) = f.into_data() else {
                    continue;
                };
                while !data.is_empty() {
                    let chunk = data.split_to(data.len().min(MAX_DATA_FRAME));
                    if tx.send(frame(Frame::Data(chunk.to_vec()))).await.is_err() {
                        return;
                    }
                }
            }
            Some(Err(e)) => {
                let _ = tx.send(frame(Frame::Failed(failure(&on_error(e))))).await;
                return;
            }
            None => {
                let _ = tx.send(frame(Frame::End(pb::Done {}))).await;
                return;
            }
        }
    }
}

/// A body error as the seam error it carries, if it carries one.
fn seam_error(e: BodyError, otherwise: impl FnOnce(BodyError) -> SeamError) -> SeamError {
    match e.downcast::<SeamError>() {
        Ok(e) => *e,
        Err(e) => otherwise(e),
    }
}

fn body_error(e: SeamError) -> BodyError {
    Box::new(e)
}

/// A body arriving as `data` frames on a gRPC stream, ending at `end`. `failed`, a
/// transport error or the stream ending early is a body error.
struct FrameBody {
    frames: Streaming<pb::HttpFrame>,
    node: String,
    done: bool,
}

impl http_body::Body for FrameBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BodyError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let next = ready!(Pin::new(&mut self.frames).poll_next(cx));
        let step = body_step(next, |status| match status {
            Some(status) => error_of(status, &self.node),
            None => SeamError::Internal("the exchange ended before the body did".into()),
        });
        body_frame(&mut self.done, step)
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

/// Whether a request body is known to be empty without polling it.
fn known_empty(body: &Body) -> bool {
    body.is_end_stream() || body.size_hint().exact() == Some(0)
}

/// A delivery that failed before the node answered. The request comes back if the node
/// never admitted it (`body` is still ours, unread) and the failure is the node or the
/// connection going away, so the caller can deliver it elsewhere.
fn undelivered(error: SeamError, parts: http::request::Parts, body: Option<Body>) -> InvokeError {
    match body {
        Some(body) if matches!(error, SeamError::NodeUnavailable { .. }) => {
            InvokeError::refused(error, http::Request::from_parts(parts, body))
        }
        _ => error.into(),
    }
}

/// The client end: delivers `request` to the node behind `client`.
pub(crate) async fn call(
    mut client: NodeClient<Channel>,
    node: &str,
    worker: &WorkerId,
    actor: &ActorRef,
    request: http::Request<Body>,
) -> Result<http::Response<Body>, InvokeError> {
    let (parts, body) = request.into_parts();
    let end_of_body = known_empty(&body);
    let head = pb::HttpHead {
        worker: Some(worker_to_pb(worker)),
        actor: Some(actor_to_pb(actor)),
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        status: 0,
        headers: headers_to_pb(&parts.headers),
    };
    let (tx, rx) = mpsc::channel(FRAMES);
    // The channel is new: the head fits.
    let _ = tx.try_send(pb::HttpFrame {
        frame: Some(Frame::Head(head)),
        end_of_body,
    });
    // Without a body the request stream ends after the head.
    let mut tx = (!end_of_body).then_some(tx);
    let mut body = Some(body);
    let mut frames = match client.invoke(ReceiverStream::new(rx)).await {
        Ok(r) => r.into_inner(),
        Err(status) => return Err(undelivered(error_of(&status, node), parts, body)),
    };
    loop {
        let next = match frames.message().await {
            Ok(Some(f)) => f.frame,
            Ok(None) => {
                let error = SeamError::NodeUnavailable { node: node.into() };
                return Err(undelivered(error, parts, body));
            }
            Err(status) => return Err(undelivered(error_of(&status, node), parts, body)),
        };
        match next {
            Some(Frame::Admitted(_)) => {
                // Only a request with a body is admitted; a repeated `admitted` is ignored.
                if let Some(tx) = tx.take()
                    && let Some(b) = body.take()
                {
                    tokio::spawn(async move {
                        send_body(b, &tx, |e| {
                            seam_error(e, |e| {
                                SeamError::Internal(format!("request body failed: {e}"))
                            })
                        })
                        .await;
                    });
                }
            }
            Some(Frame::Head(h)) => {
                // The node answered without reading the body (if it had not admitted it):
                // it is not sent.
                drop(body);
                let status = u16::try_from(h.status)
                    .ok()
                    .and_then(|s| http::StatusCode::from_u16(s).ok())
                    .ok_or_else(|| {
                        SeamError::Internal(format!("node sent invalid status {}", h.status))
                    })?;
                let mut response = http::Response::new(
                    FrameBody {
                        frames,
                        node: node.into(),
                        done: false,
                    }
                    .boxed(),
                );
                *response.status_mut() = status;
                headers_from_pb(h.headers, response.headers_mut())?;
                return Ok(response);
            }
            Some(Frame::Refused(f)) => {
                // Unread, it is still ours; read (admitted), the node sends it back.
                let back = body.unwrap_or_else(|| {
                    FrameBody {
                        frames,
                        node: node.into(),
                        done: false,
                    }
                    .boxed()
                });
                let request = http::Request::from_parts(parts, back);
                return Err(InvokeError::refused(from_failure(&f), request));
            }
            Some(Frame::Failed(f)) => return Err(from_failure(&f).into()),
            _ => {
                let e = SeamError::Internal("node sent a body frame before the head".into());
                return Err(e.into());
            }
        }
    }
}

/// The node's view of the client's request body: its first poll admits the request
/// (tells the client to send the body), then it yields the client's `data` frames.
struct InboundBody {
    frames: Streaming<pb::HttpFrame>,
    /// Weak, so a body the executor keeps does not hold the response stream open.
    admit: Option<mpsc::WeakSender<pb::HttpFrame>>,
    admitted: Arc<AtomicBool>,
    done: bool,
}

impl http_body::Body for InboundBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BodyError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(admit) = self.admit.take() {
            self.admitted.store(true, Ordering::Release);
            // Nothing is sent before `admitted` unless the executor answered before
            // reading the body, which the client takes as not wanting it.
            let sent = admit
                .upgrade()
                .is_some_and(|tx| tx.try_send(frame(Frame::Admitted(pb::Done {}))).is_ok());
            if !sent {
                self.done = true;
                let e = SeamError::Internal("the caller left before sending the body".into());
                return Poll::Ready(Some(Err(body_error(e))));
            }
        }
        let next = ready!(Pin::new(&mut self.frames).poll_next(cx));
        let step = body_step(next, |status| match status {
            Some(status) => SeamError::Internal(format!("the caller went away: {status}")),
            None => SeamError::Internal("the caller ended the request before its body".into()),
        });
        body_frame(&mut self.done, step)
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

/// The response frames of one exchange, as tonic streams them.
pub(crate) type ResponseFrames =
    Pin<Box<dyn Stream<Item = Result<pb::HttpFrame, Status>> + Send + 'static>>;

/// The node end: reads the head, hands the request to `executor` and streams the outcome.
/// A first frame that is not a valid head fails the call with `InvalidArgument`, naming
/// the field.
pub(crate) async fn serve(
    executor: Arc<dyn NodeExecutor>,
    mut inbound: Streaming<pb::HttpFrame>,
) -> Result<ResponseFrames, Status> {
    let (head, end_of_body) = match inbound.message().await? {
        Some(pb::HttpFrame {
            frame: Some(Frame::Head(head)),
            end_of_body,
        }) => (head, end_of_body),
        _ => {
            return Err(status_of(&SeamError::InvalidWorkload {
                field: "head".into(),
                reason: "the first frame must be the request head".into(),
            }));
        }
    };
    let (worker, actor, parts) = request_head(head).map_err(|e| status_of(&e))?;
    let (tx, rx) = mpsc::channel(FRAMES);
    let admitted = Arc::new(AtomicBool::new(false));
    let body = if end_of_body {
        empty_body()
    } else {
        InboundBody {
            frames: inbound,
            admit: Some(tx.downgrade()),
            admitted: admitted.clone(),
            done: false,
        }
        .boxed()
    };
    let request = http::Request::from_parts(parts, body);
    tokio::spawn(exchange(executor, worker, actor, request, tx, admitted));
    Ok(Box::pin(tokio_stream::StreamExt::map(
        ReceiverStream::new(rx),
        Ok,
    )))
}

fn request_head(
    head: pb::HttpHead,
) -> Result<(WorkerId, ActorRef, http::request::Parts), SeamError> {
    let worker = worker_from_pb(head.worker, "head.worker")?;
    let actor = actor_from_pb(head.actor, "head.actor")?;
    let invalid = |field: &str, reason: String| SeamError::InvalidWorkload {
        field: field.into(),
        reason,
    };
    if head.method.is_empty() {
        return Err(invalid("head.method", "missing".into()));
    }
    let method = http::Method::from_bytes(head.method.as_bytes())
        .map_err(|e| invalid("head.method", format!("{:?}: {e}", head.method)))?;
    let uri: http::Uri = head
        .uri
        .parse()
        .map_err(|e| invalid("head.uri", format!("{:?}: {e}", head.uri)))?;
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    headers_from_pb(head.headers, &mut parts.headers)?;
    Ok((worker, actor, parts))
}

/// Runs one delivery on the node and streams its outcome to the client. Stops (dropping
/// the executor's call or response body) as soon as the client goes away.
async fn exchange(
    executor: Arc<dyn NodeExecutor>,
    worker: WorkerId,
    actor: ActorRef,
    request: http::Request<Body>,
    tx: mpsc::Sender<pb::HttpFrame>,
    admitted: Arc<AtomicBool>,
) {
    let result = tokio::select! {
        r = executor.invoke(&worker, &actor, request) => r,
        () = tx.closed() => {
            tracing::debug!(worker = %worker, actor = %actor, "caller left before the answer");
            return;
        }
    };
    let body_failed =
        |e: BodyError| seam_error(e, |e| SeamError::unavailable(&actor, e.to_string()));
    match result {
        Ok(response) => {
            let (parts, body) = response.into_parts();
            let head = pb::HttpHead {
                status: parts.status.as_u16().into(),
                headers: headers_to_pb(&parts.headers),
                ..Default::default()
            };
            if tx.send(frame(Frame::Head(head))).await.is_ok() {
                send_body(body, &tx, body_failed).await;
            }
        }
        Err(InvokeError {
            error,
            request: Some(request),
        }) => {
            tracing::debug!(worker = %worker, actor = %actor, error = %error, "request refused");
            let sent = tx
                .send(frame(Frame::Refused(failure(&error))))
                .await
                .is_ok();
            if sent && admitted.load(Ordering::Acquire) {
                // The client gave the body away when the request was admitted: it gets it
                // back as the executor returned it.
                send_body(request.into_body(), &tx, body_failed).await;
            }
        }
        Err(InvokeError {
            error,
            request: None,
        }) => {
            tracing::debug!(worker = %worker, actor = %actor, error = %error, "request failed");
            let _ = tx.send(frame(Frame::Failed(failure(&error)))).await;
        }
    }
}

/// What the next frame of a body stream means: more data (`Some`), its end (`None`), or why
/// it broke; `broken` says why the stream itself failed (a status, or its end mid-body).
fn body_step(
    next: Option<Result<pb::HttpFrame, Status>>,
    broken: impl FnOnce(Option<&Status>) -> SeamError,
) -> Result<Option<Bytes>, SeamError> {
    match next {
        Some(Ok(pb::HttpFrame {
            frame: Some(Frame::Data(d)),
            ..
        })) => Ok(Some(Bytes::from(d))),
        Some(Ok(pb::HttpFrame {
            frame: Some(Frame::End(_)),
            ..
        })) => Ok(None),
        Some(Ok(pb::HttpFrame {
            frame: Some(Frame::Failed(f)),
            ..
        })) => Err(from_failure(&f)),
        Some(Ok(_)) => Err(SeamError::Internal("unexpected frame inside a body".into())),
        Some(Err(status)) => Err(broken(Some(&status))),
        None => Err(broken(None)),
    }
}

/// A body frame for `poll_frame` from a [`body_step`]; anything but data ends the body.
fn body_frame(
    done: &mut bool,
    step: Result<Option<Bytes>, SeamError>,
) -> Poll<Option<Result<http_body::Frame<Bytes>, BodyError>>> {
    match step {
        Ok(Some(data)) => Poll::Ready(Some(Ok(http_body::Frame::data(data)))),
        Ok(None) => {
            *done = true;
            Poll::Ready(None)
        }
        Err(e) => {
            *done = true;
            Poll::Ready(Some(Err(body_error(e))))
        }
    }
}
