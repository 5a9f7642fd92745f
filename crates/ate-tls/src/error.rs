//! The errors of this crate.

use std::path::PathBuf;

/// Why a CA, a certificate or a TLS setting cannot be made or used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file or directory cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file holds something other than what it should (no certificate, a bad key, ...).
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    /// `init-ca` without rotation found a CA already there.
    #[error("a ca already exists in {dir} (rotate it instead)")]
    CaExists { dir: PathBuf },
    /// There is no CA to issue from or to rotate.
    #[error("no ca in {dir} (create one with ate admin init-ca)")]
    NoCa { dir: PathBuf },
    /// A name that cannot be an identity.
    #[error("invalid identity: {0}")]
    Identity(String),
    /// A certificate cannot be generated.
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the material (a key that does not match its certificate, ...).
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
    /// A validity period that cannot be expressed or makes no sense.
    #[error("invalid validity: {0}")]
    Validity(String),
}

impl TlsError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
