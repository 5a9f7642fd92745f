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

/// Longest part of a rejected value an error repeats: enough to recognise it, and a
/// megabyte-long name does not come back in the reply, the log and the audit trail.
pub const MAX_ECHOED_VALUE: usize = 96;

/// `text` cut to at most `max` bytes on a character boundary, saying how long it was when
/// cut.
pub fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &text[..end], text.len())
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
            value: clip(&value.into(), MAX_ECHOED_VALUE),
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

#[cfg(test)]
mod clip_tests {
    use super::*;

    #[test]
    fn long_values_are_echoed_clipped_on_a_character_boundary() {
        let long = "é".repeat(1_000_000);
        let e = ModelError::invalid("name", long, "too long");
        let text = e.to_string();
        assert!(text.len() < 200, "{text}");
        assert!(text.contains("(2000000 bytes)"), "{text}");
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("abcdef", 3), "abc... (6 bytes)");
    }
}
