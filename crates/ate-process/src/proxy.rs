//! The egress proxy of one container. Its listener sits on 127.0.0.1:3128 inside the
//! container's network namespace (which has nothing but `lo`), but the node process
//! accepts the connections and dials out from the host namespace, so the program's only
//! way out is this proxy and only to destinations the template allows.
//!
//! It serves `CONNECT host:port` (a tunnel, used for HTTPS) and absolute-form
//! `GET http://host/...` (forwarded with `Connection: close`). Every client connection
//! carries one request or tunnel and is then closed, so no long-lived connection holds
//! an established socket inside the container when CRIU dumps it.

use std::time::Duration;

use ate_model::EgressPolicy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const MAX_HEAD: usize = 16 * 1024;
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `listener` until `shutdown` turns true (or its sender is dropped).
pub(crate) fn spawn(
    listener: TcpListener,
    policy: EgressPolicy,
    container: String,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        loop {
            let conn = tokio::select! {
                _ = shutdown.wait_for(|s| *s) => break,
                conn = listener.accept() => conn,
            };
            let (client, _) = match conn {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(container = %container, error = %e, "egress proxy accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let (policy, container, mut stop) =
                (policy.clone(), container.clone(), shutdown.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => {}
                    r = serve(client, &policy, &container) => {
                        if let Err(e) = r {
                            tracing::debug!(container = %container, error = %e, "egress proxy connection ended");
                        }
                    }
                }
            });
        }
    });
}

/// One proxied request or tunnel.
async fn serve(
    mut client: TcpStream,
    policy: &EgressPolicy,
    container: &str,
) -> std::io::Result<()> {
    let (head, rest) = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut client)).await {
        Ok(Ok(Some(h))) => h,
        Ok(Ok(None)) => return reply(&mut client, 400, "request head missing or too large").await,
        Ok(Err(e)) => return Err(e),
        Err(_) => return reply(&mut client, 408, "request head not received in time").await,
    };
    let Some(req) = parse(&head) else {
        return reply(
            &mut client,
            400,
            "expected CONNECT host:port or GET http://host/path",
        )
        .await;
    };
    if !policy.allows(&req.host, req.port) {
        tracing::info!(container, host = %req.host, port = req.port, "egress denied");
        let why = format!(
            "egress to {}:{} is not allowed by the template",
            req.host, req.port
        );
        return reply(&mut client, 403, &why).await;
    }
    let dial = tokio::time::timeout(
        DIAL_TIMEOUT,
        TcpStream::connect((req.host.as_str(), req.port)),
    );
    let mut upstream = match dial.await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let why = format!("cannot reach {}:{}: {e}", req.host, req.port);
            return reply(&mut client, 502, &why).await;
        }
        Err(_) => {
            let why = format!("cannot reach {}:{}: timed out", req.host, req.port);
            return reply(&mut client, 504, &why).await;
        }
    };
    tracing::debug!(container, host = %req.host, port = req.port, method = %req.method, "egress allowed");
    if req.method == "CONNECT" {
        client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await?;
        upstream.write_all(&rest).await?;
        tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
        return Ok(());
    }
    upstream.write_all(req.forward_head.as_bytes()).await?;
    upstream.write_all(&rest).await?;
    let (mut cr, mut cw) = client.split();
    let (mut ur, mut uw) = upstream.split();
    // The response ends the exchange: once the upstream closes, so do we.
    tokio::select! {
        r = tokio::io::copy(&mut ur, &mut cw) => { r?; }
        _ = async { let _ = tokio::io::copy(&mut cr, &mut uw).await; std::future::pending::<()>().await } => {}
    }
    cw.shutdown().await
}

/// Reads up to the blank line; returns (head, bytes already read past it).
async fn read_head(client: &mut TcpStream) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Ok(Some((String::from_utf8_lossy(&buf).into_owned(), rest)));
        }
        if buf.len() > MAX_HEAD {
            return Ok(None);
        }
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[derive(Debug)]
struct Request {
    method: String,
    host: String,
    port: u16,
    /// For forwarded requests: the head to send upstream (origin-form target).
    forward_head: String,
}

fn parse(head: &str) -> Option<Request> {
    let mut lines = head.split("\r\n");
    let mut parts = lines.next()?.split(' ');
    let (method, target) = (parts.next()?, parts.next()?);
    if method.is_empty() {
        return None;
    }
    if method.eq_ignore_ascii_case("CONNECT") {
        let (host, port) = target.rsplit_once(':')?;
        return Some(Request {
            method: "CONNECT".into(),
            host: host.to_ascii_lowercase(),
            port: port.parse().ok()?,
            forward_head: String::new(),
        });
    }
    let rest = target.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (authority, 80),
    };
    if host.is_empty() {
        return None;
    }
    let mut forward = format!("{method} {path} HTTP/1.1\r\n");
    let mut has_host = false;
    for line in lines.filter(|l| !l.is_empty()) {
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match name.as_str() {
            "connection" | "proxy-connection" | "keep-alive" | "proxy-authorization" => continue,
            "host" => has_host = true,
            _ => {}
        }
        forward.push_str(line);
        forward.push_str("\r\n");
    }
    if !has_host {
        forward.push_str(&format!("Host: {authority}\r\n"));
    }
    forward.push_str("Connection: close\r\n\r\n");
    Some(Request {
        method: method.to_string(),
        host: host.to_ascii_lowercase(),
        port,
        forward_head: forward,
    })
}

async fn reply(client: &mut TcpStream, status: u16, why: &str) -> std::io::Result<()> {
    let reason = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        408 => "Request Timeout",
        502 => "Bad Gateway",
        _ => "Gateway Timeout",
    };
    let body = format!("{why}\n");
    let msg = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    client.write_all(msg.as_bytes()).await?;
    client.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_connect_and_absolute_get() {
        let c = parse("CONNECT api.example.com:443 HTTP/1.1\r\nHost: x").unwrap();
        assert_eq!(
            (c.method.as_str(), c.host.as_str(), c.port),
            ("CONNECT", "api.example.com", 443)
        );
        let g = parse("GET http://Example.com:8080/a?b HTTP/1.1\r\nProxy-Connection: keep-alive\r\nAccept: */*").unwrap();
        assert_eq!((g.host.as_str(), g.port), ("example.com", 8080));
        assert_eq!(
            g.forward_head,
            "GET /a?b HTTP/1.1\r\nAccept: */*\r\nHost: Example.com:8080\r\nConnection: close\r\n\r\n"
        );
        assert!(parse("GET /relative HTTP/1.1").is_none());
        assert!(parse("CONNECT nohost HTTP/1.1").is_none());
    }
}
