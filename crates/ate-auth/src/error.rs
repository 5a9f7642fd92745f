//! Errors of minting keys and tokens ([`AuthError`]) and of checking tokens ([`TokenError`]).

use thiserror::Error;

/// Failure to build claims or keys, or to sign. Raised on the issuing side, where the caller
/// chose the input, so the message names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    /// A caller-supplied value is out of bounds; `field` is e.g. "subject", "atespaces", "ttl".
    #[error("invalid {field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
    /// The crypto library refused (no randomness, a corrupt key).
    #[error("crypto error: {reason}")]
    Crypto { reason: String },
}

impl AuthError {
    pub(crate) fn field(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidField {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn crypto(reason: impl Into<String>) -> Self {
        Self::Crypto {
            reason: reason.into(),
        }
    }
}

/// Why a presented token was refused. Messages say enough to act on (which key, when it
/// expired) but never echo the token; attacker-chosen strings (alg, kid) are truncated.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TokenError {
    #[error("token is larger than {} bytes", crate::MAX_TOKEN_BYTES)]
    TooLarge,
    #[error("malformed token: {reason}")]
    Malformed { reason: String },
    #[error("unsupported token algorithm {alg:?}: only EdDSA is accepted")]
    UnsupportedAlgorithm { alg: String },
    #[error("token was signed by unknown key {kid:?}")]
    UnknownKey { kid: String },
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token expired at {expired_at_secs} (seconds since the unix epoch)")]
    Expired { expired_at_secs: u64 },
    #[error("token is not valid yet: it was issued in the future")]
    NotYetValid,
    #[error("token was revoked")]
    Revoked,
}

impl TokenError {
    pub(crate) fn malformed(reason: impl Into<String>) -> Self {
        Self::Malformed {
            reason: reason.into(),
        }
    }
}

/// Caps an attacker-controlled string before it goes into an error message or a log.
pub(crate) fn clip(s: &str) -> String {
    const MAX: usize = 64;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}
