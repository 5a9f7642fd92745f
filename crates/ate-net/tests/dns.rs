//! The DNS responder, queried by hickory's DNS client over real UDP and TCP sockets.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ate_net::DEFAULT_DOMAIN;
use ate_net::dns::{DnsConfig, DnsError, DnsServer, MAX_QUERY_BYTES, MAX_UDP_PAYLOAD};
use hickory_net::client::{Client, ClientHandle};
use hickory_net::proto::op::{Edns, Message, Query, ResponseCode};
use hickory_net::proto::rr::rdata::A;
use hickory_net::proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::udp::UdpClientStream;

const V4: Ipv4Addr = Ipv4Addr::new(10, 1, 2, 3);
const V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x53);
const TIMEOUT: Duration = Duration::from_secs(3);

fn local() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

async fn serve(domain: &str, answers: Vec<IpAddr>, ttl: Duration) -> DnsServer {
    let mut config = DnsConfig::new(local(), domain, answers);
    config.ttl = ttl;
    DnsServer::start(config).await.expect("start dns responder")
}

async fn udp_client(addr: SocketAddr) -> Client<TokioRuntimeProvider> {
    let stream = UdpClientStream::builder(addr, TokioRuntimeProvider::default())
        .with_timeout(Some(TIMEOUT))
        .build();
    let (client, bg) = Client::<TokioRuntimeProvider>::from_sender(stream);
    tokio::spawn(bg);
    client
}

async fn tcp_client(addr: SocketAddr) -> Client<TokioRuntimeProvider> {
    let (connect, sender) =
        TcpClientStream::new(addr, None, Some(TIMEOUT), TokioRuntimeProvider::default());
    let stream = connect.await.expect("tcp connect");
    let (client, bg) = Client::<TokioRuntimeProvider>::with_timeout(stream, sender, TIMEOUT);
    tokio::spawn(bg);
    client
}

async fn ask(client: &mut Client<TokioRuntimeProvider>, name: &str, qtype: RecordType) -> Message {
    let name = Name::from_ascii(name).unwrap();
    let response = client.query(name, DNSClass::IN, qtype).await;
    response.expect("dns response").into_message()
}

fn ips(message: &Message) -> Vec<IpAddr> {
    message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

fn assert_nodata(m: &Message, what: &str) {
    assert_eq!(m.response_code, ResponseCode::NoError, "{what}");
    assert!(m.authoritative, "{what}");
    assert!(m.answers.is_empty(), "{what}: {:?}", m.answers);
}

fn assert_nxdomain(m: &Message, what: &str) {
    assert_eq!(m.response_code, ResponseCode::NXDomain, "{what}");
    assert!(m.authoritative, "{what}");
    assert!(m.answers.is_empty(), "{what}");
    // The SOA in the authority section lets resolvers cache the negative answer.
    assert!(
        m.authorities
            .iter()
            .any(|r| r.record_type() == RecordType::SOA),
        "{what}"
    );
}

fn actor_name(domain: &str) -> String {
    format!("counter-1.team-a.actors.{domain}.")
}

#[tokio::test]
async fn a_query_answers_the_configured_ipv4_with_ttl() {
    let server = serve(
        DEFAULT_DOMAIN,
        vec![V4.into(), V6.into()],
        Duration::from_secs(42),
    )
    .await;
    assert_ne!(server.local_addr().port(), 0);
    let mut client = udp_client(server.local_addr()).await;

    let upper = "Counter-1.TEAM-A.Actors.RESOURCES.substrate.ate.dev";
    for name in [
        actor_name(DEFAULT_DOMAIN).as_str(),
        upper,
        &format!("{upper}."),
    ] {
        let m = ask(&mut client, name, RecordType::A).await;
        assert_eq!(m.response_code, ResponseCode::NoError, "{name}");
        assert!(m.authoritative, "{name}");
        assert_eq!(ips(&m), vec![IpAddr::V4(V4)], "{name}");
        assert_eq!(m.answers[0].ttl, 42, "{name}");
        assert_eq!(m.answers[0].record_type(), RecordType::A, "{name}");
        let owner = m.answers[0].name.to_ascii();
        assert_eq!(
            owner.trim_end_matches('.'),
            name.trim_end_matches('.'),
            "case echoed"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn default_ttl_is_sixty_seconds() {
    let config = DnsConfig::new(local(), DEFAULT_DOMAIN, vec![V4.into()]);
    assert_eq!(config.ttl, Duration::from_secs(60));
    let server = DnsServer::start(config).await.unwrap();
    let mut client = udp_client(server.local_addr()).await;
    let m = ask(&mut client, &actor_name(DEFAULT_DOMAIN), RecordType::A).await;
    assert_eq!(ips(&m), vec![IpAddr::V4(V4)]);
    assert_eq!(m.answers[0].ttl, 60);
}

#[tokio::test]
async fn aaaa_answers_ipv6_when_configured_and_nodata_otherwise() {
    let two = [V4.into(), IpAddr::V6(V6), Ipv4Addr::new(10, 9, 9, 9).into()];
    let dual = serve(DEFAULT_DOMAIN, two.to_vec(), Duration::from_secs(60)).await;
    let mut client = udp_client(dual.local_addr()).await;
    let name = actor_name(DEFAULT_DOMAIN);
    let m = ask(&mut client, &name, RecordType::AAAA).await;
    assert_eq!(m.response_code, ResponseCode::NoError);
    assert!(m.authoritative);
    assert_eq!(ips(&m), vec![IpAddr::V6(V6)]);
    let m = ask(&mut client, &name, RecordType::A).await;
    assert_eq!(
        ips(&m),
        vec![two[0], two[2]],
        "every IPv4 address, in order"
    );

    let v4_only = serve(DEFAULT_DOMAIN, vec![V4.into()], Duration::from_secs(60)).await;
    let mut client = udp_client(v4_only.local_addr()).await;
    assert_nodata(&ask(&mut client, &name, RecordType::AAAA).await, "aaaa");

    let v6_only = serve(DEFAULT_DOMAIN, vec![V6.into()], Duration::from_secs(60)).await;
    let mut client = udp_client(v6_only.local_addr()).await;
    assert_nodata(&ask(&mut client, &name, RecordType::A).await, "a");
}

#[tokio::test]
async fn other_query_types_for_actor_names_are_nodata() {
    let server = serve(DEFAULT_DOMAIN, vec![V4.into()], Duration::from_secs(60)).await;
    let mut client = udp_client(server.local_addr()).await;
    for qtype in [
        RecordType::MX,
        RecordType::TXT,
        RecordType::CNAME,
        RecordType::SOA,
    ] {
        let m = ask(&mut client, &actor_name(DEFAULT_DOMAIN), qtype).await;
        assert_nodata(&m, &format!("{qtype}"));
    }
}

#[tokio::test]
async fn malformed_names_under_the_zone_are_nxdomain() {
    let server = serve(DEFAULT_DOMAIN, vec![V4.into()], Duration::from_secs(60)).await;
    let mut client = udp_client(server.local_addr()).await;
    for prefix in [
        "a.b.c",
        "bad_name.team",
        "x.bad_space",
        "*.team",
        "bad_space",
    ] {
        let name = format!("{prefix}.actors.{DEFAULT_DOMAIN}.");
        for qtype in [RecordType::A, RecordType::AAAA] {
            let m = ask(&mut client, &name, qtype).await;
            assert_nxdomain(&m, &format!("{name} {qtype}"));
        }
    }
}

#[tokio::test]
async fn apex_and_atespace_names_exist_without_addresses() {
    let server = serve(DEFAULT_DOMAIN, vec![V4.into()], Duration::from_secs(60)).await;
    let mut client = udp_client(server.local_addr()).await;
    let apex = format!("actors.{DEFAULT_DOMAIN}.");
    assert_nodata(&ask(&mut client, &apex, RecordType::A).await, "apex");
    let soa = ask(&mut client, &apex, RecordType::SOA).await;
    assert_eq!(soa.response_code, ResponseCode::NoError);
    assert_eq!(soa.answers.len(), 1);
    assert_eq!(soa.answers[0].record_type(), RecordType::SOA);
    // `<atespace>.actors.<domain>` has actor names below it (an empty non-terminal).
    let atespace = format!("team-a.actors.{DEFAULT_DOMAIN}.");
    assert_nodata(
        &ask(&mut client, &atespace, RecordType::A).await,
        "atespace",
    );
}

#[tokio::test]
async fn names_outside_the_zone_are_refused() {
    let server = serve(DEFAULT_DOMAIN, vec![V4.into()], Duration::from_secs(60)).await;
    let mut client = udp_client(server.local_addr()).await;
    for name in [
        "example.com.",
        "a.b.example.com.",
        &format!("{DEFAULT_DOMAIN}."),
        &format!("x.y.{DEFAULT_DOMAIN}."),
        "x.y.actors.other.dev.",
        "x.y.actors.resources.substrate.ate.dev.evil.com.",
    ] {
        let m = ask(&mut client, name, RecordType::A).await;
        assert_eq!(m.response_code, ResponseCode::Refused, "{name}");
        assert!(!m.authoritative, "{name}");
        assert!(m.answers.is_empty(), "{name}");
    }
}

#[tokio::test]
async fn tcp_serves_the_same_port_as_udp() {
    let server = serve(
        DEFAULT_DOMAIN,
        vec![V4.into(), V6.into()],
        Duration::from_secs(7),
    )
    .await;
    let mut client = tcp_client(server.local_addr()).await;
    client.disable_edns();
    let name = actor_name(DEFAULT_DOMAIN);
    let m = ask(&mut client, &name, RecordType::A).await;
    assert_eq!(m.response_code, ResponseCode::NoError);
    assert!(m.authoritative);
    assert_eq!(ips(&m), vec![IpAddr::V4(V4)]);
    assert_eq!(m.answers[0].ttl, 7);
    let m = ask(&mut client, &name, RecordType::AAAA).await;
    assert_eq!(ips(&m), vec![IpAddr::V6(V6)]);
    let bad = format!("a.b.c.actors.{DEFAULT_DOMAIN}.");
    assert_nxdomain(&ask(&mut client, &bad, RecordType::A).await, "tcp nxdomain");
    let m = ask(&mut client, "example.com.", RecordType::A).await;
    assert_eq!(m.response_code, ResponseCode::Refused);

    // And UDP on the very same address.
    let mut udp = udp_client(server.local_addr()).await;
    let m = ask(&mut udp, &name, RecordType::A).await;
    assert_eq!(ips(&m), vec![IpAddr::V4(V4)]);
    server.shutdown().await;
}

#[tokio::test]
async fn a_custom_domain_replaces_the_default() {
    let server = serve("Example.Test.", vec![V4.into()], Duration::from_secs(60)).await;
    let mut client = udp_client(server.local_addr()).await;
    let m = ask(&mut client, "x.y.actors.example.test.", RecordType::A).await;
    assert_eq!(m.response_code, ResponseCode::NoError);
    assert_eq!(ips(&m), vec![IpAddr::V4(V4)]);
    let bad = "a.b.c.actors.example.test.";
    assert_nxdomain(&ask(&mut client, bad, RecordType::A).await, bad);
    let other = actor_name(DEFAULT_DOMAIN);
    let m = ask(&mut client, &other, RecordType::A).await;
    assert_eq!(m.response_code, ResponseCode::Refused);
}

#[tokio::test]
async fn a_taken_port_is_a_bind_error() {
    let taken = std::net::UdpSocket::bind(local()).unwrap();
    let addr = taken.local_addr().unwrap();
    let err = DnsServer::start(DnsConfig::new(addr, DEFAULT_DOMAIN, vec![]))
        .await
        .unwrap_err();
    assert!(matches!(err, DnsError::Bind { .. }), "{err:?}");
    assert!(err.to_string().starts_with("cannot listen on"), "{err}");
}

#[tokio::test]
async fn an_empty_domain_is_rejected() {
    // Spawning also proves the start future is `Send`, as the node needs it to be.
    let start = DnsServer::start(DnsConfig::new(local(), ".", vec![V4.into()]));
    let err = tokio::spawn(start).await.unwrap().unwrap_err();
    assert!(matches!(err, DnsError::InvalidDomain { .. }), "{err:?}");
}

#[tokio::test]
async fn shutdown_and_drop_release_both_sockets() {
    let server = serve(DEFAULT_DOMAIN, vec![V4.into()], Duration::from_secs(60)).await;
    let addr = server.local_addr();
    let mut client = tcp_client(addr).await;
    assert_eq!(
        ips(&ask(&mut client, &actor_name(DEFAULT_DOMAIN), RecordType::A).await).len(),
        1
    );
    tokio::time::timeout(TIMEOUT, server.shutdown())
        .await
        .expect("shutdown completes although a tcp client is connected");
    rebind(addr).await;

    // Dropping aborts the serving task; the sockets close soon after.
    let server = serve(DEFAULT_DOMAIN, vec![V4.into()], Duration::from_secs(60)).await;
    let addr = server.local_addr();
    drop(server);
    rebind(addr).await;
}

/// Binds UDP and TCP on `addr`, which succeeds only once the server let go of both.
async fn rebind(addr: SocketAddr) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let udp = tokio::net::UdpSocket::bind(addr).await;
        let tcp = tokio::net::TcpListener::bind(addr).await;
        if udp.is_ok() && tcp.is_ok() {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{addr} still bound");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `query` in one UDP datagram and returns the raw response.
async fn udp_raw(addr: SocketAddr, query: &Message) -> Vec<u8> {
    let socket = tokio::net::UdpSocket::bind(local()).await.unwrap();
    socket
        .send_to(&query.to_vec().unwrap(), addr)
        .await
        .unwrap();
    let mut buf = vec![0u8; 65_535];
    let (n, _) = tokio::time::timeout(TIMEOUT, socket.recv_from(&mut buf))
        .await
        .expect("dns response")
        .unwrap();
    buf.truncate(n);
    buf
}

fn a_query(name: &str, payload: Option<u16>) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    if let Some(payload) = payload {
        let mut edns = Edns::new();
        edns.set_max_payload(payload);
        m.set_edns(edns);
    }
    m
}

#[tokio::test]
async fn queries_over_the_size_limit_are_formerr() {
    let server = serve(DEFAULT_DOMAIN, vec![V4.into()], Duration::from_secs(60)).await;
    let name = actor_name(DEFAULT_DOMAIN);
    // A well-formed query made big with records in its additional section.
    let mut big = a_query(&name, None);
    let filler = Record::from_rdata(Name::from_ascii("x.").unwrap(), 0, RData::A(A(V4)));
    while big.to_vec().unwrap().len() <= MAX_QUERY_BYTES {
        big.additionals.push(filler.clone());
    }
    let m = Message::from_vec(&udp_raw(server.local_addr(), &big).await).unwrap();
    assert_eq!(m.response_code, ResponseCode::FormErr);
    assert!(m.answers.is_empty());
    // One record fewer, at most the limit: answered.
    big.additionals.pop();
    assert!(big.to_vec().unwrap().len() <= MAX_QUERY_BYTES);
    let m = Message::from_vec(&udp_raw(server.local_addr(), &big).await).unwrap();
    assert_eq!(m.response_code, ResponseCode::NoError);
    assert_eq!(ips(&m), vec![IpAddr::V4(V4)]);
    server.shutdown().await;
}

#[tokio::test]
async fn udp_answers_stay_within_the_payload_limit() {
    // More addresses than fit in one datagram.
    let answers: Vec<IpAddr> = (0..200u8)
        .map(|i| IpAddr::V4(Ipv4Addr::new(10, 9, 0, i)))
        .collect();
    let server = serve(DEFAULT_DOMAIN, answers.clone(), Duration::from_secs(60)).await;
    let name = actor_name(DEFAULT_DOMAIN);
    // The client offers far more than the limit: the responder keeps to its own.
    let raw = udp_raw(server.local_addr(), &a_query(&name, Some(4096))).await;
    assert!(
        raw.len() <= usize::from(MAX_UDP_PAYLOAD),
        "{} bytes",
        raw.len()
    );
    let m = Message::from_vec(&raw).unwrap();
    assert!(
        m.metadata.truncation,
        "truncated, to be asked again over tcp"
    );
    assert_eq!(
        m.edns.as_ref().map(Edns::max_payload),
        Some(MAX_UDP_PAYLOAD)
    );
    // Over TCP the whole answer comes back.
    let mut client = tcp_client(server.local_addr()).await;
    let m = ask(&mut client, &name, RecordType::A).await;
    assert_eq!(ips(&m), answers);
    server.shutdown().await;
}
