//! The fault proxy: every link between two components of the chaos deployment runs through
//! a TCP proxy in the bench process, so the bench can cut a link (both directions), slow
//! it and heal it. Invariant: bytes cross a link in order and unaltered, or not at all; a
//! fault only delays or ends connections, as a real network can, and never corrupts,
//! reorders or duplicates what the components send.
//!
//! A link is an unordered pair of component names. A proxy in front of a replica serves one
//! caller (each node and the router get their own), so it knows both ends. A node has one
//! advertised address that replicas and the router all dial, so its proxy tells callers
//! apart by the process that owns the connecting socket (`/proc/net/tcp` and
//! `/proc/PID/fd`), which is what lets a node be cut from the replicas while the router
//! still reaches it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// How a link is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cut {
    #[default]
    Open,
    /// Packets dropped: bytes stop moving both ways and new connections hang, until the link
    /// heals (then they move on, as TCP's retransmissions would) or an end gives up.
    Drop,
    /// Connections reset: open ones are reset at once, new ones as soon as they arrive.
    Refuse,
}

#[derive(Debug, Clone, Copy, Default)]
struct Link {
    cut: Cut,
    latency: Duration,
}

type Key = (String, String);

fn key(a: &str, b: &str) -> Key {
    match a <= b {
        true => (a.to_string(), b.to_string()),
        false => (b.to_string(), a.to_string()),
    }
}

/// What one read of a connection takes at most.
const CHUNK: usize = 16 * 1024;
/// Chunks held per direction of a slowed connection: a fast sender then waits, as it would
/// for a full TCP window, instead of growing the proxy's memory.
const IN_FLIGHT: usize = 64;
/// How long the proxy waits for the component behind it to accept: the components' own
/// connect timeout (2 s) gives up first.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Who connected, when no component process owns the socket (the bench's own calls).
pub const UNKNOWN: &str = "unknown";

/// The links between components and their faults; proxies read it for every chunk.
#[derive(Debug, Clone)]
pub struct Network {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    links: Mutex<HashMap<Key, Link>>,
    /// Bumped on every change, so waiting connections look again.
    changed: watch::Sender<u64>,
    /// Component processes by pid, to name who connects to a node's proxy.
    owners: Mutex<HashMap<u32, String>>,
    /// Connections accepted per link, to show which links carried traffic.
    accepted: Mutex<HashMap<Key, usize>>,
}

/// Who connects through a proxy.
#[derive(Debug, Clone)]
pub enum Caller {
    /// Always this component.
    Is(String),
    /// Whichever component process owns the connecting socket.
    Owner,
}

impl Network {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                links: Mutex::new(HashMap::new()),
                changed: watch::Sender::new(0),
                owners: Mutex::new(HashMap::new()),
                accepted: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Records that process `pid` is component `name` (a restart brings a new pid).
    pub fn own(&self, pid: u32, name: &str) {
        let mut owners = self
            .inner
            .owners
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        owners.retain(|_, n| n != name);
        owners.insert(pid, name.to_string());
    }

    fn update(&self, a: &str, b: &str, change: impl FnOnce(&mut Link)) {
        {
            let mut links = self
                .inner
                .links
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            change(links.entry(key(a, b)).or_default());
        }
        self.inner.changed.send_modify(|n| *n += 1);
    }

    pub fn cut(&self, a: &str, b: &str, cut: Cut) {
        self.update(a, b, |l| l.cut = cut);
    }

    pub fn slow(&self, a: &str, b: &str, latency: Duration) {
        self.update(a, b, |l| l.latency = latency);
    }

    /// Every link open and fast again.
    pub fn heal_all(&self) {
        self.inner
            .links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.inner.changed.send_modify(|n| *n += 1);
    }

    fn link(&self, key: &Key) -> Link {
        self.inner
            .links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .copied()
            .unwrap_or_default()
    }

    /// Waits while the link drops packets; false once it refuses.
    async fn passable(&self, key: &Key) -> bool {
        let mut changes = self.inner.changed.subscribe();
        loop {
            match self.link(key).cut {
                Cut::Open => return true,
                Cut::Refuse => return false,
                Cut::Drop => {}
            }
            if changes.changed().await.is_err() {
                return false;
            }
        }
    }

    /// Resolves when the link starts refusing.
    async fn refused(&self, key: &Key) {
        let mut changes = self.inner.changed.subscribe();
        while self.link(key).cut != Cut::Refuse {
            if changes.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// A proxy on a free loopback port in front of component `to` at `target`; its address.
    /// It runs until the bench process ends.
    pub async fn proxy(
        &self,
        caller: Caller,
        to: &str,
        target: SocketAddr,
    ) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (net, to) = (self.clone(), to.to_string());
        tokio::spawn(async move {
            loop {
                let Ok((inbound, peer)) = listener.accept().await else {
                    // Out of descriptors, most likely: let some close.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let (net, to, caller) = (net.clone(), to.clone(), caller.clone());
                tokio::spawn(async move {
                    let from = match caller {
                        Caller::Is(name) => name,
                        Caller::Owner => net.owner_of(peer, addr).await,
                    };
                    let key = key(&from, &to);
                    *net.inner
                        .accepted
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .entry(key.clone())
                        .or_default() += 1;
                    net.connection(inbound, key, target).await;
                });
            }
        });
        Ok(addr)
    }

    /// Connections accepted so far on each link, `a<->b`, sorted.
    pub fn connections(&self) -> Vec<(String, usize)> {
        let accepted = self
            .inner
            .accepted
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<_> = accepted
            .iter()
            .map(|((a, b), n)| (format!("{a}<->{b}"), *n))
            .collect();
        all.sort();
        all
    }

    /// The component whose process holds the socket connecting `peer` to `local`.
    async fn owner_of(&self, peer: SocketAddr, local: SocketAddr) -> String {
        let owners = self
            .inner
            .owners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        tokio::task::spawn_blocking(move || {
            let inode = socket_inode(peer.port(), local.port())?;
            let needle = format!("socket:[{inode}]");
            owners.into_iter().find_map(|(pid, name)| {
                let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
                fds.flatten()
                    .any(|fd| {
                        std::fs::read_link(fd.path())
                            .is_ok_and(|target| target.as_os_str() == needle.as_str())
                    })
                    .then_some(name)
            })
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| UNKNOWN.to_string())
    }

    async fn connection(&self, mut inbound: TcpStream, key: Key, target: SocketAddr) {
        if !self.passable(&key).await {
            let _ = inbound.set_zero_linger();
            return;
        }
        let outbound = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await;
        let Ok(Ok(mut outbound)) = outbound else {
            let _ = inbound.set_zero_linger();
            return;
        };
        let _ = (inbound.set_nodelay(true), outbound.set_nodelay(true));
        let reset = {
            let (ri, wi) = inbound.split();
            let (ro, wo) = outbound.split();
            tokio::select! {
                _ = async { tokio::join!(self.pump(&key, ri, wo), self.pump(&key, ro, wi)) } => false,
                _ = self.refused(&key) => true,
            }
        };
        if reset {
            // Closed with a reset, as a firewall that rejects does, not a polite FIN.
            let _ = (inbound.set_zero_linger(), outbound.set_zero_linger());
        }
    }

    /// Copies one direction of a connection, holding bytes while the link drops packets and
    /// delaying each chunk by the link's latency (chunks keep their order and spacing).
    async fn pump(
        &self,
        key: &Key,
        mut from: impl AsyncRead + Unpin,
        mut to: impl AsyncWrite + Unpin,
    ) {
        let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT);
        let read = async move {
            let mut buf = vec![0u8; CHUNK];
            while self.passable(key).await {
                let n = match from.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let due = Instant::now() + self.link(key).latency;
                if tx.send((due, buf[..n].to_vec())).await.is_err() {
                    return;
                }
            }
        };
        let write = async {
            while let Some((due, chunk)) = rx.recv().await {
                tokio::time::sleep_until(due).await;
                if !self.passable(key).await || to.write_all(&chunk).await.is_err() {
                    return;
                }
            }
            let _ = to.shutdown().await;
        };
        tokio::join!(read, write);
    }
}

/// The inode of the TCP socket whose local port is `local` and remote port `remote`.
fn socket_inode(local: u16, remote: u16) -> Option<u64> {
    let port = |field: &str| {
        field
            .rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().find_map(|file| {
        let table = std::fs::read_to_string(file).ok()?;
        table.lines().skip(1).find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.len() > 9 && port(f[1]) == Some(local) && port(f[2]) == Some(remote))
                .then(|| f[9].parse().ok())
                .flatten()
        })
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// An echo server; its address.
    async fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
        s.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await?;
        Ok(buf.to_vec())
    }

    #[tokio::test]
    async fn cuts_slows_and_heals_a_link() {
        let net = Network::new();
        let proxy = net
            .proxy(Caller::Is("a".into()), "b", echo().await)
            .await
            .unwrap();
        let mut s = TcpStream::connect(proxy).await.unwrap();
        assert_eq!(round_trip(&mut s).await.unwrap(), b"ping");

        net.slow("b", "a", Duration::from_millis(100));
        let t = std::time::Instant::now();
        assert_eq!(round_trip(&mut s).await.unwrap(), b"ping");
        assert!(
            t.elapsed() >= Duration::from_millis(200),
            "{:?}",
            t.elapsed()
        );

        // Dropped: nothing moves until the link heals, then the same connection goes on.
        net.heal_all();
        net.cut("a", "b", Cut::Drop);
        s.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        let waited = tokio::time::timeout(Duration::from_millis(300), s.read_exact(&mut buf));
        assert!(waited.await.is_err());
        net.heal_all();
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");

        // Refused: the open connection is reset, and so are new ones.
        net.cut("a", "b", Cut::Refuse);
        assert!(round_trip(&mut s).await.is_err());
        let mut fresh = TcpStream::connect(proxy).await.unwrap();
        assert!(round_trip(&mut fresh).await.is_err());
        net.heal_all();
        let mut fresh = TcpStream::connect(proxy).await.unwrap();
        assert_eq!(round_trip(&mut fresh).await.unwrap(), b"ping");
    }

    #[tokio::test]
    async fn tells_callers_apart_by_the_owning_process() {
        let net = Network::new();
        net.own(std::process::id(), "me");
        let proxy = net.proxy(Caller::Owner, "b", echo().await).await.unwrap();
        net.cut("me", "b", Cut::Refuse);
        let mut s = TcpStream::connect(proxy).await.unwrap();
        assert!(round_trip(&mut s).await.is_err());
        net.cut("me", "b", Cut::Open);
        net.cut(UNKNOWN, "b", Cut::Refuse);
        let mut s = TcpStream::connect(proxy).await.unwrap();
        assert_eq!(round_trip(&mut s).await.unwrap(), b"ping");
    }
}
