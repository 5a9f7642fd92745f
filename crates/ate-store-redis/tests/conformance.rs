//! The shared conformance suite against a real redis-server that the test starts, plus
//! recovery after the server is killed and restarted.

use std::sync::Arc;
use std::time::Duration;

use ate_model::{Atespace, Kind};
use ate_store::{Store, StoreError, WatchEvent};
use ate_store_redis::RedisStore;
use ate_testkit::RedisServer;

async fn fresh() -> (Arc<dyn Store>, RedisServer) {
    let server = RedisServer::start().expect("start redis-server");
    let store = RedisStore::connect(&server.url()).await.expect("connect");
    (Arc::new(store), server)
}

ate_store::conformance_tests!(fresh());

#[tokio::test]
async fn recovers_after_a_server_restart_and_watch_resyncs() {
    let (store, mut server) = fresh().await;
    let mut watch = store.watch(Kind::Atespace).await.expect("watch");
    store
        .create(Atespace {
            name: "before".into(),
            version: 0,
        })
        .await
        .expect("create");
    assert!(matches!(watch.recv().await, Some(WatchEvent::Created(_))));

    server.kill();
    let down = store.get::<Atespace>("before").await;
    assert!(matches!(down, Err(StoreError::Unavailable(_))), "{down:?}");
    server.restart().expect("restart");

    let mut ok = false;
    for _ in 0..100 {
        if store.get::<Atespace>("before").await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        ok,
        "the store recovers on its own, with its data, once the server is back"
    );
    let resync = tokio::time::timeout(Duration::from_secs(15), watch.recv())
        .await
        .expect("event");
    assert_eq!(resync, Some(WatchEvent::Resync));
    store
        .create(Atespace {
            name: "after".into(),
            version: 0,
        })
        .await
        .expect("create");
    match tokio::time::timeout(Duration::from_secs(10), watch.recv())
        .await
        .expect("event")
    {
        Some(WatchEvent::Created(r)) => assert_eq!(r.key, "after"),
        other => panic!("expected Created, got {other:?}"),
    }
}
