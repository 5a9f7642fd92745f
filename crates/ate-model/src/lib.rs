//! The vocabulary of ate: validated names, the resource types (atespaces, actors, templates,
//! pools, nodes, workers), label and field selectors, and the per-kind field registry that
//! stores turn into indexes. Pure data and rules: no I/O, so every other crate can share it.

pub mod actor;
mod duration;
mod egress;
mod error;
pub mod fields;
pub mod labels;
pub mod names;
pub mod resources;
pub mod security;
pub mod template;

pub use actor::*;
pub use duration::Duration;
pub use egress::EgressPolicy;
pub use error::{ErrorKind, MAX_ECHOED_VALUE, ModelError, clip};
pub use fields::{FieldSelector, Indexed, Kind, Op, Requirement};
pub use labels::{LabelSelector, Labels};
pub use resources::*;
pub use security::{AuditEvent, RevokedToken, SigningKeyRecord};
pub use template::*;
