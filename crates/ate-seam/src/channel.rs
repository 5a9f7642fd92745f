//! gRPC channels between ate's processes, set up one way everywhere: short connect
//! timeouts and HTTP/2 keepalives, so a peer that vanishes without closing its connection
//! (a machine powered off, a network cut) is noticed in seconds rather than minutes; and,
//! with component TLS, mutual TLS that checks the peer is the component expected there
//! ([`Dialer`]).

use std::time::Duration;

use ate_tls::{PeerIdentity, TlsDir};
use tonic::transport::{Channel, Endpoint};

use crate::SeamError;

/// How long a connection attempt may take (TCP and, with TLS, the handshake).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often an idle connection is probed, and how long a probe may go unanswered.
pub const KEEPALIVE: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(5));

/// An endpoint for `address` (`host:port` or `http://host:port`), plaintext. Components
/// reach each other through a [`Dialer`], which uses this setup too.
pub fn endpoint(address: &str) -> Result<Endpoint, SeamError> {
    let uri = if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    };
    configured(&uri).map_err(|reason| SeamError::NodeUnavailable {
        node: format!("{address} (invalid address: {reason})"),
    })
}

fn configured(uri: &str) -> Result<Endpoint, String> {
    Endpoint::from_shared(uri.to_string())
        .map(|e| {
            e.connect_timeout(CONNECT_TIMEOUT)
                .http2_keep_alive_interval(KEEPALIVE.0)
                .keep_alive_timeout(KEEPALIVE.1)
                .keep_alive_while_idle(true)
                .tcp_nodelay(true)
        })
        .map_err(|e| e.to_string())
}

/// Why a channel cannot be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DialError {
    /// The address is no URI, or TLS cannot be set up for the peer named.
    #[error("invalid address {address:?}: {reason}")]
    Address { address: String, reason: String },
    /// Nothing answered, or the TLS handshake failed (the reason says which).
    #[error("cannot connect to {address}: {reason}")]
    Connect { address: String, reason: String },
}

impl From<DialError> for SeamError {
    fn from(e: DialError) -> Self {
        SeamError::NodeUnavailable {
            node: e.to_string(),
        }
    }
}

/// How this process reaches the other components: plaintext (no `--tls-dir`, and `ate up`
/// where nothing crosses the network), or mutual TLS presenting this process's certificate
/// and requiring the peer's to name the component expected at the address (`control.ate`
/// for a control plane, `NAME.node.ate` for node NAME). The one way component channels are
/// made; handed to whatever dials, so processes (and tests) in one address space can differ.
/// Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Dialer {
    tls: Option<TlsDir>,
}

impl Dialer {
    /// Plaintext channels.
    pub fn plaintext() -> Self {
        Self::default()
    }

    /// Mutual TLS with the material in `tls` (re-read as its files change).
    pub fn tls(tls: TlsDir) -> Self {
        Self { tls: Some(tls) }
    }

    /// Whether channels are TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// A channel to `peer` at `address` (`host:port`, `http://` or `https://`), connecting
    /// on first use and again as needed.
    pub fn lazy(&self, address: &str, peer: &PeerIdentity) -> Result<Channel, DialError> {
        let (endpoint, connector) = self.prepare(address, peer)?;
        Ok(match connector {
            Some(c) => endpoint.connect_with_connector_lazy(c),
            None => endpoint.connect_lazy(),
        })
    }

    /// A channel to `peer` at `address`, connected now.
    pub async fn connect(&self, address: &str, peer: &PeerIdentity) -> Result<Channel, DialError> {
        let (endpoint, connector) = self.prepare(address, peer)?;
        let connected = match connector {
            Some(c) => endpoint.connect_with_connector(c).await,
            None => endpoint.connect().await,
        };
        connected.map_err(|e| DialError::Connect {
            address: address.to_string(),
            reason: ate_tls::error_chain(&e),
        })
    }

    fn prepare(
        &self,
        address: &str,
        peer: &PeerIdentity,
    ) -> Result<(Endpoint, Option<ate_tls::TlsConnector>), DialError> {
        let invalid = |reason: String| DialError::Address {
            address: address.to_string(),
            reason,
        };
        match &self.tls {
            None => {
                let uri = match address.strip_prefix("https://") {
                    Some(_) => return Err(invalid("https needs --tls-dir".into())),
                    None if address.contains("://") => address.to_string(),
                    None => format!("http://{address}"),
                };
                Ok((configured(&uri).map_err(invalid)?, None))
            }
            Some(tls) => {
                let endpoint = configured(&ate_tls::connector_uri(address)).map_err(invalid)?;
                let connector = tls.connector(peer).map_err(|e| invalid(e.to_string()))?;
                Ok((endpoint, Some(connector)))
            }
        }
    }
}
