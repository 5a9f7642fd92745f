//! Ed25519 key pairs that sign tokens, and the public halves that check them.

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};

use crate::{AuthError, Claims};

/// A private signing key. Cheap to clone (the key pair is shared). Serialized as
/// `{"kid", "createdMs", "privateKey"}` with the PKCS#8 v2 document in standard base64, so it
/// can be stored in a secret and reloaded; `Debug` never shows the private key.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "SigningKeyFile", into = "SigningKeyFile")]
pub struct SigningKey {
    kid: String,
    created_ms: u64,
    pkcs8: Arc<[u8]>,
    pair: Arc<Ed25519KeyPair>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SigningKeyFile {
    kid: String,
    created_ms: u64,
    private_key: String,
}

impl SigningKey {
    /// Generates a fresh key pair from the system's secure random source. `now_ms` is kept
    /// only so operators can tell keys apart and rotate the oldest.
    pub fn generate(now_ms: u64) -> Result<SigningKey, AuthError> {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| AuthError::crypto("could not generate an ed25519 key"))?;
        Self::from_pkcs8(doc.as_ref(), now_ms)
    }

    fn from_pkcs8(pkcs8: &[u8], created_ms: u64) -> Result<SigningKey, AuthError> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8)
            .map_err(|e| AuthError::crypto(format!("invalid ed25519 pkcs8 key: {e}")))?;
        Ok(SigningKey {
            kid: kid_for(pair.public_key().as_ref()),
            created_ms,
            pkcs8: pkcs8.into(),
            pair: Arc::new(pair),
        })
    }

    /// The key id put in token headers; derived from the public key, so it is stable
    /// across restarts and the same on every node.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// When the key was generated, in milliseconds since the unix epoch.
    pub fn created_ms(&self) -> u64 {
        self.created_ms
    }

    /// The public half, to hand to a [`crate::Verifier`].
    pub fn verification_key(&self) -> VerificationKey {
        VerificationKey {
            kid: self.kid.clone(),
            public_key: self.pair.public_key().as_ref().to_vec(),
        }
    }

    /// Signs `claims` into a compact JWT with header `{"alg":"EdDSA","typ":"JWT","kid":..}`.
    /// Claims outside the rules of [`Claims::new`] are refused, so they are never minted.
    pub fn sign(&self, claims: &Claims) -> Result<String, AuthError> {
        claims
            .check()
            .map_err(|(field, reason)| AuthError::field(field, reason))?;
        crate::jwt::encode(&self.kid, claims, |msg| {
            self.pair.sign(msg).as_ref().to_vec()
        })
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("created_ms", &self.created_ms)
            .finish_non_exhaustive()
    }
}

impl TryFrom<SigningKeyFile> for SigningKey {
    type Error = AuthError;

    fn try_from(file: SigningKeyFile) -> Result<Self, AuthError> {
        let pkcs8 = STANDARD
            .decode(file.private_key.as_bytes())
            .map_err(|_| AuthError::field("privateKey", "is not valid base64"))?;
        let key = SigningKey::from_pkcs8(&pkcs8, file.created_ms)?;
        if key.kid != file.kid {
            return Err(AuthError::field(
                "kid",
                format!("{:?} does not match the private key", file.kid),
            ));
        }
        Ok(key)
    }
}

impl From<SigningKey> for SigningKeyFile {
    fn from(key: SigningKey) -> Self {
        SigningKeyFile {
            private_key: STANDARD.encode(&key.pkcs8),
            kid: key.kid,
            created_ms: key.created_ms,
        }
    }
}

/// The public half of a [`SigningKey`]: safe to publish and to give every verifying node.
/// Serialized as `{"kid", "publicKey"}` with the raw 32-byte key in standard base64.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationKey {
    pub kid: String,
    #[serde(with = "base64_bytes")]
    pub public_key: Vec<u8>,
}

/// base64url (no padding) of the first 12 bytes of SHA-256 of the public key: 16 characters,
/// header-safe, and collisions would need a 96-bit preimage.
fn kid_for(public_key: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, public_key);
    URL_SAFE_NO_PAD.encode(&digest.as_ref()[..12])
}

mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(|_| serde::de::Error::custom("publicKey is not valid base64"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{MAX_TTL, Role, Verifier};
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn serde_round_trip_keeps_kid_and_signs() {
        let key = SigningKey::generate(1234).unwrap();
        assert_eq!(key.kid().len(), 16);
        let json = serde_json::to_string(&key).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["kid"], key.kid());
        assert_eq!(v["createdMs"], 1234);
        assert!(v["privateKey"].is_string());

        let back: SigningKey = serde_json::from_str(&json).unwrap();
        assert_eq!(back.kid(), key.kid());
        assert_eq!(back.created_ms(), 1234);
        assert_eq!(back.verification_key(), key.verification_key());

        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let claims = Claims::new("a", &["x".into()], Role::Viewer, MAX_TTL, now).unwrap();
        let token = back.sign(&claims).unwrap();
        let verifier = Verifier::new([key.verification_key()]);
        assert_eq!(verifier.verify(&token, now).unwrap(), claims);
    }

    #[test]
    fn deserialize_rejects_mismatched_kid_and_garbage() {
        let key = SigningKey::generate(0).unwrap();
        let mut v = serde_json::to_value(&key).unwrap();
        v["kid"] = "AAAAAAAAAAAAAAAA".into();
        assert!(serde_json::from_value::<SigningKey>(v.clone()).is_err());
        v["kid"] = key.kid().into();
        v["privateKey"] = "bm90IGEga2V5".into();
        assert!(serde_json::from_value::<SigningKey>(v).is_err());
    }

    #[test]
    fn debug_hides_private_key() {
        let key = SigningKey::generate(0).unwrap();
        let debug = format!("{key:?}");
        let file = serde_json::to_value(&key).unwrap();
        let private = file["privateKey"].as_str().unwrap();
        assert!(debug.contains(key.kid()));
        assert!(!debug.contains(private));
        assert!(!debug.contains(&format!("{:?}", &key.pkcs8[..])));
        assert!(!debug.to_lowercase().contains("private"));
    }

    #[test]
    fn verification_key_serde() {
        let vk = SigningKey::generate(0).unwrap().verification_key();
        assert_eq!(vk.public_key.len(), 32);
        let json = serde_json::to_value(&vk).unwrap();
        assert_eq!(json["kid"], vk.kid.as_str());
        assert!(json["publicKey"].is_string());
        assert_eq!(serde_json::from_value::<VerificationKey>(json).unwrap(), vk);
    }
}
