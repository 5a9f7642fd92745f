//! The server side: a rustls config whose certificate and client-certificate verifier follow
//! the [`TlsDir`], and a listener that runs handshakes in parallel, each with a deadline,
//! yielding the streams tonic serves (their peer certificates reach every request, see
//! [`crate::peer_identity`]).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::Stream;

use crate::{ALPN_H2, TlsDir, TlsError};

/// Longest a TLS handshake may take: a client that connects and stalls loses its
/// connection instead of holding a task.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most handshakes in progress at once; further connections wait to be accepted.
const MAX_HANDSHAKES: usize = 256;

/// Whether a listener asks its clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCerts {
    /// Clients may connect without one (the control API: CLI users come with bearer
    /// tokens); a certificate presented is still verified.
    Optional,
    /// No certificate, no connection (a node's service: only components call it).
    Required,
}

impl TlsDir {
    /// A server config presenting this directory's certificate and verifying client
    /// certificates against its trust bundle, both as they are at each handshake.
    pub fn server_config(
        &self,
        clients: ClientCerts,
    ) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let verifier = Arc::new(ReloadingClientVerifier {
            dir: self.clone(),
            mandatory: clients == ClientCerts::Required,
            provider: crate::provider(),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(crate::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(ReloadingCert(self.clone())));
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        // No resumption: a resumed session skips certificate verification, and every
        // handshake must see the trust bundle and the certificates as they are now (a
        // removed CA, an expired certificate). Component connections are long-lived anyway.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(Arc::new(config))
    }
}

/// The server certificate of the directory as it is now.
#[derive(Debug)]
struct ReloadingCert(TlsDir);

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().certified.clone())
    }
}

/// Verifies client certificates against the directory's trust bundle as it is now.
#[derive(Debug)]
struct ReloadingClientVerifier {
    dir: TlsDir,
    mandatory: bool,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ClientCertVerifier for ReloadingClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Hints are optional, and every component has one certificate to offer anyway.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified =
            self.dir
                .current()
                .client_verifier
                .verify_client_cert(end_entity, intermediates, now);
        if let Err(e) = &verified {
            tracing::warn!(error = %e, identity = ?crate::identity_of(end_entity), "client certificate refused");
        }
        verified
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// How long a refused connection is drained before it is closed.
const LINGER: Duration = Duration::from_secs(1);

/// Closes a connection whose handshake failed without resetting it: TLS 1.3 clients learn
/// that their certificate was refused only from the alert after their handshake, and
/// closing with their first request still unread would reset the connection and lose the
/// alert (the client would see "connection closed" instead of why).
async fn linger(mut tcp: TcpStream) {
    let _ = tcp.shutdown().await;
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(LINGER, async {
        while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// TLS connections accepted on a listener, ready for
/// `tonic::transport::Server::serve_with_incoming_shutdown`. Dropping it stops accepting
/// and closes the listener.
#[derive(Debug)]
pub struct TlsIncoming {
    accepted: mpsc::Receiver<TlsStream<TcpStream>>,
    task: JoinHandle<()>,
}

impl Stream for TlsIncoming {
    type Item = std::io::Result<TlsStream<TcpStream>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.accepted.poll_recv(cx).map(|s| s.map(Ok))
    }
}

impl Drop for TlsIncoming {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts connections on `listener` and runs their handshakes with `config`, each in a
/// task of its own and within [`HANDSHAKE_TIMEOUT`]: one slow client delays nobody else.
/// Failed handshakes are logged and dropped; what comes out is established.
pub fn tls_incoming(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> TlsIncoming {
    let (tx, accepted) = mpsc::channel(MAX_HANDSHAKES);
    let task = tokio::spawn(accept(listener, TlsAcceptor::from(config), tx));
    TlsIncoming { accepted, task }
}

async fn accept(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<TlsStream<TcpStream>>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(permit) = handshakes.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // A unary reply is small and must not wait for the peer's delayed ACK.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let handshake = acceptor.accept(tcp).into_fallible();
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                Ok(Ok(stream)) => {
                    let _ = tx.send(stream).await;
                }
                Ok(Err((e, tcp))) => {
                    tracing::warn!(%peer, error = %e, "tls handshake failed");
                    linger(tcp).await;
                }
                Err(_) => {
                    tracing::warn!(%peer, timeout = ?HANDSHAKE_TIMEOUT, "tls handshake timed out");
                }
            }
        });
    }
}
