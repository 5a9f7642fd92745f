//! The shared half of every backend's secret-channel test: secret kinds (signing keys,
//! templates) are written, then a plain kind last; watches of the secret kinds still see
//! whole records, while what a raw listener of the backend's change channel received
//! carries no private key, no template `env` value and no secret body. Each backend's test
//! supplies the listener (a PostgreSQL `LISTEN`, a Redis subscription).
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::time::Duration;

use ate_model::{ActorTemplate, Atespace, EnvVar, Kind, SigningKeyRecord, TemplateSpec};

use crate::testsuite::Shared;
use crate::{Watch, WatchEvent};

/// The private key the suite writes; never on a channel.
pub const PRIVATE_KEY: &str = "UFJJVkFURS1LRVktTUFURVJJQUwtZG8tbm90LWxlYWs=";
/// The template `env` value the suite writes; never on a channel.
pub const ENV_SECRET: &str = "sk-live-env-secret-0123";
/// How many change messages [`write_secret_kinds`] causes: a key created and updated, a
/// template created, then the atespace.
pub const MESSAGES: usize = 4;

async fn next(w: &mut Watch) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(10), w.recv())
        .await
        .unwrap()
        .unwrap()
}

/// Writes the secret kinds, then atespace `team-a` (whose message comes last), and checks
/// that watches report the secret records whole. Call once the listener listens.
pub async fn write_secret_kinds(store: &Shared) {
    let mut keys = store.watch(Kind::SigningKey).await.unwrap();
    let mut templates = store.watch(Kind::ActorTemplate).await.unwrap();
    let key = store
        .create(SigningKeyRecord {
            kid: "kid-1".into(),
            created_ms: 1,
            private_key: PRIVATE_KEY.into(),
            version: 0,
        })
        .await
        .unwrap();
    let mut changed = key.clone();
    changed.created_ms = 2;
    store.update(changed).await.unwrap();
    let template = store
        .create(ActorTemplate {
            namespace: "demo".into(),
            name: "agent".into(),
            spec: TemplateSpec {
                sandbox_class: "wasm".into(),
                module: "agent.wasm".into(),
                env: vec![EnvVar {
                    name: "API_KEY".into(),
                    value: ENV_SECRET.into(),
                }],
                ..Default::default()
            },
            ..Default::default()
        })
        .await
        .unwrap();
    // A kind that is not secret, last: its body still rides along.
    store
        .create(Atespace {
            name: "team-a".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    // Watches still report the whole records.
    match next(&mut keys).await {
        WatchEvent::Created(r) => {
            let got: SigningKeyRecord = crate::typed::decode(&r).unwrap();
            assert_eq!(got.private_key, PRIVATE_KEY);
        }
        other => panic!("expected Created, got {other:?}"),
    }
    assert!(matches!(next(&mut keys).await, WatchEvent::Updated(_)));
    match next(&mut templates).await {
        WatchEvent::Created(r) => {
            let got: ActorTemplate = crate::typed::decode(&r).unwrap();
            assert_eq!(got, template);
        }
        other => panic!("expected Created, got {other:?}"),
    }
}

/// Whether a channel message is the atespace's, the last one [`write_secret_kinds`] causes.
pub fn is_last(message: &str) -> bool {
    message.contains("\"atespaces\"")
}

/// Checks what the channel carried, in order: no secret anywhere, no body for the secret
/// kinds, the plain kind's body kept.
pub fn assert_no_secret_on_the_channel(seen: &[String]) {
    assert_eq!(seen.len(), MESSAGES, "{seen:#?}");
    for raw in seen {
        assert!(
            !raw.contains(PRIVATE_KEY),
            "a private key on the channel: {raw}"
        );
        assert!(
            !raw.contains(ENV_SECRET),
            "an env value on the channel: {raw}"
        );
    }
    let events: Vec<serde_json::Value> = seen
        .iter()
        .map(|s| serde_json::from_str(s).unwrap())
        .collect();
    for e in &events[..MESSAGES - 1] {
        assert!(e.get("body").is_none(), "a secret kind's body: {e}");
        assert!(e["key"].is_string() && e["version"].is_number(), "{e}");
    }
    assert!(
        events[MESSAGES - 1]["body"].is_string(),
        "other kinds keep their body"
    );
}
