//! A small real HTTP client for tests of the router: HTTP/1.1 or HTTP/2 (prior
//! knowledge), with a chosen `Host`, reading the body whole or chunk by chunk.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A client that keeps connections open between requests.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// An HTTP/1.1 client.
pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An HTTP/2 client (cleartext, prior knowledge).
pub fn h2_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// An answer read whole.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// A request to `url`, optionally with `host` as the `Host` header.
pub fn request(
    method: &str,
    url: &str,
    host: Option<&str>,
    body: &str,
) -> io::Result<http::Request<Full<Bytes>>> {
    let mut b = http::Request::builder().method(method).uri(url);
    if let Some(h) = host {
        b = b.header(http::header::HOST, h);
    }
    b.body(Full::new(Bytes::from(body.to_string())))
        .map_err(io_err)
}

/// Sends `req` and reads the whole answer (within `timeout`).
pub async fn send(
    client: &HttpClient,
    req: http::Request<Full<Bytes>>,
    timeout: Duration,
) -> io::Result<Answer> {
    let fut = async {
        let resp = client.request(req).await.map_err(io_err)?;
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.map_err(io_err)?.to_bytes();
        Ok(Answer {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "http request timed out"))?
}

/// `GET url` (with an optional `Host`), read whole, within 30 s.
pub async fn get(url: &str, host: Option<&str>) -> io::Result<Answer> {
    send(
        &client(),
        request("GET", url, host, "")?,
        Duration::from_secs(30),
    )
    .await
}
