//! The seam between ate's control plane and its nodes (`control -> seam <- node`). Neither
//! plane imports the other: the control plane drives sandboxes through [`NodeExecutor`] and
//! learns which nodes are alive, and what they hold, from dataspace assertions
//! ([`NodeRegistration`], [`WorkerAdvert`], [`NodeCacheAdvert`]) and what happened to
//! their actors ([`IdleActor`], [`ActorExited`]); routers learn where running actors are
//! served ([`Route`]) the same way. In the all-in-one binary
//! [`LocalSeam`] wires both planes in one process with no network hop; the split deployment
//! puts a network executor behind the same trait: a node daemon serves its executor with
//! [`node_service`] and the control plane reaches it through [`RemoteExecutor`].

mod body;
pub mod carry;
mod channel;
mod error;
mod executor;
mod exits;
mod follow;
mod local;
mod register;
mod registry;
mod remote;
mod routes;

pub use body::{Body, BodyError, BodySender, channel_body, empty_body, full_body};
pub use channel::{DialError, Dialer, endpoint};
pub use error::{InvokeError, SeamError};
pub use executor::{
    Checkpoint, CheckpointRequest, Durability, Evictable, LogLine, LogStream, NodeExecutor,
    RestoreRequest, RunRequest, SnapshotRef, StopRequest, WorkerId, Workload,
};
pub use exits::ActorExited;
pub use follow::{
    ControlFollower, RemoteNodes, WATCH_HEARTBEAT, follow_control, follow_control_with,
};
pub use local::{LocalSeam, NodeMembership};
pub use register::{Registration, RegistrationConfig, fencing_margin};
pub use registry::{NodeCacheAdvert, NodeDirectory, NodeRegistration, WorkerAdvert};
pub use remote::{
    LogLines, MAX_MESSAGE_BYTES, NodeGrpc, RemoteExecutor, node_service, node_service_with,
};
pub use routes::{IdleActor, Route, actor_key};
