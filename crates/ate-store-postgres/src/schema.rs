//! Versioned migrations, applied at start-up under an advisory lock so that several
//! control-plane replicas can start at once, followed by the registry sync: every field of
//! the model's registry is a column with a B-tree index (added and backfilled when a field is
//! new), every compound index the registry declares exists.

use ate_model::Kind;
use ate_store::sql::{column, multi_table, single_fields, table};
use ate_store::{Result, StoreError};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};

use crate::pg_err;

/// Arbitrary key of the advisory lock that serialises schema changes.
const SCHEMA_LOCK: i64 = 0x6174_6573_6368;

/// The migrations, in order. Each runs once, in its own transaction.
fn migrations() -> Vec<(i64, &'static str, String)> {
    let mut tables = String::new();
    for kind in Kind::ALL {
        let (t, m) = (table(kind), multi_table(kind));
        tables.push_str(&format!(
            "CREATE TABLE IF NOT EXISTS {t} (
                key text COLLATE \"C\" PRIMARY KEY,
                version bigint NOT NULL,
                body jsonb NOT NULL
            );
            CREATE TABLE IF NOT EXISTS {m} (
                field text COLLATE \"C\" NOT NULL,
                value text COLLATE \"C\" NOT NULL,
                key text COLLATE \"C\" NOT NULL,
                PRIMARY KEY (field, value, key)
            );
            CREATE INDEX IF NOT EXISTS ix_{m}_key ON {m} (key);\n"
        ));
    }
    vec![
        (1, "record tables per kind", tables),
        (
            2,
            "leases",
            "CREATE TABLE IF NOT EXISTS leases (
                key text COLLATE \"C\" PRIMARY KEY,
                owner text NOT NULL,
                expires_at bigint NOT NULL,
                generation bigint NOT NULL
            );"
            .into(),
        ),
    ]
}

pub async fn migrate(conn: &mut PgConnection) -> Result<()> {
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(SCHEMA_LOCK)
        .execute(&mut *conn)
        .await
        .map_err(pg_err)?;
    let out = apply(conn).await;
    let unlock = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(SCHEMA_LOCK)
        .execute(&mut *conn)
        .await
        .map_err(pg_err);
    out.and(unlock.map(|_| ()))
}

async fn apply(conn: &mut PgConnection) -> Result<()> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS ate_schema_migrations (
            version bigint PRIMARY KEY,
            description text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .execute(&mut *conn)
    .await
    .map_err(pg_err)?;
    for (version, description, sql) in migrations() {
        let done = sqlx::query("SELECT 1 FROM ate_schema_migrations WHERE version = $1")
            .bind(version)
            .fetch_optional(&mut *conn)
            .await
            .map_err(pg_err)?
            .is_some();
        if done {
            continue;
        }
        let mut tx = conn.begin().await.map_err(pg_err)?;
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut *tx)
            .await
            .map_err(pg_err)?;
        sqlx::query("INSERT INTO ate_schema_migrations (version, description) VALUES ($1, $2)")
            .bind(version)
            .bind(description)
            .execute(&mut *tx)
            .await
            .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)?;
        tracing::info!(version, description, "applied migration");
    }
    sync_registry(conn).await
}

/// Brings columns and indexes in line with the field registry.
async fn sync_registry(conn: &mut PgConnection) -> Result<()> {
    for kind in Kind::ALL {
        let t = table(kind);
        let existing: Vec<String> = sqlx::query(
            "SELECT column_name::text FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = $1",
        )
        .bind(&t)
        .fetch_all(&mut *conn)
        .await
        .map_err(pg_err)?
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect();
        let mut added = false;
        for f in single_fields(kind) {
            let c = column(f);
            if !existing.contains(&c) {
                sqlx::raw_sql(AssertSqlSafe(format!(
                    "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS {c} text COLLATE \"C\" NOT NULL DEFAULT ''"
                )))
                .execute(&mut *conn)
                .await
                .map_err(pg_err)?;
                added = true;
            }
            sqlx::raw_sql(AssertSqlSafe(format!(
                "CREATE INDEX IF NOT EXISTS ix_{t}_{f} ON {t} ({c}, key)"
            )))
            .execute(&mut *conn)
            .await
            .map_err(pg_err)?;
        }
        for group in kind.compound_indexes() {
            let cols: Vec<String> = group.iter().map(|f| column(f)).collect();
            sqlx::raw_sql(AssertSqlSafe(format!(
                "CREATE INDEX IF NOT EXISTS cx_{t}_{} ON {t} ({})",
                group.join("_"),
                cols.join(", ")
            )))
            .execute(&mut *conn)
            .await
            .map_err(pg_err)?;
        }
        if added && !existing.is_empty() {
            backfill(conn, kind).await?;
        }
    }
    // The last guard of "an actor never holds two workers": two claims for one actor that
    // race past the bound-worker check cannot both commit.
    sqlx::raw_sql(
        "CREATE UNIQUE INDEX IF NOT EXISTS ux_t_workers_actor ON t_workers (f_actor_atespace, f_actor_id) WHERE f_actor_id <> ''",
    )
    .execute(&mut *conn)
    .await
    .map_err(pg_err)?;
    Ok(())
}

async fn backfill(conn: &mut PgConnection, kind: Kind) -> Result<()> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT key, body::text FROM {}",
        table(kind)
    )))
    .fetch_all(&mut *conn)
    .await
    .map_err(pg_err)?;
    tracing::info!(%kind, rows = rows.len(), "backfilling index columns");
    for row in rows {
        let key: String = row.get(0);
        let body: String = row.get(1);
        let index = kind
            .index_values_from_json(body.as_bytes())
            .map_err(|e| StoreError::Internal(format!("corrupt {kind} record {key}: {e}")))?;
        crate::write_index(&mut *conn, kind, &key, &index).await?;
    }
    Ok(())
}
