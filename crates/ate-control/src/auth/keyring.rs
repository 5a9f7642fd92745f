//! The token-signing keys, kept in the store so that every replica signs and verifies with
//! the same ones. The newest key signs; every stored key verifies. Where the control plane
//! runs on a store from [`sealed_store`], each private key is stored sealed with the
//! key-encryption key (KEK) the replicas share and the store does not hold: a copy of the
//! store yields no key that signs, and a store of sealed keys read without the KEK yields
//! an error, never a key (nor a new key in place of the unreadable ones).

use std::sync::Arc;

use ate_auth::{Kek, SigningKey, VerificationKey};
use ate_model::{Kind, SigningKeyRecord};
use ate_store::{ListOptions, SealedStore, Sealer, Store, StoreError, Unsealed, now_ms};

/// Why the keyring could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("signing key {kid} is unreadable: {reason}")]
    Corrupt { kid: String, reason: String },
    #[error(
        "signing key {kid} is sealed with key-encryption key {kek}, and this process has no key-encryption key to open it"
    )]
    Sealed { kid: String, kek: String },
    #[error("cannot generate a signing key: {0}")]
    Generate(#[from] ate_auth::AuthError),
}

/// The field of a stored signing key that holds its private key.
const PRIVATE_KEY_FIELD: &str = "privateKey";

/// Seals the private key of each signing key record with a KEK; the rest of the record (its
/// id and age) stays readable, so operators can tell keys apart without the KEK.
#[derive(Debug)]
pub struct KeySealer {
    kek: Kek,
}

impl KeySealer {
    pub fn new(kek: Kek) -> Self {
        Self { kek }
    }

    /// The associated data a sealed key is bound to: its record, so a sealed key copied
    /// to another record does not open.
    fn aad(key: &str) -> Vec<u8> {
        format!("{}/{key}", Kind::SigningKey.plural()).into_bytes()
    }

    /// The record's JSON and its private key field.
    fn parse(
        kind: Kind,
        key: &str,
        body: &[u8],
    ) -> Result<(serde_json::Value, String), StoreError> {
        let fail = |reason: String| StoreError::Sealing {
            kind,
            key: key.into(),
            reason,
        };
        let doc: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| fail(format!("not a json record: {e}")))?;
        let private = doc
            .get(PRIVATE_KEY_FIELD)
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| fail(format!("{PRIVATE_KEY_FIELD} is missing")))?
            .to_string();
        Ok((doc, private))
    }

    fn with_private(
        kind: Kind,
        key: &str,
        mut doc: serde_json::Value,
        private: String,
    ) -> Result<Vec<u8>, StoreError> {
        doc[PRIVATE_KEY_FIELD] = private.into();
        serde_json::to_vec(&doc).map_err(|e| StoreError::Sealing {
            kind,
            key: key.into(),
            reason: e.to_string(),
        })
    }
}

impl Sealer for KeySealer {
    fn seals(&self, kind: Kind) -> bool {
        kind == Kind::SigningKey
    }

    fn seal(&self, kind: Kind, key: &str, body: &[u8]) -> Result<Vec<u8>, StoreError> {
        let (doc, private) = Self::parse(kind, key, body)?;
        if ate_auth::is_sealed(&private) {
            return Ok(body.to_vec());
        }
        let sealed = self
            .kek
            .seal(&Self::aad(key), private.as_bytes())
            .map_err(|e| StoreError::Sealing {
                kind,
                key: key.into(),
                reason: e.to_string(),
            })?;
        Self::with_private(kind, key, doc, sealed)
    }

    fn unseal(&self, kind: Kind, key: &str, stored: &[u8]) -> Result<Unsealed, StoreError> {
        let (doc, private) = Self::parse(kind, key, stored)?;
        if !ate_auth::is_sealed(&private) {
            // Written in the clear by an older version; `SealedStore::wrap` seals it.
            return Ok(Unsealed {
                body: stored.to_vec(),
                was_sealed: false,
            });
        }
        let fail = |reason: String| StoreError::Sealing {
            kind,
            key: key.into(),
            reason,
        };
        let plain = self
            .kek
            .open(&Self::aad(key), &private)
            .map_err(|e| fail(e.to_string()))?;
        let plain =
            String::from_utf8(plain).map_err(|_| fail("unsealed key is not text".into()))?;
        Ok(Unsealed {
            body: Self::with_private(kind, key, doc, plain)?,
            was_sealed: true,
        })
    }
}

/// `store` with its signing keys sealed by `kek`: what the control plane should run on.
/// Keys an older version stored in the clear are sealed first; a stored key that does not
/// open with `kek` (another replica's KEK) fails here, naming the KEK file.
pub async fn sealed_store(store: Arc<dyn Store>, kek: Kek) -> Result<Arc<dyn Store>, KeyringError> {
    let (id, file) = (kek.id().to_string(), kek.source().to_string());
    let sealed = SealedStore::wrap(store, Arc::new(KeySealer::new(kek))).await?;
    tracing::info!(kek = %id, %file, "signing keys are sealed with the key-encryption key");
    Ok(sealed)
}

fn to_record(key: &SigningKey) -> Result<SigningKeyRecord, KeyringError> {
    let corrupt = |e: serde_json::Error| KeyringError::Corrupt {
        kid: key.kid().to_string(),
        reason: e.to_string(),
    };
    serde_json::to_value(key)
        .and_then(serde_json::from_value)
        .map_err(corrupt)
}

fn from_record(rec: &SigningKeyRecord) -> Result<SigningKey, KeyringError> {
    if let Some(kek) = ate_auth::sealed_with(&rec.private_key) {
        return Err(KeyringError::Sealed {
            kid: rec.kid.clone(),
            kek: kek.to_string(),
        });
    }
    let doc = serde_json::json!({
        "kid": rec.kid,
        "createdMs": rec.created_ms,
        "privateKey": rec.private_key,
    });
    serde_json::from_value(doc).map_err(|e| KeyringError::Corrupt {
        kid: rec.kid.clone(),
        reason: e.to_string(),
    })
}

/// Every stored key, oldest first.
pub async fn load(store: &Arc<dyn Store>) -> Result<Vec<SigningKey>, KeyringError> {
    let mut records = store
        .list_all::<SigningKeyRecord>(&ListOptions::default())
        .await?;
    records.sort_by(|a, b| (a.created_ms, &a.kid).cmp(&(b.created_ms, &b.kid)));
    records.iter().map(from_record).collect()
}

/// The key that signs new tokens: the newest stored one, created if there is none. Two
/// replicas starting together may both create one; the newer then signs and both verify.
pub async fn active(store: &Arc<dyn Store>) -> Result<SigningKey, KeyringError> {
    if let Some(key) = load(store).await?.pop() {
        return Ok(key);
    }
    add(store).await
}

/// Creates and stores a new key, which becomes the active one.
pub async fn add(store: &Arc<dyn Store>) -> Result<SigningKey, KeyringError> {
    let key = SigningKey::generate(now_ms())?;
    store.create(to_record(&key)?).await?;
    tracing::info!(kid = %key.kid(), "token signing key created");
    Ok(key)
}

/// Makes a new key active; with `retire_previous`, deletes the others, so every token they
/// signed stops verifying. Returns the new key and the retired key ids.
pub async fn rotate(
    store: &Arc<dyn Store>,
    retire_previous: bool,
) -> Result<(SigningKey, Vec<String>), KeyringError> {
    let previous = load(store).await?;
    let key = add(store).await?;
    let mut retired = Vec::new();
    if retire_previous {
        for old in previous {
            match store.delete::<SigningKeyRecord>(old.kid(), None).await {
                Ok(()) | Err(StoreError::NotFound { .. }) => retired.push(old.kid().to_string()),
                Err(e) => return Err(e.into()),
            }
        }
        tracing::info!(kid = %key.kid(), retired = ?retired, "older signing keys retired");
    }
    Ok((key, retired))
}

/// The public halves of every stored key, oldest first.
pub async fn verification_keys(
    store: &Arc<dyn Store>,
) -> Result<Vec<(VerificationKey, u64)>, KeyringError> {
    Ok(load(store)
        .await?
        .iter()
        .map(|k| (k.verification_key(), k.created_ms()))
        .collect())
}
