//! gRPC channels between ate's processes, set up one way everywhere: short connect
//! timeouts and HTTP/2 keepalives, so a peer that vanishes without closing its connection
//! (a machine powered off, a network cut) is noticed in seconds rather than minutes.

use std::time::Duration;

use tonic::transport::Endpoint;

use crate::SeamError;

/// How long a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often an idle connection is probed, and how long a probe may go unanswered.
pub const KEEPALIVE: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(5));

/// An endpoint for `address` (`host:port` or `http://host:port`).
pub fn endpoint(address: &str) -> Result<Endpoint, SeamError> {
    let uri = if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    };
    Endpoint::from_shared(uri)
        .map(|e| {
            e.connect_timeout(CONNECT_TIMEOUT)
                .http2_keep_alive_interval(KEEPALIVE.0)
                .keep_alive_timeout(KEEPALIVE.1)
                .keep_alive_while_idle(true)
                .tcp_nodelay(true)
        })
        .map_err(|e| SeamError::NodeUnavailable {
            node: format!("{address} (invalid address: {e})"),
        })
}
