//! The seam between ate's control plane and its nodes (`control -> seam <- node`). Neither
//! plane imports the other: the control plane drives sandboxes through [`NodeExecutor`] and
//! learns which nodes are alive, and what they hold, from dataspace assertions
//! ([`NodeRegistration`], [`WorkerAdvert`], [`NodeCacheAdvert`]); routers learn where
//! running actors are served ([`Route`]) the same way. In the all-in-one binary
//! [`LocalSeam`] wires both planes in one process with no network hop; the split deployment
//! puts a network executor behind the same trait.

mod body;
mod error;
mod executor;
mod local;
mod registry;
mod routes;

pub use body::{Body, BodyError, BodySender, channel_body, empty_body, full_body};
pub use error::{InvokeError, SeamError};
pub use executor::{
    Checkpoint, CheckpointRequest, Durability, LogLine, LogStream, NodeExecutor, RestoreRequest,
    RunRequest, SnapshotRef, StopRequest, WorkerId, Workload,
};
pub use local::{LocalSeam, NodeMembership};
pub use registry::{NodeCacheAdvert, NodeDirectory, NodeRegistration, WorkerAdvert};
pub use routes::{IdleActor, Route, actor_key};
