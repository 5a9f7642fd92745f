//! Notifications of secret kinds carry no body, so a listener on the channel sees no private
//! key and no template `env` value, while watches of those kinds still report whole records.
//! The listener is a role that may not read a single table: `LISTEN` needs no privilege.
//! Against a real PostgreSQL the test starts.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use ate_store::Store;
use ate_store::secret_channel::{assert_no_secret_on_the_channel, is_last, write_secret_kinds};
use ate_store_postgres::{CHANNEL, PgStore};
use ate_testkit::PostgresServer;
use sqlx::postgres::PgListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_kinds_never_ride_the_channel() {
    let server = tokio::task::spawn_blocking(|| PostgresServer::start().unwrap())
        .await
        .unwrap();
    let store: Arc<dyn Store> = Arc::new(PgStore::connect(&server.url()).await.unwrap());

    // A listener on the channel: a role that may log in and nothing else.
    let admin = sqlx::PgPool::connect(&server.url()).await.unwrap();
    sqlx::query("CREATE ROLE spy LOGIN")
        .execute(&admin)
        .await
        .unwrap();
    let spy_url = server.url().replacen("ate@", "spy@", 1);
    let denied = sqlx::query("SELECT count(*) FROM t_signingkeys")
        .execute(&sqlx::PgPool::connect(&spy_url).await.unwrap())
        .await;
    assert!(denied.is_err(), "the listener may not read the table");
    let mut listener = PgListener::connect(&spy_url).await.unwrap();
    listener.listen(CHANNEL).await.unwrap();
    write_secret_kinds(&store).await;

    // What went over the channel, up to the atespace's event (notified last, in order).
    let mut seen = Vec::new();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), listener.recv())
            .await
            .unwrap()
            .unwrap();
        let raw = msg.payload().to_string();
        let done = is_last(&raw);
        seen.push(raw);
        if done {
            break;
        }
    }
    assert_no_secret_on_the_channel(&seen);
}
