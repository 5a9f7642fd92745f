use ate_model::ErrorKind;
use ate_seam::SeamError;
use ate_snapshots::SnapshotError;
use ate_store::StoreError;

/// What a lifecycle operation can fail with. Each variant maps onto one code of the API
/// contract through [`LifecycleError::kind`].
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Node(#[from] SeamError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("another operation is in progress for actor {actor}")]
    Busy { actor: String },
    #[error("actor {actor} is {status}: {reason}")]
    WrongState {
        actor: String,
        status: String,
        reason: String,
    },
    #[error("template {template} not found")]
    TemplateMissing { template: String },
    #[error(
        "no worker pool matches sandbox class {class:?} and the template's and actor's worker selectors"
    )]
    NoEligiblePool { class: String },
    #[error("no free worker in pool(s) {pools}")]
    NoFreeWorker { pools: String },
    /// Pools of the class exist, but no worker in them, free or busy, is on a node with a
    /// capability the template needs: waiting will not help until such a node joins.
    #[error(
        "no node can {} of {class} actors: none has {capability}",
        capability_use(.capability)
    )]
    MissingCapability { class: String, capability: String },
    #[error("the snapshot of actor {actor} is still being uploaded by node {node}; retry")]
    UploadPending { actor: String, node: String },
    #[error("this control plane has no data plane to run actors on")]
    NoDataPlane,
    /// The workflow's lease could not be renewed in time or was taken over: it stopped
    /// before another holder could act, leaving the actor to be settled by the next one.
    #[error("the operation on actor {actor} lost its lease; retry")]
    LeaseLost { actor: String },
}

impl LifecycleError {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            LifecycleError::Store(ate_store::StoreError::NotFound { .. }) => "not_found",
            LifecycleError::Busy { .. } => "busy",
            LifecycleError::LeaseLost { .. } => "lease_lost",
            LifecycleError::NoEligiblePool { .. } | LifecycleError::NoFreeWorker { .. } => {
                "no_capacity"
            }
            LifecycleError::WrongState { .. } => "wrong_state",
            LifecycleError::MissingCapability { .. } => "missing_capability",
            _ => "error",
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            LifecycleError::Store(e) => e.kind(),
            LifecycleError::Node(e) => e.kind(),
            LifecycleError::Snapshot(e) => e.kind(),
            LifecycleError::Busy { .. } | LifecycleError::LeaseLost { .. } => ErrorKind::Aborted,
            LifecycleError::WrongState { .. }
            | LifecycleError::TemplateMissing { .. }
            | LifecycleError::NoEligiblePool { .. }
            | LifecycleError::NoFreeWorker { .. }
            | LifecycleError::MissingCapability { .. } => ErrorKind::FailedPrecondition,
            LifecycleError::UploadPending { .. } => ErrorKind::Unavailable,
            LifecycleError::NoDataPlane => ErrorKind::Unimplemented,
        }
    }
}

/// What a node capability lets a node do, for messages about its absence.
fn capability_use(capability: &str) -> &'static str {
    match capability {
        ate_model::CAPABILITY_CRIU => "take full snapshots",
        _ => "run the template",
    }
}
