//! The shared conformance suite against a real redis-server that the test starts, plus
//! recovery after the server is killed and restarted.

use std::sync::Arc;

use ate_store::Store;
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
    let (store, server) = fresh().await;
    let server = std::sync::Mutex::new(server);
    ate_store::testsuite::recovers_after_server_restart(
        store,
        || server.lock().expect("lock").kill(),
        || server.lock().expect("lock").restart().expect("restart"),
    )
    .await;
}
