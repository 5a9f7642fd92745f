//! The one mapping from error kinds to gRPC status codes, used by every server boundary.

use ate_model::{ErrorKind, ModelError};
use tonic::{Code, Status};

pub fn code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::FailedPrecondition => Code::FailedPrecondition,
        ErrorKind::Aborted => Code::Aborted,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Unimplemented => Code::Unimplemented,
        ErrorKind::Internal => Code::Internal,
    }
}

/// A status of the given kind with the given message.
pub fn status(kind: ErrorKind, message: impl Into<String>) -> Status {
    Status::new(code(kind), message)
}

/// Bad input becomes `InvalidArgument`, with the message naming the field.
pub fn invalid(e: ModelError) -> Status {
    Status::invalid_argument(e.to_string())
}
