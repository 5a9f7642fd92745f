//! Picking a store backend by URL. This is the only place that names concrete backends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ate_store::{Store, StoreError};
use ate_store_postgres::PgStore;
use ate_store_redis::RedisStore;
use ate_store_sqlite::SqliteStore;

/// How long start-up waits for a store server that does not answer yet.
pub const DEFAULT_PATIENCE: Duration = Duration::from_secs(60);

/// The URL with any password masked, for logs and messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_string(),
    }
}

async fn try_open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or_default();
    match scheme {
        "sqlite" => {
            let path = &url["sqlite://".len()..];
            Ok(Arc::new(SqliteStore::open(path)?))
        }
        "redis" | "rediss" | "valkey" => {
            let url = url.replacen("valkey://", "redis://", 1);
            Ok(Arc::new(RedisStore::connect(&url).await?))
        }
        "postgres" | "postgresql" => Ok(Arc::new(PgStore::connect(url).await?)),
        _ => unreachable!("checked by open"),
    }
}

/// Opens the store a URL names: `sqlite://PATH`, `redis://HOST:PORT/DB` (also `rediss://`,
/// `valkey://`), `postgres://USER@HOST:PORT/DB`. A server that is not reachable yet is
/// retried with backoff for up to `patience`, each attempt reported.
pub async fn open(url: &str, patience: Duration) -> anyhow::Result<Arc<dyn Store>> {
    let shown = redact(url);
    let (scheme, rest) = url.split_once("://").with_context(|| {
        format!(
            "invalid store URL {shown:?}: expected SCHEME://..., e.g. sqlite:///var/lib/ate/ate.db"
        )
    })?;
    match scheme {
        "sqlite" if rest.is_empty() => {
            bail!("invalid store URL {shown:?}: sqlite:// needs a file path")
        }
        "sqlite" | "redis" | "rediss" | "valkey" | "postgres" | "postgresql" => {}
        other => bail!(
            "store scheme {other:?} is not supported (use sqlite://PATH, redis://HOST:PORT/DB or postgres://USER@HOST:PORT/DB)"
        ),
    }
    let deadline = Instant::now() + patience;
    let mut delay = Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        match try_open(url).await {
            Ok(store) => return Ok(store),
            Err(StoreError::Unavailable(e)) if Instant::now() + delay < deadline => {
                tracing::warn!(store = %shown, attempt, error = %e, retry_in = ?delay, "store not reachable yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
            Err(e) => bail!("cannot open store {shown} (after {attempt} attempts): {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            redact("postgres://ate:secret@db:5432/ate"),
            "postgres://ate:***@db:5432/ate"
        );
        assert_eq!(
            redact("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(redact("sqlite:///x.db"), "sqlite:///x.db");
    }
}
