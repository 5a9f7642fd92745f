//! Change events of secret kinds on the raw pub/sub channel carry no body, so a subscriber
//! of the channel (anyone the server lets `SUBSCRIBE`) sees no private key and no template
//! `env` value, while watches of those kinds still report whole records. Against a real
//! redis-server the test starts.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use ate_store::Store;
use ate_store::secret_channel::{assert_no_secret_on_the_channel, is_last, write_secret_kinds};
use ate_store_redis::{DEFAULT_PREFIX, RedisStore};
use ate_testkit::RedisServer;
use tokio_stream::StreamExt;

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
    write_secret_kinds(&store).await;

    // What went over the channel, up to the atespace's event (published last, in order).
    let mut messages = pubsub.on_message();
    let mut seen = Vec::new();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .unwrap()
            .unwrap();
        let raw: String = msg.get_payload().unwrap();
        let done = is_last(&raw);
        seen.push(raw);
        if done {
            break;
        }
    }
    assert_no_secret_on_the_channel(&seen);
}
