//! Real TCP, real TLS: a gRPC service (health) behind `tls_incoming`, an interceptor that
//! records `peer_identity`, and clients through `TlsConnector`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ate_tls::{
    CertificateAuthority, ClientCerts, IssuedCert, PeerIdentity, TlsConnector, TlsDir,
    client_config_for_ca, connector_uri, peer_identity, tls_incoming,
};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const DAY: Duration = Duration::from_secs(24 * 3600);

type Seen = Arc<Mutex<Vec<Option<PeerIdentity>>>>;

/// Serves health over TLS from `dir`; what each call's `peer_identity` was goes to `Seen`.
async fn serve(dir: &Path, clients: ClientCerts) -> (SocketAddr, Seen) {
    let tls = TlsDir::open(dir).expect("tls dir");
    let config = tls.server_config(clients).expect("server config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let (_, health) = tonic_health::server::health_reporter();
    let health = InterceptedService::new(health, move |req: tonic::Request<()>| {
        record.lock().expect("lock").push(peer_identity(&req));
        Ok(req)
    });
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(tls_incoming(listener, config))
            .await
    });
    (addr, seen)
}

/// One health check through `connector`; the error with its sources.
async fn call(addr: SocketAddr, connector: TlsConnector) -> Result<(), String> {
    let channel = Endpoint::from_shared(connector_uri(&addr.to_string()))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector(connector)
        .await
        .map_err(|e| ate_tls::error_chain(&e))?;
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .map(drop)
        .map_err(|s| ate_tls::error_chain(&s))
}

/// A connector from the TLS directory `dir` to `peer`.
fn from_dir(dir: &Path, peer: &PeerIdentity) -> TlsConnector {
    TlsDir::open(dir)
        .expect("client tls dir")
        .connector(peer)
        .expect("connector")
}

fn issue(ca: &CertificateAuthority, who: &PeerIdentity, dir: &Path) -> IssuedCert {
    let issued = ca.issue(who, 30 * DAY).expect("issue");
    issued.write(dir).expect("write");
    issued
}

#[tokio::test]
async fn callers_are_who_their_certificate_says() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = CertificateAuthority::generate().expect("ca");
    let (server, router, node) = (
        tmp.path().join("s"),
        tmp.path().join("r"),
        tmp.path().join("n"),
    );
    issue(&ca, &PeerIdentity::Control, &server);
    issue(&ca, &PeerIdentity::Router, &router);
    issue(&ca, &PeerIdentity::node("n1").expect("name"), &node);
    let (addr, seen) = serve(&server, ClientCerts::Optional).await;

    call(addr, from_dir(&router, &PeerIdentity::Control))
        .await
        .expect("router");
    call(addr, from_dir(&node, &PeerIdentity::Control))
        .await
        .expect("node");
    // No certificate: allowed on an optional listener, no identity.
    let anonymous = client_config_for_ca(ca.trust_pem().as_bytes()).expect("config");
    call(
        addr,
        TlsConnector::new(anonymous, &PeerIdentity::Control).expect("connector"),
    )
    .await
    .expect("anonymous");
    assert_eq!(
        *seen.lock().expect("lock"),
        vec![
            Some(PeerIdentity::Router),
            Some(PeerIdentity::Node("n1".into())),
            None
        ]
    );
}

#[tokio::test]
async fn a_required_certificate_is_required() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = CertificateAuthority::generate().expect("ca");
    let server = tmp.path().join("s");
    issue(&ca, &PeerIdentity::node("n1").expect("name"), &server);
    let (addr, seen) = serve(&server, ClientCerts::Required).await;
    let anonymous = client_config_for_ca(ca.trust_pem().as_bytes()).expect("config");
    let peer = PeerIdentity::node("n1").expect("name");
    let err = call(
        addr,
        TlsConnector::new(anonymous, &peer).expect("connector"),
    )
    .await
    .expect_err("no certificate");
    assert!(err.contains("CertificateRequired"), "{err}");
    assert!(seen.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn the_server_must_be_the_identity_dialled() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = CertificateAuthority::generate().expect("ca");
    let (server, router) = (tmp.path().join("s"), tmp.path().join("r"));
    issue(&ca, &PeerIdentity::node("n1").expect("name"), &server);
    issue(&ca, &PeerIdentity::Router, &router);
    let (addr, _) = serve(&server, ClientCerts::Required).await;
    for wrong in [
        PeerIdentity::Control,
        PeerIdentity::node("n2").expect("name"),
    ] {
        let err = call(addr, from_dir(&router, &wrong))
            .await
            .expect_err("wrong identity");
        assert!(err.contains("not valid for name"), "{wrong}: {err}");
    }
    call(
        addr,
        from_dir(&router, &PeerIdentity::node("n1").expect("name")),
    )
    .await
    .expect("the right identity");
}

#[tokio::test]
async fn another_cas_certificates_are_refused_both_ways() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ca, other) = (
        CertificateAuthority::generate().expect("ca"),
        CertificateAuthority::generate().expect("other ca"),
    );
    let (server, stranger) = (tmp.path().join("s"), tmp.path().join("x"));
    issue(&ca, &PeerIdentity::Control, &server);
    // A client of the other CA that trusts ours: the server refuses its certificate.
    let mut issued = other.issue(&PeerIdentity::Router, DAY).expect("issue");
    issued.trust_pem = ca.trust_pem().to_string();
    issued.write(&stranger).expect("write");
    let (addr, seen) = serve(&server, ClientCerts::Optional).await;
    let err = call(addr, from_dir(&stranger, &PeerIdentity::Control))
        .await
        .expect_err("other ca");
    assert!(err.contains("UnknownCA"), "{err}");
    // A client trusting the other CA only refuses our server.
    let anonymous = client_config_for_ca(other.trust_pem().as_bytes()).expect("config");
    let err = call(
        addr,
        TlsConnector::new(anonymous, &PeerIdentity::Control).expect("connector"),
    )
    .await
    .expect_err("server of another ca");
    assert!(err.contains("UnknownIssuer"), "{err}");
    assert!(seen.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn expired_certificates_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = CertificateAuthority::generate().expect("ca");
    let (server, old_client, old_server) = (
        tmp.path().join("s"),
        tmp.path().join("c"),
        tmp.path().join("o"),
    );
    issue(&ca, &PeerIdentity::Control, &server);
    let now = SystemTime::now();
    for (who, dir) in [
        (PeerIdentity::Router, &old_client),
        (PeerIdentity::Control, &old_server),
    ] {
        ca.issue_between(&who, now - 2 * DAY, now - DAY)
            .expect("issue expired")
            .write(dir)
            .expect("write");
    }
    let (addr, _) = serve(&server, ClientCerts::Optional).await;
    let err = call(addr, from_dir(&old_client, &PeerIdentity::Control))
        .await
        .expect_err("expired client");
    assert!(err.contains("CertificateExpired"), "{err}");
    let (addr, _) = serve(&old_server, ClientCerts::Optional).await;
    let err = call(addr, from_dir(&server, &PeerIdentity::Control))
        .await
        .expect_err("expired server");
    assert!(err.contains("expired"), "{err}");
}

#[tokio::test]
async fn init_ca_refuses_to_overwrite_and_rotation_keeps_old_certificates_valid() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca_dir = tmp.path().join("ca");
    assert!(matches!(
        ate_tls::init_ca(&ca_dir, true),
        Err(ate_tls::TlsError::NoCa { .. })
    ));
    assert_eq!(
        ate_tls::init_ca(&ca_dir, false).expect("init"),
        ate_tls::CaInit::Created
    );
    assert_eq!(mode(&ca_dir.join("ca.key")), 0o600);
    assert!(matches!(
        ate_tls::init_ca(&ca_dir, false),
        Err(ate_tls::TlsError::CaExists { .. })
    ));
    let (old, new) = (tmp.path().join("old"), tmp.path().join("new"));
    ate_tls::issue_cert(&ca_dir, &PeerIdentity::Control, 30 * DAY, &old).expect("issue old");
    assert_eq!(mode(&old.join("tls.key")), 0o600);
    let before = std::fs::read_to_string(ca_dir.join("ca.crt")).expect("ca.crt");

    assert_eq!(
        ate_tls::init_ca(&ca_dir, true).expect("rotate"),
        ate_tls::CaInit::Rotated
    );
    let trust = std::fs::read_to_string(ca_dir.join("trust.crt")).expect("trust.crt");
    assert!(trust.contains(&before), "the previous ca stays trusted");
    assert_ne!(
        std::fs::read_to_string(ca_dir.join("ca.crt")).expect("ca.crt"),
        before
    );
    ate_tls::issue_cert(&ca_dir, &PeerIdentity::Router, 30 * DAY, &new).expect("issue new");
    assert_eq!(
        std::fs::read_to_string(new.join("ca.crt")).expect("bundle copy"),
        trust
    );
    // The old component gets the new bundle first (see docs/security.md), keeping its
    // certificate of the old CA: both verify each other.
    std::fs::copy(ca_dir.join("trust.crt"), old.join("ca.crt")).expect("copy bundle");
    let (addr, seen) = serve(&old, ClientCerts::Required).await;
    call(addr, from_dir(&new, &PeerIdentity::Control))
        .await
        .expect("new client, old server");
    assert_eq!(
        *seen.lock().expect("lock"),
        vec![Some(PeerIdentity::Router)]
    );

    let node = tmp.path().join("node");
    ate_tls::issue_cert(
        &ca_dir,
        &PeerIdentity::node("n1").expect("name"),
        DAY,
        &node,
    )
    .expect("issue node");
    let (addr, seen) = serve(&node, ClientCerts::Required).await;
    call(
        addr,
        from_dir(&old, &PeerIdentity::node("n1").expect("name")),
    )
    .await
    .expect("old client, new server");
    assert_eq!(
        *seen.lock().expect("lock"),
        vec![Some(PeerIdentity::Control)]
    );
}

#[tokio::test]
async fn reissued_files_are_picked_up_without_a_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ca, other) = (
        CertificateAuthority::generate().expect("ca"),
        CertificateAuthority::generate().expect("other ca"),
    );
    let (server, client) = (tmp.path().join("s"), tmp.path().join("c"));
    // The server starts with an expired certificate, trusting its CA only; the client has
    // a certificate of the other CA and trusts both.
    let now = SystemTime::now();
    ca.issue_between(&PeerIdentity::Control, now - 2 * DAY, now - DAY)
        .expect("issue")
        .write(&server)
        .expect("write");
    let mut issued = other.issue(&PeerIdentity::Router, DAY).expect("issue");
    let both = format!("{}{}", ca.trust_pem(), other.trust_pem());
    issued.trust_pem = both.clone();
    issued.write(&client).expect("write");
    let (addr, seen) = serve(&server, ClientCerts::Required).await;
    let client = TlsDir::open(&client).expect("client dir");
    let connect = || client.connector(&PeerIdentity::Control).expect("connector");
    let err = call(addr, connect()).await.expect_err("expired server");
    assert!(err.contains("expired"), "{err}");

    // A valid certificate for the server: used from the next check on.
    issue(&ca, &PeerIdentity::Control, &server);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let err = call(addr, connect())
        .await
        .expect_err("client of another ca");
    assert!(
        err.contains("UnknownCA"),
        "the new certificate is served: {err}"
    );

    // The bundle grows to trust the other CA: its client gets in.
    std::fs::write(server.join("ca.crt"), &both).expect("write bundle");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    call(addr, connect()).await.expect("trusted now");

    // A certificate without its key is no material: the last good pair stays in use.
    let stray = other.issue(&PeerIdentity::Control, DAY).expect("issue");
    std::fs::write(server.join("tls.crt"), stray.cert_pem).expect("write cert alone");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    call(addr, connect())
        .await
        .expect("still the last good pair");
    assert_eq!(seen.lock().expect("lock").len(), 2);
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}
