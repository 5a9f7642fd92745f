//! How store outcomes become gRPC statuses at this boundary.

use ate_proto::status::status;
use ate_store::StoreError;
use tonic::Status;

/// Maps a store error by its kind; the message is the store's, which already names the
/// object (`atespace team-c not found`, `atespace team-a is not empty`).
pub fn store(e: StoreError) -> Status {
    if matches!(e, StoreError::Internal(_)) {
        tracing::error!(error = %e, "store failure");
    }
    status(e.kind(), e.to_string())
}

/// The metadata key naming why a lifecycle call failed (`no_capacity`, `busy`, ...: see
/// `LifecycleError::label`), for callers that act on the reason rather than the code: a
/// router answers "no capacity" with 503 and `Retry-After`, other preconditions otherwise.
pub const REASON_KEY: &str = "ate-reason";

/// Maps a lifecycle error by its kind; store failures keep their own mapping.
pub fn lifecycle(e: crate::LifecycleError) -> Status {
    let label = e.label();
    let mut status = match e {
        crate::LifecycleError::Store(e) => store(e),
        e => {
            if e.kind() == ate_model::ErrorKind::Internal {
                tracing::error!(error = %e, "lifecycle failure");
            }
            status(e.kind(), e.to_string())
        }
    };
    status.metadata_mut().insert(
        REASON_KEY,
        tonic::metadata::MetadataValue::from_static(label),
    );
    status
}

/// Parses a field selector from a request and checks it against the kind's registry.
pub fn field_selector(
    text: &str,
    kind: ate_model::Kind,
) -> Result<ate_model::FieldSelector, Status> {
    let sel = ate_model::FieldSelector::parse(text).map_err(ate_proto::status::invalid)?;
    sel.validate(kind).map_err(ate_proto::status::invalid)?;
    Ok(sel)
}
