//! Revoked tokens over a real SQLite store: kept while the token could still verify,
//! forgotten by the next revocation after, and revoking twice keeps the first record.

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

    // An expired token may be named; its record goes at once, as it verifies nowhere.
    revoke(&store, &dead, "admin-a")
        .await
        .expect("revoke expired");
    assert!(store.get::<RevokedToken>(&dead.jti).await.is_err());
    // A revocation whose token has expired since is forgotten by the next revocation.
    store
        .create(RevokedToken {
            jti: "lapsed".into(),
            subject: "gone".into(),
            expires_ms: ate_store::now_ms() - 1,
            revoked_ms: 0,
            revoked_by: "admin-a".into(),
            version: 0,
        })
        .await
        .expect("create");
    assert!(revoked_jtis(&store).await.expect("list").is_empty());

    let first = revoke(&store, &live, "admin-a").await.expect("revoke");
    assert_eq!(
        (first.subject.as_str(), first.revoked_by.as_str()),
        ("web", "admin-a")
    );
    assert_eq!(first.expires_ms, live.exp * 1000);
    assert!(store.get::<RevokedToken>("lapsed").await.is_err());
    let again = revoke(&store, &live, "admin-b")
        .await
        .expect("revoke twice");
    assert_eq!(again, first, "the first revocation stands");
    let jtis = revoked_jtis(&store).await.expect("list");
    assert_eq!(jtis, std::slice::from_ref(&live.jti));
}
