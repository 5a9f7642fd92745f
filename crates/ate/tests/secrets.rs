//! Secrets at rest through the real `ate up`: the data dir, store files, key-encryption key
//! and snapshots are the owner's only (and a data dir an older version left open is closed);
//! the signing keys in the store are sealed and useless without the KEK; a wrong KEK is
//! refused naming its file; the saved admin token is used again while it is good.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ate_auth::{Kek, Verifier};
use ate_control::auth::keyring;
use ate_model::SigningKeyRecord;
use ate_store::{ListOptions, Store};
use ate_store_sqlite::SqliteStore;
use common::Up;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// Every directory under `root` must be 0700 and every file 0600.
fn assert_private_tree(root: &Path) {
    assert_eq!(mode(root), 0o700, "{}", root.display());
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            assert_private_tree(&path);
        } else if meta.is_file() {
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }
}

/// `ate up` on `data` run to its end (it must stop by itself within a minute): its exit
/// status and standard error.
fn up_to_exit(data: &Path, env: &[(&str, &str)]) -> (bool, String) {
    let mut child = Command::new(common::ATE)
        .args(["up", "--api-listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args([
            "--router-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .env("ATE_CONFIG", data.join("cli.json"))
        .env_remove("ATE_KEK_FILE")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ate up kept running");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_is_private_and_signing_keys_are_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // As an older version left it: open to everyone.
    for d in [&data, &data.join("node")] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let up = Up::start(&data);
    up.ok(&["create", "atespace", "team-a"]);
    up.create_counter("c1");
    assert_eq!(up.curl("/a/team-a/c1/").await.body, "1");
    up.ok(&["suspend", "actor", "c1", "-a", "team-a"]);

    assert_eq!(mode(&data), 0o700);
    let db = data.join("ate.db");
    for file in [
        db.clone(),
        with_suffix(&db, "-wal"),
        with_suffix(&db, "-shm"),
    ] {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    let kek = data.join("kek");
    assert_eq!(mode(&kek), 0o600);
    assert_eq!(std::fs::metadata(&kek).unwrap().len(), 32);
    assert_eq!(mode(&data.join("cli.json")), 0o600);
    for sub in ["node/snapshots", "node/cache"] {
        assert_private_tree(&data.join(sub));
    }
    assert_eq!(mode(&data.join("node")), 0o700);
    let token = up.admin_token();
    up.stop();

    // The store alone: every private key sealed, none usable.
    let raw: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).unwrap());
    let records = raw
        .list_all::<SigningKeyRecord>(&ListOptions::default())
        .await
        .unwrap();
    assert!(!records.is_empty());
    for r in &records {
        assert!(ate_auth::is_sealed(&r.private_key), "{}", r.kid);
    }
    assert!(keyring::load(&raw).await.is_err());
    // With the KEK they are the keys that signed the admin token.
    let sealed = keyring::sealed_store(raw, Kek::load_or_create(&kek).unwrap())
        .await
        .unwrap();
    let keys = keyring::load(&sealed).await.unwrap();
    let verifier = Verifier::new(keys.iter().map(|k| k.verification_key()));
    verifier.verify(&token, SystemTime::now()).unwrap();
}

#[test]
fn the_saved_admin_token_is_used_again_while_it_is_good() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    let first = up.admin_token();
    up.stop();

    let up = Up::start(dir.path());
    assert_eq!(up.admin_token(), first, "a second start keeps the token");
    up.ok(&["get", "atespaces"]);
    // Revoked, it is replaced at the next start.
    up.ok(&["admin", "revoke-token", &first]);
    up.stop();

    let up = Up::start(dir.path());
    let third = up.admin_token();
    assert_ne!(third, first, "a revoked token is not used again");
    up.ok(&["get", "atespaces"]);
    up.stop();
}

#[test]
fn the_kek_comes_from_its_flag_and_a_wrong_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let custom = dir.path().join("secret/ate.kek");
    std::fs::create_dir_all(custom.parent().unwrap()).unwrap();
    let custom_text = custom.display().to_string();
    let up = Up::launch(&data, None, &[], &[("ATE_KEK_FILE", &custom_text)]);
    up.ok(&["get", "atespaces"]);
    up.stop();
    assert_eq!(mode(&custom), 0o600);
    assert!(
        !data.join("kek").exists(),
        "the flag's file is the only KEK"
    );

    // Without the flag: a new DATA_DIR/kek that does not open the stored keys.
    let (ok, stderr) = up_to_exit(&data, &[]);
    assert!(!ok, "ate up started with the wrong key-encryption key");
    let default = data.join("kek").display().to_string();
    assert!(
        stderr.contains(&default) && stderr.contains("key-encryption key"),
        "the error names the KEK file: {stderr}"
    );

    // The right one again: it starts.
    let up = Up::launch(&data, None, &[], &[("ATE_KEK_FILE", &custom_text)]);
    up.ok(&["get", "atespaces"]);
    up.stop();
}
