use ate_model::ErrorKind;

/// What a node operation can fail with. [`SeamError::GuestUnavailable`] is the one the
/// router turns into HTTP 503: the actor exists but cannot answer right now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum SeamError {
    #[error("actor {actor} is unavailable: {reason}")]
    GuestUnavailable { actor: String, reason: String },
    #[error("worker {worker} does not host actor {actor}")]
    NotHosted { worker: String, actor: String },
    #[error("worker {worker} already hosts actor {actor}")]
    WorkerBusy { worker: String, actor: String },
    #[error("node {node} does not support sandbox class {class:?}")]
    UnsupportedClass { node: String, class: String },
    #[error("invalid workload: {field}: {reason}")]
    InvalidWorkload { field: String, reason: String },
    #[error("snapshot refused: {0}")]
    Snapshot(String),
    /// A checkpoint bigger than the template's `spec.snapshots.maxBytes` (`size` bytes,
    /// uncompressed, or as many as were counted when it passed the limit). Nothing of it
    /// was stored, and an actor that was running keeps running.
    #[error(
        "snapshot of actor {actor} is too large: {size} bytes, over spec.snapshots.maxBytes of {limit}"
    )]
    SnapshotTooLarge {
        actor: String,
        size: u64,
        limit: u64,
    },
    #[error("node {node} is unavailable")]
    NodeUnavailable { node: String },
    #[error("node {node} is already registered")]
    NodeExists { node: String },
    /// An eviction found the actor busy: a request in flight or a response still
    /// streaming. The actor keeps its worker and takes requests as before.
    #[error("actor {actor} is in use")]
    InUse { actor: String },
    #[error("node internal error: {0}")]
    Internal(String),
}

impl SeamError {
    /// The gRPC-level category, so callers map every node failure the same way.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SeamError::GuestUnavailable { .. } | SeamError::NodeUnavailable { .. } => {
                ErrorKind::Unavailable
            }
            SeamError::NotHosted { .. }
            | SeamError::WorkerBusy { .. }
            | SeamError::UnsupportedClass { .. }
            | SeamError::Snapshot(_)
            | SeamError::SnapshotTooLarge { .. }
            | SeamError::NodeExists { .. } => ErrorKind::FailedPrecondition,
            SeamError::InvalidWorkload { .. } => ErrorKind::InvalidArgument,
            SeamError::InUse { .. } => ErrorKind::Aborted,
            SeamError::Internal(_) => ErrorKind::Internal,
        }
    }

    pub fn unavailable(actor: impl ToString, reason: impl Into<String>) -> Self {
        SeamError::GuestUnavailable {
            actor: actor.to_string(),
            reason: reason.into(),
        }
    }
}

/// A failed delivery. A request the node refused before reading it (the actor is not, or
/// no longer, taking requests there) comes back whole, so the router can deliver it once
/// the actor is running elsewhere.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct InvokeError {
    pub error: SeamError,
    pub request: Option<Box<http::Request<crate::Body>>>,
}

impl InvokeError {
    /// A refusal that hands the request back.
    pub fn refused(error: SeamError, request: http::Request<crate::Body>) -> Self {
        Self {
            error,
            request: Some(Box::new(request)),
        }
    }
}

impl From<SeamError> for InvokeError {
    fn from(error: SeamError) -> Self {
        Self {
            error,
            request: None,
        }
    }
}

impl From<InvokeError> for SeamError {
    fn from(e: InvokeError) -> Self {
        e.error
    }
}
