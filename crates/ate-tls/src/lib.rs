//! Mutual TLS between ate's components (control plane, node daemons, routers) in the split
//! deployment.
//!
//! - **A small CA** ([`init_ca`], [`issue_cert`], [`CertificateAuthority`]): `ate admin
//!   init-ca` makes one, `--rotate` replaces it while the trust bundle keeps the previous one
//!   so certificates of either verify during the changeover.
//! - **Identities are DNS names** in the certificate's subject alternative names
//!   ([`PeerIdentity`]): `control.ate`, `router.ate`, `NAME.node.ate`. rustls-webpki checks
//!   them like any server name, so a client dialling a node verifies it reached *that* node,
//!   and a service reads its caller's verified identity with [`peer_identity`].
//! - **Files re-read when they change** ([`TlsDir`]): a process's `tls.crt`, `tls.key` and
//!   `ca.crt` are checked at most once a second on new handshakes, so rotating a certificate
//!   or the CA is re-issuing files, with no restart.
//! - **Listener and connector** ([`tls_incoming`], [`TlsConnector`]): the server side takes a
//!   `TcpListener` (handshakes in parallel, each with a deadline) and yields streams tonic
//!   serves; the client side is a tonic connector that dials `http://host:port` and does the
//!   TLS itself, against the identity expected at that address rather than the host name.
//!
//! Everything uses rustls with the ring provider and TLS 1.3 only: both ends are ate.

mod ca;
mod client;
mod error;
mod identity;
mod material;
mod server;

use std::sync::Arc;

pub use ca::{CaInit, CertificateAuthority, IssuedCert, init_ca, issue_cert};
pub use client::{TlsConnector, client_config_for_ca, connector_uri};
pub use error::TlsError;
pub use identity::{PeerAuth, PeerIdentity, identity_of, peer_identity};
pub use material::{RELOAD_CHECK_EVERY, TlsDir};
pub use server::{ClientCerts, HANDSHAKE_TIMEOUT, TlsIncoming, tls_incoming};

/// The CA's private key in a CA directory.
pub const CA_KEY_FILE: &str = "ca.key";
/// The CA's certificate in a CA directory (the one that issues now).
pub const CA_CERT_FILE: &str = "ca.crt";
/// The trust bundle in a CA directory: the current CA and, after a rotation, the previous.
pub const TRUST_FILE: &str = "trust.crt";
/// A component's certificate in its TLS directory.
pub const CERT_FILE: &str = "tls.crt";
/// A component's private key in its TLS directory.
pub const KEY_FILE: &str = "tls.key";
/// The trust bundle in a component's TLS directory (a copy of the CA's `trust.crt`).
pub const TRUST_COPY_FILE: &str = "ca.crt";

/// The ALPN protocol both ends offer: gRPC is HTTP/2.
const ALPN_H2: &[u8] = b"h2";

/// The crypto provider every ate TLS config uses. Explicit rather than rustls' process
/// default: other crates in the binary may enable aws-lc-rs too, and then no default is
/// picked.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The error and its sources in one line: transport errors say little at the top ("transport
/// error") and the reason (an unknown CA, a name mismatch) only further down.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}
