//! The conformance suite through a [`SealedStore`] over SQLite: a store that seals some
//! kinds keeps every promise of the `Store` trait, and what it hands the backend for those
//! kinds is sealed.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use ate_model::{Atespace, Kind};
use ate_store::{Result, SealedStore, Sealer, Store, Unsealed};
use ate_store_sqlite::SqliteStore;

/// How the test sealer marks what it sealed.
const MARK: &[u8] = b"sealed!";

/// A stand-in for real sealing: the body reversed behind a mark. Seals atespaces (which
/// every case uses, as parents too) and signing keys.
struct Reverse;

impl Sealer for Reverse {
    fn seals(&self, kind: Kind) -> bool {
        matches!(kind, Kind::Atespace | Kind::SigningKey)
    }

    fn seal(&self, _: Kind, _: &str, body: &[u8]) -> Result<Vec<u8>> {
        let mut out = MARK.to_vec();
        out.extend(body.iter().rev());
        Ok(out)
    }

    fn unseal(&self, _: Kind, _: &str, stored: &[u8]) -> Result<Unsealed> {
        Ok(match stored.strip_prefix(MARK) {
            Some(rest) => Unsealed {
                body: rest.iter().rev().copied().collect(),
                was_sealed: true,
            },
            None => Unsealed {
                body: stored.to_vec(),
                was_sealed: false,
            },
        })
    }
}

async fn fresh() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let raw: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("ate.db")).unwrap());
    (
        SealedStore::wrap(raw, Arc::new(Reverse)).await.unwrap(),
        dir,
    )
}

ate_store::conformance_tests!(fresh());

#[tokio::test]
async fn records_stored_in_the_clear_are_sealed_by_wrap() {
    let dir = tempfile::tempdir().unwrap();
    let raw: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("ate.db")).unwrap());
    for name in ["team-a", "team-b"] {
        raw.create(Atespace {
            name: name.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let sealed = SealedStore::wrap(raw.clone(), Arc::new(Reverse))
        .await
        .unwrap();
    for name in ["team-a", "team-b"] {
        let stored = raw.get_record(Kind::Atespace, name).await.unwrap();
        assert!(
            stored.body.starts_with(MARK),
            "{name} is sealed in the backend"
        );
        assert_eq!(stored.version, 2, "sealing is a conditional update");
        let got: Atespace = sealed.get(name).await.unwrap();
        assert_eq!(got.name, name);
    }
}
