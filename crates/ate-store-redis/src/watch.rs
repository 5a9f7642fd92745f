//! Watches over pub/sub. Scripts publish every change on one channel; a watch subscribes on
//! its own connection and keeps the events of its kind. Events of a secret kind carry no
//! body: the watch reads the record before reporting it. When the subscription is lost it
//! re-subscribes with backoff and reports `Resync`.

use std::time::Duration;

use ate_model::Kind;
use ate_store::{Record, Result, Store, StoreError, WATCH_BUFFER, Watch, WatchEvent};
use redis::Client;
use serde::Deserialize;
use tokio_stream::StreamExt;

use crate::{RedisStore, redis_err};

#[derive(Debug, Deserialize)]
struct Payload {
    kind: String,
    op: String,
    key: String,
    version: u64,
    #[serde(default)]
    body: Option<String>,
}

async fn event(store: &RedisStore, kind: Kind, raw: &str) -> Option<WatchEvent> {
    let p: Payload = serde_json::from_str(raw).ok()?;
    if p.kind != kind.plural() {
        return None;
    }
    let created = match p.op.as_str() {
        "c" => true,
        "u" => false,
        "d" => return Some(WatchEvent::Deleted { key: p.key }),
        _ => return None,
    };
    let rec = match p.body {
        Some(body) => Record {
            key: p.key,
            version: p.version,
            body: body.into_bytes(),
        },
        None => match store.get_record(kind, &p.key).await {
            Ok(r) => r,
            // Deleted meanwhile: its own event follows.
            Err(StoreError::NotFound { .. }) => return None,
            Err(e) => {
                tracing::warn!(%kind, key = %p.key, error = %e, "cannot read a changed record; asking for resync");
                return Some(WatchEvent::Resync);
            }
        },
    };
    Some(match created {
        true => WatchEvent::Created(rec),
        false => WatchEvent::Updated(rec),
    })
}

async fn subscribe(client: &Client, channel: &str) -> Result<redis::aio::PubSub> {
    let mut ps = client.get_async_pubsub().await.map_err(redis_err)?;
    ps.subscribe(channel).await.map_err(redis_err)?;
    Ok(ps)
}

pub async fn start(store: RedisStore, channel: String, kind: Kind) -> Result<Watch> {
    let client = store.client.clone();
    let mut pubsub = subscribe(&client, &channel).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(WATCH_BUFFER);
    tokio::spawn(async move {
        loop {
            {
                let mut messages = pubsub.on_message();
                loop {
                    let msg = tokio::select! {
                        _ = tx.closed() => return,
                        m = messages.next() => m,
                    };
                    let Some(msg) = msg else { break };
                    let Ok(raw) = msg.get_payload::<String>() else {
                        continue;
                    };
                    if let Some(e) = event(&store, kind, &raw).await
                        && tx.send(e).await.is_err()
                    {
                        return;
                    }
                }
            }
            tracing::warn!(%kind, "redis subscription lost; re-subscribing");
            let mut delay = Duration::from_millis(100);
            pubsub = loop {
                if tx.is_closed() {
                    return;
                }
                match subscribe(&client, &channel).await {
                    Ok(p) => break p,
                    Err(e) => {
                        tracing::debug!(error = %e, "subscribe failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
            };
            if tx.send(WatchEvent::Resync).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
}
