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
