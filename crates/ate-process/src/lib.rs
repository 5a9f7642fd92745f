//! The `process` sandbox class: each actor is a Linux program running as a runc
//! container in its own network namespace, reachable only through connections the node
//! opens into that namespace, and able to reach out only through a per-container egress
//! proxy enforcing the template's allowlist. With a working CRIU, a container can be
//! checkpointed whole (memory, fds, listening sockets, tmpfs) and restored later under
//! another name, on another machine, with its durable dirs at other host paths.
//!
//! Lifecycle and cleanup: a node that stops normally stops (or drops) its sandboxes,
//! which kills each container's processes, deletes the container and removes its
//! network namespace and bundle. A node that dies (SIGKILL, crash) leaves containers
//! behind in its state dir; `ProcessHost::sweep` at the next start of the node kills
//! and removes them. Each node needs its own state dir.

mod bundle;
mod error;
mod host;
mod launch;
mod netns;
mod probe;
mod proxy;
mod rootfs;
mod runc;
mod sandbox;
mod snapshot;
mod tarsafe;
mod watch;

pub use error::ProcessError;
pub use host::{HostConfig, ProcessHost};
pub use launch::{Launch, LogSink, LogStream, Probe};
pub use rootfs::prepare_rootfs;
pub use sandbox::Sandbox;
pub use snapshot::{MAX_INDEX_BYTES, pack_dirs, unpack_dirs};
