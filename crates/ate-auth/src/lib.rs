//! Bearer tokens for ate's control API.
//!
//! Tokens are compact JWTs signed with Ed25519 (`alg: "EdDSA"`). A [`SigningKey`] mints them,
//! a [`Verifier`] holding the public halves ([`VerificationKey`]) checks them, and
//! [`authorize`] / [`may_grant`] decide what the verified [`Claims`] allow. Only EdDSA is
//! accepted, so the classic `alg: "none"` and HMAC-with-public-key confusions cannot apply.
//! A [`Kek`] seals the private keys where they are stored.

mod claims;
mod error;
mod jwt;
mod kek;
mod keys;
mod policy;
mod shared;

pub use claims::{ALL_ATESPACES, Claims, MAX_TTL, Role};
pub use error::{AuthError, TokenError};
pub use jwt::{MAX_TOKEN_BYTES, Verifier};
pub use kek::{KEK_FILE_MODE, KEK_LEN, Kek, KekError, SEALED_PREFIX, is_sealed, sealed_with};
pub use keys::{SigningKey, VerificationKey};
pub use policy::{Access, Denied, Scope, authorize, may_grant};
pub use shared::SharedVerifier;
