//! A real node served over a real TCP port (`node_service`) and driven through
//! `RemoteExecutor`, as the control plane and routers of a split deployment drive it: real
//! wasm guests (the echo, counter and ticker guests), real snapshots. What crosses the wire
//! must behave as it does in process: answers with their status, headers and body; request
//! bodies; checkpoints and restores; the exact `SeamError`; refused requests handed back
//! whole, even after the node read them; streams flowing chunk by chunk and stopping when
//! the caller leaves; logs; a dead node as `NodeUnavailable`.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ate_model::ActorRef;
use ate_node::Node;
use ate_proto::atenode as pb;
use ate_seam::*;
use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;
use tokio_stream::wrappers::TcpListenerStream;

const ECHO: &str = include_str!("../../ate-net/tests/guests/echo.wat");

/// A node's executor served on a free local port; the server stops when this is dropped.
struct Served {
    remote: Arc<dyn NodeExecutor>,
    address: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve(node: &Node) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let service = node_service(node.service() as Arc<dyn NodeExecutor>);
    let server = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    let remote = RemoteExecutor::connect_lazy(&address)
        .unwrap()
        .named(node.name());
    assert_eq!(remote.node(), node.name());
    Served {
        remote: Arc::new(remote),
        address,
        server,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_and_request_bodies_cross_the_wire_whole() {
    let f = Fixture::new();
    let node = f.node("node-a");
    let served = serve(&node).await;
    let remote = &served.remote;
    let echo = f.workload("echo", ECHO, |_| {});
    let (w1, actor) = (worker("w1"), ActorRef::new("team-a", "e1"));
    remote.run(run(&w1, &actor, &echo)).await.unwrap();

    // A GET: status, the guest's headers (bytes as written), the raw request it saw.
    let req = http::Request::builder()
        .uri("/p/q?k=v")
        .header("x-trace", "abc-123")
        .body(empty_body())
        .unwrap();
    let (status, headers, body) = call(remote, &w1, &actor, req).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-echo"], "1");
    assert_eq!(headers["content-type"], "text/plain");
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(text.starts_with("GET /p/q?k=v HTTP/1.1\r\n"), "{text}");
    assert!(text.contains("x-trace: abc-123\r\n"), "{text}");

    // A POST whose body (binary, streamed in two chunks) reaches the guest intact.
    let (tx, streamed) = channel_body(4);
    tx.send(Ok(Bytes::from_static(b"hello \x00\xff")))
        .await
        .unwrap();
    tx.send(Ok(Bytes::from_static(b" world"))).await.unwrap();
    drop(tx);
    let (status, _, body) = call(remote, &w1, &actor, tagged_request(streamed)).await;
    assert_eq!(status, 200);
    assert!(body.starts_with(b"POST /count?x=1&y=two HTTP/1.1\r\n"));
    assert!(body.ends_with(b"\r\n\r\nhello \x00\xff world"), "{body:?}");

    // Bodies above one frame (1 MiB) are split on the wire and arrive whole, both ways.
    let big: Vec<u8> = (0..(5 << 19)).map(|i: u32| (i % 251) as u8).collect();
    let resp = remote
        .invoke(&w1, &actor, tagged_request(full_body(big.clone())))
        .await
        .unwrap();
    let mut body = resp.into_body();
    let (mut got, mut frames) = (Vec::new(), 0);
    while let Some(frame) = body.frame().await {
        got.extend_from_slice(&frame.unwrap().into_data().unwrap());
        frames += 1;
    }
    assert!(got.ends_with(&big), "{} bytes back", got.len());
    assert!(frames >= 3, "{frames} frames for {} bytes", got.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_stop_and_restore_keep_the_state() {
    let f = Fixture::new();
    let node = f.node("node-a");
    let served = serve(&node).await;
    let remote = &served.remote;
    let counter = f.workload("counter", COUNTER, |_| {});
    let (w1, w2, actor) = (worker("w1"), worker("w2"), ActorRef::new("team-a", "c1"));
    remote.run(run(&w1, &actor, &counter)).await.unwrap();
    // A retried run is a no-op.
    remote.run(run(&w1, &actor, &counter)).await.unwrap();
    assert_eq!(count(remote, &w1, &actor).await, "1");
    assert_eq!(count(remote, &w1, &actor).await, "2");

    let req = checkpoint(&w1, &actor, &counter, false);
    let id = req.id.clone();
    let cp = remote.checkpoint(req).await.unwrap();
    assert_eq!(cp.snapshot.id, id);
    assert_eq!(cp.snapshot.owner, actor);
    assert_eq!(cp.snapshot.scope, ate_model::SnapshotScope::Full);
    assert!(cp.bytes >= 65_536, "{cp:?}");

    remote.stop(stop(&w1, &actor)).await.unwrap();
    remote.stop(stop(&w1, &actor)).await.unwrap();
    let gone = remote.invoke(&w1, &actor, get("/count")).await.unwrap_err();
    assert!(
        matches!(gone.error, SeamError::NotHosted { .. }),
        "{}",
        gone.error
    );

    remote
        .restore(RestoreRequest {
            worker: w2.clone(),
            actor: actor.clone(),
            actor_uid: None,
            workload: counter.clone(),
            snapshot: cp.snapshot.clone(),
        })
        .await
        .unwrap();
    assert_eq!(count(remote, &w2, &actor).await, "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_come_back_exactly_and_refused_requests_whole() {
    let f = Fixture::new();
    let node = f.node("node-a");
    let served = serve(&node).await;
    let (remote, local) = (&served.remote, f.exec("node-a"));
    let counter = f.workload("counter", COUNTER, |_| {});
    let echo = f.workload("echo", ECHO, |_| {});
    let (w1, actor, other) = (
        worker("w1"),
        ActorRef::new("team-a", "c1"),
        ActorRef::new("team-a", "c2"),
    );
    remote.run(run(&w1, &actor, &counter)).await.unwrap();

    // Refused unread: the same error as in process, the request back with its body.
    let body = b"hello \x00\xff world".to_vec();
    let far = remote
        .invoke(&w1, &other, tagged_request(full_body(body.clone())))
        .await;
    let near = local
        .invoke(&w1, &other, tagged_request(full_body(body.clone())))
        .await;
    let far = assert_handed_back(far, &body).await;
    assert_eq!(far, assert_handed_back(near, &body).await);
    assert_eq!(
        far,
        SeamError::NotHosted {
            worker: w1.to_string(),
            actor: other.to_string(),
        }
    );

    // Run, checkpoint and restore errors, each exactly as the node raised it.
    let busy = remote.run(run(&w1, &other, &counter)).await.unwrap_err();
    assert_eq!(
        busy,
        local.run(run(&w1, &other, &counter)).await.unwrap_err()
    );
    assert!(matches!(busy, SeamError::WorkerBusy { .. }), "{busy}");
    let mut gpu = counter.clone();
    gpu.spec.sandbox_class = "gpu".into();
    let unsupported = remote
        .run(run(&worker("w2"), &other, &gpu))
        .await
        .unwrap_err();
    assert_eq!(
        unsupported,
        SeamError::UnsupportedClass {
            node: "node-a".into(),
            class: "gpu".into(),
        }
    );
    let not_hosted = remote
        .checkpoint(checkpoint(&w1, &other, &counter, false))
        .await
        .unwrap_err();
    assert_eq!(
        not_hosted,
        local
            .checkpoint(checkpoint(&w1, &other, &counter, false))
            .await
            .unwrap_err()
    );

    // A guest failing to answer: the error, no request handed back (it was delivered).
    let (w3, e1) = (worker("w3"), ActorRef::new("team-a", "e1"));
    remote.run(run(&w3, &e1, &echo)).await.unwrap();
    let trapped = remote.invoke(&w3, &e1, get("/trap")).await.unwrap_err();
    assert!(trapped.request.is_none());
    assert!(
        matches!(&trapped.error, SeamError::GuestUnavailable { actor, .. } if actor == "team-a/e1"),
        "{}",
        trapped.error
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_read_but_refused_at_a_seal_comes_back_whole() {
    let f = Fixture::new();
    let node = f.node("node-a");
    let served = serve(&node).await;
    let remote = &served.remote;
    let counter = f.workload("counter", COUNTER, |_| {});
    let (w1, w2, actor) = (worker("w1"), worker("w2"), ActorRef::new("team-a", "c1"));
    remote.run(run(&w1, &actor, &counter)).await.unwrap();
    assert_eq!(count(remote, &w1, &actor).await, "1");

    // Admitted, its body streaming to the node, when the sealing checkpoint comes.
    let (tx, slow_body) = channel_body(4);
    let pending = tokio::spawn({
        let (remote, w1, actor) = (remote.clone(), w1.clone(), actor.clone());
        async move { remote.invoke(&w1, &actor, tagged_request(slow_body)).await }
    });
    tx.send(Ok(Bytes::from_static(b"first "))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let cp = remote
        .checkpoint(checkpoint(&w1, &actor, &counter, true))
        .await
        .unwrap();
    tx.send(Ok(Bytes::from_static(b"second"))).await.unwrap();
    drop(tx);
    // Read by the node but never run: it comes back, body and all.
    assert_handed_back(pending.await.unwrap(), b"first second").await;

    remote.stop(stop(&w1, &actor)).await.unwrap();
    remote
        .restore(RestoreRequest {
            worker: w2.clone(),
            actor: actor.clone(),
            actor_uid: None,
            workload: counter.clone(),
            snapshot: cp.snapshot,
        })
        .await
        .unwrap();
    assert_eq!(count(remote, &w2, &actor).await, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_flows_chunk_by_chunk_and_stops_when_the_caller_leaves() {
    let f = Fixture::new();
    let node = f.node("node-a");
    let served = serve(&node).await;
    let remote = &served.remote;
    let ticker = f.workload("ticker", TICKER, |s| s.env = ticks(3, 250));
    let (w1, actor) = (worker("w1"), ActorRef::new("team-a", "t1"));
    remote.run(run(&w1, &actor, &ticker)).await.unwrap();

    let resp = remote.invoke(&w1, &actor, get("/")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let (mut text, mut seen) = (String::new(), Vec::new());
    while let Some(frame) = body.frame().await {
        text.push_str(std::str::from_utf8(&frame.unwrap().into_data().unwrap()).unwrap());
        for n in 1..=3 {
            if text.contains(&format!("data: tick {n}\n\n")) && seen.len() < n {
                seen.push(Instant::now());
            }
        }
    }
    assert_eq!(text, "data: tick 1\n\ndata: tick 2\n\ndata: tick 3\n\n");
    // Each tick arrived when the guest wrote it, not all at the end.
    let spread = seen[2].duration_since(seen[0]);
    assert!(
        spread >= Duration::from_millis(400),
        "ticks {spread:?} apart"
    );

    // A long stream the caller drops after its first tick: the node stops pumping it, so
    // the guest is free for the next request at once (not after 100 ticks).
    let long = f.workload("long-ticker", TICKER, |s| s.env = ticks(100, 50));
    let (w2, a2) = (worker("w2"), ActorRef::new("team-a", "t2"));
    remote.run(run(&w2, &a2, &long)).await.unwrap();
    for _ in 0..2 {
        let started = Instant::now();
        let resp = remote.invoke(&w2, &a2, get("/")).await.unwrap();
        let first = resp.into_body().frame().await.unwrap().unwrap();
        assert!(first.into_data().unwrap().starts_with(b"data: tick 1"));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the first tick took {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_come_back_and_follow() {
    let f = Fixture::new();
    let node = f.node("node-a");
    let served = serve(&node).await;
    let remote = &served.remote;
    let counter = f.workload("counter", COUNTER, |_| {});
    let (w1, actor) = (worker("w1"), ActorRef::new("team-a", "c1"));
    // The incarnation travels with the run and the read.
    let mut first = run(&w1, &actor, &counter);
    first.actor_uid = Some("uid-1".into());
    remote.run(first).await.unwrap();
    count(remote, &w1, &actor).await;
    count(remote, &w1, &actor).await;

    let mut past = remote.logs(&actor, Some("uid-1"), false).await.unwrap();
    let mut lines = Vec::new();
    while let Some(l) = past.recv().await {
        assert_eq!(l.stream, "stdout");
        assert!(l.time_ms > 0);
        lines.push(l.text);
    }
    assert_eq!(lines, ["counter: request 1", "counter: request 2"]);
    let mut namesake = remote.logs(&actor, Some("uid-2"), false).await.unwrap();
    assert!(
        namesake.recv().await.is_none(),
        "another incarnation has no lines"
    );

    let mut follow = remote.logs(&actor, Some("uid-1"), true).await.unwrap();
    for n in 1..=2 {
        let l = follow.recv().await.unwrap();
        assert_eq!(l.text, format!("counter: request {n}"));
    }
    count(remote, &w1, &actor).await;
    let next = tokio::time::timeout(Duration::from_secs(5), follow.recv())
        .await
        .expect("the new line arrives while following")
        .unwrap();
    assert_eq!(next.text, "counter: request 3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_is_unavailable_and_unsent_requests_come_back() {
    let f = Fixture::new();
    let counter = f.workload("counter", COUNTER, |_| {});
    // A port nobody listens on.
    let address = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().to_string()
    };
    let remote: Arc<dyn NodeExecutor> = Arc::new(
        RemoteExecutor::connect_lazy(&format!("http://{address}"))
            .unwrap()
            .named("node-z"),
    );
    let unavailable = SeamError::NodeUnavailable {
        node: "node-z".into(),
    };
    let (w1, actor) = (worker("w1"), ActorRef::new("team-a", "c1"));
    let started = Instant::now();
    assert_eq!(
        remote.run(run(&w1, &actor, &counter)).await.unwrap_err(),
        unavailable
    );
    assert_eq!(
        remote.stop(stop(&w1, &actor)).await.unwrap_err(),
        unavailable
    );
    assert_eq!(
        remote.logs(&actor, None, false).await.unwrap_err(),
        unavailable
    );
    let body = b"never sent".to_vec();
    let err = remote
        .invoke(&w1, &actor, tagged_request(full_body(body.clone())))
        .await
        .unwrap_err();
    assert_eq!(err.error, unavailable);
    let back = err.request.expect("an undelivered request is handed back");
    assert_eq!(back.into_body().collect().await.unwrap().to_bytes(), body);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_call_is_refused_naming_the_field() {
    let f = Fixture::new();
    let node = f.node("node-a");
    let served = serve(&node).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", served.address))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = pb::node_client::NodeClient::new(channel);
    let status = client.run(pb::RunRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("worker"), "{status}");
    assert!(status.metadata().get_bin("ate-seam-error-bin").is_some());

    let status = client
        .run(pb::RunRequest {
            worker: Some(pb::WorkerId::default()),
            actor: Some(pb::ActorRef::default()),
            workload: Some(pb::Workload {
                spec_json: "{not json".into(),
                ..Default::default()
            }),
            actor_uid: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("workload.spec_json"), "{status}");
    let status = client
        .run(pb::RunRequest {
            worker: Some(pb::WorkerId::default()),
            actor: Some(pb::ActorRef::default()),
            workload: None,
            actor_uid: "u".repeat(1 << 20),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("actor_uid"), "{status}");

    // An exchange must open with the request head.
    let frames = tokio_stream::iter([pb::HttpFrame {
        frame: Some(pb::http_frame::Frame::Data(b"body first".to_vec())),
        end_of_body: false,
    }]);
    let status = client.invoke(frames).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("head"), "{status}");
}
