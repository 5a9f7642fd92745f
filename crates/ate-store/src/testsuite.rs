//! The conformance suite every backend runs against a real server. Each case takes a fresh,
//! empty store. Use [`conformance_tests!`](crate::conformance_tests) to generate one test per
//! case.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use ate_model::{
    Actor, ActorRef, ActorStatus, ActorTemplate, Assignment, Atespace, FieldSelector, Indexed,
    Kind, LabelSelector, NamespacedName, Node, Op, PoolSpec, Requirement, RevokedToken,
    SigningKeyRecord, TemplateSpec, Worker, WorkerPlacement, WorkerPool,
};

use crate::{ListOptions, Object, Store, StoreError, Watch, WatchEvent, encode_token};

pub type Shared = Arc<dyn Store>;

/// Generates one `#[tokio::test]` per conformance case. `$make` is an async expression that
/// yields a fresh `(Arc<dyn Store>, guard)`; the guard (a temp dir, a server handle) is
/// dropped when the case ends, so it can clean up.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@cases $make;
            atespace_crud, actor_crud, actor_needs_atespace, atespace_delete_only_when_empty,
            atespace_delete_races_actor_create, concurrent_creates_one_wins,
            conflicting_updates_one_wins, concurrent_claims_never_double_bind,
            claim_is_idempotent_per_actor, claim_respects_selectors, claim_by_capability,
            pagination_is_exact,
            field_selectors_match_reference, label_selectors, unknown_fields_rejected,
            leases, every_kind_round_trips, watch_reports_changes_in_order,
            watch_of_a_secret_kind_reports_whole_records);
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let (store, guard) = $make.await;
                $crate::testsuite::$case(store).await;
                drop(guard);
            }
        )*
    };
}

fn actor(atespace: &str, id: &str) -> Actor {
    Actor {
        atespace: atespace.into(),
        id: id.into(),
        template: NamespacedName::new("demo", "counter"),
        ..Default::default()
    }
}

fn worker(pool: &str, name: &str, node: &str) -> Worker {
    Worker {
        namespace: "default".into(),
        pool: pool.into(),
        name: name.into(),
        node_name: node.into(),
        sandbox_class: "wasm".into(),
        ..Default::default()
    }
}

fn assignment(atespace: &str, id: &str) -> Assignment {
    Assignment {
        actor: ActorRef::new(atespace, id),
        template: NamespacedName::new("demo", "counter"),
        lease_generation: 0,
    }
}

async fn atespace(store: &Shared, name: &str) {
    store
        .create(Atespace {
            name: name.into(),
            version: 0,
        })
        .await
        .expect("create atespace");
}

pub async fn atespace_crud(store: Shared) {
    atespace(&store, "team-a").await;
    let dup = store
        .create(Atespace {
            name: "team-a".into(),
            version: 0,
        })
        .await;
    assert!(
        matches!(dup, Err(StoreError::AlreadyExists { .. })),
        "{dup:?}"
    );
    let got: Atespace = store.get("team-a").await.expect("get");
    assert_eq!((got.name.as_str(), got.version), ("team-a", 1));
    atespace(&store, "team-b").await;
    let all = store
        .list_all::<Atespace>(&ListOptions::default())
        .await
        .expect("list");
    let names: Vec<_> = all.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["team-a", "team-b"]);
    store
        .delete::<Atespace>("team-a", None)
        .await
        .expect("delete");
    let gone = store.get::<Atespace>("team-a").await;
    assert!(matches!(gone, Err(StoreError::NotFound { .. })), "{gone:?}");
    let again = store.delete::<Atespace>("team-a", None).await;
    assert!(
        matches!(again, Err(StoreError::NotFound { .. })),
        "{again:?}"
    );
}

pub async fn actor_crud(store: Shared) {
    atespace(&store, "team-a").await;
    atespace(&store, "team-b").await;
    let created = store.create(actor("team-a", "test")).await.expect("create");
    assert_eq!(created.version, 1);
    assert_eq!(created.status, ActorStatus::Suspended);
    let dup = store.create(actor("team-a", "test")).await;
    assert!(
        matches!(dup, Err(StoreError::AlreadyExists { .. })),
        "{dup:?}"
    );
    // Same id in another atespace is another actor.
    store
        .create(actor("team-b", "test"))
        .await
        .expect("same id elsewhere");

    let mut a: Actor = store.get("team-a/test").await.expect("get");
    assert_eq!(a, created);
    a.status = ActorStatus::Running;
    a.worker = Some(WorkerPlacement {
        pool: "p".into(),
        node_name: "n1".into(),
        ..Default::default()
    });
    let updated = store.update(a.clone()).await.expect("update");
    assert_eq!(updated.version, 2);
    let stale = store.update(a).await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { .. })),
        "{stale:?}"
    );
    let reread: Actor = store.get("team-a/test").await.expect("get");
    assert_eq!(reread, updated);

    let wrong = store.delete::<Actor>("team-a/test", Some(1)).await;
    assert!(
        matches!(wrong, Err(StoreError::Conflict { .. })),
        "{wrong:?}"
    );
    store
        .delete::<Actor>("team-a/test", Some(2))
        .await
        .expect("delete");
    let gone = store.get::<Actor>("team-a/test").await;
    assert!(matches!(gone, Err(StoreError::NotFound { .. })), "{gone:?}");
    let missing = store.update(updated).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "update of a deleted record: {missing:?}"
    );
    let other: Actor = store
        .get("team-b/test")
        .await
        .expect("other atespace untouched");
    assert_eq!(other.version, 1);
}

pub async fn actor_needs_atespace(store: Shared) {
    let err = store.create(actor("team-c", "test")).await;
    match err {
        Err(StoreError::ParentMissing { kind, key }) => {
            assert_eq!((kind, key.as_str()), (Kind::Atespace, "team-c"));
        }
        other => panic!("expected ParentMissing, got {other:?}"),
    }
}

pub async fn atespace_delete_only_when_empty(store: Shared) {
    atespace(&store, "team-a").await;
    atespace(&store, "team-ab").await;
    store.create(actor("team-a", "x")).await.expect("create");
    store.create(actor("team-ab", "y")).await.expect("create");
    let busy = store.delete::<Atespace>("team-a", None).await;
    assert!(matches!(busy, Err(StoreError::NotEmpty { .. })), "{busy:?}");
    store
        .delete::<Actor>("team-a/x", None)
        .await
        .expect("delete actor");
    // An actor in a similarly named atespace does not count.
    store
        .delete::<Atespace>("team-a", None)
        .await
        .expect("now empty");
}

pub async fn atespace_delete_races_actor_create(store: Shared) {
    for round in 0..20 {
        let name = format!("race-{round}");
        atespace(&store, &name).await;
        let (s1, s2, n1, n2) = (store.clone(), store.clone(), name.clone(), name.clone());
        let create = tokio::spawn(async move { s1.create(actor(&n1, "a")).await });
        let delete = tokio::spawn(async move { s2.delete::<Atespace>(&n2, None).await });
        let created = create.await.expect("join").is_ok();
        let deleted = delete.await.expect("join").is_ok();
        assert!(created != deleted, "round {round}: exactly one must win");
        let exists = store.get::<Atespace>(&name).await.is_ok();
        let orphan = store.get::<Actor>(&format!("{name}/a")).await.is_ok();
        assert_eq!(
            exists, orphan,
            "round {round}: an actor never outlives its atespace"
        );
    }
}

pub async fn concurrent_creates_one_wins(store: Shared) {
    atespace(&store, "team-a").await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let s = store.clone();
            tokio::spawn(async move { s.create(actor("team-a", "same")).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.expect("join") {
            Ok(_) => ok += 1,
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
    assert_eq!(ok, 1);
}

pub async fn conflicting_updates_one_wins(store: Shared) {
    atespace(&store, "team-a").await;
    let base = store.create(actor("team-a", "x")).await.expect("create");
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let s = store.clone();
            let mut a = base.clone();
            a.in_progress_snapshot = format!("snap-{i}");
            tokio::spawn(async move { s.update(a).await })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.expect("join") {
            Ok(a) => winners.push(a),
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1);
    let stored: Actor = store.get("team-a/x").await.expect("get");
    assert_eq!(stored, winners[0]);
    assert_eq!(stored.version, 2);
}

pub async fn concurrent_claims_never_double_bind(store: Shared) {
    for i in 0..10 {
        store
            .create(worker("cpu", &format!("w{i:02}"), "n1"))
            .await
            .expect("worker");
    }
    store
        .create(worker("other", "w99", "n1"))
        .await
        .expect("worker");
    let sel = FieldSelector::eq([("pool", "cpu"), ("actor_id", "")]);
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (s, sel) = (store.clone(), sel.clone());
            tokio::spawn(
                async move { s.claim(&sel, &assignment("team-a", &format!("a{i}"))).await },
            )
        })
        .collect();
    let mut claimed = Vec::new();
    for t in tasks {
        if let Some(w) = t.await.expect("join").expect("claim") {
            claimed.push(w);
        }
    }
    assert_eq!(
        claimed.len(),
        10,
        "exactly the ten free workers are claimed"
    );
    let workers: HashSet<_> = claimed.iter().map(|w| w.key()).collect();
    let actors: HashSet<_> = claimed
        .iter()
        .map(|w| w.assignment.clone().expect("assigned").actor)
        .collect();
    assert_eq!((workers.len(), actors.len()), (10, 10));
    for w in &claimed {
        let stored: Worker = store.get(&w.key()).await.expect("get");
        assert_eq!(
            stored.assignment, w.assignment,
            "claim result is what is stored"
        );
        assert_eq!(stored.version, 2);
    }
    let untouched: Worker = store.get("default/other/w99").await.expect("get");
    assert!(
        untouched.is_free(),
        "a worker outside the selector is never claimed"
    );
}

pub async fn claim_is_idempotent_per_actor(store: Shared) {
    for i in 0..3 {
        store
            .create(worker("cpu", &format!("w{i}"), "n1"))
            .await
            .expect("worker");
    }
    let sel = FieldSelector::eq([("pool", "cpu")]);
    let first = store
        .claim(&sel, &assignment("team-a", "x"))
        .await
        .expect("claim");
    let second = store
        .claim(&sel, &assignment("team-a", "x"))
        .await
        .expect("claim");
    assert_eq!(
        first.as_ref().map(Worker::key),
        second.as_ref().map(Worker::key)
    );
    // The same id in another atespace is another actor and gets another worker.
    let third = store
        .claim(&sel, &assignment("team-b", "x"))
        .await
        .expect("claim");
    assert_ne!(first.map(|w| w.key()), third.map(|w| w.key()));
}

pub async fn claim_respects_selectors(store: Shared) {
    let mut hot = worker("cpu", "hot", "n2");
    hot.cached_snapshots = vec!["snap-1".into(), "snap-2".into()];
    store.create(hot).await.expect("worker");
    store
        .create(worker("cpu", "cold", "n1"))
        .await
        .expect("worker");
    store
        .create(worker("gpu", "g", "n2"))
        .await
        .expect("worker");

    let by_cache = FieldSelector::eq([("pool", "cpu"), ("cached_snapshot", "snap-2")]);
    let w = store
        .claim(&by_cache, &assignment("t", "a"))
        .await
        .expect("claim");
    assert_eq!(w.map(|w| w.name), Some("hot".into()));
    // The hot worker is busy now: the same selector finds nothing.
    let none = store
        .claim(&by_cache, &assignment("t", "b"))
        .await
        .expect("claim");
    assert!(none.is_none());
    let by_node = FieldSelector::eq([("pool", "cpu"), ("node_name", "n2")]);
    assert!(
        store
            .claim(&by_node, &assignment("t", "b"))
            .await
            .expect("claim")
            .is_none()
    );
    let by_pool = FieldSelector::eq([("pool", "gpu")]);
    let g = store
        .claim(&by_pool, &assignment("t", "b"))
        .await
        .expect("claim");
    assert_eq!(g.map(|w| w.name), Some("g".into()));
    let bad = FieldSelector::eq([("colour", "red")]);
    let err = store.claim(&bad, &assignment("t", "c")).await;
    assert!(matches!(err, Err(StoreError::Invalid(_))), "{err:?}");
}

/// Two multi-valued fields in one selector (a hot snapshot and a node capability), and a
/// capability withdrawn by an update leaving the index.
pub async fn claim_by_capability(store: Shared) {
    let mut plain = worker("proc", "plain", "n1");
    plain.cached_snapshots = vec!["snap-1".into()];
    let mut hot = worker("proc", "criu-hot", "n2");
    hot.cached_snapshots = vec!["snap-1".into()];
    hot.capabilities = vec!["criu".into()];
    let mut cold = worker("proc", "criu-cold", "n3");
    cold.capabilities = vec!["criu".into(), "gpu".into()];
    for w in [plain, hot, cold] {
        store.create(w).await.expect("worker");
    }
    let list = |sel: FieldSelector| {
        let store = store.clone();
        async move {
            let mut names: Vec<String> = store
                .list_all::<Worker>(&ListOptions::with_fields(sel))
                .await
                .expect("list")
                .into_iter()
                .map(|w| w.name)
                .collect();
            names.sort();
            names
        }
    };
    assert_eq!(
        list(FieldSelector::eq([("capability", "criu")])).await,
        ["criu-cold", "criu-hot"]
    );
    assert_eq!(
        list(FieldSelector::eq([("capability", "")])).await,
        ["plain"]
    );
    let hot_criu = FieldSelector::eq([
        ("pool", "proc"),
        ("actor_id", ""),
        ("cached_snapshot", "snap-1"),
        ("capability", "criu"),
    ]);
    let w = store
        .claim(&hot_criu, &assignment("t", "a"))
        .await
        .expect("claim");
    assert_eq!(w.map(|w| w.name), Some("criu-hot".into()));
    let any_criu = FieldSelector::eq([("pool", "proc"), ("actor_id", ""), ("capability", "criu")]);
    let w = store
        .claim(&any_criu, &assignment("t", "b"))
        .await
        .expect("claim");
    assert_eq!(w.map(|w| w.name), Some("criu-cold".into()));
    // The plain worker is free but lacks the capability.
    let none = store
        .claim(&any_criu, &assignment("t", "c"))
        .await
        .expect("claim");
    assert!(none.is_none());
    let mut cold: Worker = store.get("default/proc/criu-cold").await.expect("get");
    cold.capabilities.clear();
    store.update(cold).await.expect("update");
    assert_eq!(
        list(FieldSelector::eq([("capability", "criu")])).await,
        ["criu-hot"]
    );
    assert_eq!(
        list(FieldSelector::eq([("capability", "")])).await,
        ["criu-cold", "plain"]
    );
}

pub async fn pagination_is_exact(store: Shared) {
    for ns in ["a", "b", "c"] {
        atespace(&store, ns).await;
    }
    let mut expected = Vec::new();
    for i in 0..57 {
        let ns = ["a", "b", "c"][i % 3];
        let id = format!("actor-{i:03}");
        store.create(actor(ns, &id)).await.expect("create");
        expected.push(format!("{ns}/{id}"));
    }
    expected.sort();
    for size in [1, 10, 19, 57, 100] {
        let mut opts = ListOptions {
            limit: size,
            ..Default::default()
        };
        let mut seen = Vec::new();
        loop {
            let page = store.list::<Actor>(&opts).await.expect("list");
            assert!(page.items.len() <= size);
            seen.extend(page.items.iter().map(Object::key));
            match page.continue_token {
                Some(t) => opts.continue_token = Some(t),
                None => break,
            }
        }
        assert_eq!(seen, expected, "page size {size}: no duplicate and no miss");
    }
    let only_b = ListOptions {
        field_selector: FieldSelector::eq([("atespace", "b")]),
        limit: 7,
        ..Default::default()
    };
    let b = store.list_all::<Actor>(&only_b).await.expect("list");
    assert_eq!(b.len(), 19);
    assert!(b.iter().all(|a| a.atespace == "b"));
    // A page may start after any key, held or not: ranges of keys (old audit events) are
    // read and deleted this way.
    let after_a = ListOptions {
        continue_token: Some(encode_token("b/")),
        ..Default::default()
    };
    let rest = store.list_all::<Actor>(&after_a).await.expect("list");
    assert_eq!(rest.len(), 38, "every actor of b and c");
    assert_eq!(Object::key(&rest[0]), "b/actor-001");
    let bad = ListOptions {
        continue_token: Some("not-a-token".into()),
        ..Default::default()
    };
    let err = store.list::<Actor>(&bad).await;
    assert!(matches!(err, Err(StoreError::Invalid(_))), "{err:?}");
}

/// Every value each registry field takes in `objs`, plus one it never takes.
fn probe_values<T: Indexed>(objs: &[T], field: &str) -> Vec<String> {
    let f = T::FIELDS.iter().find(|f| f.name == field).expect("field");
    let mut vals: Vec<String> = objs.iter().flat_map(|o| (f.get)(o)).collect();
    vals.push(String::new());
    vals.push("no-such-value".into());
    vals.sort();
    vals.dedup();
    vals
}

async fn check_fields<T: Object + Clone>(store: &Shared, objs: &[T]) {
    for f in T::FIELDS {
        for value in probe_values(objs, f.name) {
            for op in [Op::Eq, Op::NotEq] {
                let sel = FieldSelector {
                    requirements: vec![Requirement {
                        field: f.name.into(),
                        op,
                        value: value.clone(),
                    }],
                };
                let mut want: Vec<String> = objs
                    .iter()
                    .filter(|o| sel.matches(*o))
                    .map(Object::key)
                    .collect();
                want.sort();
                let got: Vec<String> = store
                    .list_all::<T>(&ListOptions::with_fields(sel.clone()))
                    .await
                    .expect("list")
                    .iter()
                    .map(Object::key)
                    .collect();
                assert_eq!(got, want, "{}: selector {sel}", T::KIND);
            }
        }
    }
}

pub async fn field_selectors_match_reference(store: Shared) {
    atespace(&store, "team-a").await;
    atespace(&store, "team-b").await;
    let mut actors = Vec::new();
    for (i, status) in ActorStatus::ALL.into_iter().enumerate() {
        let mut a = actor(
            if i % 2 == 0 { "team-a" } else { "team-b" },
            &format!("a{i}"),
        );
        a.status = status;
        if i % 3 == 0 {
            a.template = NamespacedName::new("demo", "other");
        }
        if status == ActorStatus::Running {
            a.worker = Some(WorkerPlacement {
                pool: "cpu".into(),
                node_name: "n1".into(),
                ..Default::default()
            });
        }
        actors.push(store.create(a).await.expect("create"));
    }
    check_fields(&store, &actors).await;

    let mut workers = Vec::new();
    for i in 0..8 {
        let mut w = worker(
            ["cpu", "gpu"][i % 2],
            &format!("w{i}"),
            ["n1", "n2", "n3"][i % 3],
        );
        w.cached_snapshots = (0..i % 3).map(|j| format!("snap-{j}")).collect();
        if i % 2 == 1 {
            w.sandbox_class = "process".into();
        }
        store.create(w).await.expect("worker");
        if i % 4 == 0 {
            let claimed = store
                .claim(
                    &FieldSelector::eq([("pool", ["cpu", "gpu"][i % 2])]),
                    &assignment(["team-a", "team-b"][i % 8 / 4], &format!("a{i}")),
                )
                .await
                .expect("claim");
            assert!(claimed.is_some());
        }
    }
    workers.extend(
        store
            .list_all::<Worker>(&ListOptions::default())
            .await
            .expect("list"),
    );
    check_fields(&store, &workers).await;

    let mut templates = Vec::new();
    for (i, class) in ["wasm", "process", "wasm"].iter().enumerate() {
        let t = ActorTemplate {
            namespace: ["demo", "prod"][i % 2].into(),
            name: format!("t{i}"),
            spec: TemplateSpec {
                sandbox_class: (*class).into(),
                ..Default::default()
            },
            ..Default::default()
        };
        templates.push(store.create(t).await.expect("template"));
    }
    check_fields(&store, &templates).await;

    let mut pools = Vec::new();
    for (i, class) in ["wasm", "process"].iter().enumerate() {
        pools.push(
            store
                .create(pool(&format!("p{i}"), class, &[]))
                .await
                .expect("pool"),
        );
    }
    check_fields(&store, &pools).await;

    let mut nodes = Vec::new();
    for (i, status) in ["Ready", "NotReady", "Ready"].iter().enumerate() {
        let n = Node {
            name: format!("n{i}"),
            status: (*status).into(),
            ..Default::default()
        };
        nodes.push(store.create(n).await.expect("node"));
    }
    check_fields(&store, &nodes).await;
}

fn pool(name: &str, class: &str, labels: &[(&str, &str)]) -> WorkerPool {
    WorkerPool {
        namespace: "default".into(),
        name: name.into(),
        spec: PoolSpec {
            replicas: 2,
            sandbox_class: class.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        },
        ..Default::default()
    }
}

pub async fn label_selectors(store: Shared) {
    store
        .create(pool("gold", "wasm", &[("tier", "gold"), ("zone", "a")]))
        .await
        .expect("p");
    store
        .create(pool("gold-b", "wasm", &[("tier", "gold"), ("zone", "b")]))
        .await
        .expect("p");
    store.create(pool("plain", "wasm", &[])).await.expect("p");
    let list = |labels: &[(&str, &str)]| {
        let opts = ListOptions {
            label_selector: LabelSelector::new(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        };
        let store = store.clone();
        async move {
            store
                .list_all::<WorkerPool>(&opts)
                .await
                .expect("list")
                .into_iter()
                .map(|p| p.name)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list(&[("tier", "gold")]).await, ["gold", "gold-b"]);
    assert_eq!(list(&[("tier", "gold"), ("zone", "b")]).await, ["gold-b"]);
    assert_eq!(list(&[]).await, ["gold", "gold-b", "plain"]);
    assert!(list(&[("tier", "silver")]).await.is_empty());
}

pub async fn unknown_fields_rejected(store: Shared) {
    let opts = ListOptions::with_fields(FieldSelector::eq([("colour", "red")]));
    match store.list::<Actor>(&opts).await {
        Err(StoreError::Invalid(e)) => {
            let msg = e.to_string();
            assert!(msg.contains("colour") && msg.contains("atespace"), "{msg}");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

pub async fn leases(store: Shared) {
    let ttl = Duration::from_secs(30);
    let first = store
        .acquire_lease("lock/team-a/x", "owner-1", ttl)
        .await
        .expect("acquire");
    assert_eq!(first.owner, "owner-1");
    let held = store.acquire_lease("lock/team-a/x", "owner-2", ttl).await;
    assert!(
        matches!(held, Err(StoreError::LeaseHeld { .. })),
        "{held:?}"
    );
    // Another key (another atespace) is independent.
    store
        .acquire_lease("lock/team-b/x", "owner-2", ttl)
        .await
        .expect("other key");
    let renewed = store
        .acquire_lease("lock/team-a/x", "owner-1", ttl)
        .await
        .expect("renew");
    assert_eq!(
        renewed.generation, first.generation,
        "a renewal keeps the generation"
    );
    assert!(renewed.expires_at_ms >= first.expires_at_ms);
    let wrong = store.release_lease("lock/team-a/x", "owner-2").await;
    assert!(
        matches!(wrong, Err(StoreError::LeaseNotHeld { .. })),
        "{wrong:?}"
    );
    store
        .release_lease("lock/team-a/x", "owner-1")
        .await
        .expect("release");
    let next = store
        .acquire_lease("lock/team-a/x", "owner-2", ttl)
        .await
        .expect("free now");
    assert!(next.generation > first.generation);

    let short = Duration::from_millis(200);
    store
        .acquire_lease("lock/expiring", "owner-1", short)
        .await
        .expect("acquire");
    assert!(
        store
            .acquire_lease("lock/expiring", "owner-2", short)
            .await
            .is_err()
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    let taken = store
        .acquire_lease("lock/expiring", "owner-2", ttl)
        .await
        .expect("expired");
    assert_eq!(taken.owner, "owner-2");
    let late = store.release_lease("lock/expiring", "owner-1").await;
    assert!(
        matches!(late, Err(StoreError::LeaseNotHeld { .. })),
        "{late:?}"
    );

    // A retired lease is forgotten: its next holder starts at generation 1.
    let wrong = store.retire_lease("lock/team-a/x", "owner-1").await;
    assert!(
        matches!(wrong, Err(StoreError::LeaseNotHeld { .. })),
        "{wrong:?}"
    );
    store
        .retire_lease("lock/team-a/x", "owner-2")
        .await
        .expect("retire");
    let fresh = store
        .acquire_lease("lock/team-a/x", "owner-3", ttl)
        .await
        .expect("acquire after retire");
    assert_eq!(fresh.generation, 1, "nothing of the retired lease remains");
}

pub async fn every_kind_round_trips(store: Shared) {
    let t = ActorTemplate {
        namespace: "demo".into(),
        name: "counter.v1".into(),
        spec: TemplateSpec {
            sandbox_class: "wasm".into(),
            module: "counter.wasm".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    let t = store.create(t).await.expect("template");
    let mut got: ActorTemplate = store.get("demo/counter.v1").await.expect("get");
    assert_eq!(got, t);
    got.status.phase = "Ready".into();
    let got = store.update(got).await.expect("update");
    assert_eq!(got.version, 2);

    let p = store
        .create(pool("cpu", "wasm", &[("tier", "gold")]))
        .await
        .expect("pool");
    assert_eq!(
        store.get::<WorkerPool>("default/cpu").await.expect("get"),
        p
    );
    let n = Node {
        name: "n1".into(),
        address: "127.0.0.1:7411".into(),
        sandbox_classes: vec!["wasm".into()],
        capacity: 8,
        status: "Ready".into(),
        ..Default::default()
    };
    let n = store.create(n).await.expect("node");
    assert_eq!(store.get::<Node>("n1").await.expect("get"), n);
    let w = store
        .create(worker("cpu", "w0", "n1"))
        .await
        .expect("worker");
    assert_eq!(store.get::<Worker>("default/cpu/w0").await.expect("get"), w);
    let r = store
        .create(RevokedToken {
            jti: "0f3a".into(),
            subject: "web".into(),
            expires_ms: 1_700_000_000_000,
            revoked_ms: 1_600_000_000_000,
            revoked_by: "admin".into(),
            version: 0,
        })
        .await
        .expect("revoked token");
    assert_eq!(store.get::<RevokedToken>("0f3a").await.expect("get"), r);
    for (kind, key) in [
        (Kind::ActorTemplate, "demo/counter.v1"),
        (Kind::WorkerPool, "default/cpu"),
        (Kind::Node, "n1"),
        (Kind::Worker, "default/cpu/w0"),
        (Kind::RevokedToken, "0f3a"),
    ] {
        store.delete_record(kind, key, None).await.expect("delete");
        let gone = store.get_record(kind, key).await;
        assert!(
            matches!(gone, Err(StoreError::NotFound { .. })),
            "{kind}: {gone:?}"
        );
    }
}

async fn next_event(w: &mut Watch) -> WatchEvent {
    match tokio::time::timeout(Duration::from_secs(10), w.recv()).await {
        Ok(Some(e)) => e,
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no watch event within 10 s"),
    }
}

pub async fn watch_reports_changes_in_order(store: Shared) {
    let mut actors = store.watch(Kind::Actor).await.expect("watch actors");
    let mut workers = store.watch(Kind::Worker).await.expect("watch workers");
    atespace(&store, "team-a").await;
    let a = store.create(actor("team-a", "x")).await.expect("create");
    let mut changed = a.clone();
    changed.status = ActorStatus::Running;
    store.update(changed).await.expect("update");
    store
        .delete::<Actor>("team-a/x", None)
        .await
        .expect("delete");

    match next_event(&mut actors).await {
        WatchEvent::Created(r) => {
            assert_eq!((r.key.as_str(), r.version), ("team-a/x", 1));
            let got: Actor = crate::typed::decode(&r).expect("decode");
            assert_eq!(got, a);
        }
        other => panic!("expected Created, got {other:?}"),
    }
    match next_event(&mut actors).await {
        WatchEvent::Updated(r) => {
            assert_eq!((r.key.as_str(), r.version), ("team-a/x", 2));
            let got: Actor = crate::typed::decode(&r).expect("decode");
            assert_eq!(got.status, ActorStatus::Running);
        }
        other => panic!("expected Updated, got {other:?}"),
    }
    assert_eq!(
        next_event(&mut actors).await,
        WatchEvent::Deleted {
            key: "team-a/x".into()
        },
        "atespace events are not delivered to an actor watch"
    );

    store
        .create(worker("cpu", "w0", "n1"))
        .await
        .expect("worker");
    let claimed = store
        .claim(
            &FieldSelector::eq([("pool", "cpu")]),
            &assignment("team-a", "y"),
        )
        .await
        .expect("claim")
        .expect("a worker");
    assert!(matches!(
        next_event(&mut workers).await,
        WatchEvent::Created(_)
    ));
    match next_event(&mut workers).await {
        WatchEvent::Updated(r) => {
            let w: Worker = crate::typed::decode(&r).expect("decode");
            assert_eq!(w, claimed, "a claim is reported as an update");
        }
        other => panic!("expected Updated, got {other:?}"),
    }
    drop(actors);
    // A dropped watch does not disturb writers.
    store
        .create(actor("team-a", "z"))
        .await
        .expect("create after drop");
}

/// Notifications of secret kinds carry no body (`Kind::is_secret`), yet a watch of one still
/// reports every change with the whole record, read from the store.
pub async fn watch_of_a_secret_kind_reports_whole_records(store: Shared) {
    assert!(Kind::SigningKey.is_secret() && Kind::ActorTemplate.is_secret());
    let mut keys = store.watch(Kind::SigningKey).await.expect("watch keys");
    let mut templates = store
        .watch(Kind::ActorTemplate)
        .await
        .expect("watch templates");
    let key = SigningKeyRecord {
        kid: "k1".into(),
        created_ms: 1,
        private_key: "c2VjcmV0LWtleS1tYXRlcmlhbA==".into(),
        version: 0,
    };
    // One change at a time: the record an event reports is read when the event arrives.
    let created = store.create(key).await.expect("create key");
    match next_event(&mut keys).await {
        WatchEvent::Created(r) => {
            assert_eq!((r.key.as_str(), r.version), ("k1", 1));
            let got: SigningKeyRecord = crate::typed::decode(&r).expect("decode");
            assert_eq!(got, created);
        }
        other => panic!("expected Created, got {other:?}"),
    }
    let mut changed = created.clone();
    changed.created_ms = 2;
    let changed = store.update(changed).await.expect("update key");
    match next_event(&mut keys).await {
        WatchEvent::Updated(r) => {
            let got: SigningKeyRecord = crate::typed::decode(&r).expect("decode");
            assert_eq!(got, changed);
        }
        other => panic!("expected Updated, got {other:?}"),
    }
    store
        .delete::<SigningKeyRecord>("k1", None)
        .await
        .expect("delete key");
    assert_eq!(
        next_event(&mut keys).await,
        WatchEvent::Deleted { key: "k1".into() }
    );

    let mut t = ActorTemplate {
        namespace: "demo".into(),
        name: "secretive".into(),
        spec: TemplateSpec {
            sandbox_class: "wasm".into(),
            module: "m.wasm".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    t.spec.env = vec![ate_model::EnvVar {
        name: "API_KEY".into(),
        value: "sk-live-0123".into(),
    }];
    let t = store.create(t).await.expect("create template");
    match next_event(&mut templates).await {
        WatchEvent::Created(r) => {
            let got: ActorTemplate = crate::typed::decode(&r).expect("decode");
            assert_eq!(got, t);
        }
        other => panic!("expected Created, got {other:?}"),
    }
}

/// For backends with a server: `stop` takes the server down, `start` brings it back with its
/// data. Calls fail with `Unavailable` meanwhile; afterwards the store recovers by itself and
/// a watch reports `Resync`, then live events again.
pub async fn recovers_after_server_restart(
    store: Shared,
    stop: impl FnOnce(),
    start: impl FnOnce(),
) {
    let mut watch = store.watch(Kind::Atespace).await.expect("watch");
    atespace(&store, "before").await;
    assert!(matches!(
        next_event(&mut watch).await,
        WatchEvent::Created(_)
    ));

    stop();
    let down = store.get::<Atespace>("before").await;
    assert!(matches!(down, Err(StoreError::Unavailable(_))), "{down:?}");
    start();

    let mut ok = false;
    for _ in 0..100 {
        if store.get::<Atespace>("before").await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        ok,
        "the store recovers on its own, with its data, once the server is back"
    );
    let resync = tokio::time::timeout(Duration::from_secs(15), watch.recv())
        .await
        .expect("event");
    assert_eq!(resync, Some(WatchEvent::Resync));
    atespace(&store, "after").await;
    match next_event(&mut watch).await {
        WatchEvent::Created(r) => assert_eq!(r.key, "after"),
        other => panic!("expected Created, got {other:?}"),
    }
}
