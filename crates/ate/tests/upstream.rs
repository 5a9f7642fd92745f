//! Wire compatibility with the upstream control API: a client generated from the upstream's
//! proto (`ate-upstream-compat`, written without ate's proto) runs every upstream `Control`
//! RPC against a real `ate up` and checks what it decodes. A response ate shapes differently
//! from the upstream (a bare `Actor` where the upstream sends `GetActorResponse{actor}`, a
//! renumbered field) decodes to the wrong content here, or not at all, and fails the test.
#![allow(clippy::unwrap_used)]

mod common;

use ate_proto::bearer::Bearer;
use ate_upstream_compat::ateapi as up;
use ate_upstream_compat::ateapi::control_client::ControlClient;
use common::Up;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

type Control = ControlClient<InterceptedService<Channel, Bearer>>;

const ATESPACE: &str = "upstream";
const ACTOR: &str = "compat";

async fn client(endpoint: &str, token: &str) -> Control {
    let channel = Channel::from_shared(endpoint.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();
    // The bearer token is metadata, not part of the messages under test.
    ControlClient::with_interceptor(channel, Bearer::new(Some(token)).unwrap())
}

fn aref(name: &str) -> Option<up::ActorRef> {
    Some(up::ActorRef {
        atespace: ATESPACE.into(),
        name: name.into(),
    })
}

fn status(s: up::actor::Status) -> i32 {
    s as i32
}

/// The actor in a response, which the upstream always wraps.
#[track_caller]
fn actor(a: Option<up::Actor>) -> up::Actor {
    let a = a.expect("the response carries an actor");
    assert_eq!(
        (a.atespace.as_str(), a.actor_id.as_str()),
        (ATESPACE, ACTOR),
        "{a:?}"
    );
    assert_eq!(
        (
            a.actor_template_namespace.as_str(),
            a.actor_template_name.as_str()
        ),
        ("demo", "counter"),
        "{a:?}"
    );
    a
}

#[track_caller]
fn on_worker(a: &up::Actor) {
    assert_eq!(a.status, status(up::actor::Status::Running), "{a:?}");
    for (field, value) in [
        ("ateom_pod_namespace", &a.ateom_pod_namespace),
        ("ateom_pod_name", &a.ateom_pod_name),
        ("ateom_pod_ip", &a.ateom_pod_ip),
        ("worker_pool_name", &a.worker_pool_name),
    ] {
        assert!(!value.is_empty(), "{field} empty on a running actor: {a:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_upstream_rpc_through_an_upstream_client() {
    let dir = tempfile::tempdir().unwrap();
    let server = Up::start(dir.path());
    let mut c = client(&server.endpoint, &server.admin_token()).await;

    // CreateAtespace, GetAtespace, ListAtespaces.
    let made = c
        .create_atespace(up::CreateAtespaceRequest {
            name: ATESPACE.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(made.atespace.expect("atespace").name, ATESPACE);
    let got = c
        .get_atespace(up::GetAtespaceRequest {
            name: ATESPACE.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.atespace.expect("atespace").name, ATESPACE);
    let all = c
        .list_atespaces(up::ListAtespacesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(all.atespaces.iter().any(|a| a.name == ATESPACE), "{all:?}");

    // CreateActor: a new actor is SUSPENDED at version 1; a second create is AlreadyExists.
    let create = up::CreateActorRequest {
        actor_ref: aref(ACTOR),
        actor_template_namespace: "demo".into(),
        actor_template_name: "counter".into(),
        worker_selector: None,
    };
    let a = actor(
        c.create_actor(create.clone())
            .await
            .unwrap()
            .into_inner()
            .actor,
    );
    assert_eq!(
        (a.version, a.status),
        (1, status(up::actor::Status::Suspended))
    );
    let again = c.create_actor(create).await.unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists, "{again:?}");

    // GetActor.
    let a = actor(
        c.get_actor(up::GetActorRequest {
            actor_ref: aref(ACTOR),
        })
        .await
        .unwrap()
        .into_inner()
        .actor,
    );
    assert_eq!(
        (a.version, a.status),
        (1, status(up::actor::Status::Suspended))
    );

    // UpdateActor: the selector replaces the old one, and clearing it clears it (a selector
    // no pool matches would keep the actor from resuming below).
    let tier = up::Selector {
        match_labels: [("tier".to_string(), "gold".to_string())].into(),
    };
    let a = actor(
        c.update_actor(up::UpdateActorRequest {
            actor_ref: aref(ACTOR),
            worker_selector: Some(tier.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .actor,
    );
    assert_eq!(a.worker_selector, Some(tier));
    assert_eq!(a.version, 2);
    let a = actor(
        c.update_actor(up::UpdateActorRequest {
            actor_ref: aref(ACTOR),
            worker_selector: None,
        })
        .await
        .unwrap()
        .into_inner()
        .actor,
    );
    assert!(
        a.worker_selector.is_none_or(|s| s.match_labels.is_empty()),
        "selector not cleared"
    );

    // ListActors, one atespace.
    let listed = c
        .list_actors(up::ListActorsRequest {
            page_size: 10,
            page_token: String::new(),
            atespace: ATESPACE.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.actors.len(), 1, "{listed:?}");
    actor(listed.actors.into_iter().next());
    assert!(listed.next_page_token.is_empty());

    // ResumeActor: RUNNING on a worker, which ListWorkers shows holding it.
    let running = actor(
        c.resume_actor(up::ResumeActorRequest {
            actor_ref: aref(ACTOR),
            boot: false,
        })
        .await
        .unwrap()
        .into_inner()
        .actor,
    );
    on_worker(&running);
    let workers = c
        .list_workers(up::ListWorkersRequest {})
        .await
        .unwrap()
        .into_inner()
        .workers;
    let w = workers
        .iter()
        .find(|w| w.actor_id == ACTOR)
        .unwrap_or_else(|| panic!("no worker holds the actor: {workers:?}"));
    assert_eq!(
        (
            w.actor_atespace.as_str(),
            w.actor_namespace.as_str(),
            w.actor_template.as_str(),
            w.worker_pod.as_str(),
            w.worker_pool.as_str(),
            w.ip.as_str(),
        ),
        (
            ATESPACE,
            "demo",
            "counter",
            running.ateom_pod_name.as_str(),
            running.worker_pool_name.as_str(),
            running.ateom_pod_ip.as_str(),
        ),
        "{w:?}"
    );

    // PauseActor: PAUSED, worker freed, a LOCAL snapshot.
    let paused = actor(
        c.pause_actor(up::PauseActorRequest {
            actor_ref: aref(ACTOR),
        })
        .await
        .unwrap()
        .into_inner()
        .actor,
    );
    assert_eq!(
        paused.status,
        status(up::actor::Status::Paused),
        "{paused:?}"
    );
    assert!(paused.ateom_pod_name.is_empty(), "{paused:?}");
    let snapshot = paused.latest_snapshot_info.expect("snapshot info");
    assert_eq!(snapshot.r#type, up::SnapshotType::Local as i32);
    match snapshot.data {
        Some(up::snapshot_info::Data::Local(l)) => {
            assert!(!l.snapshot_prefix.is_empty(), "{l:?}");
        }
        other => panic!("expected a local snapshot, got {other:?}"),
    }

    // ResumeActor from PAUSED, then SuspendActor: SUSPENDED with an EXTERNAL snapshot.
    on_worker(&actor(
        c.resume_actor(up::ResumeActorRequest {
            actor_ref: aref(ACTOR),
            boot: false,
        })
        .await
        .unwrap()
        .into_inner()
        .actor,
    ));
    let suspended = actor(
        c.suspend_actor(up::SuspendActorRequest {
            actor_ref: aref(ACTOR),
        })
        .await
        .unwrap()
        .into_inner()
        .actor,
    );
    assert_eq!(
        suspended.status,
        status(up::actor::Status::Suspended),
        "{suspended:?}"
    );
    assert!(suspended.ateom_pod_name.is_empty(), "{suspended:?}");
    let snapshot = suspended.latest_snapshot_info.expect("snapshot info");
    assert_eq!(snapshot.r#type, up::SnapshotType::External as i32);
    match snapshot.data {
        Some(up::snapshot_info::Data::External(e)) => {
            assert!(!e.snapshot_uri_prefix.is_empty(), "{e:?}");
        }
        other => panic!("expected an external snapshot, got {other:?}"),
    }

    // DeleteActor, then GetActor is NotFound and ListActors empty.
    c.delete_actor(up::DeleteActorRequest {
        actor_ref: aref(ACTOR),
    })
    .await
    .unwrap();
    let gone = c
        .get_actor(up::GetActorRequest {
            actor_ref: aref(ACTOR),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound, "{gone:?}");
    let listed = c
        .list_actors(up::ListActorsRequest {
            atespace: ATESPACE.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.actors.is_empty(), "{listed:?}");

    // DeleteAtespace, then GetAtespace is NotFound and ListAtespaces leaves it out.
    c.delete_atespace(up::DeleteAtespaceRequest {
        name: ATESPACE.into(),
    })
    .await
    .unwrap();
    let gone = c
        .get_atespace(up::GetAtespaceRequest {
            name: ATESPACE.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound, "{gone:?}");
    let all = c
        .list_atespaces(up::ListAtespacesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(all.atespaces.iter().all(|a| a.name != ATESPACE), "{all:?}");

    // DebugClear (drop the whole database, unauthenticated) is deliberately not served.
    let refused = c.debug_clear(up::DebugClearRequest {}).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unimplemented, "{refused:?}");

    server.stop();
}
