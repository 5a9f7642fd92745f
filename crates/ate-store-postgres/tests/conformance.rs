//! The shared conformance suite against a real PostgreSQL that the test starts, plus index
//! usage and recovery after a server restart.

use std::sync::Arc;
use std::time::Duration;

use ate_model::{Atespace, FieldSelector, Kind};
use ate_store::{ListOptions, Store, StoreError, WatchEvent};
use ate_store_postgres::PgStore;
use ate_testkit::PostgresServer;

async fn fresh() -> (Arc<dyn Store>, PostgresServer) {
    let server = tokio::task::spawn_blocking(|| PostgresServer::start().expect("start postgres"))
        .await
        .expect("join");
    let store = PgStore::connect(&server.url()).await.expect("connect");
    (Arc::new(store), server)
}

ate_store::conformance_tests!(fresh());

#[tokio::test]
async fn selectors_use_indexes() {
    let server = tokio::task::spawn_blocking(|| PostgresServer::start().expect("start"))
        .await
        .expect("join");
    let store = PgStore::connect(&server.url()).await.expect("connect");
    for sel in [
        "pool=cpu,actor_id=",
        "node_name=n1,actor_id=",
        "pool=cpu,cached_snapshot=s1",
    ] {
        let sel = FieldSelector::parse(sel).expect("parse");
        let plan = store.explain_claim(&sel).await.expect("explain").join("\n");
        assert!(plan.contains("Index"), "claim {sel}: {plan}");
    }
    let plan = store
        .explain_list(
            Kind::Actor,
            &ListOptions::with_fields(FieldSelector::eq([("atespace", "a")])),
        )
        .await
        .expect("explain")
        .join("\n");
    assert!(plan.contains("Index"), "{plan}");
}

#[tokio::test]
async fn recovers_after_a_server_restart_and_watch_resyncs() {
    let mut server = tokio::task::spawn_blocking(|| PostgresServer::start().expect("start"))
        .await
        .expect("join");
    let store: Arc<dyn Store> = Arc::new(PgStore::connect(&server.url()).await.expect("connect"));
    let mut watch = store.watch(Kind::Atespace).await.expect("watch");
    store
        .create(Atespace {
            name: "before".into(),
            version: 0,
        })
        .await
        .expect("create");
    assert!(matches!(watch.recv().await, Some(WatchEvent::Created(_))));

    server.kill().expect("stop");
    let down = store.get::<Atespace>("before").await;
    assert!(matches!(down, Err(StoreError::Unavailable(_))), "{down:?}");
    server.start_again().expect("start again");

    let mut ok = false;
    for _ in 0..100 {
        if store.get::<Atespace>("before").await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "the store recovers on its own once the server is back");
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
