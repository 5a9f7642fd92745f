//! Revoked tokens over a real SQLite store: kept while the token could still verify,
//! forgotten after, and revoking twice keeps the first record.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ate_auth::{Claims, Role};
use ate_control::auth::revocation::{revoke, revoked_jtis};
use ate_model::RevokedToken;
use ate_store::Store;
use ate_store_sqlite::SqliteStore;

fn claims(subject: &str, issued: SystemTime, ttl: Duration) -> Claims {
    Claims::new(subject, &["team-a".into()], Role::Editor, ttl, issued).expect("claims")
}

#[tokio::test]
async fn revocations_last_as_long_as_their_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path().join("ate.db")).expect("open"));
    let now = SystemTime::now();
    let live = claims("web", now, Duration::from_secs(3600));
    let dead = claims(
        "old",
        now - Duration::from_secs(7200),
        Duration::from_secs(3600),
    );

    let first = revoke(&store, &live, "admin-a").await.expect("revoke");
    assert_eq!(
        (first.subject.as_str(), first.revoked_by.as_str()),
        ("web", "admin-a")
    );
    assert_eq!(first.expires_ms, live.exp * 1000);
    let again = revoke(&store, &live, "admin-b")
        .await
        .expect("revoke twice");
    assert_eq!(again, first, "the first revocation stands");
    revoke(&store, &dead, "admin-a")
        .await
        .expect("revoke expired");

    let jtis = revoked_jtis(&store).await.expect("list");
    assert_eq!(jtis, std::slice::from_ref(&live.jti));
    // The expired token's record went on the way.
    assert!(store.get::<RevokedToken>(&dead.jti).await.is_err());
    assert!(store.get::<RevokedToken>(&live.jti).await.is_ok());
}
