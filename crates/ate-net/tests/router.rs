//! The HTTP router end to end: a real node running real wasm guests on a `LocalSeam`, a
//! real `Router` on a loopback port, and real HTTP/1.1 and HTTP/2 clients.
//!
//! What is tested: routing by host (port, trailing dot, upper case) and by path (prefix
//! stripped, query kept); the forwarded headers and hop-by-hop stripping in both directions;
//! HTTP/2 with prior knowledge; one activation shared by 200 concurrent first requests; the
//! bounded queue (503 + Retry-After on overflow); activation errors (NoCapacity, Busy,
//! Unavailable, Failed, NotFound) and timeouts (504); malformed and unnamed requests; a
//! trapping guest (503); the per-route response-head timeout (504); a sealed-and-stopped
//! actor losing its route and being activated afresh; a server-sent-events stream lasting
//! over a minute without buffering; and graceful shutdown (drain, and its timeout).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ate_model::SnapshotScope;
use ate_net::ActivateError;
use ate_seam::{CheckpointRequest, Durability, StopRequest};
use ate_testkit::http::{self as client, Answer};
use common::*;
use http::StatusCode;
use tokio::task::JoinSet;

fn assert_retry_later(a: &Answer, what: &str) {
    assert_eq!(a.status, 503, "{what}: {a:?}");
    assert_eq!(
        a.headers
            .get(http::header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap()),
        Some("1"),
        "{what}: Retry-After"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_and_path_routing_forward_the_request_and_its_headers() {
    let env = harness().actor("echo", echo("echo", 0)).start().await;
    let echo = actor("echo");

    // Host form, with upper case, a trailing dot and a port; forwarded and hop-by-hop
    // headers on the way in.
    let host = "Echo.TEAM-A.actors.Ate.Test.:8080";
    let req = request_with(
        &env.url("/x/y?z=1&w=2"),
        &[
            ("host", host),
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "spoofed.example"),
            ("connection", "x-secret"),
            ("x-secret", "hush"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic eDp5"),
            ("proxy-connection", "keep-alive"),
            ("x-kept", "yes"),
        ],
    );
    let a = client::send(&client::client(), req, ANSWER_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(a.status, 200, "{a:?}");
    let got = Echoed::parse(&a.body);
    assert_eq!(got.line, "GET /x/y?z=1&w=2 HTTP/1.1");
    assert_eq!(
        got.header("x-forwarded-for").as_deref(),
        Some("10.0.0.1, 127.0.0.1")
    );
    assert_eq!(got.header("x-forwarded-host").as_deref(), Some(host));
    assert_eq!(got.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(got.header("x-kept").as_deref(), Some("yes"));
    assert_eq!(got.header("host").as_deref(), Some(host));
    for gone in [
        "connection",
        "x-secret",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
    ] {
        assert_eq!(got.header(gone), None, "{gone} reached the guest: {got:?}");
    }
    // On the way out: the guest's own hop-by-hop headers stay behind, the rest come back.
    assert_eq!(a.headers.get("x-echo").unwrap(), "1");
    assert!(a.headers.get("x-guest-secret").is_none(), "{:?}", a.headers);
    assert!(a.headers.get("keep-alive").is_none(), "{:?}", a.headers);
    assert!(
        a.headers
            .get_all("connection")
            .iter()
            .all(|v| !v.to_str().unwrap().contains("x-guest-secret")),
        "{:?}",
        a.headers
    );

    // Host form without decoration.
    let a = env.get(Some(&env.host("echo")), "/").await;
    assert_eq!(Echoed::parse(&a.body).line, "GET / HTTP/1.1");

    // Path form: the prefix goes, the rest of the path and the query stay.
    for (path, line) in [
        ("/a/team-a/echo/p/q?k=v&w=1", "GET /p/q?k=v&w=1 HTTP/1.1"),
        ("/a/team-a/echo?only=query", "GET /?only=query HTTP/1.1"),
        ("/a/team-a/echo", "GET / HTTP/1.1"),
        ("/a/team-a/echo/", "GET / HTTP/1.1"),
    ] {
        let a = env.get(None, path).await;
        assert_eq!(a.status, 200, "{path}: {a:?}");
        let got = Echoed::parse(&a.body);
        assert_eq!(got.line, line, "{path}");
        assert_eq!(got.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
        let own = env.addr.to_string();
        assert_eq!(
            got.header("x-forwarded-host").as_deref(),
            Some(own.as_str())
        );
    }
    assert_eq!(env.activator.calls(&echo), 1, "one activation for all");
    assert_eq!(env.router.routes(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_with_prior_knowledge_works_end_to_end() {
    let env = harness().actor("echo", echo("echo", 0)).start().await;
    let h2 = client::h2_client();
    // Path form: the authority is the router's address, outside the actors' zone.
    let resp = h2
        .request(request_with(&env.url("/a/team-a/echo/h2?x=1"), &[]))
        .await
        .unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), StatusCode::OK);
    use http_body_util::BodyExt;
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let got = Echoed::parse(&String::from_utf8_lossy(&body));
    assert_eq!(got.line, "GET /h2?x=1 HTTP/1.1");
    assert_eq!(got.header("x-forwarded-proto").as_deref(), Some("http"));
    // Host form over HTTP/2.
    let host = env.host("echo");
    let req = request_with(&env.url("/named"), &[("host", &host)]);
    let a = client::send(&h2, req, ANSWER_TIMEOUT).await.unwrap();
    assert_eq!(a.status, 200, "{a:?}");
    let got = Echoed::parse(&a.body);
    assert_eq!(got.line, "GET /named HTTP/1.1");
    assert_eq!(got.header("x-forwarded-host"), Some(host));
    assert_eq!(env.activator.calls(&actor("echo")), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_requests_share_one_activation() {
    const N: usize = 200;
    let env = harness()
        .actor("count", workload("counter", COUNTER))
        .start()
        .await;
    // Hold the activation until every request waits for it.
    env.activator.close_gate();
    let http = client::client();
    let mut requests = JoinSet::new();
    for _ in 0..N {
        let req = client::request("GET", &env.url("/a/team-a/count/"), None, "").unwrap();
        let http = http.clone();
        requests.spawn(async move { client::send(&http, req, Duration::from_secs(60)).await });
    }
    eventually("all requests queued", Duration::from_secs(30), || {
        env.router.queued() == N
    })
    .await;
    env.activator.open_gate();
    let mut bodies = BTreeSet::new();
    while let Some(a) = requests.join_next().await {
        let a = a.unwrap().unwrap();
        assert_eq!(a.status, 200, "{a:?}");
        bodies.insert(a.body.parse::<usize>().unwrap());
    }
    assert_eq!(bodies, (1..=N).collect::<BTreeSet<_>>());
    assert_eq!(env.activator.calls(&actor("count")), 1);
    assert_eq!(env.router.queued(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_with_retry_after() {
    let env = harness()
        .config(|c| c.queue_len = 2)
        .actor("count", workload("counter", COUNTER))
        .start()
        .await;
    env.activator.close_gate();
    let http = client::client();
    let mut first = JoinSet::new();
    for _ in 0..2 {
        let req = client::request("GET", &env.url("/a/team-a/count/"), None, "").unwrap();
        let http = http.clone();
        first.spawn(async move { client::send(&http, req, ANSWER_TIMEOUT).await });
    }
    eventually("two requests queued", Duration::from_secs(10), || {
        env.router.queued() == 2
    })
    .await;
    let third = env.get_path("count", "/").await;
    assert_retry_later(&third, "third request");
    env.activator.open_gate();
    let mut bodies = BTreeSet::new();
    while let Some(a) = first.join_next().await {
        let a = a.unwrap().unwrap();
        assert_eq!(a.status, 200, "{a:?}");
        bodies.insert(a.body);
    }
    assert_eq!(bodies, BTreeSet::from(["1".to_string(), "2".to_string()]));
    assert_eq!(env.activator.calls(&actor("count")), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_no_worker_to_take_waits_for_one() {
    // One worker, taken: the second actor's request is parked, not refused, and goes
    // through once the first actor leaves its worker.
    let env = harness()
        .workers(1)
        .actor("first", echo("echo", 0))
        .actor("second", echo("echo", 0))
        .start()
        .await;
    assert_eq!(env.get_path("first", "/").await.status, 200);
    let waiting = {
        let url = env.url("/a/team-a/second/");
        tokio::spawn(async move {
            let req = client::request("GET", &url, None, "").unwrap();
            client::send(&client::client(), req, ANSWER_TIMEOUT).await
        })
    };
    eventually("the request parks", ANSWER_TIMEOUT, || {
        env.router.queued() == 1
    })
    .await;
    let tries = env.activator.calls(&actor("second"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "answered before a worker freed up");
    assert!(
        env.activator.calls(&actor("second")) > tries,
        "a parked activation looks again while it waits"
    );
    env.activator.release(&actor("first")).await;
    let a = waiting.await.unwrap().expect("answer");
    assert_eq!(a.status, 200, "{a:?}");
    assert!(a.body.starts_with("GET / HTTP/1.1"), "{}", a.body);
    assert_eq!(env.router.queued(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_request_gets_503_when_its_wait_ends_or_the_queue_is_full() {
    let wait = Duration::from_millis(500);
    let env = harness()
        .workers(1)
        .config(|c| {
            c.queue_wait = wait;
            c.queue_total = 1;
        })
        .actor("first", echo("echo", 0))
        .actor("second", echo("echo", 0))
        .actor("third", echo("echo", 0))
        .start()
        .await;
    assert_eq!(env.get_path("first", "/").await.status, 200);
    let parked = {
        let url = env.url("/a/team-a/second/");
        tokio::spawn(async move {
            let started = Instant::now();
            let req = client::request("GET", &url, None, "").unwrap();
            let a = client::send(&client::client(), req, ANSWER_TIMEOUT).await;
            (a, started.elapsed())
        })
    };
    eventually("the request parks", ANSWER_TIMEOUT, || {
        env.router.queued() == 1
    })
    .await;
    // The router's queue (one request over all actors) is full: another actor's request
    // is refused at once.
    let full = env.get_path("third", "/").await;
    assert_retry_later(&full, "queue full");
    assert!(
        full.body.contains("too many requests waiting"),
        "{}",
        full.body
    );
    let (a, took) = parked.await.unwrap();
    let a = a.expect("answer");
    assert_retry_later(&a, "no worker within the wait");
    assert!(a.body.contains("no worker freed up"), "{}", a.body);
    assert!(took >= wait, "answered after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activation_errors_become_statuses() {
    // One worker for two actors: the second finds no capacity, and after the queue wait
    // is answered 503.
    let env = harness()
        .workers(1)
        .config(|c| c.queue_wait = Duration::from_millis(300))
        .actor("first", echo("echo", 0))
        .actor("second", echo("echo", 0))
        .start()
        .await;
    assert_eq!(env.get_path("first", "/").await.status, 200);
    assert_retry_later(&env.get_path("second", "/").await, "no free worker");
    let parked_calls = env.activator.calls(&actor("second"));
    assert!(parked_calls > 1, "{parked_calls}");

    // Errors the activator is told to return; each request starts a new activation (but
    // for a moment after NotFound, which the router remembers: so it comes last).
    let cases = [
        (ActivateError::NoCapacity("full".into()), 503),
        (ActivateError::Unavailable("node down".into()), 503),
        (ActivateError::Refused("no token".into()), 502),
        (ActivateError::Failed("broken".into()), 500),
        (ActivateError::NotFound("gone".into()), 404),
    ];
    for (error, status) in cases {
        env.activator.set_fail(Some(error.clone()));
        let before = env.activator.calls(&actor("second"));
        let a = env.get_path("second", "/").await;
        assert_eq!(a.status, status, "{error:?}: {a:?}");
        if status == 503 {
            assert_retry_later(&a, &format!("{error:?}"));
        }
        // Only no capacity is tried again (parked); every other error ends the activation.
        let calls = env.activator.calls(&actor("second")) - before;
        if matches!(error, ActivateError::NoCapacity(_)) {
            assert!(calls > 1, "{calls}");
        } else {
            assert_eq!(calls, 1, "{error:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_busy_past_the_queue_wait_gets_503() {
    // The router retries a busy actor with backoff, and gives up with the Busy error once
    // the next pause would overrun the queue wait: so the client sees 503 + Retry-After,
    // before its own deadline would have given it 504.
    let wait = Duration::from_secs(1);
    let env = harness()
        .config(|c| c.queue_wait = wait)
        .actor("echo", echo("echo", 0))
        .start()
        .await;
    env.activator
        .set_fail(Some(ActivateError::Busy("suspending".into())));
    let start = Instant::now();
    let a = env.get_path("echo", "/").await;
    let took = start.elapsed();
    assert_retry_later(&a, "busy");
    assert!(took < wait, "gave up after {took:?}");
    let calls = env.activator.calls(&actor("echo"));
    assert!(calls >= 3, "busy was retried: {calls} calls");
    // Once it is free again, the next request gets through.
    env.activator.set_fail(None);
    assert_eq!(env.get_path("echo", "/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activation_slower_than_the_queue_wait_is_504_and_still_completes() {
    let wait = Duration::from_millis(300);
    let env = harness()
        .config(|c| c.queue_wait = wait)
        .actor("echo", echo("echo", 0))
        .start()
        .await;
    env.activator.set_delay(Duration::from_secs(1));
    let start = Instant::now();
    let a = env.get_path("echo", "/").await;
    let took = start.elapsed();
    assert_eq!(a.status, 504, "{a:?}");
    assert!(
        took >= wait && took < Duration::from_secs(1),
        "answered after {took:?}"
    );
    // The client hanging up did not cut the activation short: the actor comes up, and
    // the next request needs no new activation.
    eventually("the actor's route", Duration::from_secs(10), || {
        env.router.routes() == 1
    })
    .await;
    assert_eq!(env.get_path("echo", "/").await.status, 200);
    assert_eq!(env.activator.calls(&actor("echo")), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_unknown_and_unnamed_requests() {
    let env = harness().actor("echo", echo("echo", 0)).start().await;
    for host in [
        "a_b.team-a.actors.ate.test",
        "echo.team_a.actors.ate.test",
        "x.y.z.actors.ate.test",
        "echo.actors.ate.test",
        "-echo.team-a.actors.ate.test:80",
    ] {
        let a = env.get(Some(host), "/").await;
        assert_eq!(a.status, 400, "{host}: {a:?}");
    }
    for path in ["/a/Team_A/echo/", "/a/team-a", "/a/team-a/", "/a//echo/x"] {
        let a = env.get(None, path).await;
        assert_eq!(a.status, 400, "{path}: {a:?}");
    }
    assert_eq!(
        env.activator.known_calls() + env.activator.unknown_calls(),
        0
    );

    // The system's atespaces are not reachable: nothing is asked.
    for path in ["/a/ate-golden/echo/", "/a/ate-other/x/"] {
        let a = env.get(None, path).await;
        assert_eq!(a.status, 404, "{path}: {a:?}");
    }
    let a = env.get(Some("echo.ate-golden.actors.ate.test"), "/").await;
    assert_eq!(a.status, 404, "{a:?}");
    assert_eq!(
        env.activator.known_calls() + env.activator.unknown_calls(),
        0
    );

    // Well formed but unknown to the activator: asked once, then remembered for a moment.
    let a = env.get(Some("ghost.team-a.actors.ate.test"), "/").await;
    assert_eq!(a.status, 404, "{a:?}");
    let a = env.get(None, "/a/team-a/ghost/x").await;
    assert_eq!(a.status, 404, "{a:?}");
    assert_eq!(env.activator.unknown_calls(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let a = env.get(None, "/a/team-a/ghost/x").await;
    assert_eq!(a.status, 404, "{a:?}");
    assert_eq!(env.activator.unknown_calls(), 2);

    // Naming no actor at all: no activation is attempted.
    for (host, path) in [
        (Some("localhost"), "/"),
        (Some("localhost:8080"), "/other"),
        (Some("example.org"), "/"),
        (None, "/"),
    ] {
        let a = env.get(host, path).await;
        assert_eq!(a.status, 404, "{host:?} {path}: {a:?}");
    }
    assert_eq!(env.activator.unknown_calls(), 2);
    assert_eq!(env.activator.known_calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_guest_is_503_and_its_worker_recovers() {
    let env = harness().actor("echo", echo("echo", 0)).start().await;
    let a = env.get_path("echo", "/trap").await;
    assert_retry_later(&a, "trap");
    // The node replaces the guest: the next request is answered without a new activation.
    let a = env.get_path("echo", "/fine").await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(Echoed::parse(&a.body).line, "GET /fine HTTP/1.1");
    assert_eq!(env.activator.calls(&actor("echo")), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_timeout_bounds_the_wait_for_the_response_head() {
    let env = harness()
        .actor("hasty", echo("hasty", 200))
        .actor("patient", echo("patient", 0))
        .start()
        .await;
    // Activate both first, so the timings below are the guests' own.
    assert_eq!(env.get_path("hasty", "/").await.status, 200);
    assert_eq!(env.get_path("patient", "/").await.status, 200);

    let start = Instant::now();
    let a = env.get_path("hasty", "/slow").await;
    let took = start.elapsed();
    assert_eq!(a.status, 504, "{a:?}");
    assert!(a.body.contains("route timeout"), "{a:?}");
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(1),
        "answered after {took:?}"
    );

    let start = Instant::now();
    let a = env.get_path("patient", "/slow").await;
    let took = start.elapsed();
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(Echoed::parse(&a.body).line, "GET /slow HTTP/1.1");
    assert!(took >= Duration::from_secs(1), "answered after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_and_stopped_actor_is_activated_afresh() {
    let env = harness()
        .actor("count", workload("counter", COUNTER))
        .start()
        .await;
    let count = actor("count");
    assert_eq!(env.get_path("count", "/").await.body, "1");
    assert_eq!(env.get_path("count", "/").await.body, "2");
    assert_eq!(env.activator.calls(&count), 1);
    assert_eq!(env.router.routes(), 1);

    // Suspend it as the control plane does: a sealing checkpoint, then stop.
    let exec = env.exec();
    let worker = env.activator.worker_of(&count).unwrap();
    exec.checkpoint(CheckpointRequest {
        worker: worker.clone(),
        actor: count.clone(),
        workload: env.activator.workload_of(&count).unwrap(),
        location: String::new(),
        id: ate_snapshots::new_snapshot_id(),
        scope: SnapshotScope::Full,
        durability: Durability::Durable,
        seal: true,
        evict: false,
    })
    .await
    .unwrap();
    eventually(
        "the sealed actor's route is withdrawn",
        Duration::from_secs(5),
        || env.router.routes() == 0,
    )
    .await;
    exec.stop(StopRequest {
        worker,
        actor: count.clone(),
    })
    .await
    .unwrap();

    // The next request resumes it (the activator boots it afresh: it counts from 1).
    let a = env.get_path("count", "/").await;
    assert_eq!((a.status, a.body.as_str()), (200, "1"), "{a:?}");
    assert_eq!(env.activator.calls(&count), 2);
    assert_eq!(env.router.routes(), 1);
}

/// Opens a server-sent-events stream from the ticker through the router.
async fn open_stream(env: &Env, id: &str) -> EventReader {
    let http = client::client();
    let resp = http
        .request(request_with(
            &env.url(&format!("/a/team-a/{id}/events")),
            &[],
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    EventReader::new(resp.into_body())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_stream_for_over_a_minute_unbuffered() {
    const TICKS: u32 = 14;
    const INTERVAL: Duration = Duration::from_secs(5);
    let env = harness()
        .actor("ticker", ticker("ticker", TICKS, 5000))
        .start()
        .await;
    let start = Instant::now();
    let mut events = open_stream(&env, "ticker").await;
    let mut first = None;
    for n in 1..=TICKS {
        let event = tokio::time::timeout(Duration::from_secs(30), events.next())
            .await
            .unwrap_or_else(|_| panic!("tick {n} did not arrive"))
            .unwrap();
        assert_eq!(event.as_deref(), Some(format!("data: tick {n}").as_str()));
        let now = Instant::now();
        let first = *first.get_or_insert(now);
        if n == 1 {
            let after = now - start;
            assert!(after < Duration::from_secs(3), "first tick after {after:?}");
        }
        // Each tick arrives about when the guest writes it, not held back for later ones:
        // never a whole interval late, never early.
        let due = INTERVAL * (n - 1);
        let at = now - first;
        assert!(
            at + Duration::from_secs(1) >= due && at < due + Duration::from_secs(4),
            "tick {n} arrived {at:?} after the first, due at {due:?}"
        );
    }
    assert_eq!(
        events.next().await,
        Ok(None),
        "the stream ends after the last tick"
    );
    let total = start.elapsed();
    assert!(total > Duration::from_secs(60), "streamed for {total:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_an_open_stream_finish() {
    let mut env = harness()
        .actor("ticker", ticker("ticker", 4, 500))
        .start()
        .await;
    let mut events = open_stream(&env, "ticker").await;
    assert_eq!(
        events.next().await.unwrap().as_deref(),
        Some("data: tick 1")
    );
    let handle = env.take_handle();
    let addr = env.addr;
    let shutdown = tokio::spawn(handle.shutdown());
    // No new connections once the router is draining.
    let mut refused = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        refused,
        "the router still accepts connections while draining"
    );
    for n in 2..=4 {
        let event = events.next().await.unwrap();
        assert_eq!(event.as_deref(), Some(format!("data: tick {n}").as_str()));
        if n == 3 {
            assert!(
                !shutdown.is_finished(),
                "shutdown did not wait for the stream"
            );
        }
    }
    assert_eq!(events.next().await, Ok(None));
    tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .expect("shutdown returns once the stream is done")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_up_on_open_streams_after_the_drain_timeout() {
    let mut env = harness()
        .config(|c| c.drain_timeout = Duration::from_millis(500))
        .actor("ticker", ticker("ticker", 30, 1000))
        .start()
        .await;
    let mut events = open_stream(&env, "ticker").await;
    assert_eq!(
        events.next().await.unwrap().as_deref(),
        Some("data: tick 1")
    );
    let start = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), env.take_handle().shutdown())
        .await
        .expect("shutdown returns after the drain timeout");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(500),
        "returned after {took:?}"
    );
    // The stream is cut there, not completed: at most a tick already on its way arrives.
    let mut ticks = 1;
    while let Ok(Ok(Some(_))) = tokio::time::timeout(Duration::from_secs(3), events.next()).await {
        ticks += 1;
    }
    assert!(
        ticks <= 2,
        "the stream went on after the drain timeout ({ticks} ticks)"
    );
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "the stream was not cut"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activations_past_the_router_bound_get_503() {
    let env = harness()
        .config(|c| c.max_activations = 2)
        .actor("e1", echo("e1", 0))
        .actor("e2", echo("e2", 0))
        .actor("e3", echo("e3", 0))
        .start()
        .await;
    env.activator.close_gate();
    let mut held = JoinSet::new();
    for id in ["e1", "e2"] {
        let url = env.url(&format!("/a/team-a/{id}/"));
        held.spawn(async move { client::get(&url, None).await.unwrap() });
    }
    eventually("two activations under way", Duration::from_secs(10), || {
        env.activator.known_calls() == 2
    })
    .await;
    let third = env.get(None, "/a/team-a/e3/").await;
    assert_retry_later(&third, "a third activation at once");
    assert!(third.body.contains("too many actors starting"), "{third:?}");
    assert_eq!(env.activator.calls(&actor("e3")), 0);
    env.activator.open_gate();
    while let Some(a) = held.join_next().await {
        assert_eq!(a.unwrap().status, 200);
    }
    assert_eq!(env.get(None, "/a/team-a/e3/").await.status, 200);
}
