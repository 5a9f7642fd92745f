//! The Control service over a real SQLite store and real gRPC: uniform validation (every
//! RPC, every bad name, bad selectors, oversize pages) and the status codes of the contract.

use std::sync::Arc;

use ate_model::{Actor, ActorStatus};
use ate_proto::ateapi as pb;
use ate_proto::ateapi::control_client::ControlClient;
use ate_store::Store;
use ate_store_sqlite::SqliteStore;
use tonic::Code;
use tonic::transport::Channel;

struct Server {
    client: ControlClient<Channel>,
    store: Arc<dyn Store>,
    addr: std::net::SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path().join("ate.db")).expect("open"));
    ate_control::ensure_system_atespaces(&store)
        .await
        .expect("system");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(ate_control::serve(
        listener,
        ate_control::ControlService::new(store.clone()),
        async {
            let _ = stopped.await;
        },
    ));
    let channel = channel(addr).await;
    let client = ControlClient::new(channel);
    Server {
        client,
        store,
        addr,
        _stop: stop,
        _dir: dir,
    }
}

async fn channel(addr: std::net::SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect")
}

fn aref(atespace: &str, name: &str) -> Option<pb::ActorRef> {
    Some(pb::ActorRef {
        atespace: atespace.into(),
        name: name.into(),
    })
}

fn template(name: &str, module: &str) -> pb::ActorTemplate {
    pb::ActorTemplate {
        namespace: "demo".into(),
        name: name.into(),
        spec: Some(pb::ActorTemplateSpec {
            sandbox_class: "wasm".into(),
            module: module.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[track_caller]
fn expect_code<T: std::fmt::Debug>(
    r: Result<tonic::Response<T>, tonic::Status>,
    code: Code,
    needle: &str,
) {
    match r {
        Err(s) => {
            assert_eq!(s.code(), code, "{s:?}");
            assert!(
                s.message().contains(needle),
                "{needle:?} not in {:?}",
                s.message()
            );
        }
        Ok(v) => panic!("expected {code:?}, got {v:?}"),
    }
}

async fn seed(s: &mut Server) {
    s.client
        .create_atespace(pb::CreateAtespaceRequest {
            name: "team-a".into(),
        })
        .await
        .expect("atespace");
    s.client
        .apply_actor_template(pb::ApplyActorTemplateRequest {
            template: Some(template("counter", "c.wasm")),
        })
        .await
        .expect("template");
    s.client
        .create_actor(pb::CreateActorRequest {
            actor_ref: aref("team-a", "test"),
            actor_template_namespace: "demo".into(),
            actor_template_name: "counter".into(),
            worker_selector: None,
        })
        .await
        .expect("actor");
}

#[tokio::test]
async fn every_actor_rpc_validates_its_reference() {
    let mut s = start().await;
    seed(&mut s).await;
    let bad_refs = [
        (aref("", "test"), "actor_ref.atespace is required"),
        (aref("team-a", ""), "actor_ref.name is required"),
        (aref("Team-A", "test"), "actor_ref.atespace"),
        (aref("team-a", "bad_name"), "actor_ref.name"),
        (aref("team-a", &"x".repeat(64)), "actor_ref.name"),
        (None, "actor_ref.atespace is required"),
    ];
    for (r, needle) in bad_refs {
        let c = &mut s.client;
        expect_code(
            c.get_actor(pb::GetActorRequest {
                actor_ref: r.clone(),
            })
            .await,
            Code::InvalidArgument,
            needle,
        );
        expect_code(
            c.create_actor(pb::CreateActorRequest {
                actor_ref: r.clone(),
                actor_template_namespace: "demo".into(),
                actor_template_name: "counter".into(),
                worker_selector: None,
            })
            .await,
            Code::InvalidArgument,
            needle,
        );
        expect_code(
            c.update_actor(pb::UpdateActorRequest {
                actor_ref: r.clone(),
                worker_selector: None,
            })
            .await,
            Code::InvalidArgument,
            needle,
        );
        expect_code(
            c.delete_actor(pb::DeleteActorRequest {
                actor_ref: r.clone(),
            })
            .await,
            Code::InvalidArgument,
            needle,
        );
        expect_code(
            c.resume_actor(pb::ResumeActorRequest {
                actor_ref: r.clone(),
                boot: false,
            })
            .await,
            Code::InvalidArgument,
            needle,
        );
        expect_code(
            c.suspend_actor(pb::SuspendActorRequest {
                actor_ref: r.clone(),
            })
            .await,
            Code::InvalidArgument,
            needle,
        );
        expect_code(
            c.pause_actor(pb::PauseActorRequest {
                actor_ref: r.clone(),
            })
            .await,
            Code::InvalidArgument,
            needle,
        );
    }
    // A valid reference to a missing actor is NotFound everywhere.
    let c = &mut s.client;
    expect_code(
        c.get_actor(pb::GetActorRequest {
            actor_ref: aref("team-a", "ghost"),
        })
        .await,
        Code::NotFound,
        "actor team-a/ghost not found",
    );
    expect_code(
        c.delete_actor(pb::DeleteActorRequest {
            actor_ref: aref("team-a", "ghost"),
        })
        .await,
        Code::NotFound,
        "not found",
    );
    expect_code(
        c.update_actor(pb::UpdateActorRequest {
            actor_ref: aref("team-a", "ghost"),
            worker_selector: None,
        })
        .await,
        Code::NotFound,
        "not found",
    );
    expect_code(
        c.resume_actor(pb::ResumeActorRequest {
            actor_ref: aref("team-a", "test"),
            boot: false,
        })
        .await,
        Code::Unimplemented,
        "no data plane",
    );
}

#[tokio::test]
async fn create_actor_checks_template_atespace_and_selector() {
    let mut s = start().await;
    seed(&mut s).await;
    let create =
        |atespace: &str, ns: &str, name: &str, sel: Option<pb::Selector>| pb::CreateActorRequest {
            actor_ref: aref(atespace, "x"),
            actor_template_namespace: ns.into(),
            actor_template_name: name.into(),
            worker_selector: sel,
        };
    let c = &mut s.client;
    expect_code(
        c.create_actor(create("team-a", "", "counter", None)).await,
        Code::InvalidArgument,
        "actor_template_namespace is required",
    );
    expect_code(
        c.create_actor(create("team-a", "demo", "", None)).await,
        Code::InvalidArgument,
        "actor_template_name is required",
    );
    expect_code(
        c.create_actor(create("team-a", "demo", "Bad!", None)).await,
        Code::InvalidArgument,
        "actor_template_name",
    );
    expect_code(
        c.create_actor(create("team-a", "demo", "missing", None))
            .await,
        Code::FailedPrecondition,
        "template demo/missing not found",
    );
    expect_code(
        c.create_actor(create("team-c", "demo", "counter", None))
            .await,
        Code::FailedPrecondition,
        "atespace team-c not found",
    );
    expect_code(
        c.create_actor(create("ate-golden", "demo", "counter", None))
            .await,
        Code::InvalidArgument,
        "reserved",
    );
    let bad_sel = |k: &str, v: &str| {
        Some(pb::Selector {
            match_labels: [(k.to_string(), v.to_string())].into(),
        })
    };
    expect_code(
        c.create_actor(create("team-a", "demo", "counter", bad_sel("bad key", "v")))
            .await,
        Code::InvalidArgument,
        "worker_selector",
    );
    expect_code(
        c.create_actor(create("team-a", "demo", "counter", bad_sel("k", "-v")))
            .await,
        Code::InvalidArgument,
        "worker_selector",
    );
    let eleven = Some(pb::Selector {
        match_labels: (0..11)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect(),
    });
    expect_code(
        c.create_actor(create("team-a", "demo", "counter", eleven))
            .await,
        Code::InvalidArgument,
        "at most 10",
    );
    let dup = pb::CreateActorRequest {
        actor_ref: aref("team-a", "test"),
        ..create("team-a", "demo", "counter", None)
    };
    expect_code(
        c.create_actor(dup).await,
        Code::AlreadyExists,
        "actor team-a/test already exists",
    );
    let made = c
        .create_actor(create("team-a", "demo", "counter", bad_sel("tier", "gold")))
        .await
        .expect("create")
        .into_inner()
        .actor
        .expect("actor in the response");
    assert_eq!(
        (made.version, made.status),
        (1, pb::actor::Status::Suspended as i32)
    );
    assert_eq!(made.atespace, "team-a");
}

#[tokio::test]
async fn atespace_rpcs() {
    let mut s = start().await;
    seed(&mut s).await;
    let c = &mut s.client;
    for (name, needle) in [
        ("", "name is required"),
        ("Team", "name"),
        ("a_b", "name"),
        (&"a".repeat(64), "name"),
    ] {
        expect_code(
            c.create_atespace(pb::CreateAtespaceRequest { name: name.into() })
                .await,
            Code::InvalidArgument,
            needle,
        );
        expect_code(
            c.get_atespace(pb::GetAtespaceRequest { name: name.into() })
                .await,
            Code::InvalidArgument,
            needle,
        );
        expect_code(
            c.delete_atespace(pb::DeleteAtespaceRequest { name: name.into() })
                .await,
            Code::InvalidArgument,
            needle,
        );
    }
    expect_code(
        c.create_atespace(pb::CreateAtespaceRequest {
            name: "ate-mine".into(),
        })
        .await,
        Code::InvalidArgument,
        "reserved",
    );
    expect_code(
        c.delete_atespace(pb::DeleteAtespaceRequest {
            name: "ate-golden".into(),
        })
        .await,
        Code::InvalidArgument,
        "reserved",
    );
    expect_code(
        c.create_atespace(pb::CreateAtespaceRequest {
            name: "team-a".into(),
        })
        .await,
        Code::AlreadyExists,
        "atespace team-a already exists",
    );
    expect_code(
        c.get_atespace(pb::GetAtespaceRequest {
            name: "nope".into(),
        })
        .await,
        Code::NotFound,
        "atespace nope not found",
    );
    expect_code(
        c.delete_atespace(pb::DeleteAtespaceRequest {
            name: "team-a".into(),
        })
        .await,
        Code::FailedPrecondition,
        "atespace team-a is not empty",
    );
    let golden = c
        .get_atespace(pb::GetAtespaceRequest {
            name: "ate-golden".into(),
        })
        .await
        .expect("system atespace");
    assert_eq!(
        golden.into_inner().atespace.expect("atespace").name,
        "ate-golden"
    );
}

#[tokio::test]
async fn list_validation_and_pagination() {
    let mut s = start().await;
    seed(&mut s).await;
    for i in 0..25 {
        s.client
            .create_actor(pb::CreateActorRequest {
                actor_ref: aref("team-a", &format!("a{i:02}")),
                actor_template_namespace: "demo".into(),
                actor_template_name: "counter".into(),
                worker_selector: None,
            })
            .await
            .expect("create");
    }
    let c = &mut s.client;
    let list =
        |page_size: i32, page_token: &str, atespace: &str, sel: &str| pb::ListActorsRequest {
            page_size,
            page_token: page_token.into(),
            atespace: atespace.into(),
            field_selector: sel.into(),
        };
    expect_code(
        c.list_actors(list(1001, "", "", "")).await,
        Code::InvalidArgument,
        "page_size",
    );
    expect_code(
        c.list_actors(list(-1, "", "", "")).await,
        Code::InvalidArgument,
        "page_size",
    );
    expect_code(
        c.list_actors(list(0, "", "Bad", "")).await,
        Code::InvalidArgument,
        "atespace",
    );
    expect_code(
        c.list_actors(list(0, "zz-not-a-token", "", "")).await,
        Code::InvalidArgument,
        "page_token",
    );
    expect_code(
        c.list_actors(list(0, "", "", "status")).await,
        Code::InvalidArgument,
        "field_selector",
    );
    expect_code(
        c.list_actors(list(0, "", "", "colour=red")).await,
        Code::InvalidArgument,
        "supported fields: atespace",
    );
    expect_code(
        c.list_workers(pb::ListWorkersRequest {
            field_selector: "colour=red".into(),
        })
        .await,
        Code::InvalidArgument,
        "supported fields",
    );
    expect_code(
        c.list_workers(pb::ListWorkersRequest {
            field_selector: "pool".into(),
        })
        .await,
        Code::InvalidArgument,
        "field_selector",
    );

    let all = c
        .list_actors(list(0, "", "team-a", ""))
        .await
        .expect("list")
        .into_inner();
    assert_eq!((all.actors.len(), all.next_page_token.as_str()), (26, ""));
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_actors(list(7, &token, "", ""))
            .await
            .expect("page")
            .into_inner();
        assert!(page.actors.len() <= 7);
        seen.extend(page.actors.into_iter().map(|a| a.actor_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 26);
    let suspended = c
        .list_actors(list(0, "", "", "status=SUSPENDED,template=demo/counter"))
        .await
        .expect("list");
    assert_eq!(suspended.into_inner().actors.len(), 26);
    let workers = c
        .list_workers(pb::ListWorkersRequest {
            field_selector: "pool=cpu,actor_id=".into(),
        })
        .await
        .expect("list");
    assert!(workers.into_inner().workers.is_empty());
}

#[tokio::test]
async fn update_and_delete_follow_the_state_rules() {
    let mut s = start().await;
    seed(&mut s).await;
    let sel = Some(pb::Selector {
        match_labels: [("tier".to_string(), "gold".to_string())].into(),
    });
    let updated = s
        .client
        .update_actor(pb::UpdateActorRequest {
            actor_ref: aref("team-a", "test"),
            worker_selector: sel,
        })
        .await
        .expect("update")
        .into_inner()
        .actor
        .expect("actor");
    assert_eq!(updated.version, 2);
    assert_eq!(
        updated.worker_selector.expect("selector").match_labels["tier"],
        "gold"
    );

    // An actor that is not SUSPENDED cannot be deleted.
    let mut a: Actor = s.store.get("team-a/test").await.expect("get");
    a.status = ActorStatus::Running;
    s.store.update(a).await.expect("update");
    expect_code(
        s.client
            .delete_actor(pb::DeleteActorRequest {
                actor_ref: aref("team-a", "test"),
            })
            .await,
        Code::FailedPrecondition,
        "actor team-a/test is RUNNING: only a suspended or paused actor can be deleted",
    );
    let mut a: Actor = s.store.get("team-a/test").await.expect("get");
    a.status = ActorStatus::Suspended;
    s.store.update(a).await.expect("update");
    s.client
        .delete_actor(pb::DeleteActorRequest {
            actor_ref: aref("team-a", "test"),
        })
        .await
        .expect("delete");
    s.client
        .delete_atespace(pb::DeleteAtespaceRequest {
            name: "team-a".into(),
        })
        .await
        .expect("now empty");
}

#[tokio::test]
async fn templates_are_immutable_and_validated() {
    let mut s = start().await;
    seed(&mut s).await;
    let c = &mut s.client;
    let same = c
        .apply_actor_template(pb::ApplyActorTemplateRequest {
            template: Some(template("counter", "c.wasm")),
        })
        .await
        .expect("identical apply")
        .into_inner();
    assert!(!same.created);
    expect_code(
        c.apply_actor_template(pb::ApplyActorTemplateRequest {
            template: Some(template("counter", "other.wasm")),
        })
        .await,
        Code::FailedPrecondition,
        "immutable",
    );
    expect_code(
        c.apply_actor_template(pb::ApplyActorTemplateRequest { template: None })
            .await,
        Code::InvalidArgument,
        "template is required",
    );
    let mut bad = template("t2", "x.wasm");
    bad.spec.as_mut().expect("spec").sandbox_class = "gvisor".into();
    expect_code(
        c.apply_actor_template(pb::ApplyActorTemplateRequest {
            template: Some(bad),
        })
        .await,
        Code::InvalidArgument,
        "spec.sandboxClass",
    );
    let mut bad = template("t3", "x.wasm");
    bad.spec.as_mut().expect("spec").readiness = Some(pb::ReadinessProbe {
        path: "/".into(),
        port: 70000,
        ..Default::default()
    });
    expect_code(
        c.apply_actor_template(pb::ApplyActorTemplateRequest {
            template: Some(bad),
        })
        .await,
        Code::InvalidArgument,
        "spec.readiness.port",
    );
    let mut bad = template("t4", "x.wasm");
    let spec = bad.spec.as_mut().expect("spec");
    spec.sandbox_class = "process".into();
    spec.command = vec!["/bin/app".into()];
    spec.rootfs = "images/app.tar".into();
    expect_code(
        c.apply_actor_template(pb::ApplyActorTemplateRequest {
            template: Some(bad),
        })
        .await,
        Code::InvalidArgument,
        "spec.rootfs",
    );
    expect_code(
        c.apply_actor_template(pb::ApplyActorTemplateRequest {
            template: Some(template("Bad", "x")),
        })
        .await,
        Code::InvalidArgument,
        "metadata.name",
    );
    expect_code(
        c.get_actor_template(pb::GetActorTemplateRequest {
            namespace: "".into(),
            name: "counter".into(),
        })
        .await,
        Code::InvalidArgument,
        "namespace is required",
    );
    expect_code(
        c.get_actor_template(pb::GetActorTemplateRequest {
            namespace: "demo".into(),
            name: "nope".into(),
        })
        .await,
        Code::NotFound,
        "template demo/nope not found",
    );
    expect_code(
        c.delete_actor_template(pb::DeleteActorTemplateRequest {
            namespace: "demo".into(),
            name: "counter".into(),
        })
        .await,
        Code::FailedPrecondition,
        "used by actors",
    );
    let listed = c
        .list_actor_templates(pb::ListActorTemplatesRequest {
            namespace: "demo".into(),
        })
        .await
        .expect("list");
    assert_eq!(listed.into_inner().templates.len(), 1);
}

#[tokio::test]
async fn pools_apply_create_configure_unchanged() {
    let mut s = start().await;
    let pool = |replicas: u32, class: &str| pb::ApplyWorkerPoolRequest {
        pool: Some(pb::WorkerPool {
            namespace: "default".into(),
            name: "cpu".into(),
            spec: Some(pb::WorkerPoolSpec {
                replicas,
                sandbox_class: class.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    let c = &mut s.client;
    assert_eq!(
        c.apply_worker_pool(pool(2, "wasm"))
            .await
            .expect("apply")
            .into_inner()
            .outcome,
        "created"
    );
    assert_eq!(
        c.apply_worker_pool(pool(2, "wasm"))
            .await
            .expect("apply")
            .into_inner()
            .outcome,
        "unchanged"
    );
    let r = c
        .apply_worker_pool(pool(4, "wasm"))
        .await
        .expect("apply")
        .into_inner();
    assert_eq!(r.outcome, "configured");
    assert_eq!(r.pool.expect("pool").spec.expect("spec").replicas, 4);
    expect_code(
        c.apply_worker_pool(pool(1, "gvisor")).await,
        Code::InvalidArgument,
        "spec.sandboxClass",
    );
    expect_code(
        c.apply_worker_pool(pool(1_000_000, "wasm")).await,
        Code::InvalidArgument,
        "spec.replicas",
    );
    let got = c
        .get_worker_pool(pb::GetWorkerPoolRequest {
            namespace: "default".into(),
            name: "cpu".into(),
        })
        .await
        .expect("get");
    assert_eq!(got.into_inner().version, 2);
    c.delete_worker_pool(pb::DeleteWorkerPoolRequest {
        namespace: "default".into(),
        name: "cpu".into(),
    })
    .await
    .expect("delete");
    expect_code(
        c.get_worker_pool(pb::GetWorkerPoolRequest {
            namespace: "default".into(),
            name: "cpu".into(),
        })
        .await,
        Code::NotFound,
        "pool default/cpu not found",
    );
    assert!(
        c.list_nodes(pb::ListNodesRequest {})
            .await
            .expect("nodes")
            .into_inner()
            .nodes
            .is_empty()
    );
}

#[tokio::test]
async fn health_service_reports_serving() {
    let s = start().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel(s.addr).await);
    let r = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "ateapi.Control".into(),
        })
        .await
        .expect("check")
        .into_inner();
    assert_eq!(
        r.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}
