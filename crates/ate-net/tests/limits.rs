//! The size limits of the router and the admin port, tried with real requests over the
//! limits (and just under them): 413 for a body, declared or streamed, 414 for a path, 431
//! for headers, over HTTP/1.1 and HTTP/2.
#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ate_net::{MAX_HEADER_BYTES, MAX_HEADERS, MAX_REQUEST_BODY_BYTES, MAX_URI_BYTES};
use ate_testkit::http as client;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `request` as it is over a fresh connection and reads one response: its status
/// and body (`Content-Length` framed, as the router and admin port answer).
async fn raw(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let read = async {
        loop {
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).await.unwrap_or(0);
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(str::to_string)
                    })
                    .and_then(|v| v.trim().parse::<usize>().ok());
                if n == 0 || len.is_some_and(|len| body.len() >= len) {
                    return text;
                }
            } else if n == 0 {
                return text;
            }
        }
    };
    let text = tokio::time::timeout(ANSWER_TIMEOUT, read).await.unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no response: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn headers(n: usize, value: &str) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("x-h{i}"), value.to_string()))
        .collect()
}

fn request(
    url: &str,
    headers: &[(String, String)],
) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    request_with(url, &pairs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_refuses_requests_over_the_size_limits() {
    let env = harness().actor("echo", echo("echo", 0)).start().await;
    let (h1, h2) = (client::client(), client::h2_client());

    // 413: a declared body over the limit, refused before any of it is read (so the
    // body is never even sent here).
    let head = format!(
        "POST /a/team-a/echo/ HTTP/1.1\r\nhost: {}\r\ncontent-length: {}\r\n\r\n",
        env.addr,
        MAX_REQUEST_BODY_BYTES + 1
    );
    let (status, body) = raw(env.addr, head.as_bytes()).await;
    assert_eq!(status, 413, "{body}");
    assert!(
        body.contains("request body is 67108865 bytes, over the limit of 67108864"),
        "{body}"
    );

    // 414: a request path over the limit, over both protocols; just under it is fine.
    let prefix = "/a/team-a/echo/";
    let fits = format!("{prefix}{}", "x".repeat(MAX_URI_BYTES - prefix.len()));
    let over = format!("{fits}x");
    for http in [&h1, &h2] {
        let a = client::send(http, request(&env.url(&over), &[]), ANSWER_TIMEOUT)
            .await
            .unwrap();
        assert_eq!(a.status, 414, "{a:?}");
        assert!(a.body.contains("over the limit of 8192"), "{a:?}");
        let a = client::send(http, request(&env.url(&fits), &[]), ANSWER_TIMEOUT)
            .await
            .unwrap();
        assert_eq!(a.status, 200, "{a:?}");
    }

    // 431: more header fields than allowed, over both protocols (HTTP/1.1 adds `host`).
    let url = env.url("/a/team-a/echo/");
    for http in [&h1, &h2] {
        let over = request(&url, &headers(MAX_HEADERS + 1, "v"));
        let a = client::send(http, over, ANSWER_TIMEOUT).await.unwrap();
        assert_eq!(a.status, 431, "{a:?}");
        let fits = request(&url, &headers(MAX_HEADERS - 2, "v"));
        let a = client::send(http, fits, ANSWER_TIMEOUT).await.unwrap();
        assert_eq!(a.status, 200, "{a:?}");
    }

    // 431: a head over the byte limit, as one big header.
    let big = [("x-big".to_string(), "v".repeat(MAX_HEADER_BYTES))];
    let a = client::send(&h1, request(&url, &big), ANSWER_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(a.status, 431, "{a:?}");
    // HTTP/2 bounds the header list: the stream is refused, never forwarded.
    let r = client::send(&h2, request(&url, &big), ANSWER_TIMEOUT).await;
    assert!(r.as_ref().map_or(true, |a| a.status == 431), "{r:?}");
    let half = [("x-big".to_string(), "v".repeat(MAX_HEADER_BYTES / 2))];
    for http in [&h1, &h2] {
        let a = client::send(http, request(&url, &half), ANSWER_TIMEOUT)
            .await
            .unwrap();
        assert_eq!(a.status, 200, "{a:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_body_is_cut_at_the_configured_limit() {
    let env = harness()
        .config(|c| c.max_request_body = 1024)
        .actor("echo", echo("echo", 0))
        .start()
        .await;
    let chunked = |size: usize| {
        format!(
            "POST /a/team-a/echo/ HTTP/1.1\r\nhost: {}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{size:x}\r\n{}\r\n0\r\n\r\n",
            env.addr,
            "b".repeat(size)
        )
    };
    // Under the limit the body reaches the actor whole.
    let (status, body) = raw(env.addr, chunked(1024).as_bytes()).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&"b".repeat(1024)), "{body}");
    // Over it, no length was declared: the body is cut where it crosses the limit, so
    // the actor never gets it whole, and the client gets 413 all the same.
    let (status, body) = raw(env.addr, chunked(1025).as_bytes()).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("over the limit of 1024 bytes"), "{body}");
    // A declared length over the configured limit: 413 at once.
    let a = client::send(
        &client::client(),
        client::request("POST", &env.url("/a/team-a/echo/"), None, &"b".repeat(1025)).unwrap(),
        ANSWER_TIMEOUT,
    )
    .await
    .unwrap();
    assert_eq!(a.status, 413, "{a:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_port_refuses_heads_over_the_limits() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let render: ate_net::RenderMetrics = Arc::new(|| "up 1\n".to_string());
    let server = tokio::spawn(ate_net::serve_admin(
        listener,
        render,
        std::future::pending(),
    ));
    let http = client::client();
    let url = format!("http://{addr}/healthz");
    let a = client::send(
        &http,
        request(&url, &headers(MAX_HEADERS - 2, "v")),
        ANSWER_TIMEOUT,
    )
    .await
    .unwrap();
    assert_eq!(a.status, 200, "{a:?}");
    let a = client::send(
        &http,
        request(&url, &headers(MAX_HEADERS, "v")),
        ANSWER_TIMEOUT,
    )
    .await
    .unwrap();
    assert_eq!(a.status, 431, "{a:?}");
    let big = [("x-big".to_string(), "v".repeat(MAX_HEADER_BYTES))];
    let a = client::send(&http, request(&url, &big), ANSWER_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(a.status, 431, "{a:?}");
    let long = format!("http://{addr}/{}", "x".repeat(MAX_URI_BYTES));
    let a = client::send(&http, request(&long, &[]), ANSWER_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(a.status, 414, "{a:?}");
    server.abort();
    let _ = tokio::time::timeout(Duration::from_secs(1), server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_its_headers_is_cut_off() {
    let env = harness().actor("echo", echo("echo", 0)).start().await;
    let mut s = tokio::net::TcpStream::connect(env.addr).await.unwrap();
    // Half a head, then nothing.
    s.write_all(b"GET /a/team-a/echo/ HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(ate_net::HEADER_READ_TIMEOUT * 2, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the connection was held open");
    assert!(started.elapsed() >= ate_net::HEADER_READ_TIMEOUT - Duration::from_secs(1));
    assert_eq!(env.activator.calls(&actor("echo")), 0);
}
