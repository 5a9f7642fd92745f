//! The PostgreSQL store. Records live in one table per kind with a B-tree index per registry
//! field (see [`schema`]); writes are conditional statements in short transactions; a claim
//! is one `UPDATE ... FROM (SELECT ... FOR UPDATE SKIP LOCKED) ... RETURNING` statement;
//! leases use the database clock; watches use `LISTEN/NOTIFY`.

mod schema;
mod watch;

pub use watch::CHANNEL;

use std::time::Duration;

use async_trait::async_trait;
use ate_model::fields::IndexValues;
use ate_model::{Assignment, FieldSelector, Kind};
use ate_store::sql::{
    self, Dialect, column, is_multi, multi_table, single_fields, single_values, table,
    update_columns,
};
use ate_store::typed::assignment_json;
use ate_store::{Lease, ListOptions, Page, Record, RecordWrite, Result, Store, StoreError, Watch};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, PgConnection, Row};

const PG: Dialect = Dialect::Postgres;

/// Maps a driver error: anything that says the server cannot be reached (I/O, pool timeout,
/// shutdown, connection exceptions) is `Unavailable`; the rest is `Internal`.
pub(crate) fn pg_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(format!("postgres: {e}")),
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            if code.starts_with("08") || code.starts_with("57P") {
                StoreError::Unavailable(format!("postgres: {e}"))
            } else {
                StoreError::Internal(format!("postgres: {e}"))
            }
        }
        _ => StoreError::Internal(format!("postgres: {e}")),
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

/// A store in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

fn body_text(body: &[u8]) -> Result<&str> {
    std::str::from_utf8(body)
        .map_err(|e| StoreError::Internal(format!("record body is not UTF-8: {e}")))
}

fn record(row: &PgRow) -> Result<Record> {
    Ok(Record {
        key: row.try_get(0).map_err(pg_err)?,
        version: row.try_get::<i64, _>(1).map_err(pg_err)? as u64,
        body: row.try_get::<String, _>(2).map_err(pg_err)?.into_bytes(),
    })
}

/// Rewrites a record's field columns and side-table rows from its index values.
pub(crate) async fn write_index(
    conn: &mut PgConnection,
    kind: Kind,
    key: &str,
    index: &IndexValues,
) -> Result<()> {
    if let Some(sql) = update_columns(PG, kind) {
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(key);
        for v in single_values(kind, index) {
            q = q.bind(v);
        }
        q.execute(&mut *conn).await.map_err(pg_err)?;
    }
    write_multi(conn, kind, key, index, false).await
}

async fn write_multi(
    conn: &mut PgConnection,
    kind: Kind,
    key: &str,
    index: &IndexValues,
    fresh: bool,
) -> Result<()> {
    let m = multi_table(kind);
    if !fresh {
        sqlx::query(AssertSqlSafe(format!("DELETE FROM {m} WHERE key = $1")))
            .bind(key)
            .execute(&mut *conn)
            .await
            .map_err(pg_err)?;
    }
    let (fields, values): (Vec<String>, Vec<String>) = index
        .iter()
        .filter(|(f, _)| is_multi(kind, f))
        .map(|(f, v)| (f.to_string(), v.clone()))
        .unzip();
    if !fields.is_empty() {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {m} (field, value, key)
             SELECT f, v, $3 FROM UNNEST($1::text[], $2::text[]) AS x(f, v)
             ON CONFLICT DO NOTHING"
        )))
        .bind(fields)
        .bind(values)
        .bind(key)
        .execute(&mut *conn)
        .await
        .map_err(pg_err)?;
    }
    Ok(())
}

impl PgStore {
    /// Connects (one attempt; callers retry) and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Self> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e| StoreError::Unavailable(format!("invalid postgres URL: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(pg_err)?;
        let mut conn = pool.acquire().await.map_err(pg_err)?;
        schema::migrate(&mut conn).await?;
        drop(conn);
        Ok(Self { pool })
    }

    /// The query plan PostgreSQL chooses for a list (for tests and operators).
    pub async fn explain_list(&self, kind: Kind, opts: &ListOptions) -> Result<Vec<String>> {
        let (sql, params) = sql::page(PG, kind, opts)?;
        self.explain(sql, params).await
    }

    /// The query plan of the free-worker lookup a claim with `selector` runs.
    pub async fn explain_claim(&self, selector: &FieldSelector) -> Result<Vec<String>> {
        let (sql, params) = sql::free_worker(PG, selector, false);
        self.explain(sql, params).await
    }

    async fn explain(&self, sql: String, params: Vec<String>) -> Result<Vec<String>> {
        let mut q = sqlx::query(AssertSqlSafe(format!("EXPLAIN {sql}")));
        for p in params {
            q = q.bind(p);
        }
        let rows = q.fetch_all(&self.pool).await.map_err(pg_err)?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(pg_err))
            .collect()
    }

    async fn notify(
        conn: &mut PgConnection,
        kind: Kind,
        op: watch::Op,
        key: &str,
        version: u64,
        body: Option<&str>,
    ) -> Result<()> {
        let payload = watch::payload(kind, op, key, version, body);
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(watch::CHANNEL)
            .bind(payload)
            .execute(&mut *conn)
            .await
            .map_err(pg_err)?;
        Ok(())
    }
}

impl PgStore {
    /// Runs `sql` (a release or a retire, bound to key and owner) on a lease `owner` holds.
    async fn give_up_lease(&self, sql: &'static str, key: &str, owner: &str) -> Result<()> {
        let done = sqlx::query(sql)
            .bind(key)
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(pg_err)?
            .rows_affected();
        if done == 0 {
            return Err(StoreError::LeaseNotHeld { key: key.into() });
        }
        Ok(())
    }
}

#[async_trait]
impl Store for PgStore {
    async fn create_record(&self, kind: Kind, rec: RecordWrite) -> Result<u64> {
        let body = body_text(&rec.body)?;
        let mut tx = self.pool.begin().await.map_err(pg_err)?;
        if let Some((parent, pkey)) = rec.parent(kind) {
            // FOR SHARE: a concurrent delete of the parent waits for this transaction.
            let found = sqlx::query(AssertSqlSafe(format!(
                "SELECT 1 FROM {} WHERE key = $1 FOR SHARE",
                table(parent)
            )))
            .bind(&pkey)
            .fetch_optional(&mut *tx)
            .await
            .map_err(pg_err)?;
            if found.is_none() {
                return Err(StoreError::ParentMissing {
                    kind: parent,
                    key: pkey,
                });
            }
        }
        let singles = single_fields(kind);
        let cols: String = singles.iter().map(|f| format!(", {}", column(f))).collect();
        let params: String = (0..singles.len())
            .map(|i| format!(", ${}", i + 3))
            .collect();
        let mut q = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {} (key, version, body{cols}) VALUES ($1, 1, $2::jsonb{params})
             ON CONFLICT (key) DO NOTHING",
            table(kind)
        )))
        .bind(&rec.key)
        .bind(body);
        for v in single_values(kind, &rec.index) {
            q = q.bind(v);
        }
        let inserted = q.execute(&mut *tx).await.map_err(pg_err)?.rows_affected();
        if inserted == 0 {
            return Err(StoreError::AlreadyExists { kind, key: rec.key });
        }
        write_multi(&mut tx, kind, &rec.key, &rec.index, true).await?;
        Self::notify(&mut tx, kind, watch::Op::Created, &rec.key, 1, Some(body)).await?;
        tx.commit().await.map_err(pg_err)?;
        Ok(1)
    }

    async fn get_record(&self, kind: Kind, key: &str) -> Result<Record> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT key, version, body::text FROM {} WHERE key = $1",
            table(kind)
        )))
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(pg_err)?;
        match row {
            Some(r) => record(&r),
            None => Err(StoreError::NotFound {
                kind,
                key: key.into(),
            }),
        }
    }

    async fn update_record(&self, kind: Kind, rec: RecordWrite, expected: u64) -> Result<u64> {
        let body = body_text(&rec.body)?;
        let singles = single_fields(kind);
        let sets: String = singles
            .iter()
            .enumerate()
            .map(|(i, f)| format!(", {} = ${}", column(f), i + 4))
            .collect();
        let mut tx = self.pool.begin().await.map_err(pg_err)?;
        let mut q = sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET version = version + 1, body = $2::jsonb{sets}
             WHERE key = $1 AND version = $3 RETURNING version",
            table(kind)
        )))
        .bind(&rec.key)
        .bind(body)
        .bind(expected as i64);
        for v in single_values(kind, &rec.index) {
            q = q.bind(v);
        }
        let updated = q.fetch_optional(&mut *tx).await.map_err(pg_err)?;
        if updated.is_none() {
            let exists = sqlx::query(AssertSqlSafe(format!(
                "SELECT 1 FROM {} WHERE key = $1",
                table(kind)
            )))
            .bind(&rec.key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(pg_err)?;
            return Err(match exists {
                Some(_) => StoreError::Conflict { kind, key: rec.key },
                None => StoreError::NotFound { kind, key: rec.key },
            });
        }
        write_multi(&mut tx, kind, &rec.key, &rec.index, false).await?;
        Self::notify(
            &mut tx,
            kind,
            watch::Op::Updated,
            &rec.key,
            expected + 1,
            Some(body),
        )
        .await?;
        tx.commit().await.map_err(pg_err)?;
        Ok(expected + 1)
    }

    async fn delete_record(&self, kind: Kind, key: &str, expected: Option<u64>) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(pg_err)?;
        // FOR UPDATE: waits for creates of children that hold the row FOR SHARE.
        let current = sqlx::query(AssertSqlSafe(format!(
            "SELECT version FROM {} WHERE key = $1 FOR UPDATE",
            table(kind)
        )))
        .bind(key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(pg_err)?;
        let Some(current) = current else {
            return Err(StoreError::NotFound {
                kind,
                key: key.into(),
            });
        };
        let version = current.try_get::<i64, _>(0).map_err(pg_err)? as u64;
        if expected.is_some_and(|v| v != version) {
            return Err(StoreError::Conflict {
                kind,
                key: key.into(),
            });
        }
        for (child, field) in kind.children() {
            let busy = sqlx::query(AssertSqlSafe(format!(
                "SELECT 1 FROM {} WHERE {} = $1 LIMIT 1",
                table(child),
                column(field)
            )))
            .bind(key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(pg_err)?;
            if busy.is_some() {
                return Err(StoreError::NotEmpty {
                    kind,
                    key: key.into(),
                });
            }
        }
        for t in [table(kind), multi_table(kind)] {
            sqlx::query(AssertSqlSafe(format!("DELETE FROM {t} WHERE key = $1")))
                .bind(key)
                .execute(&mut *tx)
                .await
                .map_err(pg_err)?;
        }
        Self::notify(&mut tx, kind, watch::Op::Deleted, key, version, None).await?;
        tx.commit().await.map_err(pg_err)?;
        Ok(())
    }

    async fn list_records(&self, kind: Kind, opts: &ListOptions) -> Result<Page<Record>> {
        let size = opts.page_size();
        let (sql, params) = sql::page(PG, kind, opts)?;
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for p in params {
            q = q.bind(p);
        }
        let rows = q.fetch_all(&self.pool).await.map_err(pg_err)?;
        let items = rows.iter().map(record).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_fetched(items, size, |r| &r.key))
    }

    async fn claim_worker(
        &self,
        selector: &FieldSelector,
        assignment: &Assignment,
    ) -> Result<Option<Record>> {
        let json = assignment_json(assignment)?;
        let actor = &assignment.actor;
        let (pick, params) = sql::free_worker(PG, selector, true);
        let n = params.len();
        let claim = format!(
            "WITH pick AS ({pick})
             UPDATE {workers} w SET
               version = w.version + 1,
               body = jsonb_set(jsonb_set(w.body, '{{assignment}}', ${a}::jsonb), '{{version}}', to_jsonb(w.version + 1)),
               {id} = ${i}, {ns} = ${s}
             FROM pick WHERE w.key = pick.key
             RETURNING w.key, w.version, w.body::text",
            workers = table(Kind::Worker),
            id = column("actor_id"),
            ns = column("actor_atespace"),
            a = n + 1,
            i = n + 2,
            s = n + 3,
        );
        // A lost race for the same actor shows up as a unique violation: the retry then
        // finds the worker the other claim bound.
        for _ in 0..3 {
            let mut tx = self.pool.begin().await.map_err(pg_err)?;
            let bound = sqlx::query(AssertSqlSafe(sql::bound_worker(PG)))
                .bind(&actor.id)
                .bind(&actor.atespace)
                .fetch_optional(&mut *tx)
                .await
                .map_err(pg_err)?;
            if let Some(row) = bound {
                return record(&row).map(Some);
            }
            let mut q = sqlx::query(AssertSqlSafe(claim.clone()));
            for p in &params {
                q = q.bind(p);
            }
            let claimed = match q
                .bind(&json)
                .bind(&actor.id)
                .bind(&actor.atespace)
                .fetch_optional(&mut *tx)
                .await
            {
                Ok(row) => row,
                Err(e) if is_unique_violation(&e) => continue,
                Err(e) => return Err(pg_err(e)),
            };
            let Some(row) = claimed else {
                return Ok(None);
            };
            let rec = record(&row)?;
            let body = body_text(&rec.body)?.to_string();
            Self::notify(
                &mut tx,
                Kind::Worker,
                watch::Op::Updated,
                &rec.key,
                rec.version,
                Some(&body),
            )
            .await?;
            tx.commit().await.map_err(pg_err)?;
            return Ok(Some(rec));
        }
        Err(StoreError::Unavailable(format!(
            "claim for {actor} kept conflicting, please retry"
        )))
    }

    async fn acquire_lease(&self, key: &str, owner: &str, ttl: Duration) -> Result<Lease> {
        let row = sqlx::query(
            "WITH now AS (SELECT (extract(epoch from clock_timestamp()) * 1000)::bigint AS ms)
             INSERT INTO leases AS l (key, owner, expires_at, generation)
             SELECT $1, $2, now.ms + $3, 1 FROM now
             ON CONFLICT (key) DO UPDATE SET
               owner = EXCLUDED.owner,
               expires_at = EXCLUDED.expires_at,
               generation = CASE WHEN l.owner = EXCLUDED.owner THEN l.generation ELSE l.generation + 1 END
             WHERE l.owner = EXCLUDED.owner OR l.owner = ''
                OR l.expires_at <= (extract(epoch from clock_timestamp()) * 1000)::bigint
             RETURNING expires_at, generation",
        )
        .bind(key)
        .bind(owner)
        .bind(ttl.as_millis() as i64)
        .fetch_optional(&self.pool)
        .await
        .map_err(pg_err)?;
        let Some(row) = row else {
            return Err(StoreError::LeaseHeld { key: key.into() });
        };
        Ok(Lease {
            key: key.into(),
            owner: owner.into(),
            expires_at_ms: row.try_get::<i64, _>(0).map_err(pg_err)? as u64,
            generation: row.try_get::<i64, _>(1).map_err(pg_err)? as u64,
        })
    }

    async fn release_lease(&self, key: &str, owner: &str) -> Result<()> {
        self.give_up_lease(
            "UPDATE leases SET owner = '', expires_at = 0 WHERE key = $1 AND owner = $2",
            key,
            owner,
        )
        .await
    }

    async fn retire_lease(&self, key: &str, owner: &str) -> Result<()> {
        self.give_up_lease(
            "DELETE FROM leases WHERE key = $1 AND owner = $2",
            key,
            owner,
        )
        .await
    }

    async fn watch(&self, kind: Kind) -> Result<Watch> {
        watch::start(self.clone(), kind).await
    }
}
