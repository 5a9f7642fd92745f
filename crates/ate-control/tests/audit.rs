//! Audit retention over a real SQLite store: pruning deletes exactly the events at or before
//! the cutoff, across many pages, and the pruning loop keeps only the retention.

use std::sync::Arc;
use std::time::Duration;

use ate_control::auth::audit::{prune, start_pruning};
use ate_model::{AuditEvent, security::outcome};
use ate_store::{ListOptions, Store, now_ms};
use ate_store_sqlite::SqliteStore;

const DAY_MS: u64 = 86_400_000;

fn event(time_ms: u64, n: usize) -> AuditEvent {
    AuditEvent {
        id: AuditEvent::key_for(time_ms, &format!("{n:06}")),
        time_ms,
        subject: "alice".into(),
        role: "admin".into(),
        method: "CreateActor".into(),
        atespace: "team-a".into(),
        target: format!("team-a/a{n}"),
        result: outcome::OK.into(),
        code: "OK".into(),
        message: String::new(),
        version: 0,
    }
}

async fn times(store: &Arc<dyn Store>) -> Vec<u64> {
    store
        .list_all::<AuditEvent>(&ListOptions::default())
        .await
        .expect("list")
        .iter()
        .map(|e| e.time_ms)
        .collect()
}

fn open() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path().join("ate.db")).expect("open"));
    (dir, store)
}

#[tokio::test]
async fn prune_deletes_exactly_the_events_at_or_before_the_cutoff() {
    let (_dir, store) = open();
    let now = now_ms();
    // More old events than one pruning page holds, several in the same millisecond.
    let old = now - 10 * DAY_MS;
    for n in 0..1_203 {
        store
            .create(event(old + (n as u64 / 3), n))
            .await
            .expect("create");
    }
    let cutoff = now - 2 * DAY_MS;
    let kept = [cutoff + 1, now - DAY_MS, now];
    for (n, t) in kept.iter().enumerate() {
        store.create(event(*t, 10_000 + n)).await.expect("create");
    }
    store.create(event(cutoff, 20_000)).await.expect("create");

    assert_eq!(prune(&store, cutoff).await.expect("prune"), 1_204);
    let mut left = times(&store).await;
    left.sort_unstable();
    assert_eq!(left, kept);
    // Nothing more to do, and a later cutoff takes the next oldest.
    assert_eq!(prune(&store, cutoff).await.expect("prune"), 0);
    assert_eq!(prune(&store, now - DAY_MS).await.expect("prune"), 2);
    assert_eq!(times(&store).await, [now]);
}

#[tokio::test]
async fn the_pruning_loop_keeps_only_the_retention() {
    let (_dir, store) = open();
    let now = now_ms();
    store.create(event(now - DAY_MS, 0)).await.expect("create");
    store.create(event(now + DAY_MS, 1)).await.expect("create");
    let pruning = start_pruning(store.clone(), Duration::from_secs(3600));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while times(&store).await.len() > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the day-old event outlived a retention of an hour"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(times(&store).await, [now + DAY_MS]);
    drop(pruning);
}
