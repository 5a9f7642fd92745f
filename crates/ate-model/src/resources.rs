//! The resource types ate stores and serves. They serialize to the JSON that stores keep and
//! to the YAML/JSON that the CLI prints and reads (`apiVersion: ate.dev/v1alpha1`).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ModelError;
use crate::fields::{Field, Indexed, Kind};
use crate::labels::{Labels, validate_labels};
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
    /// Which run of the node daemon the record describes; a node that restarts comes back
    /// with a new one, and workers of the old one are treated as lost.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub incarnation: String,
    /// Set by an operator (`ate drain node`) to take the node out of placement, e.g. before
    /// maintenance: the fleet keeps no free worker on it and the scheduler never claims one
    /// there, while the node itself stays registered. It is the operator's, not the node's:
    /// it survives the node restarting, until `ate uncordon node`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cordoned: bool,
    /// What the node can do beyond running its sandbox classes (`criu`: Full snapshots of
    /// `process` actors), from its registration: some templates need a capability, and
    /// only such nodes' workers take their actors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
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

/// One dataspace assertion of a live node (its registration, a worker's hot snapshots, a
/// route), shared through the store so that every control-plane replica, and every router
/// following one, sees the nodes registered with any replica. It lives as long as the
/// node's registration lease: the replica holding the node's stream writes and deletes it,
/// and whoever finds the lease expired deletes what is left.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeAssertion {
    pub node: String,
    /// The dataspace type tag (`ate.route.v1`).
    #[serde(rename = "type")]
    pub type_tag: String,
    pub id: String,
    /// The assertion's value as JSON.
    pub value: String,
    /// The node incarnation that asserted it.
    pub incarnation: String,
    #[serde(default)]
    pub version: u64,
}

impl NodeAssertion {
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.node, self.type_tag, self.id)
    }
}

impl Indexed for NodeAssertion {
    const KIND: Kind = Kind::NodeAssertion;
    const FIELDS: &'static [Field<Self>] = &[Field {
        name: "node",
        multi: false,
        get: |a| vec![a.node.clone()],
    }];
}

/// The actor a worker hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Assignment {
    pub actor: ActorRef,
    pub template: NamespacedName,
    /// The generation of the actor's lease under which the binding was last written: a
    /// workflow holding an older generation may not change it (see the lifecycle's fence).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lease_generation: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
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
    /// The node incarnation the worker was created on (see [`Node::incarnation`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_incarnation: String,
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
    /// Its node's capabilities (see [`Node::capabilities`]), kept in line with the node's
    /// registration by the fleet: the scheduler selects on them (`capability=criu`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
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
        Field {
            name: "capability",
            multi: true,
            get: |w| w.capabilities.clone(),
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
                lease_generation: 0,
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
        let criu = FieldSelector::parse("pool=cpu,actor_id=,capability=criu").unwrap();
        let mut capable = worker("cpu", None, &[]);
        capable.capabilities = vec!["gpu".into(), "criu".into()];
        assert!(criu.matches(&capable));
        assert!(!criu.matches(&worker("cpu", None, &[])));
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
}
