//! What nodes tell routers and the control plane about running actors, as dataspace
//! assertions held by the node's membership: where each actor is served, and which ones
//! have been idle long enough to suspend. A node that dies takes both with it.

use ate_dataspace::{Assertion, Id};
use ate_model::{ActorRef, NamespacedName};
use serde::{Deserialize, Serialize};

use crate::WorkerId;

/// The dataspace identifier of an actor's assertions: `atespace/id`.
pub fn actor_key(actor: &ActorRef) -> Id {
    Id::Str(format!("{}/{}", actor.atespace, actor.id))
}

/// "This actor is served by this worker": asserted from the moment the actor can take
/// requests until it stops taking them (stop, or the checkpoint of a suspend or pause).
/// Routers forward from these alone, with no control-plane call per request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub actor: ActorRef,
    pub node: String,
    pub worker: WorkerId,
    pub template: NamespacedName,
    /// Longest wait for the response head, in milliseconds; 0 waits as long as it takes.
    pub timeout_ms: u64,
}

impl Assertion for Route {
    const TYPE: &'static str = "ate.route.v1";
}

/// "This actor has had no request in flight for its template's idle timeout": the
/// control plane suspends it. Retracted as soon as a request arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdleActor {
    pub actor: ActorRef,
    pub node: String,
    pub worker: WorkerId,
    /// Milliseconds since the Unix epoch of the last request's end.
    pub idle_since_ms: u64,
}

impl Assertion for IdleActor {
    const TYPE: &'static str = "ate.actor-idle.v1";
}
