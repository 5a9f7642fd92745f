//! Signing keys at rest over a real SQLite store: sealed with the key-encryption key, so the
//! store alone yields no key (and no new key in place of the sealed ones); a wrong KEK is
//! refused naming its file; keys an older version stored in the clear are sealed at start;
//! watches of the sealed store still report the keys.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ate_auth::{Claims, Kek, Role, SigningKey, Verifier};
use ate_control::auth::keyring::{self, KeyringError};
use ate_model::{Kind, SigningKeyRecord};
use ate_store::{ListOptions, Store, WatchEvent};
use ate_store_sqlite::SqliteStore;

fn raw_store(dir: &std::path::Path) -> Arc<dyn Store> {
    Arc::new(SqliteStore::open(dir.join("ate.db")).unwrap())
}

/// The base64 PKCS#8 document of a key, as a plaintext record holds it.
fn private_text(key: &SigningKey) -> String {
    serde_json::to_value(key).unwrap()["privateKey"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Every stored signing key body, as the backend holds it.
async fn stored_bodies(raw: &Arc<dyn Store>) -> Vec<String> {
    raw.list_records(Kind::SigningKey, &ListOptions::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|r| String::from_utf8(r.body).unwrap())
        .collect()
}

#[tokio::test]
async fn keys_are_sealed_and_the_store_alone_yields_none() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_store(dir.path());
    let kek = Kek::load_or_create(&dir.path().join("kek")).unwrap();
    let sealed = keyring::sealed_store(raw.clone(), kek).await.unwrap();

    let key = keyring::active(&sealed).await.unwrap();
    let bodies = stored_bodies(&raw).await;
    assert_eq!(bodies.len(), 1);
    assert!(
        !bodies[0].contains(&private_text(&key)),
        "the backend holds the private key in the clear: {}",
        bodies[0]
    );
    assert!(bodies[0].contains(key.kid()), "the key id stays readable");
    let record: SigningKeyRecord = raw.get(key.kid()).await.unwrap();
    assert!(ate_auth::is_sealed(&record.private_key));

    // Read without the KEK: an error naming the key, never a key, and no new key made.
    let err = keyring::active(&raw).await.unwrap_err();
    assert!(
        matches!(&err, KeyringError::Sealed { kid, .. } if kid == key.kid()),
        "{err}"
    );
    assert!(keyring::load(&raw).await.is_err());
    assert!(keyring::verification_keys(&raw).await.is_err());
    assert!(
        ate_control::Authenticator::start(raw.clone())
            .await
            .is_err()
    );
    assert_eq!(stored_bodies(&raw).await.len(), 1);

    // With the KEK, the same key signs, and its tokens verify.
    let again = keyring::active(&sealed).await.unwrap();
    assert_eq!(again.kid(), key.kid());
    let now = SystemTime::now();
    let claims = Claims::new(
        "a",
        &["x".into()],
        Role::Viewer,
        Duration::from_secs(60),
        now,
    )
    .unwrap();
    let token = again.sign(&claims).unwrap();
    let verifier = Verifier::new([key.verification_key()]);
    assert_eq!(verifier.verify(&token, now).unwrap(), claims);
}

#[tokio::test]
async fn a_wrong_kek_is_refused_naming_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_store(dir.path());
    let right = Kek::load_or_create(&dir.path().join("kek")).unwrap();
    let sealed = keyring::sealed_store(raw.clone(), right).await.unwrap();
    keyring::active(&sealed).await.unwrap();

    let wrong_path = dir.path().join("other.kek");
    let wrong = Kek::load_or_create(&wrong_path).unwrap();
    let err = match keyring::sealed_store(raw.clone(), wrong).await {
        Ok(_) => panic!("a store sealed with another KEK was opened"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains(&wrong_path.display().to_string()),
        "the message names the KEK file: {err}"
    );
    assert!(err.contains("signing key"), "{err}");
}

#[tokio::test]
async fn keys_stored_in_the_clear_are_sealed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_store(dir.path());
    // What an older version did: the private key in the clear.
    let old = keyring::add(&raw).await.unwrap();
    assert!(stored_bodies(&raw).await[0].contains(&private_text(&old)));

    let kek = Kek::load_or_create(&dir.path().join("kek")).unwrap();
    let sealed = keyring::sealed_store(raw.clone(), kek).await.unwrap();
    let bodies = stored_bodies(&raw).await;
    assert_eq!(bodies.len(), 1);
    assert!(
        !bodies[0].contains(&private_text(&old)),
        "the old key is sealed: {}",
        bodies[0]
    );
    let loaded = keyring::load(&sealed).await.unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].kid(), old.kid());
    assert_eq!(private_text(&loaded[0]), private_text(&old));
    // Without the KEK it is now as unreadable as a key sealed from the start.
    assert!(keyring::load(&raw).await.is_err());
}

#[tokio::test]
async fn watches_of_a_sealed_store_report_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_store(dir.path());
    let kek = Kek::load_or_create(&dir.path().join("kek")).unwrap();
    let sealed = keyring::sealed_store(raw.clone(), kek).await.unwrap();
    let mut watch = sealed.watch(Kind::SigningKey).await.unwrap();
    let key = keyring::add(&sealed).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), watch.recv())
        .await
        .unwrap()
        .unwrap();
    match event {
        WatchEvent::Created(r) => {
            let record: SigningKeyRecord = ate_store::typed::decode(&r).unwrap();
            assert_eq!(record.kid, key.kid());
            assert_eq!(record.private_key, private_text(&key));
        }
        other => panic!("expected Created, got {other:?}"),
    }

    // An authenticator on the sealed store verifies tokens of a key rotated in later.
    let auth = ate_control::Authenticator::start(sealed.clone())
        .await
        .unwrap();
    let (rotated, _) = keyring::rotate(&sealed, false).await.unwrap();
    let now = SystemTime::now();
    let claims = Claims::new(
        "a",
        &["*".into()],
        Role::Admin,
        Duration::from_secs(60),
        now,
    )
    .unwrap();
    let token = rotated.sign(&claims).unwrap();
    assert_eq!(auth.verify(&token).await.unwrap(), claims);
}

#[tokio::test]
async fn tokens_naming_unknown_keys_reread_the_keys_at_most_once_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_store(dir.path());
    let kek = Kek::load_or_create(&dir.path().join("kek")).unwrap();
    let sealed = keyring::sealed_store(raw, kek).await.unwrap();
    let auth = ate_control::Authenticator::start(sealed).await.unwrap();
    let foreign = SigningKey::generate(ate_store::now_ms()).unwrap();
    let claims = Claims::new(
        "mallory",
        &["*".into()],
        Role::Admin,
        Duration::from_secs(600),
        SystemTime::now(),
    )
    .unwrap();
    let token = foreign.sign(&claims).unwrap();
    let before = auth.reloads();
    for _ in 0..50 {
        assert!(auth.verify(&token).await.is_err());
    }
    assert_eq!(
        auth.reloads() - before,
        1,
        "one reread for 50 unknown-key tokens"
    );
    tokio::time::sleep(ate_control::auth::UNKNOWN_KEY_RELOAD_EVERY).await;
    assert!(auth.verify(&token).await.is_err());
    assert_eq!(auth.reloads() - before, 2);
}
