//! `GetActorLogs` over real gRPC: lines a real wasm guest printed on two nodes come back
//! merged oldest first, and `follow` streams new ones.

use std::sync::Arc;
use std::time::Duration;

use ate_control::ControlService;
use ate_dataspace::Dataspace;
use ate_model::{Actor, ActorRef, Atespace, NamespacedName, TemplateSpec};
use ate_node::{Node, NodeConfig};
use ate_proto::ateapi as pb;
use ate_proto::ateapi::control_client::ControlClient;
use ate_seam::{LocalSeam, NodeDirectory, RunRequest, StopRequest, WorkerId, Workload, full_body};
use ate_store::Store;
use ate_store_sqlite::SqliteStore;
use http_body_util::BodyExt;

const COUNTER: &str = include_str!("../../../demo/counter/counter.wat");

async fn hit(seam: &LocalSeam, node: &str, w: &WorkerId, a: &ActorRef) {
    let exec = seam.executor(node).expect("executor");
    let resp = exec
        .invoke(w, a, http::Request::new(full_body("")))
        .await
        .expect("invoke");
    resp.into_body().collect().await.expect("body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_gathered_from_every_node_and_followed() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("ate.db")).unwrap());
    store
        .create(Atespace {
            name: "team-a".into(),
            version: 0,
        })
        .await
        .unwrap();
    let tmpl = NamespacedName::new("demo", "counter");
    store
        .create(Actor {
            atespace: "team-a".into(),
            id: "c1".into(),
            template: tmpl.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let seam = LocalSeam::new(Dataspace::new());
    let _a = Node::start(NodeConfig::local("node-a", dir.path().join("a")), &seam).unwrap();
    let _b = Node::start(NodeConfig::local("node-b", dir.path().join("b")), &seam).unwrap();
    let module = dir.path().join("counter.wat");
    std::fs::write(&module, COUNTER).unwrap();
    let workload = Workload {
        template: tmpl,
        spec: TemplateSpec {
            sandbox_class: "wasm".into(),
            module: module.display().to_string(),
            ..Default::default()
        },
    };
    let actor = ActorRef::new("team-a", "c1");
    let (w1, w2) = (
        WorkerId::new("default", "wasm", "w1"),
        WorkerId::new("default", "wasm", "w2"),
    );

    // Two requests on node-a, then a cold start on node-b (its count starts over).
    let run = |worker: &WorkerId| RunRequest {
        worker: worker.clone(),
        actor: actor.clone(),
        actor_uid: None,
        workload: workload.clone(),
    };
    seam.executor("node-a")
        .unwrap()
        .run(run(&w1))
        .await
        .unwrap();
    hit(&seam, "node-a", &w1, &actor).await;
    hit(&seam, "node-a", &w1, &actor).await;
    seam.executor("node-a")
        .unwrap()
        .stop(StopRequest {
            worker: w1.clone(),
            actor: actor.clone(),
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    seam.executor("node-b")
        .unwrap()
        .run(run(&w2))
        .await
        .unwrap();
    hit(&seam, "node-b", &w2, &actor).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let control = ControlService::new(store.clone()).with_nodes(Arc::new(seam.clone()));
    tokio::spawn(ate_control::serve(
        listener,
        control,
        std::future::pending(),
    ));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = ControlClient::new(channel);
    let req = |follow| pb::GetActorLogsRequest {
        actor_ref: Some(pb::ActorRef {
            atespace: "team-a".into(),
            name: "c1".into(),
        }),
        follow,
    };

    let mut past = client
        .get_actor_logs(req(false))
        .await
        .unwrap()
        .into_inner();
    let mut lines = Vec::new();
    while let Some(e) = past.message().await.unwrap() {
        lines.push(format!("{} {} {}", e.node_name, e.stream, e.text));
    }
    assert_eq!(
        lines,
        [
            "node-a stdout counter: request 1",
            "node-a stdout counter: request 2",
            "node-b stdout counter: request 1"
        ]
    );

    let mut live = client.get_actor_logs(req(true)).await.unwrap().into_inner();
    for _ in 0..3 {
        live.message().await.unwrap().expect("backlog line");
    }
    hit(&seam, "node-b", &w2, &actor).await;
    let next = tokio::time::timeout(Duration::from_secs(10), live.message())
        .await
        .expect("a followed line arrives")
        .unwrap()
        .expect("stream open");
    assert_eq!(next.text, "counter: request 2");

    let missing = pb::GetActorLogsRequest {
        actor_ref: Some(pb::ActorRef {
            atespace: "team-a".into(),
            name: "nope".into(),
        }),
        follow: false,
    };
    let err = client.get_actor_logs(missing).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
}
