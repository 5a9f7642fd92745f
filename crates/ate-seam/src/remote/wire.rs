//! Conversions between seam types and `atenode` wire messages, both ways, and the one
//! encoding of a [`SeamError`] on the wire (as JSON, in a `SeamFailure` or in a status's
//! `ate-seam-error-bin` metadata), so a caller on the far side of the network sees exactly
//! the error it would have seen in process.

use ate_model::{ActorRef, NamespacedName, SnapshotScope, TemplateSpec};
use ate_proto::atenode as pb;
use bytes::Bytes;
use tonic::metadata::{MetadataKey, MetadataValue};
use tonic::{Code, Status};

use crate::{
    Checkpoint, CheckpointRequest, Durability, Evictable, LogLine, RestoreRequest, RunRequest,
    SeamError, SnapshotRef, StopRequest, WorkerId, Workload,
};

/// The binary metadata key carrying a [`SeamError`] as JSON on an error status.
pub(crate) const ERROR_KEY: &str = "ate-seam-error-bin";

/// `SeamError::InvalidWorkload` for a required field the message left out.
fn missing(field: &str) -> SeamError {
    SeamError::InvalidWorkload {
        field: field.into(),
        reason: "missing".into(),
    }
}

/// Longest actor uid taken off the wire (the control plane makes 32 hex digits).
const MAX_ACTOR_UID: usize = 128;

/// An actor uid from the wire: empty is none.
pub(crate) fn uid_from_pb(uid: String, field: &str) -> Result<Option<String>, SeamError> {
    if uid.len() > MAX_ACTOR_UID {
        return Err(SeamError::InvalidWorkload {
            field: field.into(),
            reason: format!("longer than {MAX_ACTOR_UID} bytes"),
        });
    }
    Ok((!uid.is_empty()).then_some(uid))
}

pub(crate) fn worker_to_pb(w: &WorkerId) -> pb::WorkerId {
    pb::WorkerId {
        namespace: w.namespace.clone(),
        pool: w.pool.clone(),
        name: w.name.clone(),
    }
}

pub(crate) fn worker_from_pb(w: Option<pb::WorkerId>, field: &str) -> Result<WorkerId, SeamError> {
    let w = w.ok_or_else(|| missing(field))?;
    Ok(WorkerId {
        namespace: w.namespace,
        pool: w.pool,
        name: w.name,
    })
}

pub(crate) fn actor_to_pb(a: &ActorRef) -> pb::ActorRef {
    pb::ActorRef {
        atespace: a.atespace.clone(),
        id: a.id.clone(),
    }
}

pub(crate) fn actor_from_pb(a: Option<pb::ActorRef>, field: &str) -> Result<ActorRef, SeamError> {
    let a = a.ok_or_else(|| missing(field))?;
    Ok(ActorRef::new(a.atespace, a.id))
}

/// The proto's spelling of a scope (`"full"`, `"data"`). The model has no string form of
/// its own besides serde's variant names, which [`scope_from_pb`] accepts too.
pub(crate) fn scope_to_pb(s: SnapshotScope) -> String {
    match s {
        SnapshotScope::Full => "full",
        SnapshotScope::Data => "data",
    }
    .into()
}

pub(crate) fn scope_from_pb(s: &str, field: &str) -> Result<SnapshotScope, SeamError> {
    if s.eq_ignore_ascii_case("full") {
        Ok(SnapshotScope::Full)
    } else if s.eq_ignore_ascii_case("data") {
        Ok(SnapshotScope::Data)
    } else if s.is_empty() {
        Err(missing(field))
    } else {
        Err(SeamError::InvalidWorkload {
            field: field.into(),
            reason: format!("unknown snapshot scope {s:?} (expected \"full\" or \"data\")"),
        })
    }
}

pub(crate) fn workload_to_pb(w: &Workload) -> Result<pb::Workload, SeamError> {
    let spec_json = serde_json::to_string(&w.spec).map_err(|e| SeamError::InvalidWorkload {
        field: "workload.spec".into(),
        reason: e.to_string(),
    })?;
    Ok(pb::Workload {
        template_namespace: w.template.namespace.clone(),
        template_name: w.template.name.clone(),
        spec_json,
    })
}

pub(crate) fn workload_from_pb(w: Option<pb::Workload>) -> Result<Workload, SeamError> {
    let w = w.ok_or_else(|| missing("workload"))?;
    if w.spec_json.is_empty() {
        return Err(missing("workload.spec_json"));
    }
    let spec: TemplateSpec =
        serde_json::from_str(&w.spec_json).map_err(|e| SeamError::InvalidWorkload {
            field: "workload.spec_json".into(),
            reason: e.to_string(),
        })?;
    Ok(Workload {
        template: NamespacedName::new(w.template_namespace, w.template_name),
        spec,
    })
}

pub(crate) fn snapshot_to_pb(s: &SnapshotRef) -> pb::SnapshotRef {
    pb::SnapshotRef {
        location: s.location.clone(),
        owner: Some(actor_to_pb(&s.owner)),
        id: s.id.clone(),
        scope: scope_to_pb(s.scope),
    }
}

pub(crate) fn snapshot_from_pb(
    s: Option<pb::SnapshotRef>,
    field: &str,
) -> Result<SnapshotRef, SeamError> {
    let s = s.ok_or_else(|| missing(field))?;
    Ok(SnapshotRef {
        owner: actor_from_pb(s.owner, &format!("{field}.owner"))?,
        scope: scope_from_pb(&s.scope, &format!("{field}.scope"))?,
        location: s.location,
        id: s.id,
    })
}

pub(crate) fn run_to_pb(r: &RunRequest) -> Result<pb::RunRequest, SeamError> {
    Ok(pb::RunRequest {
        worker: Some(worker_to_pb(&r.worker)),
        actor: Some(actor_to_pb(&r.actor)),
        workload: Some(workload_to_pb(&r.workload)?),
        actor_uid: r.actor_uid.clone().unwrap_or_default(),
    })
}

pub(crate) fn run_from_pb(r: pb::RunRequest) -> Result<RunRequest, SeamError> {
    Ok(RunRequest {
        worker: worker_from_pb(r.worker, "worker")?,
        actor: actor_from_pb(r.actor, "actor")?,
        actor_uid: uid_from_pb(r.actor_uid, "actor_uid")?,
        workload: workload_from_pb(r.workload)?,
    })
}

pub(crate) fn restore_to_pb(r: &RestoreRequest) -> Result<pb::RestoreRequest, SeamError> {
    Ok(pb::RestoreRequest {
        worker: Some(worker_to_pb(&r.worker)),
        actor: Some(actor_to_pb(&r.actor)),
        workload: Some(workload_to_pb(&r.workload)?),
        snapshot: Some(snapshot_to_pb(&r.snapshot)),
        actor_uid: r.actor_uid.clone().unwrap_or_default(),
    })
}

pub(crate) fn restore_from_pb(r: pb::RestoreRequest) -> Result<RestoreRequest, SeamError> {
    Ok(RestoreRequest {
        worker: worker_from_pb(r.worker, "worker")?,
        actor: actor_from_pb(r.actor, "actor")?,
        actor_uid: uid_from_pb(r.actor_uid, "actor_uid")?,
        workload: workload_from_pb(r.workload)?,
        snapshot: snapshot_from_pb(r.snapshot, "snapshot")?,
    })
}

pub(crate) fn checkpoint_request_to_pb(
    r: &CheckpointRequest,
) -> Result<pb::CheckpointRequest, SeamError> {
    Ok(pb::CheckpointRequest {
        worker: Some(worker_to_pb(&r.worker)),
        actor: Some(actor_to_pb(&r.actor)),
        workload: Some(workload_to_pb(&r.workload)?),
        location: r.location.clone(),
        id: r.id.clone(),
        scope: scope_to_pb(r.scope),
        durable: r.durability == Durability::Durable,
        seal: r.seal,
        evict: r.evict,
    })
}

pub(crate) fn checkpoint_request_from_pb(
    r: pb::CheckpointRequest,
) -> Result<CheckpointRequest, SeamError> {
    Ok(CheckpointRequest {
        worker: worker_from_pb(r.worker, "worker")?,
        actor: actor_from_pb(r.actor, "actor")?,
        workload: workload_from_pb(r.workload)?,
        scope: scope_from_pb(&r.scope, "scope")?,
        location: r.location,
        id: r.id,
        durability: if r.durable {
            Durability::Durable
        } else {
            Durability::Local
        },
        seal: r.seal,
        evict: r.evict,
    })
}

pub(crate) fn evictable_to_pb(list: &[Evictable]) -> pb::EvictableReply {
    pb::EvictableReply {
        actors: list
            .iter()
            .map(|e| pb::EvictableActor {
                worker: Some(worker_to_pb(&e.worker)),
                actor: Some(actor_to_pb(&e.actor)),
                idle_ms: e.idle_ms,
            })
            .collect(),
    }
}

pub(crate) fn evictable_from_pb(r: pb::EvictableReply) -> Result<Vec<Evictable>, SeamError> {
    r.actors
        .into_iter()
        .map(|e| {
            Ok(Evictable {
                worker: worker_from_pb(e.worker, "worker")?,
                actor: actor_from_pb(e.actor, "actor")?,
                idle_ms: e.idle_ms,
            })
        })
        .collect()
}

pub(crate) fn checkpoint_to_pb(c: &Checkpoint) -> pb::CheckpointReply {
    pb::CheckpointReply {
        snapshot: Some(snapshot_to_pb(&c.snapshot)),
        bytes: c.bytes,
    }
}

pub(crate) fn checkpoint_from_pb(c: pb::CheckpointReply) -> Result<Checkpoint, SeamError> {
    Ok(Checkpoint {
        snapshot: snapshot_from_pb(c.snapshot, "snapshot")?,
        bytes: c.bytes,
    })
}

pub(crate) fn stop_to_pb(r: &StopRequest) -> pb::StopRequest {
    pb::StopRequest {
        worker: Some(worker_to_pb(&r.worker)),
        actor: Some(actor_to_pb(&r.actor)),
    }
}

pub(crate) fn stop_from_pb(r: pb::StopRequest) -> Result<StopRequest, SeamError> {
    Ok(StopRequest {
        worker: worker_from_pb(r.worker, "worker")?,
        actor: actor_from_pb(r.actor, "actor")?,
    })
}

pub(crate) fn log_to_pb(l: LogLine) -> pb::LogLine {
    pb::LogLine {
        time_ms: l.time_ms,
        stream: l.stream,
        text: l.text,
    }
}

pub(crate) fn log_from_pb(l: pb::LogLine) -> LogLine {
    LogLine {
        time_ms: l.time_ms,
        stream: l.stream,
        text: l.text,
    }
}

pub(crate) fn headers_to_pb(h: &http::HeaderMap) -> Vec<pb::Header> {
    h.iter()
        .map(|(name, value)| pb::Header {
            name: name.as_str().into(),
            value: value.as_bytes().to_vec(),
        })
        .collect()
}

/// Appends wire headers to `into` (repeated names stay repeated, in order).
pub(crate) fn headers_from_pb(
    headers: Vec<pb::Header>,
    into: &mut http::HeaderMap,
) -> Result<(), SeamError> {
    for h in headers {
        let name = http::HeaderName::from_bytes(h.name.as_bytes()).map_err(|e| {
            SeamError::InvalidWorkload {
                field: "head.headers.name".into(),
                reason: format!("{:?}: {e}", h.name),
            }
        })?;
        let value =
            http::HeaderValue::from_bytes(&h.value).map_err(|e| SeamError::InvalidWorkload {
                field: "head.headers.value".into(),
                reason: format!("{name}: {e}"),
            })?;
        into.append(name, value);
    }
    Ok(())
}

/// The error as the JSON a `SeamFailure` carries.
pub(crate) fn failure(e: &SeamError) -> pb::SeamFailure {
    pb::SeamFailure {
        error_json: error_json(e),
    }
}

fn error_json(e: &SeamError) -> String {
    // Every variant holds only strings: serialising cannot fail, but if it ever did the
    // receiver still gets the message.
    serde_json::to_string(e).unwrap_or_else(|_| {
        serde_json::json!({"kind": "internal", "detail": e.to_string()}).to_string()
    })
}

/// The error a `SeamFailure` carries; a failure that does not parse is reported as such.
pub(crate) fn from_failure(f: &pb::SeamFailure) -> SeamError {
    serde_json::from_str(&f.error_json).unwrap_or_else(|e| {
        SeamError::Internal(format!("undecodable node error {:?}: {e}", f.error_json))
    })
}

/// A status for a node-side failure: the code of its kind, its message, and the error
/// whole in `ate-seam-error-bin` metadata.
pub(crate) fn status_of(e: &SeamError) -> Status {
    let mut status = Status::new(ate_proto::status::code(e.kind()), e.to_string());
    status.metadata_mut().insert_bin(
        MetadataKey::from_static(ERROR_KEY),
        MetadataValue::from_bytes(error_json(e).as_bytes()),
    );
    status
}

/// The error behind a status the client got. A status the node sent with its error
/// attached is that error; a transport failure (refused, reset, keepalive or deadline
/// expiry, which tonic reports as `Unavailable`, `Cancelled` or `DeadlineExceeded`, or as a
/// status raised locally from an I/O or HTTP/2 error) means the node is unavailable;
/// anything else is an internal error.
pub(crate) fn error_of(status: &Status, node: &str) -> SeamError {
    if let Some(value) = status.metadata().get_bin(ERROR_KEY) {
        let parsed = value
            .to_bytes()
            .ok()
            .and_then(|b: Bytes| serde_json::from_slice::<SeamError>(&b).ok());
        if let Some(e) = parsed {
            return e;
        }
    }
    match status.code() {
        Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded => {
            SeamError::NodeUnavailable { node: node.into() }
        }
        // Statuses parsed off the wire carry no source: one with a source was raised on
        // this side from a connection error.
        _ if std::error::Error::source(status).is_some() => {
            SeamError::NodeUnavailable { node: node.into() }
        }
        _ => SeamError::Internal(status.message().into()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn every_error_survives_a_status() {
        let errors = [
            SeamError::unavailable("team-a/x", "budget exceeded"),
            SeamError::NotHosted {
                worker: "default/wasm/w1".into(),
                actor: "team-a/x".into(),
            },
            SeamError::InvalidWorkload {
                field: "workload".into(),
                reason: "naïve — not ascii".into(),
            },
            SeamError::Snapshot("corrupt".into()),
            SeamError::SnapshotTooLarge {
                actor: "team-a/x".into(),
                size: 5 << 30,
                limit: 4 << 30,
            },
            SeamError::Internal("boom".into()),
        ];
        for e in errors {
            let status = status_of(&e);
            assert_eq!(status.code(), ate_proto::status::code(e.kind()));
            // Through the header map, as it travels.
            let mut headers = http::HeaderMap::new();
            status.add_header(&mut headers).unwrap();
            let back = Status::from_header_map(&headers).unwrap();
            assert_eq!(error_of(&back, "n1"), e);
        }
    }

    #[test]
    fn bare_statuses_map_by_code() {
        assert_eq!(
            error_of(&Status::unavailable("connection refused"), "n1"),
            SeamError::NodeUnavailable { node: "n1".into() }
        );
        assert_eq!(
            error_of(&Status::internal("bad frame"), "n1"),
            SeamError::Internal("bad frame".into())
        );
    }

    #[test]
    fn scopes_use_the_proto_spelling_and_accept_the_model_one() {
        for s in [SnapshotScope::Full, SnapshotScope::Data] {
            assert_eq!(scope_from_pb(&scope_to_pb(s), "scope").unwrap(), s);
            let serde = serde_json::to_value(s).unwrap();
            assert_eq!(scope_from_pb(serde.as_str().unwrap(), "scope").unwrap(), s);
        }
        assert!(matches!(
            scope_from_pb("", "snapshot.scope"),
            Err(SeamError::InvalidWorkload { field, .. }) if field == "snapshot.scope"
        ));
    }

    #[test]
    fn a_missing_field_is_named() {
        let err = run_from_pb(pb::RunRequest::default()).unwrap_err();
        assert_eq!(err, missing("worker"));
    }
}
