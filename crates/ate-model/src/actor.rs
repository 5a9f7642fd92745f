//! Actors: their lifecycle status, where they run, where their snapshots are, and what
//! went wrong along the way.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ModelError;
use crate::fields::{Field, Indexed, Kind};
use crate::labels::LabelSelector;
use crate::resources::{ActorRef, NamespacedName};

/// Where an actor is in its lifecycle. Numbers are the upstream wire values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ActorStatus {
    Resuming = 1,
    Running = 2,
    Suspending = 3,
    #[default]
    Suspended = 4,
    Pausing = 5,
    Paused = 6,
}

impl ActorStatus {
    pub const ALL: [ActorStatus; 6] = [
        ActorStatus::Resuming,
        ActorStatus::Running,
        ActorStatus::Suspending,
        ActorStatus::Suspended,
        ActorStatus::Pausing,
        ActorStatus::Paused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActorStatus::Resuming => "RESUMING",
            ActorStatus::Running => "RUNNING",
            ActorStatus::Suspending => "SUSPENDING",
            ActorStatus::Suspended => "SUSPENDED",
            ActorStatus::Pausing => "PAUSING",
            ActorStatus::Paused => "PAUSED",
        }
    }

    pub fn from_wire(n: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|s| *s as i32 == n)
    }
}

impl fmt::Display for ActorStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ActorStatus {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| ModelError::invalid("status", s, "unknown actor status"))
    }
}

/// Where an actor's latest snapshot lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SnapshotInfo {
    /// A durable snapshot in the snapshot store, under this URI prefix.
    External { uri_prefix: String },
    /// A node-local snapshot (pause), kept on the listed nodes and uploaded to the
    /// snapshot store under the same URI in the background. `fallback` is the durable
    /// snapshot taken before it, used if the nodes are gone before the upload finished.
    Local {
        prefix: String,
        #[serde(default)]
        nodes: Vec<String>,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        fallback: String,
    },
}

impl SnapshotInfo {
    /// The snapshot's URI (`<location>/<atespace>/<actor>/<id>`).
    pub fn uri(&self) -> &str {
        match self {
            SnapshotInfo::External { uri_prefix } => uri_prefix,
            SnapshotInfo::Local { prefix, .. } => prefix,
        }
    }
}

/// A snapshot's URI: its store location, then the owning actor and the snapshot id.
pub fn snapshot_uri(location: &str, actor: &ActorRef, id: &str) -> String {
    format!(
        "{}/{}/{}/{id}",
        location.trim_end_matches('/'),
        actor.atespace,
        actor.id
    )
}

/// Splits a snapshot URI into location, owning actor and id; `None` if it has fewer parts.
pub fn parse_snapshot_uri(uri: &str) -> Option<(String, ActorRef, String)> {
    let mut parts = uri.rsplitn(4, '/');
    let id = parts.next().filter(|s| !s.is_empty())?;
    let actor = parts.next().filter(|s| !s.is_empty())?;
    let atespace = parts.next().filter(|s| !s.is_empty())?;
    let location = parts.next().filter(|s| !s.is_empty())?;
    Some((location.into(), ActorRef::new(atespace, actor), id.into()))
}

/// One instance of a template, addressed by `(atespace, id)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    pub atespace: String,
    pub id: String,
    /// This incarnation of the name, set when the actor is created: an actor deleted and
    /// created again under the same name is another actor, and nothing of the first one
    /// (its log lines on a node) is shown as the second's. `None` on records written
    /// before actors had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default)]
    pub version: u64,
    pub template: NamespacedName,
    #[serde(default)]
    pub status: ActorStatus,
    /// Per-actor placement constraint, ANDed with the template's.
    #[serde(default, skip_serializing_if = "LabelSelector::is_empty")]
    pub worker_selector: LabelSelector,
    /// The worker hosting the actor, while it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerPlacement>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub in_progress_snapshot: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_snapshot: Option<SnapshotInfo>,
    /// Notable events of the actor's life, one per kind, newest last (see
    /// [`ActorCondition`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ActorCondition>,
    /// The generation of the actor's lease under which a workflow last wrote the record:
    /// a workflow holding an older generation (it lost its lease) may not write it again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lease_generation: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Something that happened to an actor that its owner should know, above all state that
/// was lost (`kind` [`STATE_LOST`]): an actor never silently rolls back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActorCondition {
    pub kind: String,
    /// A CamelCase cause, e.g. `NodeLost`.
    pub reason: String,
    pub message: String,
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
}

/// Condition kind: the actor resumed from older state than it last ran with.
pub const STATE_LOST: &str = "StateLost";

/// Condition kind: a checkpoint of the actor was bigger than its template's
/// `spec.snapshots.maxBytes`, so the suspend or pause failed and the actor kept running
/// (the message gives the sizes).
pub const SNAPSHOT_TOO_LARGE: &str = "SnapshotTooLarge";

/// Where an actor runs: enough to reach it and to free the worker later.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerPlacement {
    pub namespace: String,
    pub pool: String,
    pub name: String,
    #[serde(default)]
    pub node_name: String,
    #[serde(default)]
    pub address: String,
}

impl Actor {
    pub fn actor_ref(&self) -> ActorRef {
        ActorRef::new(&self.atespace, &self.id)
    }

    /// Records a condition, replacing an earlier one of the same kind.
    pub fn set_condition(&mut self, condition: ActorCondition) {
        self.conditions.retain(|c| c.kind != condition.kind);
        self.conditions.push(condition);
    }

    /// The status an actor returns to when an operation on it is rolled back: paused if
    /// its latest snapshot is node-local, else suspended.
    pub fn resting_status(&self) -> ActorStatus {
        match self.latest_snapshot {
            Some(SnapshotInfo::Local { .. }) => ActorStatus::Paused,
            _ => ActorStatus::Suspended,
        }
    }
}

impl Indexed for Actor {
    const KIND: Kind = Kind::Actor;
    const FIELDS: &'static [Field<Self>] = &[
        Field {
            name: "atespace",
            multi: false,
            get: |a| vec![a.atespace.clone()],
        },
        Field {
            name: "status",
            multi: false,
            get: |a| vec![a.status.as_str().to_string()],
        },
        Field {
            name: "template",
            multi: false,
            get: |a| vec![a.template.key()],
        },
        Field {
            name: "worker_pool",
            multi: false,
            get: |a| {
                vec![
                    a.worker
                        .as_ref()
                        .map(|w| w.pool.clone())
                        .unwrap_or_default(),
                ]
            },
        },
        Field {
            name: "node_name",
            multi: false,
            get: |a| {
                vec![
                    a.worker
                        .as_ref()
                        .map(|w| w.node_name.clone())
                        .unwrap_or_default(),
                ]
            },
        },
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips() {
        for s in ActorStatus::ALL {
            assert_eq!(ActorStatus::from_wire(s as i32), Some(s));
            assert_eq!(s.as_str().parse::<ActorStatus>().unwrap(), s);
        }
        assert_eq!(ActorStatus::from_wire(0), None);
    }

    #[test]
    fn snapshot_uris_round_trip() {
        let a = ActorRef::new("team-a", "bot");
        let uri = snapshot_uri("file:///var/lib/ate/snapshots/", &a, "0001-ab");
        assert_eq!(uri, "file:///var/lib/ate/snapshots/team-a/bot/0001-ab");
        let (loc, owner, id) = parse_snapshot_uri(&uri).unwrap();
        assert_eq!(
            (loc.as_str(), owner, id.as_str()),
            ("file:///var/lib/ate/snapshots", a, "0001-ab")
        );
        assert_eq!(parse_snapshot_uri("team-a/bot/id"), None);
        assert_eq!(parse_snapshot_uri("s3://b//bot/id"), None);
    }

    #[test]
    fn conditions_keep_one_per_kind() {
        let mut a = Actor::default();
        let lost = |msg: &str| ActorCondition {
            kind: STATE_LOST.into(),
            reason: "NodeLost".into(),
            message: msg.into(),
            time_ms: 1,
        };
        a.set_condition(lost("first"));
        a.set_condition(lost("second"));
        assert_eq!(a.conditions.len(), 1);
        assert_eq!(a.conditions[0].message, "second");
    }
}
