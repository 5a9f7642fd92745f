//! Size limits on what clients send the router and the admin port, so that no request can
//! make them, or the nodes behind them (which take a request body whole), hold unbounded
//! memory. A request over a limit gets the status HTTP has for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ate_seam::{Body, BodyError};
use http::header::CONTENT_LENGTH;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;

use crate::proxy::answer;

/// Largest request body the router forwards unless configured otherwise (64 MiB, see
/// `RouterConfig::max_request_body`). A larger declared body (`Content-Length`) gets 413
/// Payload Too Large before anything reaches the actor; a streamed one (chunked, or
/// HTTP/2 without a length) is cut where it crosses the limit, and gets 413 too.
pub const MAX_REQUEST_BODY_BYTES: u64 = 64 << 20;

/// Longest request path and query the router accepts (8 KiB); a longer one gets 414 URI
/// Too Long.
pub const MAX_URI_BYTES: usize = 8 << 10;

/// Most header fields in one request (100); more get 431 Request Header Fields Too Large.
pub const MAX_HEADERS: usize = 100;

/// Largest header section of one request (64 KiB), each field counted as on the HTTP/1.1
/// wire (name, `: `, value, CRLF); more gets 431. The HTTP/1 read buffer and the HTTP/2
/// header list (`SETTINGS_MAX_HEADER_LIST_SIZE`) are bounded by it too, so a bigger head is
/// refused before it is even parsed whole.
pub const MAX_HEADER_BYTES: usize = 64 << 10;

/// Longest a client may take to send a request's head (10 s); a connection that has not
/// finished its headers by then is closed, so clients trickling bytes cannot hold
/// connections open.
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Applies the header limits to the connections a server builder serves.
pub(crate) fn bound_heads(builder: &mut auto::Builder<TokioExecutor>) {
    builder
        .http1()
        .max_headers(MAX_HEADERS)
        .max_buf_size(MAX_HEADER_BYTES)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .max_header_list_size(u32::try_from(MAX_HEADER_BYTES).unwrap_or(u32::MAX));
}

/// The refusal of a request whose path or headers are over a limit.
pub(crate) fn oversized_head<B>(req: &Request<B>) -> Option<Response<Body>> {
    let path = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if path > MAX_URI_BYTES {
        return Some(answer(
            StatusCode::URI_TOO_LONG,
            format!("request path is {path} bytes, over the limit of {MAX_URI_BYTES}"),
        ));
    }
    let fields = req.headers().len();
    if fields > MAX_HEADERS {
        return Some(answer(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("{fields} header fields, over the limit of {MAX_HEADERS}"),
        ));
    }
    let bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if bytes > MAX_HEADER_BYTES {
        return Some(answer(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("headers are {bytes} bytes, over the limit of {MAX_HEADER_BYTES}"),
        ));
    }
    None
}

/// The refusal of a request whose path, headers or declared body are over a limit.
pub(crate) fn oversized<B>(req: &Request<B>, max_body: u64) -> Option<Response<Body>> {
    if let Some(refused) = oversized_head(req) {
        return Some(refused);
    }
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > max_body => Some(answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is {n} bytes, over the limit of {max_body}"),
        )),
        _ => None,
    }
}

/// 413 for a body that turned out larger than `max` as it streamed.
pub(crate) fn too_large(max: u64) -> Response<Body> {
    answer(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body over the limit of {max} bytes"),
    )
}

/// Whether a limited body was cut at its limit.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cut(Arc<AtomicBool>);

impl Cut {
    pub(crate) fn is_cut(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// `req` with a body that fails once more than `max` bytes came through, and the flag
/// telling that it did.
pub(crate) fn limit_body(req: Request<Body>, max: u64) -> (Request<Body>, Cut) {
    let cut = Cut::default();
    let flag = cut.clone();
    let req = req.map(|b| {
        Limited::new(b, usize::try_from(max).unwrap_or(usize::MAX))
            .map_err(move |e: BodyError| {
                if e.is::<LengthLimitError>() {
                    flag.0.store(true, Ordering::Release);
                }
                e
            })
            .boxed()
    });
    (req, cut)
}
