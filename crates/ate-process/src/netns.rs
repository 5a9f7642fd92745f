//! One network namespace per container, created by the driver before the container and
//! handed to runc by path. Because runc did not create it, runc treats it as external
//! during checkpoint and restore, so a checkpoint restores into a brand-new namespace
//! (another name, another machine). The namespace is a bind mount of the nsfs file on
//! a file under the node's state dir, like `ip netns add` does under /run/netns.
//!
//! Sockets "inside" a namespace are made on a short-lived dedicated OS thread that
//! enters the namespace (`setns` only affects the calling thread), creates the socket
//! and exits: a socket stays in the namespace it was created in, wherever it is used
//! later. Tokio's threads never change namespace.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType, netlink};
use rustix::thread::{LinkNameSpaceType, UnshareFlags};

/// A network namespace pinned by a bind mount at `path` and by the open `fd`.
#[derive(Debug, Clone)]
pub(crate) struct Netns {
    pub(crate) path: PathBuf,
    fd: Arc<OwnedFd>,
}

impl Netns {
    /// Creates a fresh namespace with `lo` up, pinned at `path` (replacing a leftover).
    pub(crate) fn create(path: &Path) -> io::Result<Netns> {
        remove(path);
        File::create(path)?;
        let target = path.to_path_buf();
        let result = std::thread::Builder::new()
            .name("ate-netns-new".into())
            .spawn(move || -> io::Result<OwnedFd> {
                // `unshare` is deprecated in rustix because `UnshareFlags::FILES` can
                // break fd assumptions of other threads. NEWNET only changes this
                // thread's network namespace, which is what we want, and the thread
                // exits right after, so it is sound here.
                #[allow(deprecated)]
                rustix::thread::unshare(UnshareFlags::NEWNET)?;
                rustix::mount::mount_bind("/proc/thread-self/ns/net", &target)?;
                lo_up()?;
                Ok(File::open(&target)?.into())
            })?
            .join()
            .map_err(|_| io::Error::other("netns thread panicked"))?;
        match result {
            Ok(fd) => Ok(Netns {
                path: path.to_path_buf(),
                fd: Arc::new(fd),
            }),
            Err(e) => {
                remove(path);
                Err(e)
            }
        }
    }

    /// Runs `f` on a fresh OS thread that has entered this namespace, e.g. to create a
    /// socket there, without blocking the async caller's thread.
    pub(crate) async fn run_in<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let fd = self.fd.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("ate-netns".into())
            .spawn(move || {
                let r = rustix::thread::move_into_link_name_space(
                    fd.as_fd(),
                    Some(LinkNameSpaceType::Network),
                )
                .map_err(io::Error::from)
                .and_then(|()| f());
                let _ = tx.send(r);
            })?;
        rx.await
            .map_err(|_| io::Error::other("netns thread panicked"))?
    }
}

/// Unmounts and deletes a namespace file; missing files are fine. The namespace itself
/// disappears once no process, mount or fd refers to it.
pub(crate) fn remove(path: &Path) {
    match rustix::mount::unmount(path, rustix::mount::UnmountFlags::DETACH) {
        Ok(()) => {}
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOENT => {}
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "unmount of netns failed"),
    }
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "removing netns file failed");
    }
}

/// Brings the loopback interface of the current thread's namespace up with one
/// rtnetlink `RTM_NEWLINK` request (ifindex 1 is always `lo` in a new namespace).
fn lo_up() -> io::Result<()> {
    const RTM_NEWLINK: u16 = 16;
    const NLM_F_REQUEST: u16 = 1;
    const NLM_F_ACK: u16 = 4;
    const NLMSG_ERROR: u16 = 2;
    const IFF_UP: u32 = 1;
    let sock = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::RAW,
        SocketFlags::CLOEXEC,
        None, // NETLINK_ROUTE
    )?;
    let mut msg = Vec::with_capacity(32);
    msg.extend_from_slice(&32u32.to_ne_bytes()); // nlmsg_len
    msg.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel assigns
    msg.extend_from_slice(&[0, 0]); // ifi_family AF_UNSPEC, padding
    msg.extend_from_slice(&0u16.to_ne_bytes()); // ifi_type
    msg.extend_from_slice(&1i32.to_ne_bytes()); // ifi_index: lo
    msg.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_flags
    msg.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_change
    rustix::net::sendto(
        &sock,
        &msg,
        SendFlags::empty(),
        &netlink::SocketAddrNetlink::new(0, 0),
    )?;
    let mut buf = [0u8; 512];
    let (n, _) = rustix::net::recv(&sock, &mut buf[..], RecvFlags::empty())?;
    if n >= 20 && u16::from_ne_bytes([buf[4], buf[5]]) == NLMSG_ERROR {
        let code = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
        if code != 0 {
            return Err(io::Error::from_raw_os_error(-code));
        }
        return Ok(());
    }
    Err(io::Error::other(
        "unexpected rtnetlink reply while bringing lo up",
    ))
}

/// Connects to `127.0.0.1:port` inside `netns`: the socket is made on a namespace
/// thread, the connect itself runs on tokio.
pub(crate) async fn connect_in(netns: &Netns, port: u16) -> io::Result<tokio::net::TcpStream> {
    let fd = netns
        .run_in(|| {
            Ok(rustix::net::socket_with(
                AddressFamily::INET,
                SocketType::STREAM,
                SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
                None,
            )?)
        })
        .await?;
    let socket = tokio::net::TcpSocket::from_std_stream(std::net::TcpStream::from(fd));
    socket
        .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await
}

/// A listener on `127.0.0.1:port` inside `netns`, accepted by tokio in the node.
pub(crate) async fn listen_in(netns: &Netns, port: u16) -> io::Result<tokio::net::TcpListener> {
    let listener = netns
        .run_in(move || {
            let l = std::net::TcpListener::bind(("127.0.0.1", port))?;
            l.set_nonblocking(true)?;
            Ok(l)
        })
        .await?;
    tokio::net::TcpListener::from_std(listener)
}
