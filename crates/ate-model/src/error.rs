//! The one error type of the model: bad input, always naming the field it came from.

/// Broad classes of failure shared by every crate, so that each boundary maps its own
/// error onto one gRPC code in one place (see `ate-proto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    InvalidArgument,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    Aborted,
    Unavailable,
    Unimplemented,
    Internal,
}

/// A value that failed validation. The message always names the field, so a user who sent
/// a whole manifest or request can tell which part to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("{field} is required")]
    Required { field: String },
    #[error("invalid {field} {value:?}: {reason}")]
    Invalid {
        field: String,
        value: String,
        reason: String,
    },
}

impl ModelError {
    pub fn required(field: impl Into<String>) -> Self {
        Self::Required {
            field: field.into(),
        }
    }

    pub fn invalid(
        field: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            field: field.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }

    /// The field this error is about.
    pub fn field(&self) -> &str {
        match self {
            Self::Required { field } | Self::Invalid { field, .. } => field,
        }
    }

    /// Re-roots the error under a parent field, e.g. `name` inside `metadata` becomes
    /// `metadata.name`.
    pub fn within(self, parent: &str) -> Self {
        match self {
            Self::Required { field } => Self::Required {
                field: format!("{parent}.{field}"),
            },
            Self::Invalid {
                field,
                value,
                reason,
            } => Self::Invalid {
                field: format!("{parent}.{field}"),
                value,
                reason,
            },
        }
    }
}
