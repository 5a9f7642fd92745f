use ate_model::{ErrorKind, Kind, ModelError};

/// Everything a store operation can fail with. Backends map their driver errors onto
/// `Unavailable` (the server cannot be reached; retry later) or `Internal` (a bug or a
/// corrupt record), never onto the semantic variants.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{} {key} not found", singular(*kind))]
    NotFound { kind: Kind, key: String },
    #[error("{} {key} already exists", singular(*kind))]
    AlreadyExists { kind: Kind, key: String },
    #[error("concurrent update conflict on {} {key}, please retry", singular(*kind))]
    Conflict { kind: Kind, key: String },
    /// The parent a new record needs (an actor's atespace) does not exist.
    #[error("{} {key} not found", singular(*kind))]
    ParentMissing { kind: Kind, key: String },
    /// A record that still has children (an atespace with actors) cannot be deleted.
    #[error("{} {key} is not empty", singular(*kind))]
    NotEmpty { kind: Kind, key: String },
    #[error("lease {key} is held by another owner")]
    LeaseHeld { key: String },
    #[error("lease {key} is not held by this owner")]
    LeaseNotHeld { key: String },
    #[error(transparent)]
    Invalid(#[from] ModelError),
    /// A record of a sealed kind could not be sealed or unsealed (see [`crate::sealed`]):
    /// the reason names the key-encryption key in use.
    #[error("{} {key}: {reason}", singular(*kind))]
    Sealing {
        kind: Kind,
        key: String,
        reason: String,
    },
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store internal error: {0}")]
    Internal(String),
}

impl StoreError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::NotFound { .. } => ErrorKind::NotFound,
            StoreError::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            StoreError::Conflict { .. } | StoreError::LeaseHeld { .. } => ErrorKind::Aborted,
            StoreError::ParentMissing { .. } | StoreError::NotEmpty { .. } => {
                ErrorKind::FailedPrecondition
            }
            StoreError::LeaseNotHeld { .. } => ErrorKind::FailedPrecondition,
            StoreError::Invalid(_) => ErrorKind::InvalidArgument,
            StoreError::Unavailable(_) => ErrorKind::Unavailable,
            StoreError::Sealing { .. } | StoreError::Internal(_) => ErrorKind::Internal,
        }
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        StoreError::Internal(e.to_string())
    }
}

/// The singular noun for a kind, as messages use it ("atespace team-c not found").
pub fn singular(kind: Kind) -> &'static str {
    match kind {
        Kind::Atespace => "atespace",
        Kind::Actor => "actor",
        Kind::ActorTemplate => "template",
        Kind::WorkerPool => "pool",
        Kind::Node => "node",
        Kind::Worker => "worker",
        Kind::NodeAssertion => "node assertion",
        Kind::SigningKey => "signing key",
        Kind::AuditEvent => "audit event",
        Kind::RevokedToken => "revoked token",
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
