//! What a node may assert: only facts about itself. Every record the registry writes for
//! node N (and every record the mirror shows) has a value that names N and the id that value
//! gives it, so one node's stream can neither speak for another node nor take another
//! assertion's place. Assertions about actors are also checked against the store: a node
//! may route, mark idle or report the exit of an actor only on one of its own workers that
//! the store binds to that actor.
//!
//! The ids are the ones nodes assert under: a registration and a cache advert under the
//! node's name, a worker advert under the worker's key, and routes, idle marks and exits
//! under [`actor_key`].

use std::sync::Arc;

use ate_dataspace::Assertion;
use ate_model::{Actor, ActorRef, ActorStatus, Worker};
use ate_seam::carry::RawAssertion;
use ate_seam::{
    ActorExited, IdleActor, NodeCacheAdvert, NodeRegistration, Route, WorkerAdvert, WorkerId,
    actor_key,
};
use ate_store::{Store, StoreError};

/// What the store must confirm before an assertion that passed [`inspect`] is written.
#[derive(Debug, Clone)]
pub(super) enum Claim {
    /// Nothing: the value speaks only of the node itself.
    Own,
    /// A route: the worker is the node's and bound to the actor, and the actor's record
    /// places it there.
    Route(Route),
    /// An idle mark or an exit: the worker is the node's and bound to the actor.
    Hosted { actor: ActorRef, worker: WorkerId },
}

/// Whether the store confirms a [`Claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    Holds,
    /// It does not, and why (a message naming the field).
    Unbound(String),
}

fn decode<T: Assertion>(raw: &RawAssertion) -> Result<T, String> {
    serde_json::from_str(&raw.value_json)
        .map_err(|e| format!("value: {} {:?} is not valid: {e}", raw.type_tag, raw.id))
}

/// Checks what needs no store: the type is carried, the value decodes, names `node` (and,
/// for a registration, `incarnation`), and `raw.id` is the id its value gives it. Returns
/// what the store must still confirm, or why the assertion is refused.
pub(super) fn inspect(raw: &RawAssertion, node: &str, incarnation: &str) -> Result<Claim, String> {
    // (field naming the node, the node it names, the id the value gives, the claim)
    let (field, named, id, claim) = match raw.type_tag.as_str() {
        NodeRegistration::TYPE => {
            let r: NodeRegistration = decode(raw)?;
            if r.incarnation != incarnation {
                return Err(format!(
                    "incarnation: registration of {}/{} on the stream of {node}/{incarnation}",
                    r.name, r.incarnation
                ));
            }
            ("name", r.name.clone(), r.name, Claim::Own)
        }
        WorkerAdvert::TYPE => {
            let a: WorkerAdvert = decode(raw)?;
            // A worker id does not name its node; the fleet records an advert only on a
            // worker of the node that sent it.
            ("node", a.node, a.worker.to_string(), Claim::Own)
        }
        NodeCacheAdvert::TYPE => {
            let a: NodeCacheAdvert = decode(raw)?;
            ("node", a.node.clone(), a.node, Claim::Own)
        }
        Route::TYPE => {
            let r: Route = decode(raw)?;
            let id = actor_key(&r.actor).to_string();
            ("node", r.node.clone(), id, Claim::Route(r))
        }
        IdleActor::TYPE => {
            let m: IdleActor = decode(raw)?;
            let id = actor_key(&m.actor).to_string();
            let claim = Claim::Hosted {
                actor: m.actor,
                worker: m.worker,
            };
            ("node", m.node, id, claim)
        }
        ActorExited::TYPE => {
            let x: ActorExited = decode(raw)?;
            let id = actor_key(&x.actor).to_string();
            let claim = Claim::Hosted {
                actor: x.actor,
                worker: x.worker,
            };
            ("node", x.node, id, claim)
        }
        other => return Err(format!("type: unknown assertion type {other:?}")),
    };
    if named != node {
        return Err(format!(
            "{field}: {} {:?} names node {named:?}, not {node:?} whose stream this is",
            raw.type_tag, raw.id
        ));
    }
    if raw.id != id {
        return Err(format!(
            "id: {} asserted under {:?}, but its value gives it the id {id:?}",
            raw.type_tag, raw.id
        ));
    }
    Ok(claim)
}

/// Asks the store whether `claim`, made by `node`, holds now.
pub(super) async fn verify(
    store: &Arc<dyn Store>,
    node: &str,
    claim: &Claim,
) -> Result<Verdict, StoreError> {
    match claim {
        Claim::Own => Ok(Verdict::Holds),
        Claim::Hosted { actor, worker } => hosted(store, node, actor, worker).await,
        Claim::Route(r) => {
            let held = hosted(store, node, &r.actor, &r.worker).await?;
            if held != Verdict::Holds {
                return Ok(held);
            }
            let a = match store.get::<Actor>(&r.actor.key()).await {
                Ok(a) => a,
                Err(StoreError::NotFound { .. }) => {
                    return Ok(Verdict::Unbound(format!(
                        "actor: route for actor {} that does not exist",
                        r.actor
                    )));
                }
                Err(e) => return Err(e),
            };
            // The worker is claimed (and the actor RESUMING, with no worker recorded yet)
            // before the node is asked to start the actor, and the node routes it as soon
            // as it is ready: RESUMING must pass. A suspend or pause keeps the worker until
            // the node has checkpointed and withdrawn the route, so a route the node sends
            // again meanwhile (on a new stream) is still true.
            let on_worker = matches!(
                a.status,
                ActorStatus::Resuming
                    | ActorStatus::Running
                    | ActorStatus::Suspending
                    | ActorStatus::Pausing
            );
            if !on_worker {
                return Ok(Verdict::Unbound(format!(
                    "actor: route for actor {} that is {}",
                    r.actor,
                    a.status.as_str()
                )));
            }
            if let Some(p) = &a.worker {
                let placed = WorkerId::new(&p.namespace, &p.pool, &p.name);
                if p.node_name != node || placed != r.worker {
                    return Ok(Verdict::Unbound(format!(
                        "actor: route for actor {} on worker {}, but it runs on worker {placed} of node {}",
                        r.actor, r.worker, p.node_name
                    )));
                }
            }
            Ok(Verdict::Holds)
        }
    }
}

/// Whether `worker` is one of `node`'s and the store binds it to `actor`.
async fn hosted(
    store: &Arc<dyn Store>,
    node: &str,
    actor: &ActorRef,
    worker: &WorkerId,
) -> Result<Verdict, StoreError> {
    let w = match store.get::<Worker>(&worker.to_string()).await {
        Ok(w) => w,
        Err(StoreError::NotFound { .. }) => {
            return Ok(Verdict::Unbound(format!(
                "worker: {worker} (for actor {actor}) does not exist"
            )));
        }
        Err(e) => return Err(e),
    };
    if w.node_name != node {
        return Ok(Verdict::Unbound(format!(
            "worker: {worker} (for actor {actor}) is a worker of node {}",
            w.node_name
        )));
    }
    match &w.assignment {
        Some(x) if x.actor == *actor => Ok(Verdict::Holds),
        Some(x) => Ok(Verdict::Unbound(format!(
            "worker: {worker} hosts actor {}, not {actor}",
            x.actor
        ))),
        None => Ok(Verdict::Unbound(format!(
            "worker: {worker} hosts no actor, not {actor}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw<T: Assertion>(id: &str, value: &T) -> RawAssertion {
        RawAssertion {
            type_tag: T::TYPE.into(),
            id: id.into(),
            value_json: serde_json::to_string(value).unwrap(),
        }
    }

    fn route(node: &str) -> Route {
        Route {
            actor: ActorRef::new("team-a", "a1"),
            node: node.into(),
            worker: WorkerId::new("default", "wasm", "w-0"),
            template: Default::default(),
            timeout_ms: 0,
        }
    }

    #[test]
    fn values_must_name_the_stream_s_node_under_their_own_id() {
        let ok = inspect(&raw("team-a/a1", &route("n1")), "n1", "i1");
        assert!(matches!(ok, Ok(Claim::Route(_))), "{ok:?}");
        let other = inspect(&raw("team-a/a1", &route("n2")), "n1", "i1").unwrap_err();
        assert!(other.starts_with("node:"), "{other}");
        let moved = inspect(&raw("team-a/a2", &route("n1")), "n1", "i1").unwrap_err();
        assert!(moved.starts_with("id:"), "{moved}");
        let cache = NodeCacheAdvert {
            node: "n1".into(),
            snapshots: vec![],
        };
        assert!(matches!(
            inspect(&raw("n1", &cache), "n1", "i1"),
            Ok(Claim::Own)
        ));
        let shadow = inspect(&raw("n2", &cache), "n1", "i1").unwrap_err();
        assert!(shadow.starts_with("id:"), "{shadow}");
        let advert = WorkerAdvert {
            node: "n1".into(),
            worker: WorkerId::new("default", "wasm", "w-0"),
            snapshots: vec![],
        };
        assert!(inspect(&raw("default/wasm/w-0", &advert), "n1", "i1").is_ok());
        let wrong = inspect(&raw("default/wasm/w-1", &advert), "n1", "i1").unwrap_err();
        assert!(wrong.starts_with("id:"), "{wrong}");
        let unknown = RawAssertion {
            type_tag: "ate.other.v1".into(),
            id: "x".into(),
            value_json: "{}".into(),
        };
        assert!(
            inspect(&unknown, "n1", "i1")
                .unwrap_err()
                .starts_with("type:")
        );
        let garbage = RawAssertion {
            type_tag: Route::TYPE.into(),
            id: "team-a/a1".into(),
            value_json: "{".into(),
        };
        assert!(
            inspect(&garbage, "n1", "i1")
                .unwrap_err()
                .starts_with("value:")
        );
    }
}
