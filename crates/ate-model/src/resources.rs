//! The resource types ate stores and serves. They serialize to the JSON that stores keep and
//! to the YAML/JSON that the CLI prints and reads (`apiVersion: ate.dev/v1alpha1`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ModelError;
use crate::fields::{Field, Indexed, Kind};
use crate::labels::{LabelSelector, Labels, validate_labels};
use crate::names::{validate_label, validate_subdomain};
use crate::template::validate_sandbox_class;

/// Identifies an actor: ids are unique only inside an atespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ActorRef {
    pub atespace: String,
    pub id: String,
}

impl ActorRef {
    pub fn new(atespace: impl Into<String>, id: impl Into<String>) -> Self {
        Self {
            atespace: atespace.into(),
            id: id.into(),
        }
    }

    /// Checks both parts; `field` is the request field the reference came from.
    pub fn validate(&self, field: &str) -> Result<(), ModelError> {
        validate_label(&format!("{field}.atespace"), &self.atespace)?;
        validate_label(&format!("{field}.name"), &self.id)
    }

    /// The store key: atespace first, so one atespace is one key range.
    pub fn key(&self) -> String {
        format!("{}/{}", self.atespace, self.id)
    }
}

impl fmt::Display for ActorRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.atespace, self.id)
    }
}

/// Identifies a namespaced object (a template or a pool).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NamespacedName {
    pub namespace: String,
    pub name: String,
}

impl NamespacedName {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// Parses `NS/NAME`, the CLI's form.
    pub fn parse(field: &str, text: &str) -> Result<Self, ModelError> {
        let (ns, name) = text
            .split_once('/')
            .ok_or_else(|| ModelError::invalid(field, text, "expected <namespace>/<name>"))?;
        let out = Self::new(ns, name);
        out.validate(field)?;
        Ok(out)
    }

    pub fn validate(&self, field: &str) -> Result<(), ModelError> {
        validate_label(&format!("{field}.namespace"), &self.namespace)?;
        validate_subdomain(&format!("{field}.name"), &self.name)
    }

    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

impl fmt::Display for NamespacedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A tenant scope. Only an empty atespace can be deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Atespace {
    pub name: String,
    #[serde(default)]
    pub version: u64,
}

impl Indexed for Atespace {
    const KIND: Kind = Kind::Atespace;
    const FIELDS: &'static [Field<Self>] = &[];
}

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
    /// A node-local snapshot (pause), kept on the listed nodes.
    Local {
        prefix: String,
        #[serde(default)]
        nodes: Vec<String>,
    },
}

impl SnapshotInfo {
    /// The snapshot id schedulers look up in worker caches.
    pub fn id(&self) -> &str {
        match self {
            SnapshotInfo::External { uri_prefix } => uri_prefix,
            SnapshotInfo::Local { prefix, .. } => prefix,
        }
    }
}

/// One instance of a template, addressed by `(atespace, id)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    pub atespace: String,
    pub id: String,
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
}

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

/// Declared warm capacity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PoolSpec {
    #[serde(default)]
    pub replicas: u32,
    pub sandbox_class: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: Labels,
}

/// Observed state of a pool.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolStatus {
    #[serde(default)]
    pub replicas: u32,
}

/// A worker pool, addressed by `(namespace, name)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerPool {
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub version: u64,
    pub spec: PoolSpec,
    #[serde(default)]
    pub status: PoolStatus,
}

/// Most replicas one pool may declare.
pub const MAX_POOL_REPLICAS: u32 = 100_000;

impl WorkerPool {
    pub fn id(&self) -> NamespacedName {
        NamespacedName::new(&self.namespace, &self.name)
    }

    pub fn validate(&self) -> Result<(), ModelError> {
        self.id().validate("metadata")?;
        validate_sandbox_class("spec.sandboxClass", &self.spec.sandbox_class)?;
        if self.spec.replicas > MAX_POOL_REPLICAS {
            return Err(ModelError::invalid(
                "spec.replicas",
                self.spec.replicas.to_string(),
                format!("must be at most {MAX_POOL_REPLICAS}"),
            ));
        }
        validate_labels("spec.labels", &self.spec.labels)?;
        validate_labels("spec.nodeSelector", &self.spec.node_selector)
    }
}

impl Indexed for WorkerPool {
    const KIND: Kind = Kind::WorkerPool;
    const FIELDS: &'static [Field<Self>] = &[
        Field {
            name: "namespace",
            multi: false,
            get: |p| vec![p.namespace.clone()],
        },
        Field {
            name: "sandbox_class",
            multi: false,
            get: |p| vec![p.spec.sandbox_class.clone()],
        },
    ];

    fn labels(&self) -> Option<&Labels> {
        Some(&self.spec.labels)
    }
}

/// A machine running the node role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    pub name: String,
    #[serde(default)]
    pub version: u64,
    #[serde(default)]
    pub address: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
    #[serde(default)]
    pub sandbox_classes: Vec<String>,
    /// How many worker slots the node can host.
    #[serde(default)]
    pub capacity: u32,
    #[serde(default)]
    pub status: String,
}

impl Indexed for Node {
    const KIND: Kind = Kind::Node;
    const FIELDS: &'static [Field<Self>] = &[Field {
        name: "status",
        multi: false,
        get: |n| vec![n.status.clone()],
    }];

    fn labels(&self) -> Option<&Labels> {
        Some(&self.labels)
    }
}

/// The actor a worker hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Assignment {
    pub actor: ActorRef,
    pub template: NamespacedName,
}

/// One slot of a pool on a node; hosts at most one actor at a time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Worker {
    pub namespace: String,
    pub pool: String,
    pub name: String,
    #[serde(default)]
    pub version: u64,
    #[serde(default)]
    pub node_name: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub sandbox_class: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment: Option<Assignment>,
    /// Snapshot ids this worker holds hot in its node's cache.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cached_snapshots: Vec<String>,
}

impl Worker {
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.namespace, self.pool, self.name)
    }

    pub fn is_free(&self) -> bool {
        self.assignment.is_none()
    }
}

impl Indexed for Worker {
    const KIND: Kind = Kind::Worker;
    const FIELDS: &'static [Field<Self>] = &[
        Field {
            name: "namespace",
            multi: false,
            get: |w| vec![w.namespace.clone()],
        },
        Field {
            name: "pool",
            multi: false,
            get: |w| vec![w.pool.clone()],
        },
        Field {
            name: "node_name",
            multi: false,
            get: |w| vec![w.node_name.clone()],
        },
        Field {
            name: "actor_id",
            multi: false,
            get: |w| {
                vec![
                    w.assignment
                        .as_ref()
                        .map(|a| a.actor.id.clone())
                        .unwrap_or_default(),
                ]
            },
        },
        Field {
            name: "actor_atespace",
            multi: false,
            get: |w| {
                vec![
                    w.assignment
                        .as_ref()
                        .map(|a| a.actor.atespace.clone())
                        .unwrap_or_default(),
                ]
            },
        },
        Field {
            name: "cached_snapshot",
            multi: true,
            get: |w| w.cached_snapshots.clone(),
        },
        Field {
            name: "sandbox_class",
            multi: false,
            get: |w| vec![w.sandbox_class.clone()],
        },
    ];

    fn labels(&self) -> Option<&Labels> {
        Some(&self.labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::FieldSelector;
    use crate::template::{ActorTemplate, TemplateSpec};

    fn worker(pool: &str, actor: Option<&str>, cached: &[&str]) -> Worker {
        Worker {
            namespace: "default".into(),
            pool: pool.into(),
            name: "w".into(),
            assignment: actor.map(|a| Assignment {
                actor: ActorRef::new("team-a", a),
                template: NamespacedName::new("ns", "t"),
            }),
            cached_snapshots: cached.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn selectors_evaluate_against_the_registry() {
        let free = FieldSelector::parse("pool=cpu,actor_id=").unwrap();
        assert!(free.matches(&worker("cpu", None, &[])));
        assert!(!free.matches(&worker("cpu", Some("x"), &[])));
        assert!(!free.matches(&worker("gpu", None, &[])));
        let hot = FieldSelector::parse("cached_snapshot=s2").unwrap();
        assert!(hot.matches(&worker("cpu", None, &["s1", "s2"])));
        assert!(!hot.matches(&worker("cpu", None, &["s1"])));
        let none = FieldSelector::parse("cached_snapshot=").unwrap();
        assert!(none.matches(&worker("cpu", None, &[])));
        assert!(!none.matches(&worker("cpu", None, &["s1"])));
        let not = FieldSelector::parse("cached_snapshot!=s1").unwrap();
        assert!(!not.matches(&worker("cpu", None, &["s1"])));
        assert!(not.matches(&worker("cpu", None, &["s3"])));
    }

    #[test]
    fn template_validation_names_fields() {
        let mut t = ActorTemplate {
            namespace: "demo".into(),
            name: "counter".into(),
            spec: TemplateSpec {
                sandbox_class: "wasm".into(),
                module: "counter.wasm".into(),
                ..Default::default()
            },
            ..Default::default()
        };
        t.validate().unwrap();
        t.spec.sandbox_class = "gvisor".into();
        assert_eq!(t.validate().unwrap_err().field(), "spec.sandboxClass");
        t.spec.sandbox_class = "wasm".into();
        t.spec.durable_dirs = vec!["/data/../etc".into()];
        assert_eq!(t.validate().unwrap_err().field(), "spec.durableDirs[0]");
        t.spec.durable_dirs.clear();
        t.name = "Bad".into();
        assert_eq!(t.validate().unwrap_err().field(), "metadata.name");
    }

    #[test]
    fn status_round_trips() {
        for s in ActorStatus::ALL {
            assert_eq!(ActorStatus::from_wire(s as i32), Some(s));
            assert_eq!(s.as_str().parse::<ActorStatus>().unwrap(), s);
        }
        assert_eq!(ActorStatus::from_wire(0), None);
    }
}
