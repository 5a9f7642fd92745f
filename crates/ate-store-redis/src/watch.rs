//! Watches over pub/sub. Scripts publish every change on one channel; a watch subscribes on
//! its own connection and keeps the events of its kind. When the subscription is lost it
//! re-subscribes with backoff and reports `Resync`.

use std::time::Duration;

use ate_model::Kind;
use ate_store::{Record, Result, WATCH_BUFFER, Watch, WatchEvent};
use redis::Client;
use serde::Deserialize;
use tokio_stream::StreamExt;

use crate::redis_err;

#[derive(Debug, Deserialize)]
struct Payload {
    kind: String,
    op: String,
    key: String,
    version: u64,
    #[serde(default)]
    body: Option<String>,
}

fn event(kind: Kind, raw: &str) -> Option<WatchEvent> {
    let p: Payload = serde_json::from_str(raw).ok()?;
    if p.kind != kind.plural() {
        return None;
    }
    let rec = |body: Option<String>| Record {
        key: p.key.clone(),
        version: p.version,
        body: body.unwrap_or_default().into_bytes(),
    };
    match p.op.as_str() {
        "c" => Some(WatchEvent::Created(rec(p.body))),
        "u" => Some(WatchEvent::Updated(rec(p.body))),
        "d" => Some(WatchEvent::Deleted { key: p.key }),
        _ => None,
    }
}

async fn subscribe(client: &Client, channel: &str) -> Result<redis::aio::PubSub> {
    let mut ps = client.get_async_pubsub().await.map_err(redis_err)?;
    ps.subscribe(channel).await.map_err(redis_err)?;
    Ok(ps)
}

pub async fn start(client: Client, channel: String, kind: Kind) -> Result<Watch> {
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
                    if let Some(e) = event(kind, &raw)
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
