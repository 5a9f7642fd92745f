//! The shared conformance suite against a real SQLite file, plus proof that selectors are
//! answered from indexes.

use std::sync::Arc;

use ate_model::{FieldSelector, Kind, LabelSelector};
use ate_store::{ListOptions, Store};
use ate_store_sqlite::SqliteStore;

async fn fresh() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqliteStore::open(dir.path().join("ate.db")).expect("open"));
    (store, dir)
}

ate_store::conformance_tests!(fresh());

fn uses_index(plan: &[String]) -> bool {
    plan.iter()
        .any(|l| l.contains("USING INDEX") || l.contains("USING COVERING INDEX"))
        && !plan.iter().any(|l| l.starts_with("SCAN t"))
}

#[tokio::test]
async fn worker_selectors_use_indexes_not_scans() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path().join("ate.db")).expect("open");
    for sel in [
        "pool=cpu,actor_id=",
        "node_name=n1,actor_id=",
        "pool=cpu,cached_snapshot=snap-1",
        "actor_id=x,actor_atespace=team-a",
    ] {
        let sel = FieldSelector::parse(sel).expect("parse");
        let plan = store.explain_claim(&sel).await.expect("explain");
        assert!(uses_index(&plan), "claim {sel}: {plan:?}");
        let plan = store
            .explain_list(Kind::Worker, &ListOptions::with_fields(sel.clone()))
            .await
            .expect("explain");
        assert!(uses_index(&plan), "list {sel}: {plan:?}");
    }
    let bound = store.explain_bound_worker().await.expect("explain");
    assert!(
        bound
            .iter()
            .any(|l| l.contains("f_actor_atespace=? AND f_actor_id=?")),
        "the bound-worker lookup seeks on atespace and id together: {bound:?}"
    );
    let hot = FieldSelector::parse("pool=cpu,actor_id=,cached_snapshot=snap-1").expect("parse");
    let plan = store.explain_claim(&hot).await.expect("explain");
    assert!(
        plan.first()
            .is_some_and(|l| l.starts_with("SEARCH d USING PRIMARY KEY")),
        "a cached-snapshot claim is driven by the snapshot index: {plan:?}"
    );
    let by_atespace = ListOptions::with_fields(FieldSelector::eq([("atespace", "team-a")]));
    let plan = store
        .explain_list(Kind::Actor, &by_atespace)
        .await
        .expect("explain");
    assert!(uses_index(&plan), "actors by atespace: {plan:?}");
    let by_label = ListOptions {
        label_selector: LabelSelector::parse("l", "tier=gold").expect("labels"),
        ..Default::default()
    };
    let plan = store
        .explain_list(Kind::WorkerPool, &by_label)
        .await
        .expect("explain");
    assert!(
        plan.iter().any(|l| l.contains("m_pools")),
        "pools by label: {plan:?}"
    );
}

#[tokio::test]
async fn data_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ate.db");
    {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).expect("open"));
        store
            .create(ate_model::Atespace {
                name: "team-a".into(),
                version: 0,
            })
            .await
            .expect("create");
    }
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).expect("reopen"));
    let a: ate_model::Atespace = store.get("team-a").await.expect("get");
    assert_eq!(a.version, 1);
}
