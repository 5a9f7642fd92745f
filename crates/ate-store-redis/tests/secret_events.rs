//! Change events of secret kinds on the raw pub/sub channel carry no body, so a subscriber
//! of the channel (anyone the server lets `SUBSCRIBE`) sees no private key and no template
//! `env` value, while watches of those kinds still report whole records. Against a real
//! redis-server the test starts.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use ate_model::{ActorTemplate, Atespace, EnvVar, Kind, SigningKeyRecord, TemplateSpec};
use ate_store::{Store, Watch, WatchEvent};
use ate_store_redis::{DEFAULT_PREFIX, RedisStore};
use ate_testkit::RedisServer;
use tokio_stream::StreamExt;

const PRIVATE_KEY: &str = "UFJJVkFURS1LRVktTUFURVJJQUwtZG8tbm90LWxlYWs=";
const ENV_SECRET: &str = "sk-live-env-secret-0123";

async fn next(w: &mut Watch) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(10), w.recv())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_kinds_never_ride_the_channel() {
    let server = RedisServer::start().unwrap();
    let store: Arc<dyn Store> = Arc::new(RedisStore::connect(&server.url()).await.unwrap());

    // A raw subscriber of the events channel, as any client of the server could be.
    let client = redis::Client::open(server.url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub
        .subscribe(format!("{DEFAULT_PREFIX}events"))
        .await
        .unwrap();
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
            let got: SigningKeyRecord = ate_store::typed::decode(&r).unwrap();
            assert_eq!(got.private_key, PRIVATE_KEY);
        }
        other => panic!("expected Created, got {other:?}"),
    }
    assert!(matches!(next(&mut keys).await, WatchEvent::Updated(_)));
    match next(&mut templates).await {
        WatchEvent::Created(r) => {
            let got: ActorTemplate = ate_store::typed::decode(&r).unwrap();
            assert_eq!(got, template);
        }
        other => panic!("expected Created, got {other:?}"),
    }

    // What went over the channel, up to the atespace's event (published last, in order).
    let mut messages = pubsub.on_message();
    let mut seen = Vec::new();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .unwrap()
            .unwrap();
        let raw: String = msg.get_payload().unwrap();
        let done = raw.contains("\"atespaces\"");
        seen.push(raw);
        if done {
            break;
        }
    }
    assert_eq!(seen.len(), 4, "{seen:#?}");
    for raw in &seen {
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
    for e in &events[..3] {
        assert!(e.get("body").is_none(), "a secret kind's body: {e}");
        assert!(e["key"].is_string() && e["version"].is_number(), "{e}");
    }
    assert!(events[3]["body"].is_string(), "other kinds keep their body");
}
