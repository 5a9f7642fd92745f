//! The client side: a tonic connector that dials `host:port` over TCP and does the TLS
//! handshake itself, verifying the server against the trust bundle and the identity
//! expected there (`control.ate`, `NAME.node.ate`) rather than the host name, which in an
//! ate cluster is an IP address as often as not. The channel's URI stays `http://`: the TLS
//! is the connector's, so tonic's own (and its idea of `https://`) is never involved.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls::client::ResolvesClientCert;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::{ALPN_H2, PeerIdentity, TlsDir, TlsError};

/// A client config trusting `roots`, presenting `me` when given.
pub(crate) fn client_config(
    roots: Arc<RootCertStore>,
    me: Option<Arc<CertifiedKey>>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(crate::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots);
    let mut config = match me {
        Some(me) => {
            let resolver: Arc<dyn ResolvesClientCert> = Arc::new(SingleCertAndKey::from(me));
            builder.with_client_cert_resolver(resolver)
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    // Every connection verifies the server afresh (see the server side).
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// A client config for someone with no certificate of their own (the CLI): it trusts the
/// CA bundle `ca_pem` (a component's `ca.crt`, or the CA's `trust.crt`) and presents no
/// client certificate. Use it with [`TlsConnector::new`] and [`PeerIdentity::Control`] to
/// reach a control API served with `--tls-dir`.
pub fn client_config_for_ca(ca_pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let roots = crate::material::roots(std::path::Path::new("ca bundle"), ca_pem)?;
    client_config(Arc::new(roots), None)
}

/// The URI to give a channel that dials `address` through a [`TlsConnector`]:
/// `http://host:port`, whether `address` was written `host:port`, `http://...` or
/// `https://...` (the connector does the TLS; tonic must not try to).
pub fn connector_uri(address: &str) -> String {
    let rest = address
        .strip_prefix("https://")
        .or_else(|| address.strip_prefix("http://"))
        .unwrap_or(address);
    format!("http://{rest}")
}

/// Where a connector's client config comes from.
#[derive(Debug, Clone)]
enum Config {
    Fixed(Arc<rustls::ClientConfig>),
    /// This process's TLS directory, as it is at each connection.
    Dir(TlsDir),
}

/// A tonic connector (`Endpoint::connect_with_connector[_lazy]`) that reaches `peer` over
/// TLS: TCP to the URI's host and port, then a handshake that requires the server's
/// certificate to name `peer`. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TlsConnector {
    config: Config,
    server_name: ServerName<'static>,
}

impl TlsConnector {
    /// A connector with a fixed client config (e.g. [`client_config_for_ca`]).
    pub fn new(config: Arc<rustls::ClientConfig>, peer: &PeerIdentity) -> Result<Self, TlsError> {
        Ok(Self {
            config: Config::Fixed(config),
            server_name: server_name(peer)?,
        })
    }

    fn config(&self) -> Arc<rustls::ClientConfig> {
        match &self.config {
            Config::Fixed(c) => c.clone(),
            Config::Dir(d) => d.current().client_config.clone(),
        }
    }
}

impl TlsDir {
    /// A connector to `peer` presenting this directory's certificate, both the certificate
    /// and the trust bundle as they are at each new connection.
    pub fn connector(&self, peer: &PeerIdentity) -> Result<TlsConnector, TlsError> {
        Ok(TlsConnector {
            config: Config::Dir(self.clone()),
            server_name: server_name(peer)?,
        })
    }
}

fn server_name(peer: &PeerIdentity) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(peer.dns_name()).map_err(|e| TlsError::Identity(format!("{peer}: {e}")))
}

type Connecting =
    Pin<Box<dyn Future<Output = std::io::Result<TokioIo<TlsStream<TcpStream>>>> + Send>>;

impl tower_service::Service<Uri> for TlsConnector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.config());
        let server_name = self.server_name.clone();
        Box::pin(async move {
            let invalid = |what: &str| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{uri}: {what}"))
            };
            let host = uri.host().ok_or_else(|| invalid("no host"))?;
            // `[::1]` in a URI, `::1` to connect to.
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let port = uri.port_u16().ok_or_else(|| invalid("no port"))?;
            let tcp = TcpStream::connect((host, port)).await?;
            tcp.set_nodelay(true)?;
            let tls = connector.connect(server_name, tcp).await?;
            Ok(TokioIo::new(tls))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::connector_uri;

    #[test]
    fn the_channel_uri_is_always_plain_http() {
        for address in ["h:1", "http://h:1", "https://h:1"] {
            assert_eq!(connector_uri(address), "http://h:1");
        }
    }
}
