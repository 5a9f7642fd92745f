//! Records of ate's security state: the keys bearer tokens are signed with, the tokens
//! revoked before they expire, and the audit trail of mutating calls. They live in the store like every other kind, so every
//! control-plane replica verifies the same tokens and an admin sees one trail.

use serde::{Deserialize, Serialize};

use crate::fields::{Field, Indexed, Kind};

/// A private token-signing key as stored. The newest one signs; all stored ones verify, so
/// rotating keeps tokens already issued valid until the older key is retired (deleted).
/// `private_key` is the base64 PKCS#8 document; it never leaves the control plane.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SigningKeyRecord {
    pub kid: String,
    pub created_ms: u64,
    pub private_key: String,
    #[serde(default)]
    pub version: u64,
}

impl std::fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("created_ms", &self.created_ms)
            .finish_non_exhaustive()
    }
}

impl Indexed for SigningKeyRecord {
    const KIND: Kind = Kind::SigningKey;
    const FIELDS: &'static [Field<Self>] = &[];
}

/// A token that no longer verifies although its signature and lifetime are good (it leaked,
/// or its holder left). Kept until the token would have expired anyway, then forgotten.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevokedToken {
    /// The token's `jti` claim.
    pub jti: String,
    pub subject: String,
    /// When the token expires (unix ms): the record is needed until then.
    pub expires_ms: u64,
    pub revoked_ms: u64,
    /// The subject who revoked it.
    pub revoked_by: String,
    #[serde(default)]
    pub version: u64,
}

impl Indexed for RevokedToken {
    const KIND: Kind = Kind::RevokedToken;
    const FIELDS: &'static [Field<Self>] = &[];
}

/// What became of an audited call.
pub mod outcome {
    /// The call was allowed and succeeded.
    pub const OK: &str = "ok";
    /// The caller was not allowed to make it (or not authenticated).
    pub const DENIED: &str = "denied";
    /// The call was allowed and failed.
    pub const FAILED: &str = "failed";
}

/// One mutating call: who made it, what it was, when, and what came of it. Keys sort newest
/// first (see [`AuditEvent::key_for`]), so a listing's first page is the latest activity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub id: String,
    pub time_ms: u64,
    /// The token's subject, or the component (`router`, `control`) that called with its
    /// certificate, or `anonymous`.
    pub subject: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub role: String,
    /// The RPC, e.g. `CreateActor`.
    pub method: String,
    /// The atespace acted in; empty for cluster-wide calls (templates, pools, nodes, keys).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub atespace: String,
    /// What was acted on: `atespace/actor`, `namespace/template`, a node name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target: String,
    /// One of [`outcome`].
    pub result: String,
    /// The gRPC status code name (`OK`, `PermissionDenied`, ...).
    pub code: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default)]
    pub version: u64,
}

impl AuditEvent {
    /// A key that sorts newest first and stays unique for events of the same millisecond:
    /// the time counted down from the end of the u64 range, then `unique`.
    pub fn key_for(time_ms: u64, unique: &str) -> String {
        format!("{:020}-{unique}", u64::MAX - time_ms)
    }
}

impl Indexed for AuditEvent {
    const KIND: Kind = Kind::AuditEvent;
    const FIELDS: &'static [Field<Self>] = &[
        Field {
            name: "subject",
            multi: false,
            get: |e| vec![e.subject.clone()],
        },
        Field {
            name: "atespace",
            multi: false,
            get: |e| vec![e.atespace.clone()],
        },
        Field {
            name: "method",
            multi: false,
            get: |e| vec![e.method.clone()],
        },
        Field {
            name: "result",
            multi: false,
            get: |e| vec![e.result.clone()],
        },
    ];
}
