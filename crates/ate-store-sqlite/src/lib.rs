//! The embedded default store: one SQLite file in WAL mode. Writes go through one connection
//! in `IMMEDIATE` transactions, so every conditional write, claim and parent/child check is
//! serialised; reads use a small pool of connections and see committed state. Selectors are
//! answered from indexes derived from the model's field registry (see [`schema`]).

mod leases;
pub mod schema;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ate_model::{Assignment, FieldSelector, Kind};
use ate_store::typed::assign_worker;
use ate_store::{
    Lease, ListOptions, Page, Record, RecordWrite, Result, Store, StoreError, WATCH_BUFFER, Watch,
    WatchEvent,
};
use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params,
};

use ate_store::sql::{self, Dialect, column, table};

use crate::schema::write_index;

const SQLITE: Dialect = Dialect::Sqlite;

const READERS: usize = 4;

/// Maps a driver error: a busy or locked database is a transient `Unavailable`, everything
/// else is `Internal`.
pub(crate) fn sql_err(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            StoreError::Unavailable(format!("sqlite is busy: {e}"))
        }
        Some(rusqlite::ErrorCode::CannotOpen) => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Internal(format!("sqlite: {e}")),
    }
}

/// A committed change, broadcast to watchers in commit order.
type Event = (Kind, WatchEvent);

struct Inner {
    path: PathBuf,
    events: tokio::sync::broadcast::Sender<Event>,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

/// A store in one SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish()
    }
}

/// Mode of the store file and of its `-wal` and `-shm` companions: the store holds the token
/// signing keys and every record of every tenant, so only its owner may read it.
pub const FILE_MODE: u32 = 0o600;
/// Mode of the directories the store creates for its file.
pub const DIR_MODE: u32 = 0o700;

/// Creates the store file owner-only before SQLite does (SQLite would create it 0644 less the
/// umask, and gives its `-wal` and `-shm` files the mode of the database file), and tightens
/// the files an older version left readable by others.
fn private_files(path: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let fail = |p: &Path, e: std::io::Error| {
        StoreError::Unavailable(format!("cannot prepare sqlite file {}: {e}", p.display()))
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)
            .map_err(|e| fail(dir, e))?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)
        .map_err(|e| fail(path, e))?;
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let file = PathBuf::from(file);
        let mode = match std::fs::metadata(&file) {
            Ok(m) => m.permissions().mode() & 0o777,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(fail(&file, e)),
        };
        if mode & !FILE_MODE != 0 {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(FILE_MODE))
                .map_err(|e| fail(&file, e))?;
            tracing::info!(path = %file.display(), from = format!("{mode:o}"), to = format!("{FILE_MODE:o}"), "store file mode tightened");
        }
    }
    Ok(())
}

fn connect(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| {
        StoreError::Unavailable(format!("cannot open sqlite file {}: {e}", path.display()))
    })?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(sql_err)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = OFF;
         PRAGMA cache_size = -32768;",
    )
    .map_err(sql_err)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the store file and brings its schema up to date. The file
    /// and its `-wal` and `-shm` companions are the owner's only (see [`FILE_MODE`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        private_files(&path)?;
        let mut writer = connect(&path)?;
        schema::migrate(&mut writer)?;
        let readers = (0..READERS)
            .map(|_| connect(&path).map(Mutex::new))
            .collect::<Result<Vec<_>>>()?;
        tracing::info!(path = %path.display(), "sqlite store open");
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                events: tokio::sync::broadcast::channel(WATCH_BUFFER).0,
                writer: Mutex::new(writer),
                readers,
                next_reader: AtomicUsize::new(0),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The event of a change announced without its body (see [`announced`]), with the
    /// current record read in: `None` when it was deleted meanwhile (its own event follows),
    /// `Resync` when it cannot be read.
    async fn reread(
        &self,
        kind: Kind,
        key: &str,
        event: fn(Record) -> WatchEvent,
    ) -> Option<WatchEvent> {
        match self.get_record(kind, key).await {
            Ok(r) => Some(event(r)),
            Err(StoreError::NotFound { .. }) => None,
            Err(e) => {
                tracing::warn!(%kind, key, error = %e, "cannot read a changed record; asking for resync");
                Some(WatchEvent::Resync)
            }
        }
    }

    /// Runs `f` in an `IMMEDIATE` transaction on the writer, off the async runtime. The
    /// events `f` records are broadcast after the commit, still under the writer lock, so
    /// watchers see them in commit order.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>, &mut Vec<Event>) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = inner
                .writer
                .lock()
                .map_err(|_| StoreError::internal("sqlite writer lock poisoned"))?;
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql_err)?;
            let mut events = Vec::new();
            let out = f(&tx, &mut events)?;
            tx.commit().map_err(sql_err)?;
            for e in events {
                // No receivers is fine: nobody watches.
                let _ = inner.events.send(e);
            }
            Ok(out)
        })
        .await
        .map_err(StoreError::internal)?
    }

    /// Runs `f` on a reader connection, off the async runtime.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let i = inner.next_reader.fetch_add(1, Ordering::Relaxed) % inner.readers.len();
            let conn = inner.readers[i]
                .lock()
                .map_err(|_| StoreError::internal("sqlite reader lock poisoned"))?;
            f(&conn)
        })
        .await
        .map_err(StoreError::internal)?
    }

    /// The query plan SQLite chooses for a list, one line per step. Lets tests and operators
    /// check that selectors are answered from an index.
    pub async fn explain_list(&self, kind: Kind, opts: &ListOptions) -> Result<Vec<String>> {
        let (sql, params) = sql::page(SQLITE, kind, opts)?;
        self.read(move |c| explain(c, &sql, &params)).await
    }

    /// The query plan of the lookup a claim runs first: the worker an actor already holds.
    pub async fn explain_bound_worker(&self) -> Result<Vec<String>> {
        let sql = sql::bound_worker(SQLITE);
        let params = vec!["x".to_string(), "team-a".to_string()];
        self.read(move |c| explain(c, &sql, &params)).await
    }

    /// The query plan of the free-worker lookup a claim with `selector` runs.
    pub async fn explain_claim(&self, selector: &FieldSelector) -> Result<Vec<String>> {
        let (sql, params) = sql::free_worker(SQLITE, selector, false);
        self.read(move |c| explain(c, &sql, &params)).await
    }
}

fn explain(c: &Connection, sql: &str, params: &[String]) -> Result<Vec<String>> {
    let mut stmt = c
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .map_err(sql_err)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(params), |r| {
            r.get::<_, String>(3)
        })
        .map_err(sql_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql_err)?;
    Ok(rows)
}

fn row_to_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
    Ok(Record {
        key: r.get(0)?,
        version: r.get::<_, i64>(1)? as u64,
        body: r.get(2)?,
    })
}

fn get_in(c: &Connection, kind: Kind, key: &str) -> Result<Option<Record>> {
    c.prepare_cached(&format!(
        "SELECT key, version, body FROM {} WHERE key = ?1",
        table(kind)
    ))
    .and_then(|mut s| s.query_row([key], row_to_record).optional())
    .map_err(sql_err)
}

fn stored(rec: RecordWrite, version: u64) -> Record {
    Record {
        key: rec.key,
        version,
        body: rec.body,
    }
}

/// The record a change event carries: without its body for a secret kind (`Kind::is_secret`),
/// so no secret waits in the event buffer; watchers of such a kind read the record (a
/// stored body is JSON, never empty, so an empty one says "read it").
fn announced(kind: Kind, rec: RecordWrite, version: u64) -> Record {
    let mut rec = stored(rec, version);
    if kind.is_secret() {
        rec.body.clear();
    }
    rec
}

fn put(
    tx: &Transaction<'_>,
    kind: Kind,
    rec: &RecordWrite,
    version: u64,
    fresh: bool,
) -> Result<()> {
    let sql = if fresh {
        format!(
            "INSERT INTO {} (key, version, body) VALUES (?1, ?2, ?3)",
            table(kind)
        )
    } else {
        format!(
            "UPDATE {} SET version = ?2, body = ?3 WHERE key = ?1",
            table(kind)
        )
    };
    tx.prepare_cached(&sql)
        .and_then(|mut s| s.execute(params![rec.key, version as i64, rec.body]))
        .map_err(sql_err)?;
    write_index(tx, kind, &rec.key, &rec.index, fresh)
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_record(&self, kind: Kind, rec: RecordWrite) -> Result<u64> {
        self.write(move |tx, events| {
            if let Some((parent, pkey)) = rec.parent(kind)
                && get_in(tx, parent, &pkey)?.is_none()
            {
                return Err(StoreError::ParentMissing {
                    kind: parent,
                    key: pkey,
                });
            }
            if get_in(tx, kind, &rec.key)?.is_some() {
                return Err(StoreError::AlreadyExists { kind, key: rec.key });
            }
            put(tx, kind, &rec, 1, true)?;
            events.push((kind, WatchEvent::Created(announced(kind, rec, 1))));
            Ok(1)
        })
        .await
    }

    async fn get_record(&self, kind: Kind, key: &str) -> Result<Record> {
        let key = key.to_string();
        self.read(move |c| get_in(c, kind, &key)?.ok_or(StoreError::NotFound { kind, key }))
            .await
    }

    async fn update_record(&self, kind: Kind, rec: RecordWrite, expected: u64) -> Result<u64> {
        self.write(move |tx, events| {
            let current = get_in(tx, kind, &rec.key)?.ok_or_else(|| StoreError::NotFound {
                kind,
                key: rec.key.clone(),
            })?;
            if current.version != expected {
                return Err(StoreError::Conflict { kind, key: rec.key });
            }
            put(tx, kind, &rec, expected + 1, false)?;
            events.push((
                kind,
                WatchEvent::Updated(announced(kind, rec, expected + 1)),
            ));
            Ok(expected + 1)
        })
        .await
    }

    async fn delete_record(&self, kind: Kind, key: &str, expected: Option<u64>) -> Result<()> {
        let key = key.to_string();
        self.write(move |tx, events| {
            let current = get_in(tx, kind, &key)?.ok_or_else(|| StoreError::NotFound {
                kind,
                key: key.clone(),
            })?;
            if expected.is_some_and(|v| v != current.version) {
                return Err(StoreError::Conflict { kind, key });
            }
            for (child, field) in kind.children() {
                let sql = format!(
                    "SELECT 1 FROM {} WHERE {} = ?1 LIMIT 1",
                    table(child),
                    column(field)
                );
                let busy = tx
                    .prepare_cached(&sql)
                    .and_then(|mut s| s.exists([&key]))
                    .map_err(sql_err)?;
                if busy {
                    return Err(StoreError::NotEmpty { kind, key });
                }
            }
            tx.prepare_cached(&format!("DELETE FROM {} WHERE key = ?1", table(kind)))
                .and_then(|mut s| s.execute([&key]))
                .map_err(sql_err)?;
            tx.prepare_cached(&format!(
                "DELETE FROM {} WHERE key = ?1",
                sql::multi_table(kind)
            ))
            .and_then(|mut s| s.execute([&key]))
            .map_err(sql_err)?;
            events.push((kind, WatchEvent::Deleted { key }));
            Ok(())
        })
        .await
    }

    async fn list_records(&self, kind: Kind, opts: &ListOptions) -> Result<Page<Record>> {
        let size = opts.page_size();
        let (sql, params) = sql::page(SQLITE, kind, opts)?;
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&sql).map_err(sql_err)?;
            let items = stmt
                .query_map(rusqlite::params_from_iter(&params), row_to_record)
                .map_err(sql_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(sql_err)?;
            Ok(Page::from_fetched(items, size, |r| &r.key))
        })
        .await
    }

    async fn claim_worker(
        &self,
        selector: &FieldSelector,
        assignment: &Assignment,
    ) -> Result<Option<Record>> {
        let (sql, params) = sql::free_worker(SQLITE, selector, false);
        let assignment = assignment.clone();
        self.write(move |tx, events| {
            let actor = &assignment.actor;
            let bound = tx
                .prepare_cached(&sql::bound_worker(SQLITE))
                .and_then(|mut s| {
                    s.query_row(params![actor.id, actor.atespace], row_to_record)
                        .optional()
                })
                .map_err(sql_err)?;
            if bound.is_some() {
                return Ok(bound);
            }
            let free = tx
                .prepare_cached(&sql)
                .and_then(|mut s| {
                    s.query_row(rusqlite::params_from_iter(&params), row_to_record)
                        .optional()
                })
                .map_err(sql_err)?;
            let Some(free) = free else { return Ok(None) };
            let write = assign_worker(&free, &assignment)?;
            put(tx, Kind::Worker, &write, free.version + 1, false)?;
            let claimed = stored(write, free.version + 1);
            events.push((Kind::Worker, WatchEvent::Updated(claimed.clone())));
            Ok(Some(claimed))
        })
        .await
    }

    async fn acquire_lease(&self, key: &str, owner: &str, ttl: Duration) -> Result<Lease> {
        let (key, owner) = (key.to_string(), owner.to_string());
        self.write(move |tx, _| leases::acquire(tx, &key, &owner, ttl))
            .await
    }

    async fn release_lease(&self, key: &str, owner: &str) -> Result<()> {
        let (key, owner) = (key.to_string(), owner.to_string());
        self.write(move |tx, _| leases::release(tx, &key, &owner))
            .await
    }

    async fn retire_lease(&self, key: &str, owner: &str) -> Result<()> {
        let (key, owner) = (key.to_string(), owner.to_string());
        self.write(move |tx, _| leases::retire(tx, &key, &owner))
            .await
    }

    async fn watch(&self, kind: Kind) -> Result<Watch> {
        let mut events = self.inner.events.subscribe();
        let (tx, rx) = tokio::sync::mpsc::channel(WATCH_BUFFER);
        // Weak: a watch must not keep the store (and its broadcast sender, whose closing
        // ends this task) alive.
        let store = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                let event = match events.recv().await {
                    Ok((k, e)) if k == kind => e,
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(%kind, missed, "watcher fell behind; asking it to resync");
                        WatchEvent::Resync
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                // A change announced without its body (a secret kind) is read in.
                let announced: Option<(&str, fn(Record) -> WatchEvent)> = match &event {
                    WatchEvent::Created(r) if r.body.is_empty() => {
                        Some((&r.key, WatchEvent::Created))
                    }
                    WatchEvent::Updated(r) if r.body.is_empty() => {
                        Some((&r.key, WatchEvent::Updated))
                    }
                    _ => None,
                };
                let event = match announced {
                    Some((key, make)) => {
                        let Some(inner) = store.upgrade() else { return };
                        SqliteStore { inner }.reread(kind, key, make).await
                    }
                    None => Some(event),
                };
                let Some(event) = event else { continue };
                if tx.send(event).await.is_err() {
                    return;
                }
            }
        });
        Ok(rx)
    }
}
