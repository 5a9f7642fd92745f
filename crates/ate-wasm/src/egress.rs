//! Outbound HTTP for guests. A guest can reach only the hosts its template allows; every
//! other destination is refused before a socket is opened. The client speaks plain
//! HTTP/1.1 with `Connection: close` and returns the whole response (de-chunked), because
//! a guest reads it from one buffer. The upstream is not trusted: everything read from it
//! is bounded (status line, each header line, the number of headers, each chunk-size line,
//! the body) and sizes are added with checked arithmetic, so no answer can make the node
//! buffer without bound or panic.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Most bytes of a response a guest can receive.
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;
/// Longest status line (`HTTP/1.1 200 OK` and a reason): a real one is a few dozen bytes;
/// the bound keeps an upstream from growing one line without end.
const MAX_STATUS_LINE: usize = 8 * 1024;
/// Longest header line, name and value: as large as common servers accept (nginx's large
/// header buffers are 8 KiB, Node's whole head 16 KiB), far above real headers.
const MAX_HEADER_LINE: usize = 16 * 1024;
/// Most headers in a response; with [`MAX_HEADER_LINE`] it bounds the head the guest gets
/// (2 MiB) apart from the body.
const MAX_HEADERS: usize = 128;
/// Longest chunk-size line: 16 hex digits reach `u64::MAX`; the rest is room for chunk
/// extensions, which are ignored.
const MAX_CHUNK_LINE: usize = 1024;

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

/// One line of the response, CRLF (or LF) included, of at most `max` bytes; empty at the
/// end of the stream. `what` names the line in errors.
fn read_line(r: &mut impl BufRead, max: usize, what: &str) -> Result<String, EgressError> {
    let mut line = Vec::new();
    r.by_ref()
        .take(max as u64)
        .read_until(b'\n', &mut line)
        .map_err(|e| EgressError::Failed(e.to_string()))?;
    if line.len() == max && !line.ends_with(b"\n") {
        return Err(EgressError::Failed(format!(
            "bad response: {what} longer than {max} bytes"
        )));
    }
    String::from_utf8(line)
        .map_err(|_| EgressError::Failed(format!("bad response: {what} is not utf-8")))
}

fn read_response(mut r: impl BufRead) -> Result<Vec<u8>, EgressError> {
    let failed = |e: std::io::Error| EgressError::Failed(e.to_string());
    let bad = |why: &str| EgressError::Failed(format!("bad response: {why}"));
    let status_line = read_line(&mut r, MAX_STATUS_LINE, "status line")?;
    if !status_line.starts_with("HTTP/1.") {
        return Err(bad("no HTTP/1 status line"));
    }
    let mut headers = Vec::new();
    let (mut length, mut chunked) = (None, false);
    for seen in 0.. {
        let line = read_line(&mut r, MAX_HEADER_LINE, "header line")?;
        if line.is_empty() {
            return Err(bad("headers cut short"));
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if seen == MAX_HEADERS {
            return Err(bad(&format!("more than {MAX_HEADERS} headers")));
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
            let line = read_line(&mut r, MAX_CHUNK_LINE, "chunk-size line")?;
            let digits = line.split(';').next().unwrap_or_default().trim();
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad("chunk size"));
            }
            // More than 16 hex digits cannot be a size this side holds: refused as too big.
            let size = usize::from_str_radix(digits, 16).map_err(|_| too_big())?;
            if size == 0 {
                break;
            }
            let end = body
                .len()
                .checked_add(size)
                .filter(|n| *n <= MAX_RESPONSE_BYTES)
                .ok_or_else(too_big)?;
            let start = body.len();
            body.resize(end, 0);
            r.read_exact(&mut body[start..]).map_err(failed)?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf).map_err(failed)?;
            if crlf != *b"\r\n" {
                return Err(bad("chunk not followed by CRLF"));
            }
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
    use std::net::TcpListener;

    /// An upstream on a free loopback port that reads one request's head and then lets
    /// `answer` write whatever it likes on the connection.
    fn upstream(answer: impl FnOnce(TcpStream) + Send + 'static) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            let Ok((conn, _)) = listener.accept() else {
                return;
            };
            let mut reader = BufReader::new(conn);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            answer(reader.into_inner());
        });
        port
    }

    fn get(port: u16) -> Result<Vec<u8>, EgressError> {
        let policy = EgressPolicy::new(&[format!("127.0.0.1:{port}")]);
        let raw = format!("GET http://127.0.0.1:{port}/ HTTP/1.1\r\n\r\n");
        send(&policy, raw.as_bytes(), Duration::from_secs(10))
    }

    #[test]
    fn a_chunk_size_near_u64_max_is_refused_not_an_overflow() {
        // One real chunk first, so the next size added to what is held overflows.
        let port = upstream(|mut conn| {
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                  3\r\nabc\r\nffffffffffffffff\r\n",
            );
        });
        let err = get(port).unwrap_err();
        assert!(matches!(err, EgressError::Failed(_)), "{err}");
        assert!(err.to_string().contains("16 MiB"), "{err}");
    }

    #[test]
    fn an_endless_header_line_is_refused() {
        // The upstream writes one header line for as long as the client reads.
        let port = upstream(|mut conn| {
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nX-Endless: ");
            let block = [b'a'; 64 * 1024];
            while conn.write_all(&block).is_ok() {}
        });
        let err = get(port).unwrap_err();
        assert!(matches!(err, EgressError::Failed(_)), "{err}");
        assert!(err.to_string().contains("header line longer than"), "{err}");
    }

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
    fn every_line_of_the_response_head_is_bounded() {
        let refused = |raw: Vec<u8>, why: &str| {
            let err = read_response(&raw[..]).unwrap_err();
            assert!(err.to_string().contains(why), "{err}, wanted {why}");
        };
        let long = |n: usize| "a".repeat(n);
        refused(
            format!("HTTP/1.1 200 {}\r\n\r\n", long(MAX_STATUS_LINE)).into_bytes(),
            "status line longer than",
        );
        refused(
            format!("HTTP/1.1 200 OK\r\nx: {}\r\n\r\n", long(MAX_HEADER_LINE)).into_bytes(),
            "header line longer than",
        );
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: v\r\n")).collect();
        refused(
            format!("HTTP/1.1 200 OK\r\n{many}\r\n").into_bytes(),
            "more than 128 headers",
        );
        let chunked = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        refused(
            format!("{chunked}1;{}\r\na\r\n0\r\n\r\n", long(MAX_CHUNK_LINE)).into_bytes(),
            "chunk-size line longer than",
        );
        refused(
            format!("{chunked}10000000000000000\r\n").into_bytes(),
            "larger than 16 MiB",
        );
        refused(format!("{chunked}+3\r\nabc\r\n").into_bytes(), "chunk size");
        refused(
            format!("{chunked}3\r\nabcXY0\r\n\r\n").into_bytes(),
            "not followed by CRLF",
        );
        // At the bounds (a longest line, the most headers), a response still goes through.
        let max_header = format!("x: {}", long(MAX_HEADER_LINE - 5));
        let fine: String = (0..MAX_HEADERS - 2)
            .map(|i| format!("x-{i}: v\r\n"))
            .collect();
        let raw = format!("HTTP/1.1 200 OK\r\n{max_header}\r\n{fine}content-length: 1\r\n\r\nz");
        let out = read_response(raw.as_bytes()).unwrap();
        assert!(out.ends_with(b"content-length: 1\r\n\r\nz"));
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
