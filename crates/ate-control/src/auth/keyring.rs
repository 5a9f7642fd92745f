//! The token-signing keys, kept in the store so that every replica signs and verifies with
//! the same ones. The newest key signs; every stored key verifies.

use std::sync::Arc;

use ate_auth::{SigningKey, VerificationKey};
use ate_model::SigningKeyRecord;
use ate_store::{ListOptions, Store, StoreError, now_ms};

/// Why the keyring could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("signing key {kid} is unreadable: {reason}")]
    Corrupt { kid: String, reason: String },
    #[error("cannot generate a signing key: {0}")]
    Generate(#[from] ate_auth::AuthError),
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
