//! What a node tells the control plane about actors whose program stopped on its own. A
//! `process` actor is a real program: it can crash, be killed for exceeding its memory
//! limit, or simply exit, and then its worker serves nothing while the store still says
//! RUNNING. The node asserts the fact; the control plane stops the actor there, which
//! frees the worker and makes the actor SUSPENDED from its last durable snapshot, so the
//! next request resumes it.

use ate_dataspace::Assertion;
use ate_model::ActorRef;
use serde::{Deserialize, Serialize};

use crate::WorkerId;

/// The program of a process actor stopped by itself (crash, OOM kill, exit): asserted by
/// its node under [`actor_key`](crate::actor_key)`(actor)` until the control plane stops
/// the actor there. Held by the node's membership, like its routes, so a node that dies
/// takes it along (the fleet then recovers the actor as lost with its node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorExited {
    pub actor: ActorRef,
    pub node: String,
    pub worker: WorkerId,
    /// How the program ended, completing "the actor's program …": `exited with status 1`,
    /// `was killed by signal 9 (out of memory)`.
    pub message: String,
    /// Milliseconds since the Unix epoch of the exit.
    pub time_ms: u64,
}

impl Assertion for ActorExited {
    const TYPE: &'static str = "ate.actor-exited.v1";
}
