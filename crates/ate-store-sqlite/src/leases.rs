//! Leases in a table, keeping each key's generation across releases so that it only grows,
//! until the lease is retired with its subject.

use std::time::Duration;

use ate_store::{Lease, Result, StoreError, now_ms};
use rusqlite::{OptionalExtension, Transaction, params};

use crate::sql_err;

pub fn acquire(tx: &Transaction<'_>, key: &str, owner: &str, ttl: Duration) -> Result<Lease> {
    let now = now_ms();
    let current: Option<(String, i64, i64)> = tx
        .prepare_cached("SELECT owner, expires_at, generation FROM leases WHERE key = ?1")
        .and_then(|mut s| {
            s.query_row([key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
        })
        .map_err(sql_err)?;
    let generation = match current {
        Some((held_by, _, generation)) if held_by == owner => generation as u64,
        Some((held_by, expires, generation)) => {
            if !held_by.is_empty() && expires as u64 > now {
                return Err(StoreError::LeaseHeld { key: key.into() });
            }
            generation as u64 + 1
        }
        None => 1,
    };
    let expires_at_ms = now + ttl.as_millis() as u64;
    tx.prepare_cached(
        "INSERT INTO leases (key, owner, expires_at, generation) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (key) DO UPDATE SET owner = ?2, expires_at = ?3, generation = ?4",
    )
    .and_then(|mut s| s.execute(params![key, owner, expires_at_ms as i64, generation as i64]))
    .map_err(sql_err)?;
    Ok(Lease {
        key: key.into(),
        owner: owner.into(),
        expires_at_ms,
        generation,
    })
}

pub fn release(tx: &Transaction<'_>, key: &str, owner: &str) -> Result<()> {
    let changed = tx
        .prepare_cached(
            "UPDATE leases SET owner = '', expires_at = 0 WHERE key = ?1 AND owner = ?2",
        )
        .and_then(|mut s| s.execute(params![key, owner]))
        .map_err(sql_err)?;
    if changed == 0 {
        return Err(StoreError::LeaseNotHeld { key: key.into() });
    }
    Ok(())
}

pub fn retire(tx: &Transaction<'_>, key: &str, owner: &str) -> Result<()> {
    let changed = tx
        .prepare_cached("DELETE FROM leases WHERE key = ?1 AND owner = ?2")
        .and_then(|mut s| s.execute(params![key, owner]))
        .map_err(sql_err)?;
    if changed == 0 {
        return Err(StoreError::LeaseNotHeld { key: key.into() });
    }
    Ok(())
}
