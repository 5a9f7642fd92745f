//! The router and DNS responder of the real `ate` binary: the README walkthrough as a user
//! types it (with the HTTP client standing in for curl), resume on request under a burst
//! of concurrent first requests, idle suspension, metrics and DNS.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use ate_testkit::http;
use common::Up;

async fn metric(up: &Up, series: &str) -> f64 {
    up.metric(series).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walkthrough() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    up.ok(&["create", "atespace", "team-a"]);
    up.create_counter("counter-1");
    // curl three times: the first request resumes the actor.
    for want in ["1", "2", "3"] {
        let a = up.curl("/a/team-a/counter-1/").await;
        assert_eq!((a.status, a.body.as_str()), (200, want));
    }
    assert_eq!(up.status_of("counter-1"), "RUNNING");
    up.ok(&["suspend", "actor", "counter-1", "-a", "team-a"]);
    assert_eq!(up.status_of("counter-1"), "SUSPENDED");
    // The next request resumes it from its snapshot: the count goes on.
    let a = up.curl("/a/team-a/counter-1/").await;
    assert_eq!((a.status, a.body.as_str()), (200, "4"));
    // The host form reaches the same actor.
    let host = "counter-1.team-a.actors.resources.substrate.ate.dev";
    let a = http::get(&format!("{}/", up.router), Some(host))
        .await
        .unwrap();
    assert_eq!((a.status, a.body.as_str()), (200, "5"));
    assert_eq!(up.status_of("counter-1"), "RUNNING");
    // demo/counter idles out after 30 s: nobody suspends it by hand.
    let start = Instant::now();
    while up.status_of("counter-1") != "SUSPENDED" {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "the idle actor was never suspended"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        start.elapsed() >= Duration::from_secs(20),
        "suspended before its idle timeout"
    );
    assert_eq!(metric(&up, "ate_actor_idle_suspends_total").await, 1.0);
    let a = up.curl("/a/team-a/counter-1/").await;
    assert_eq!((a.status, a.body.as_str()), (200, "6"));
    up.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_first_requests_resumes_once() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    up.ok(&["create", "atespace", "team-a"]);
    up.create_counter("c1");
    let resumes = r#"ate_actor_resumes_total{outcome="ok"}"#;
    let before = metric(&up, resumes).await;
    let client = http::client();
    let url = format!("{}/a/team-a/c1/", up.router);
    let mut all = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let (client, url) = (client.clone(), url.clone());
        all.spawn(async move {
            let req = http::request("GET", &url, None, "").unwrap();
            http::send(&client, req, Duration::from_secs(60))
                .await
                .unwrap()
        });
    }
    let mut counts = BTreeSet::new();
    for a in all.join_all().await {
        assert_eq!(a.status, 200, "{}", a.body);
        counts.insert(a.body.parse::<u32>().unwrap());
    }
    assert_eq!(counts, (1..=200).collect::<BTreeSet<_>>());
    assert_eq!(metric(&up, resumes).await - before, 1.0, "one resume");
    assert_eq!(
        metric(&up, r#"ate_router_activations_total{outcome="ok"}"#).await,
        1.0
    );
    assert_eq!(
        metric(&up, r#"ate_router_requests_total{status="200"}"#).await,
        200.0
    );
    up.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_malformed_actors_are_answered_by_the_router() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    up.ok(&["create", "atespace", "team-a"]);
    let a = up.curl("/a/team-a/nobody/").await;
    assert_eq!(a.status, 404, "{}", a.body);
    assert!(a.body.contains("nobody"), "{}", a.body);
    let a = up.curl("/a/Team_A/x/").await;
    assert_eq!(a.status, 400, "{}", a.body);
    let a = up.curl("/").await;
    assert_eq!(a.status, 404, "{}", a.body);
    assert_eq!(
        metric(&up, r#"ate_router_requests_total{status="404"}"#).await,
        2.0
    );
    up.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_answers_actor_names_with_the_router_address() {
    use hickory_net::client::{Client, ClientHandle};
    use hickory_net::proto::op::ResponseCode;
    use hickory_net::proto::rr::{DNSClass, Name, RData, RecordType};
    use hickory_net::runtime::TokioRuntimeProvider;
    use hickory_net::udp::UdpClientStream;

    let dir = tempfile::tempdir().unwrap();
    let port = ate_testkit::free_port().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let up = Up::launch(dir.path(), None, &["--dns-listen", &listen], &[]);
    let addr: SocketAddr = listen.parse().unwrap();
    let stream = UdpClientStream::builder(addr, TokioRuntimeProvider::default())
        .with_timeout(Some(Duration::from_secs(3)))
        .build();
    let (mut client, bg) = Client::<TokioRuntimeProvider>::from_sender(stream);
    tokio::spawn(bg);
    let name = Name::from_ascii("counter-1.team-a.actors.resources.substrate.ate.dev.").unwrap();
    let answer = client
        .query(name, DNSClass::IN, RecordType::A)
        .await
        .unwrap()
        .into_message();
    assert_eq!(answer.response_code, ResponseCode::NoError);
    let ips: Vec<IpAddr> = answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect();
    // The router listens on 127.0.0.1: that is the answer.
    assert_eq!(ips, vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    let bad = Name::from_ascii("a.b.c.actors.resources.substrate.ate.dev.").unwrap();
    let answer = client
        .query(bad, DNSClass::IN, RecordType::A)
        .await
        .unwrap()
        .into_message();
    assert_eq!(answer.response_code, ResponseCode::NXDomain);
    up.stop();
}
