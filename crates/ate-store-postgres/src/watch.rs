//! Watches over `LISTEN/NOTIFY`. Every write notifies channel `ate_events` inside its
//! transaction, so notifications arrive after commit and in commit order. The body rides
//! along when it fits in a notification and its kind is not secret (`Kind::is_secret`: any
//! role that may connect may `LISTEN`, whatever it may `SELECT`); otherwise the watcher reads
//! the record. A lost listening connection is re-established with backoff and reported as
//! `Resync`.

use std::time::Duration;

use ate_model::Kind;
use ate_store::{Record, Result, Store, StoreError, WATCH_BUFFER, Watch, WatchEvent};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgListener;

use crate::{PgStore, pg_err};

pub const CHANNEL: &str = "ate_events";

/// Notification payloads must stay under 8000 bytes.
const MAX_INLINE_BODY: usize = 7000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = "c")]
    Created,
    #[serde(rename = "u")]
    Updated,
    #[serde(rename = "d")]
    Deleted,
}

#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    kind: String,
    op: Op,
    key: String,
    version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<String>,
}

pub fn payload(kind: Kind, op: Op, key: &str, version: u64, body: Option<&str>) -> String {
    let p = Payload {
        kind: kind.plural().into(),
        op,
        key: key.into(),
        version,
        body: body
            .filter(|b| b.len() <= MAX_INLINE_BODY && !kind.is_secret())
            .map(str::to_string),
    };
    serde_json::to_string(&p).unwrap_or_default()
}

async fn listen(store: &PgStore) -> Result<PgListener> {
    let mut l = PgListener::connect_with(&store.pool)
        .await
        .map_err(pg_err)?;
    l.listen(CHANNEL).await.map_err(pg_err)?;
    Ok(l)
}

async fn event(store: &PgStore, kind: Kind, raw: &str) -> Option<WatchEvent> {
    let p: Payload = match serde_json::from_str(raw) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring a malformed notification");
            return None;
        }
    };
    if p.kind != kind.plural() {
        return None;
    }
    let rec = match (p.op, p.body) {
        (Op::Deleted, _) => return Some(WatchEvent::Deleted { key: p.key }),
        (_, Some(body)) => Record {
            key: p.key,
            version: p.version,
            body: body.into_bytes(),
        },
        (_, None) => match store.get_record(kind, &p.key).await {
            Ok(r) => r,
            Err(StoreError::NotFound { .. }) => return None,
            Err(e) => {
                tracing::warn!(error = %e, key = %p.key, "cannot read a changed record; asking for resync");
                return Some(WatchEvent::Resync);
            }
        },
    };
    Some(match p.op {
        Op::Created => WatchEvent::Created(rec),
        _ => WatchEvent::Updated(rec),
    })
}

pub async fn start(store: PgStore, kind: Kind) -> Result<Watch> {
    let mut listener = listen(&store).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(WATCH_BUFFER);
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                _ = tx.closed() => return,
                n = listener.try_recv() => n,
            };
            let out = match next {
                Ok(Some(n)) => match event(&store, kind, n.payload()).await {
                    Some(e) => e,
                    None => continue,
                },
                Ok(None) | Err(_) => {
                    tracing::warn!(%kind, "postgres notification channel lost; reconnecting");
                    let mut delay = Duration::from_millis(100);
                    listener = loop {
                        if tx.is_closed() {
                            return;
                        }
                        match listen(&store).await {
                            Ok(l) => break l,
                            Err(e) => {
                                tracing::debug!(error = %e, "listen failed; retrying");
                                tokio::time::sleep(delay).await;
                                delay = (delay * 2).min(Duration::from_secs(5));
                            }
                        }
                    };
                    WatchEvent::Resync
                }
            };
            if tx.send(out).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
}
