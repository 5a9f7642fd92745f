//! Who a component is: one DNS name in its certificate's subject alternative names. DNS
//! names (rather than a custom extension or the subject) let rustls-webpki check them like
//! any server name, and let a service read them without an X.509 parser.

use std::fmt;

use rustls_pki_types::CertificateDer;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::{Request, Status};

use crate::TlsError;

/// The domain every identity lives under.
const DOMAIN: &str = "ate";
/// The subdomain of node identities.
const NODES: &str = "node.ate";

/// A component of ate, as its certificate names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PeerIdentity {
    /// A control-plane replica (`control.ate`).
    Control,
    /// A router (`router.ate`).
    Router,
    /// The node daemon of that name (`NAME.node.ate`).
    Node(String),
}

impl PeerIdentity {
    /// The node `name`, checked against ate's node name rules (a DNS label), so that its
    /// DNS name is a name and cannot pose as another identity.
    pub fn node(name: &str) -> Result<Self, TlsError> {
        ate_model::names::validate_label("node name", name)
            .map_err(|e| TlsError::Identity(e.to_string()))?;
        Ok(Self::Node(name.to_string()))
    }

    /// The DNS name the certificate carries.
    pub fn dns_name(&self) -> String {
        match self {
            Self::Control => format!("control.{DOMAIN}"),
            Self::Router => format!("router.{DOMAIN}"),
            Self::Node(name) => format!("{name}.{NODES}"),
        }
    }

    /// The identity a DNS name stands for, if it is one of ate's.
    pub fn from_dns_name(name: &str) -> Option<Self> {
        let name = name.to_ascii_lowercase();
        if let Some(node) = name.strip_suffix(NODES).and_then(|n| n.strip_suffix('.')) {
            return Self::node(node).ok();
        }
        match name.strip_suffix(DOMAIN).and_then(|n| n.strip_suffix('.')) {
            Some("control") => Some(Self::Control),
            Some("router") => Some(Self::Router),
            _ => None,
        }
    }
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.dns_name())
    }
}

/// The identity in a certificate: its one DNS name of ate's. A certificate naming none, or
/// more than one, has no identity (an ambiguous certificate must not pass for either).
///
/// This does not verify the certificate: use it on certificates a TLS handshake verified.
pub fn identity_of(cert: &CertificateDer<'_>) -> Option<PeerIdentity> {
    let cert = webpki::EndEntityCert::try_from(cert).ok()?;
    let mut found = cert
        .valid_dns_names()
        .filter_map(PeerIdentity::from_dns_name);
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

/// The caller's identity, from the client certificate its TLS connection presented; `None`
/// over plaintext, or when the caller presented no certificate. Works on any request tonic
/// hands a service or an interceptor (`Request<()>`) when the server was fed by
/// [`crate::tls_incoming`], whose handshake verified the certificate against the trust
/// bundle (chain, validity, client-auth usage).
pub fn peer_identity<T>(request: &Request<T>) -> Option<PeerIdentity> {
    let info = request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()?;
    let certs = info.peer_certs()?;
    identity_of(certs.first()?)
}

/// Whether a service checks who calls it. Without component TLS there is no certificate to
/// check, so a deployment without `--tls-dir` stays [`PeerAuth::Open`], as ate always was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PeerAuth {
    /// Everyone may call (plaintext; no identities).
    #[default]
    Open,
    /// Callers are who their verified client certificate says, and only some may call.
    Certificates,
}

impl PeerAuth {
    /// Lets the request through if its caller is one `allowed` accepts: `Unauthenticated`
    /// without a certificate, `PermissionDenied` for another identity, `call` naming the
    /// method in either. With [`PeerAuth::Open`] everyone passes and the identity is `None`.
    pub fn authorize<T>(
        &self,
        request: &Request<T>,
        call: &str,
        allowed: impl Fn(&PeerIdentity) -> bool,
    ) -> Result<Option<PeerIdentity>, Status> {
        if *self == PeerAuth::Open {
            return Ok(None);
        }
        match peer_identity(request) {
            None => Err(Status::unauthenticated(format!(
                "{call}: needs a client certificate issued by the cluster's ca"
            ))),
            Some(peer) if allowed(&peer) => Ok(Some(peer)),
            Some(peer) => {
                tracing::warn!(%call, %peer, "call refused for this identity");
                Err(Status::permission_denied(format!(
                    "{call}: not allowed for {peer}"
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for id in [
            PeerIdentity::Control,
            PeerIdentity::Router,
            PeerIdentity::Node("n1".into()),
        ] {
            assert_eq!(PeerIdentity::from_dns_name(&id.dns_name()), Some(id));
        }
    }

    #[test]
    fn other_names_are_no_identity() {
        for name in [
            "ate",
            "node.ate",
            ".node.ate",
            "a.b.node.ate",
            "Bad_Name.node.ate",
            "control.example.com",
            "xcontrol.ate",
            "controlate",
        ] {
            assert_eq!(PeerIdentity::from_dns_name(name), None, "{name}");
        }
    }

    #[test]
    fn node_names_follow_the_model_rules() {
        assert!(PeerIdentity::node("n1").is_ok());
        assert!(PeerIdentity::node("").is_err());
        assert!(PeerIdentity::node("a.b").is_err());
        assert!(PeerIdentity::node("-x").is_err());
    }
}
