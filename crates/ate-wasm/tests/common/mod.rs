#![allow(dead_code)]
//! Helpers shared by the guest tests.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ate_model::{ActorRef, Limits};
use ate_wasm::*;

pub type Collected = Arc<Mutex<Vec<ResponsePart>>>;

pub fn config(log: Arc<Mutex<Vec<u8>>>) -> GuestConfig {
    GuestConfig {
        actor: ActorRef::new("team-a", "c1"),
        env: vec![],
        limits: Limits::default(),
        egress: EgressPolicy::default(),
        egress_timeout: Duration::from_secs(5),
        log: Arc::new(move |_, bytes| log.lock().expect("log lock").extend_from_slice(bytes)),
    }
}

pub fn quiet() -> GuestConfig {
    config(Arc::default())
}

pub fn call(guest: &mut Guest, body: &str) -> Result<(u16, String), WasmError> {
    request(guest, "POST", "/", body)
}

/// Sends one request and returns the status and the whole body.
pub fn request(
    guest: &mut Guest,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String), WasmError> {
    let parts: Collected = Arc::default();
    let sink = parts.clone();
    let request = format!(
        "{method} {path} HTTP/1.1\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    guest.handle(
        request.as_bytes(),
        Box::new(move |p| {
            sink.lock().expect("sink lock").push(p);
            true
        }),
    )?;
    let parts = parts.lock().expect("parts lock");
    let ResponsePart::Head { status, .. } = parts[0] else {
        panic!("first part is not a head: {parts:?}")
    };
    let body: Vec<u8> = parts[1..]
        .iter()
        .flat_map(|p| match p {
            ResponsePart::Chunk(c) => c.to_vec(),
            ResponsePart::Head { .. } => panic!("two heads"),
        })
        .collect();
    Ok((status, String::from_utf8(body).expect("utf-8 body")))
}

/// An HTTP server on a free loopback port answering every request with `reply`; the
/// request bodies it received are kept in the returned list.
pub fn upstream(reply: &'static str) -> u16 {
    upstream_recording(reply).0
}

pub fn upstream_recording(reply: &'static str) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            // Read the head, then as much body as content-length says.
            while let Ok(n) = conn.read(&mut buf) {
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&req).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if req.len() >= end + 4 + len {
                        record
                            .lock()
                            .expect("record")
                            .push(text[end + 4..].to_string());
                        break;
                    }
                }
            }
            let _ = conn.write_all(
                format!("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{reply}", reply.len()).as_bytes(),
            );
        }
    });
    (port, seen)
}
