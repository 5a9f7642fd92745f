//! One set of verification keys shared by the parts of a process that check tokens.

use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use crate::{Claims, TokenError, Verifier};

/// The verification keys of the moment, shared with in-process readers (the router checks
/// actor traffic with the same keys) and replaced whenever the stored keys change.
#[derive(Debug, Clone, Default)]
pub struct SharedVerifier(Arc<RwLock<Verifier>>);

impl SharedVerifier {
    pub fn replace(&self, verifier: Verifier) {
        if let Ok(mut v) = self.0.write() {
            *v = verifier;
        }
    }

    pub fn verify(&self, token: &str, now: SystemTime) -> Result<Claims, TokenError> {
        self.read(|v| v.verify(token, now))
    }

    /// See [`Verifier::signed_claims`].
    pub fn signed_claims(&self, token: &str) -> Result<Claims, TokenError> {
        self.read(|v| v.signed_claims(token))
    }

    fn read(
        &self,
        f: impl FnOnce(&Verifier) -> Result<Claims, TokenError>,
    ) -> Result<Claims, TokenError> {
        match self.0.read() {
            Ok(v) => f(&v),
            Err(_) => Err(TokenError::Malformed {
                reason: "verification keys unavailable".into(),
            }),
        }
    }
}
