//! The seam over the network: a node daemon serves its [`NodeExecutor`] as the gRPC service
//! `atenode.Node` ([`node_service`]), and the control plane and routers drive it through
//! [`RemoteExecutor`], which implements the same trait. Both ends keep the in-process
//! semantics: errors arrive as the very [`SeamError`] the node raised (as JSON in the
//! status, see `wire`), a request the node refused unread comes back whole, and response
//! bodies stream chunk by chunk (see `invoke` for the `Invoke` protocol).
//!
//! [`NodeExecutor`]: crate::NodeExecutor
//! [`SeamError`]: crate::SeamError

mod client;
mod invoke;
mod server;
mod wire;

pub use client::RemoteExecutor;
pub use server::{LogLines, NodeGrpc, node_service, node_service_with};

/// The largest gRPC message either end sends or accepts. `data` frames stay at 1 MiB;
/// the rest is room for a large workload spec or many headers.
pub const MAX_MESSAGE_BYTES: usize = 8 << 20;
