//! The store file and its `-wal` and `-shm` companions are the owner's only, whatever the
//! umask, and files an older version left readable by others are tightened when the store
//! opens.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use ate_model::Atespace;
use ate_store::Store;
use ate_store_sqlite::SqliteStore;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn companions(db: &Path) -> [std::path::PathBuf; 3] {
    let with = |suffix: &str| {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        std::path::PathBuf::from(p)
    };
    [db.to_path_buf(), with("-wal"), with("-shm")]
}

async fn write_something(store: &Arc<dyn Store>, name: &str) {
    store
        .create(Atespace {
            name: name.into(),
            ..Default::default()
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn new_store_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data/ate.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).unwrap());
    write_something(&store, "team-a").await;
    for file in companions(&db) {
        assert!(file.exists(), "{} exists in WAL mode", file.display());
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    assert_eq!(mode(db.parent().unwrap()), 0o700, "the directory it made");
}

#[tokio::test]
async fn loose_files_of_an_older_version_are_tightened() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ate.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).unwrap());
    write_something(&store, "team-a").await;
    // As an older version left them (the open store keeps -wal and -shm in place).
    for file in companions(&db) {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let reopened: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).unwrap());
    for file in companions(&db) {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    assert!(reopened.get::<Atespace>("team-a").await.is_ok());
    drop(store);
}
