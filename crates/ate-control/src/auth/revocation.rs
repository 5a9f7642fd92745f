//! Tokens revoked before they expire. A token is a signed statement, so shutting one out
//! means every verifier must know its `jti`: the list lives in the store, every replica
//! follows it with a watch, and routers fetch it with the verification keys. A record is
//! only needed until its token would have expired anyway, so the list stays short: each
//! revocation clears the expired ones.

use std::sync::Arc;

use ate_auth::Claims;
use ate_model::RevokedToken;
use ate_store::{ListOptions, Store, StoreError, now_ms};

/// The `jti`s of the revoked tokens not yet expired.
pub async fn revoked_jtis(store: &Arc<dyn Store>) -> Result<Vec<String>, StoreError> {
    let now = now_ms();
    Ok(store
        .list_all::<RevokedToken>(&ListOptions::default())
        .await?
        .into_iter()
        .filter(|r| r.expires_ms > now)
        .map(|r| r.jti)
        .collect())
}

/// Deletes the records of revoked tokens that have expired since (another replica doing
/// the same at once is harmless).
async fn forget_expired(store: &Arc<dyn Store>) -> Result<(), StoreError> {
    let now = now_ms();
    for record in store
        .list_all::<RevokedToken>(&ListOptions::default())
        .await?
    {
        if record.expires_ms > now {
            continue;
        }
        match store.delete::<RevokedToken>(&record.jti, None).await {
            Ok(()) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Records the token of `claims` as revoked by `by`, and forgets the revocations whose
/// tokens have expired meanwhile. Revoking twice is not an error: the token is revoked
/// either way.
pub async fn revoke(
    store: &Arc<dyn Store>,
    claims: &Claims,
    by: &str,
) -> Result<RevokedToken, StoreError> {
    let record = RevokedToken {
        jti: claims.jti.clone(),
        subject: claims.sub.clone(),
        expires_ms: claims.exp.saturating_mul(1000),
        revoked_ms: now_ms(),
        revoked_by: by.to_string(),
        version: 0,
    };
    let record = match store.create(record).await {
        Ok(created) => {
            tracing::info!(jti = %created.jti, subject = %created.subject, by, "token revoked");
            created
        }
        Err(StoreError::AlreadyExists { .. }) => store.get::<RevokedToken>(&claims.jti).await?,
        Err(e) => return Err(e),
    };
    forget_expired(store).await?;
    Ok(record)
}
