//! Tables and indexes derived from the model's field registry: one table per kind with a
//! column per single-valued field, one side table per kind for multi-valued fields and
//! labels, an index for every field and every compound index the registry declares. A field
//! added to the registry becomes a column (backfilled from the stored bodies) at next open.

use ate_model::Kind;
use ate_model::fields::IndexValues;
use rusqlite::{Connection, Transaction, params};

use ate_store::sql::{
    Dialect, column, is_multi, multi_table, single_fields, single_values, table, update_columns,
};

use crate::sql_err;
use ate_store::{Result, StoreError};

/// Creates or upgrades the schema, backfilling new columns.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction().map_err(sql_err)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS leases (
            key TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            expires_at INTEGER NOT NULL,
            generation INTEGER NOT NULL
        ) WITHOUT ROWID;",
    )
    .map_err(sql_err)?;
    for kind in Kind::ALL {
        let (t, m) = (table(kind), multi_table(kind));
        tx.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {t} (
                key TEXT PRIMARY KEY,
                version INTEGER NOT NULL,
                body BLOB NOT NULL
            );
            CREATE TABLE IF NOT EXISTS {m} (
                field TEXT NOT NULL,
                value TEXT NOT NULL,
                key TEXT NOT NULL,
                PRIMARY KEY (field, value, key)
            ) WITHOUT ROWID;
            CREATE INDEX IF NOT EXISTS ix_{m}_key ON {m} (key);"
        ))
        .map_err(sql_err)?;
        let existing = columns(&tx, &t)?;
        let mut added = false;
        for f in single_fields(kind) {
            let c = column(f);
            if !existing.contains(&c) {
                tx.execute_batch(&format!(
                    "ALTER TABLE {t} ADD COLUMN {c} TEXT NOT NULL DEFAULT ''"
                ))
                .map_err(sql_err)?;
                added = true;
            }
            tx.execute_batch(&format!(
                "CREATE INDEX IF NOT EXISTS ix_{t}_{f} ON {t} ({c}, key)"
            ))
            .map_err(sql_err)?;
        }
        for group in kind.compound_indexes() {
            let name = group.join("_");
            let cols: Vec<String> = group.iter().map(|f| column(f)).collect();
            tx.execute_batch(&format!(
                "CREATE INDEX IF NOT EXISTS cx_{t}_{name} ON {t} ({})",
                cols.join(", ")
            ))
            .map_err(sql_err)?;
        }
        if added {
            reindex(&tx, kind)?;
        }
    }
    tx.commit().map_err(sql_err)
}

fn columns(tx: &Transaction<'_>, table: &str) -> Result<Vec<String>> {
    let mut stmt = tx
        .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
        .map_err(sql_err)?;
    let names = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(sql_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql_err)?;
    Ok(names)
}

/// Recomputes every index value of a kind from the stored bodies.
fn reindex(tx: &Transaction<'_>, kind: Kind) -> Result<()> {
    let rows: Vec<(String, Vec<u8>)> = {
        let mut stmt = tx
            .prepare(&format!("SELECT key, body FROM {}", table(kind)))
            .map_err(sql_err)?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql_err)?
            .collect::<Result<_, _>>()
            .map_err(sql_err)?
    };
    tracing::info!(kind = %kind, rows = rows.len(), "backfilling index columns");
    for (key, body) in rows {
        let index = kind
            .index_values_from_json(&body)
            .map_err(|e| StoreError::Internal(format!("corrupt {kind} record {key}: {e}")))?;
        write_index(tx, kind, &key, &index, false)?;
    }
    Ok(())
}

/// Writes a record's index values: its field columns and its side-table rows.
pub fn write_index(
    tx: &Transaction<'_>,
    kind: Kind,
    key: &str,
    index: &IndexValues,
    fresh: bool,
) -> Result<()> {
    if let Some(sql) = update_columns(Dialect::Sqlite, kind) {
        let mut values = vec![key.to_string()];
        values.extend(single_values(kind, index));
        tx.prepare_cached(&sql)
            .and_then(|mut s| s.execute(rusqlite::params_from_iter(values)))
            .map_err(sql_err)?;
    }
    let m = multi_table(kind);
    if !fresh {
        tx.prepare_cached(&format!("DELETE FROM {m} WHERE key = ?1"))
            .and_then(|mut s| s.execute([key]))
            .map_err(sql_err)?;
    }
    let mut insert = tx
        .prepare_cached(&format!(
            "INSERT OR IGNORE INTO {m} (field, value, key) VALUES (?1, ?2, ?3)"
        ))
        .map_err(sql_err)?;
    for (field, value) in index.iter().filter(|(f, _)| is_multi(kind, f)) {
        insert
            .execute(params![field, value, key])
            .map_err(sql_err)?;
    }
    Ok(())
}
