//! The dataspace contract, one test per promise.

use std::time::Duration;

use ate_dataspace::{Assertion, Dataspace, DataspaceError, Event, Filter, Id, View};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Route {
    address: String,
}

impl Assertion for Route {
    const TYPE: &'static str = "test.route.v1";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Node(u32);

impl Assertion for Node {
    const TYPE: &'static str = "test.node.v1";
}

fn route(a: &str) -> Route {
    Route { address: a.into() }
}

async fn next<T: Assertion>(s: &mut ate_dataspace::Subscription<T>) -> Event<T> {
    tokio::time::timeout(Duration::from_secs(5), s.recv())
        .await
        .expect("an event within 5 s")
        .expect("subscription open")
}

#[tokio::test]
async fn only_the_owner_may_overwrite_or_retract() {
    let ds = Dataspace::new();
    let node1 = ds.owner("node-1");
    let node2 = ds.owner("node-2");
    node1.assert("team-a/x", route("10.0.0.1:80")).unwrap();
    let err = node2.assert("team-a/x", route("evil")).unwrap_err();
    assert_eq!(
        err,
        DataspaceError::NotOwner {
            type_tag: Route::TYPE,
            id: Id::from("team-a/x"),
            holder: "node-1".into(),
            caller: "node-2".into(),
        }
    );
    assert!(
        err.to_string()
            .contains("asserted by node-1, not by node-2")
    );
    assert!(matches!(
        node2.retract::<Route>("team-a/x"),
        Err(DataspaceError::NotOwner { .. })
    ));
    assert!(matches!(
        node1.retract::<Route>("team-a/y"),
        Err(DataspaceError::NotAsserted { .. })
    ));
    assert_eq!(
        ds.get::<Route>(&"team-a/x".into()),
        Some(route("10.0.0.1:80"))
    );
    node1.assert("team-a/x", route("10.0.0.2:80")).unwrap();
    assert_eq!(
        ds.get::<Route>(&"team-a/x".into()),
        Some(route("10.0.0.2:80"))
    );
    node1.retract::<Route>("team-a/x").unwrap();
    node2
        .assert("team-a/x", route("10.0.0.3:80"))
        .expect("free again");
}

#[tokio::test]
async fn dropping_the_owner_retracts_everything_it_asserted() {
    let ds = Dataspace::new();
    let mut sub = ds.subscribe::<Route>(Filter::All).unwrap();
    assert_eq!(next(&mut sub).await, Event::Synced);
    let owner = ds.owner("node-1");
    owner.assert("a", route("1")).unwrap();
    owner.assert("b", route("2")).unwrap();
    let other = ds.owner("node-2");
    other.assert("c", route("3")).unwrap();
    drop(owner);
    let mut view = View::default();
    for _ in 0..5 {
        view.apply(next(&mut sub).await);
    }
    assert_eq!(
        view.entries.keys().cloned().collect::<Vec<_>>(),
        vec![Id::from("c")]
    );
    assert_eq!(ds.owner_count(), 1);
}

#[tokio::test]
async fn a_panicking_owner_task_retracts() {
    let ds = Dataspace::new();
    let mut sub = ds.subscribe::<Node>(Filter::Exact(Id::Int(7))).unwrap();
    assert_eq!(next(&mut sub).await, Event::Synced);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let owner = ds.owner("node-7");
    let task = tokio::spawn(async move {
        owner.assert(7u64, Node(7)).unwrap();
        let _ = ready_tx.send(());
        tokio::time::sleep(Duration::from_millis(50)).await;
        panic!("node task fails");
    });
    ready_rx.await.unwrap();
    assert_eq!(
        next(&mut sub).await,
        Event::Asserted {
            id: Id::Int(7),
            value: Node(7)
        }
    );
    assert!(task.await.unwrap_err().is_panic());
    assert_eq!(next(&mut sub).await, Event::Retracted { id: Id::Int(7) });
    assert_eq!(ds.get::<Node>(&Id::Int(7)), None);
}

#[tokio::test]
async fn exact_glob_and_all_subscriptions_see_only_their_matches() {
    let ds = Dataspace::new();
    let o = ds.owner("o");
    let mut exact = ds
        .subscribe::<Route>(Filter::Exact("team-a/x".into()))
        .unwrap();
    let mut glob = ds
        .subscribe::<Route>(Filter::Glob("team-a/*".into()))
        .unwrap();
    let mut all = ds.subscribe::<Route>(Filter::All).unwrap();
    let mut nodes = ds.subscribe::<Node>(Filter::All).unwrap();
    for id in ["team-a/x", "team-a/y", "team-b/x"] {
        o.assert(id, route(id)).unwrap();
    }
    o.assert(1u64, Node(1)).unwrap();
    let drain = |s: &mut ate_dataspace::Subscription<Route>| {
        let mut ids = Vec::new();
        while let Some(e) = s.try_recv() {
            if let Event::Asserted { id, .. } = e {
                ids.push(id.to_string());
            }
        }
        ids
    };
    assert_eq!(drain(&mut exact), ["team-a/x"]);
    assert_eq!(drain(&mut glob), ["team-a/x", "team-a/y"]);
    assert_eq!(drain(&mut all), ["team-a/x", "team-a/y", "team-b/x"]);
    assert_eq!(nodes.try_recv(), Some(Event::Synced));
    assert_eq!(
        nodes.try_recv(),
        Some(Event::Asserted {
            id: Id::Int(1),
            value: Node(1)
        })
    );
    assert_eq!(nodes.try_recv(), None);
}

#[tokio::test]
async fn snapshot_then_synced_then_live_updates_in_one_order() {
    let ds = Dataspace::new();
    let o = ds.owner("o");
    o.assert("b", route("2")).unwrap();
    o.assert("a", route("1")).unwrap();
    let mut s1 = ds.subscribe::<Route>(Filter::All).unwrap();
    let mut s2 = ds.subscribe::<Route>(Filter::All).unwrap();
    let writer = {
        let o2 = ds.owner("o2");
        tokio::spawn(async move {
            for i in 0..200u64 {
                o2.assert(format!("k{}", i % 7), route(&i.to_string()))
                    .unwrap();
                if i % 5 == 0 {
                    let _ = o2.retract::<Route>(format!("k{}", i % 7));
                }
                tokio::task::yield_now().await;
            }
            o2
        })
    };
    assert_eq!(
        next(&mut s1).await,
        Event::Asserted {
            id: "a".into(),
            value: route("1")
        }
    );
    assert_eq!(
        next(&mut s1).await,
        Event::Asserted {
            id: "b".into(),
            value: route("2")
        }
    );
    let o2 = writer.await.unwrap();
    let mut seen1 = Vec::new();
    while let Some(e) = s1.try_recv() {
        seen1.push(e);
    }
    let mut seen2 = Vec::new();
    while let Some(e) = s2.try_recv() {
        seen2.push(e);
    }
    assert_eq!(
        seen1.first(),
        Some(&Event::Synced),
        "the marker follows the snapshot"
    );
    assert_eq!(
        &seen2[2..],
        &seen1[..],
        "every subscriber sees the same total order"
    );
    let mut view = View::default();
    for e in [
        Event::Asserted {
            id: "a".into(),
            value: route("1"),
        },
        Event::Asserted {
            id: "b".into(),
            value: route("2"),
        },
    ]
    .into_iter()
    .chain(seen1)
    {
        view.apply(e);
    }
    let truth: Vec<(Id, Route)> = ds.list(&Filter::All);
    assert_eq!(view.entries.into_iter().collect::<Vec<_>>(), truth);
    drop(o2);
}

#[tokio::test]
async fn a_slow_subscriber_is_told_it_lagged_and_converges() {
    let ds = Dataspace::with_capacity(8);
    let o = ds.owner("o");
    o.assert("keep", route("0")).unwrap();
    o.assert("gone", route("0")).unwrap();
    let mut slow = ds.subscribe::<Route>(Filter::All).unwrap();
    let mut view = View::default();
    for _ in 0..3 {
        view.apply(next(&mut slow).await);
    }
    assert!(view.synced && view.entries.contains_key(&Id::from("gone")));
    // Far more updates than the subscriber buffers, including a retraction of an
    // assertion it has seen.
    for i in 0..100u64 {
        o.assert(format!("n{i}"), route(&i.to_string())).unwrap();
    }
    o.retract::<Route>("gone").unwrap();
    let first = next(&mut slow).await;
    assert_eq!(first, Event::Lagged);
    view.apply(first);
    loop {
        let e = next(&mut slow).await;
        let done = e == Event::Synced;
        view.apply(e);
        if done {
            break;
        }
    }
    let truth: Vec<(Id, Route)> = ds.list(&Filter::All);
    assert_eq!(view.entries.clone().into_iter().collect::<Vec<_>>(), truth);
    assert!(
        !view.entries.contains_key(&Id::from("gone")),
        "the retraction is not lost"
    );
    o.assert("after", route("x")).unwrap();
    assert_eq!(
        next(&mut slow).await,
        Event::Asserted {
            id: "after".into(),
            value: route("x")
        }
    );
}

#[tokio::test]
async fn dropped_subscriptions_are_cleaned_up() {
    let ds = Dataspace::new();
    let o = ds.owner("o");
    let subs: Vec<_> = (0..10)
        .map(|i| {
            ds.subscribe::<Route>(if i % 2 == 0 {
                Filter::Exact("x".into())
            } else {
                Filter::Glob("*".into())
            })
            .unwrap()
        })
        .collect();
    assert_eq!(ds.subscriber_count(), 10);
    drop(subs);
    assert_eq!(ds.subscriber_count(), 0);
    o.assert("x", route("1")).unwrap();
}

#[tokio::test]
async fn a_type_tag_names_one_type() {
    #[derive(Debug, Clone, Serialize, Deserialize)]
    struct Impostor;
    impl Assertion for Impostor {
        const TYPE: &'static str = "test.route.v1";
    }
    let ds = Dataspace::new();
    ds.owner("o").assert("x", route("1")).unwrap();
    let err = ds.owner("p").assert("y", Impostor).unwrap_err();
    assert_eq!(
        err,
        DataspaceError::TagClash {
            type_tag: "test.route.v1"
        }
    );
    assert!(ds.subscribe::<Impostor>(Filter::All).is_err());
}
