//! Assertions carried between processes. A dataspace lives in one process; what a node
//! asserts reaches the control plane over its registration stream, and what the control
//! plane knows of nodes reaches routers over a watch, as `(type tag, id, JSON value)`.
//! This module turns typed dataspace assertions into that raw form and back, for the fixed
//! set of types that cross the seam.

use std::collections::{BTreeMap, HashMap};

use ate_dataspace::{Assertion, Dataspace, DataspaceError, Event, Filter, Id, Owner};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::{ActorExited, IdleActor, NodeCacheAdvert, NodeRegistration, Route, WorkerAdvert};

/// The assertion types a node carries to the control plane.
pub const NODE_TYPES: [&str; 6] = [
    NodeRegistration::TYPE,
    WorkerAdvert::TYPE,
    NodeCacheAdvert::TYPE,
    Route::TYPE,
    IdleActor::TYPE,
    ActorExited::TYPE,
];

/// The assertion types a router follows.
pub const ROUTER_TYPES: [&str; 2] = [NodeRegistration::TYPE, Route::TYPE];

/// One assertion in carried form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawAssertion {
    pub type_tag: String,
    pub id: String,
    pub value_json: String,
}

/// A change to carried assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawEvent {
    Asserted(RawAssertion),
    Retracted {
        type_tag: String,
        id: String,
    },
    /// Every type followed has delivered its current state.
    Synced,
}

/// Why a carried assertion could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum CarryError {
    #[error("unknown assertion type {0:?}")]
    UnknownType(String),
    #[error("assertion {type_tag} {id}: invalid value: {reason}")]
    InvalidValue {
        type_tag: String,
        id: String,
        reason: String,
    },
    #[error(transparent)]
    Dataspace(#[from] DataspaceError),
}

/// Whether `type_tag` is one of the carried types.
pub fn is_carried(type_tag: &str) -> bool {
    NODE_TYPES.contains(&type_tag)
}

/// Runs `$body` with `$t` bound to the Rust type of a carried type tag.
macro_rules! with_type {
    ($tag:expr, $t:ident => $body:expr) => {
        match $tag {
            NodeRegistration::TYPE => {
                type $t = NodeRegistration;
                $body
            }
            WorkerAdvert::TYPE => {
                type $t = WorkerAdvert;
                $body
            }
            NodeCacheAdvert::TYPE => {
                type $t = NodeCacheAdvert;
                $body
            }
            Route::TYPE => {
                type $t = Route;
                $body
            }
            IdleActor::TYPE => {
                type $t = IdleActor;
                $body
            }
            ActorExited::TYPE => {
                type $t = ActorExited;
                $body
            }
            other => Err(CarryError::UnknownType(other.to_string())),
        }
    };
}

/// Checks that a carried assertion is of a known type with a valid value.
pub fn validate(raw: &RawAssertion) -> Result<(), CarryError> {
    with_type!(raw.type_tag.as_str(), T => decode::<T>(raw).map(drop))
}

/// Asserts a carried assertion under `owner`, as its typed value.
pub fn assert_raw(owner: &Owner, raw: &RawAssertion) -> Result<(), CarryError> {
    with_type!(raw.type_tag.as_str(), T => Ok(owner.assert(raw.id.as_str(), decode::<T>(raw)?)?))
}

/// Retracts a carried assertion `owner` holds; absent is fine.
pub fn retract_raw(owner: &Owner, type_tag: &str, id: &str) -> Result<(), CarryError> {
    with_type!(type_tag, T => match owner.retract::<T>(id) {
        Ok(()) | Err(DataspaceError::NotAsserted { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    })
}

fn decode<T: Assertion>(raw: &RawAssertion) -> Result<T, CarryError> {
    serde_json::from_str(&raw.value_json).map_err(|e| CarryError::InvalidValue {
        type_tag: raw.type_tag.clone(),
        id: raw.id.clone(),
        reason: e.to_string(),
    })
}

fn encode<T: Assertion>(id: &Id, value: &T) -> Option<RawAssertion> {
    match serde_json::to_string(value) {
        Ok(value_json) => Some(RawAssertion {
            type_tag: T::TYPE.into(),
            id: id.to_string(),
            value_json,
        }),
        Err(e) => {
            tracing::error!(type_tag = T::TYPE, %id, error = %e, "cannot encode assertion");
            None
        }
    }
}

/// Follows the carried `types` in a dataspace as one stream of raw changes: the current
/// assertions, `Synced`, then every change. A subscriber that lagged is brought back in
/// line by a diff against what it was last told, so the stream never needs a reset.
/// The stream ends when the receiver is dropped; dropping the handle stops it too.
pub fn follow(
    dataspace: &Dataspace,
    types: &[&str],
) -> Result<(mpsc::Receiver<RawEvent>, FollowHandle), CarryError> {
    let (tx, rx) = mpsc::channel(1024);
    let (sync_tx, mut sync_rx) = mpsc::channel::<()>(types.len().max(1));
    let mut tasks = Vec::new();
    for t in types {
        let task: Result<_, CarryError> =
            with_type!(*t, T => spawn_follow::<T>(dataspace, &tx, &sync_tx));
        tasks.push(task?);
    }
    let count = types.len();
    let synced_tx = tx.clone();
    tasks.push(tokio::spawn(async move {
        for _ in 0..count {
            if sync_rx.recv().await.is_none() {
                return;
            }
        }
        let _ = synced_tx.send(RawEvent::Synced).await;
    }));
    Ok((rx, FollowHandle(tasks)))
}

/// Stops a [`follow`] when dropped.
#[derive(Debug)]
pub struct FollowHandle(Vec<JoinHandle<()>>);

impl Drop for FollowHandle {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

fn spawn_follow<T: Assertion>(
    dataspace: &Dataspace,
    tx: &mpsc::Sender<RawEvent>,
    synced: &mpsc::Sender<()>,
) -> Result<JoinHandle<()>, CarryError> {
    let mut sub = dataspace.subscribe::<T>(Filter::All)?;
    let tx = tx.clone();
    let synced = synced.clone();
    Ok(tokio::spawn(async move {
        // What the stream was last told, so a resync after a lag sends only the difference.
        let mut told: HashMap<String, String> = HashMap::new();
        let mut resync: Option<BTreeMap<String, RawAssertion>> = None;
        let mut first_sync = true;
        while let Some(event) = sub.recv().await {
            let out = match event {
                Event::Asserted { id, value } => {
                    let Some(raw) = encode(&id, &value) else {
                        continue;
                    };
                    if let Some(pending) = resync.as_mut() {
                        pending.insert(raw.id.clone(), raw);
                        continue;
                    }
                    if told.get(&raw.id) == Some(&raw.value_json) {
                        continue;
                    }
                    told.insert(raw.id.clone(), raw.value_json.clone());
                    vec![RawEvent::Asserted(raw)]
                }
                Event::Retracted { id } => {
                    let id = id.to_string();
                    if let Some(pending) = resync.as_mut() {
                        pending.remove(&id);
                        continue;
                    }
                    if told.remove(&id).is_none() {
                        continue;
                    }
                    vec![RawEvent::Retracted {
                        type_tag: T::TYPE.into(),
                        id,
                    }]
                }
                Event::Lagged => {
                    resync = Some(BTreeMap::new());
                    continue;
                }
                Event::Synced => {
                    let mut out = Vec::new();
                    if let Some(now) = resync.take() {
                        let gone: Vec<String> = told
                            .keys()
                            .filter(|k| !now.contains_key(*k))
                            .cloned()
                            .collect();
                        for id in gone {
                            told.remove(&id);
                            out.push(RawEvent::Retracted {
                                type_tag: T::TYPE.into(),
                                id,
                            });
                        }
                        for (id, raw) in now {
                            if told.get(&id) != Some(&raw.value_json) {
                                told.insert(id, raw.value_json.clone());
                                out.push(RawEvent::Asserted(raw));
                            }
                        }
                    }
                    if first_sync {
                        first_sync = false;
                        for e in out {
                            if tx.send(e).await.is_err() {
                                return;
                            }
                        }
                        let _ = synced.send(()).await;
                        continue;
                    }
                    out
                }
            };
            for e in out {
                if tx.send(e).await.is_err() {
                    return;
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use ate_model::ActorRef;

    use super::*;
    use crate::{ActorExited, WorkerId, actor_key};

    #[test]
    fn exits_are_carried_and_old_registrations_still_decode() {
        let ds = Dataspace::new();
        let owner = ds.owner("node/n1");
        let exit = ActorExited {
            actor: ActorRef::new("team-a", "x"),
            node: "n1".into(),
            worker: WorkerId::new("default", "process", "w-0"),
            message: "exited with status 1".into(),
            time_ms: 7,
        };
        let raw = RawAssertion {
            type_tag: ActorExited::TYPE.into(),
            id: actor_key(&exit.actor).to_string(),
            value_json: serde_json::to_string(&exit).unwrap(),
        };
        assert!(is_carried(&raw.type_tag));
        validate(&raw).unwrap();
        assert_raw(&owner, &raw).unwrap();
        assert_eq!(ds.get::<ActorExited>(&actor_key(&exit.actor)), Some(exit));
        retract_raw(&owner, ActorExited::TYPE, &raw.id).unwrap();
        assert!(
            ds.get::<ActorExited>(&actor_key(&ActorRef::new("team-a", "x")))
                .is_none()
        );

        // A node from before capabilities registers with none.
        let old = RawAssertion {
            type_tag: NodeRegistration::TYPE.into(),
            id: "n1".into(),
            value_json: r#"{"name":"n1","address":"","labels":{},"sandbox_classes":["wasm"],
                "capacity":4,"incarnation":"i","snapshot_location":"file:///s"}"#
                .into(),
        };
        assert_raw(&owner, &old).unwrap();
        let reg = ds.get::<NodeRegistration>(&"n1".into()).unwrap();
        assert!(reg.capabilities.is_empty());
    }
}
