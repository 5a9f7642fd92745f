//! The shared conformance suite against a real PostgreSQL that the test starts, plus index
//! usage and recovery after a server restart.

use std::sync::Arc;

use ate_model::{FieldSelector, Kind};
use ate_store::{ListOptions, Store};
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
    let (store, server) = fresh().await;
    let server = std::sync::Mutex::new(server);
    ate_store::testsuite::recovers_after_server_restart(
        store,
        || server.lock().expect("lock").kill().expect("stop"),
        || server.lock().expect("lock").start_again().expect("start"),
    )
    .await;
}
