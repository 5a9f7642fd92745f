//! Tokens revoked before they expire. A token is a signed statement, so shutting one out
//! means every verifier must know its `jti`: the list lives in the store, every replica
//! follows it with a watch, and routers fetch it with the verification keys. A record is
//! only needed until its token would have expired anyway, so the list stays short.

use std::sync::Arc;

use ate_auth::Claims;
use ate_model::RevokedToken;
use ate_store::{ListOptions, Store, StoreError, now_ms};

/// The `jti`s of the revoked tokens not yet expired. Records of expired ones are deleted on
/// the way (another replica doing the same at once is harmless).
pub async fn revoked_jtis(store: &Arc<dyn Store>) -> Result<Vec<String>, StoreError> {
    let now = now_ms();
    let mut live = Vec::new();
    for record in store
        .list_all::<RevokedToken>(&ListOptions::default())
        .await?
    {
        if record.expires_ms > now {
            live.push(record.jti);
            continue;
        }
        match store.delete::<RevokedToken>(&record.jti, None).await {
            Ok(()) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(live)
}

/// Records the token of `claims` as revoked by `by`. Revoking twice is not an error: the
/// token is revoked either way.
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
    match store.create(record.clone()).await {
        Ok(created) => {
            tracing::info!(jti = %created.jti, subject = %created.subject, by, "token revoked");
            Ok(created)
        }
        Err(StoreError::AlreadyExists { .. }) => store.get::<RevokedToken>(&claims.jti).await,
        Err(e) => Err(e),
    }
}
