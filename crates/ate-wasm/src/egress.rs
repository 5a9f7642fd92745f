//! Outbound HTTP for guests. A guest can reach only the hosts its template allows; every
//! other destination is refused before a socket is opened. The client speaks plain
//! HTTP/1.1 with `Connection: close` and returns the whole response (de-chunked), because
//! a guest reads it from one buffer.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Most bytes of a response a guest can receive.
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// Why an outbound call did not happen or failed. The guest sees each as a distinct
/// negative return code (see `docs/sandboxes.md`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    #[error("egress to {0} is not allowed by the template")]
    Denied(String),
    #[error("malformed outbound request: {0}")]
    Malformed(String),
    #[error("outbound request failed: {0}")]
    Failed(String),
}

impl EgressError {
    /// The code a guest gets back.
    pub fn code(&self) -> i32 {
        match self {
            EgressError::Denied(_) => -1,
            EgressError::Malformed(_) => -2,
            EgressError::Failed(_) => -3,
        }
    }
}

pub use ate_model::EgressPolicy;

/// A parsed outbound request: an HTTP/1.1 message whose target is an absolute
/// `http://host[:port]/path` URL.
#[derive(Debug)]
struct Outbound<'a> {
    method: &'a str,
    host: String,
    port: u16,
    path: String,
    headers: Vec<(&'a str, &'a str)>,
    body: &'a [u8],
}

fn parse_request(raw: &[u8]) -> Result<Outbound<'_>, EgressError> {
    let bad = |why: &str| EgressError::Malformed(why.into());
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no blank line after the headers"))?;
    let head = std::str::from_utf8(&raw[..head_end]).map_err(|_| bad("headers are not UTF-8"))?;
    let body = &raw[head_end + 4..];
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(bad(
            "request line must be `METHOD http://host/path HTTP/1.1`",
        ));
    };
    let rest = target
        .strip_prefix("http://")
        .ok_or_else(|| bad("target must be an absolute http:// URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad("bad port in target"))?),
        None => (authority, 80),
    };
    if host.is_empty() || method.is_empty() {
        return Err(bad("empty host or method"));
    }
    let mut headers = Vec::new();
    for line in lines {
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| bad("header line without ':'"))?;
        headers.push((k.trim(), v.trim()));
    }
    Ok(Outbound {
        method,
        host: host.to_string(),
        port,
        path,
        headers,
        body,
    })
}

/// Sends the guest's request if the policy allows its destination, and returns the whole
/// response as an HTTP/1.1 message with a `content-length` header.
pub fn send(policy: &EgressPolicy, raw: &[u8], timeout: Duration) -> Result<Vec<u8>, EgressError> {
    let req = parse_request(raw)?;
    if !policy.allows(&req.host, req.port) {
        return Err(EgressError::Denied(format!("{}:{}", req.host, req.port)));
    }
    let failed = |e: std::io::Error| EgressError::Failed(e.to_string());
    let addr = (req.host.as_str(), req.port)
        .to_socket_addrs()
        .map_err(failed)?
        .next()
        .ok_or_else(|| EgressError::Failed(format!("{} has no address", req.host)))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(failed)?;
    stream.set_read_timeout(Some(timeout)).map_err(failed)?;
    stream.set_write_timeout(Some(timeout)).map_err(failed)?;
    let mut head = format!(
        "{} {} HTTP/1.1\r\nhost: {}:{}\r\n",
        req.method, req.path, req.host, req.port
    );
    for (k, v) in &req.headers {
        let lower = k.to_ascii_lowercase();
        if matches!(
            lower.as_str(),
            "host" | "connection" | "content-length" | "transfer-encoding"
        ) {
            continue;
        }
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        req.body.len()
    ));
    stream.write_all(head.as_bytes()).map_err(failed)?;
    stream.write_all(req.body).map_err(failed)?;
    read_response(BufReader::new(stream))
}

/// Downloads `url` (plain `http://`) and returns the body of a 200 response.
pub fn fetch(url: &str, timeout: Duration) -> Result<Vec<u8>, EgressError> {
    let raw = send(
        &EgressPolicy::allow_all(),
        format!("GET {url} HTTP/1.1\r\n\r\n").as_bytes(),
        timeout,
    )?;
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| EgressError::Failed("response without headers".into()))?;
    let status_line =
        String::from_utf8_lossy(&raw[..raw.iter().position(|b| *b == b'\r').unwrap_or(0)])
            .into_owned();
    if status_line.split(' ').nth(1) != Some("200") {
        return Err(EgressError::Failed(format!("GET {url}: {status_line}")));
    }
    Ok(raw[head_end + 4..].to_vec())
}

fn read_response(mut r: impl BufRead) -> Result<Vec<u8>, EgressError> {
    let failed = |e: std::io::Error| EgressError::Failed(e.to_string());
    let bad = |why: &str| EgressError::Failed(format!("bad response: {why}"));
    let mut status_line = String::new();
    r.read_line(&mut status_line).map_err(failed)?;
    if !status_line.starts_with("HTTP/1.") {
        return Err(bad("no HTTP/1 status line"));
    }
    let mut headers = Vec::new();
    let (mut length, mut chunked) = (None, false);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).map_err(failed)? == 0 {
            return Err(bad("headers cut short"));
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| bad("header without ':'"))?;
        let (k, v) = (k.trim(), v.trim());
        match k.to_ascii_lowercase().as_str() {
            "content-length" => {
                length = Some(v.parse::<usize>().map_err(|_| bad("content-length"))?)
            }
            "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
            "connection" => {}
            _ => headers.push(format!("{k}: {v}\r\n")),
        }
    }
    let too_big = || bad("response larger than 16 MiB");
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).map_err(failed)?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| bad("chunk size"))?;
            if size == 0 {
                break;
            }
            if body.len() + size > MAX_RESPONSE_BYTES {
                return Err(too_big());
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..]).map_err(failed)?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf).map_err(failed)?;
        }
    } else if let Some(n) = length {
        if n > MAX_RESPONSE_BYTES {
            return Err(too_big());
        }
        body.resize(n, 0);
        r.read_exact(&mut body).map_err(failed)?;
    } else {
        r.take(MAX_RESPONSE_BYTES as u64 + 1)
            .read_to_end(&mut body)
            .map_err(failed)?;
        if body.len() > MAX_RESPONSE_BYTES {
            return Err(too_big());
        }
    }
    let mut out = status_line.trim_end().as_bytes().to_vec();
    out.extend_from_slice(b"\r\n");
    for h in headers {
        out.extend_from_slice(h.as_bytes());
    }
    out.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend(body);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_responses_are_reassembled() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let out = read_response(&raw[..]).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nX-A: b\r\ncontent-length: 5\r\n\r\nabcde"
        );
    }

    #[test]
    fn malformed_requests_are_refused_without_a_connection() {
        let p = EgressPolicy::new(&["x.dev".into()]);
        for raw in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"GET https://x.dev/ HTTP/1.1\r\n\r\n",
            b"nonsense",
        ] {
            assert!(matches!(
                send(&p, raw, Duration::from_secs(1)),
                Err(EgressError::Malformed(_))
            ));
        }
        assert!(matches!(
            send(
                &p,
                b"GET http://y.dev/ HTTP/1.1\r\n\r\n",
                Duration::from_secs(1)
            ),
            Err(EgressError::Denied(_))
        ));
    }
}
