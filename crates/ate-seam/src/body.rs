//! HTTP bodies that stream across the seam without being buffered whole.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};

/// Why a body stream failed part way.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// A streaming HTTP body, the same type on both sides of the seam and in the router.
pub type Body = BoxBody<Bytes, BodyError>;

/// A body holding `bytes`.
pub fn full_body(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|e| match e {}).boxed()
}

/// A body with nothing in it.
pub fn empty_body() -> Body {
    Empty::new().map_err(|e| match e {}).boxed()
}

/// The sending half of [`channel_body`].
pub type BodySender = tokio::sync::mpsc::Sender<Result<Bytes, BodyError>>;

/// A body fed chunk by chunk from elsewhere (a guest writing its response on another
/// thread). It ends when the sender is dropped; an `Err` sent aborts it.
pub fn channel_body(capacity: usize) -> (BodySender, Body) {
    let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
    (tx, ChannelBody { rx }.boxed())
}

struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, BodyError>>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BodyError>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|r| r.map(http_body::Frame::data)))
    }
}
