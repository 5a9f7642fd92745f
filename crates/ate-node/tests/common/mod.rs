//! What the node tests share: nodes in one process on one seam and one snapshot store, the
//! demo workloads, the seam requests, and the request the refusal tests send.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use ate_dataspace::Dataspace;
use ate_model::{ActorRef, EnvVar, NamespacedName, TemplateSpec};
use ate_node::{Node, NodeConfig};
use ate_seam::*;
use bytes::Bytes;
use http_body_util::BodyExt;

pub const COUNTER: &str = include_str!("../../../../demo/counter/counter.wat");
pub const TICKER: &str = include_str!("../../../../demo/ticker/ticker.wat");

/// Nodes in one process sharing a seam, a dataspace and a snapshot store.
pub struct Fixture {
    pub seam: LocalSeam,
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Self {
        Self {
            seam: LocalSeam::new(Dataspace::new()),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn node(&self, name: &str) -> Node {
        let mut config = NodeConfig::local(name, self.dir.path().join(name));
        config.snapshot_location =
            format!("file://{}", self.dir.path().join("snapshots").display());
        Node::start(config, &self.seam).unwrap()
    }

    pub fn exec(&self, node: &str) -> Arc<dyn NodeExecutor> {
        self.seam.executor(node).unwrap()
    }

    pub fn ds(&self) -> Dataspace {
        self.seam.dataspace().clone()
    }

    /// The template `demo/<name>` running `source`, adjusted by `tweak`.
    pub fn workload(
        &self,
        name: &str,
        source: &str,
        tweak: impl FnOnce(&mut TemplateSpec),
    ) -> Workload {
        let module = self.dir.path().join(format!("{name}.wat"));
        std::fs::write(&module, source).unwrap();
        let mut spec = TemplateSpec {
            sandbox_class: "wasm".into(),
            module: module.display().to_string(),
            ..Default::default()
        };
        spec.limits.request_budget = ate_model::Duration(Duration::from_secs(10));
        tweak(&mut spec);
        Workload {
            template: NamespacedName::new("demo", name),
            spec,
        }
    }
}

pub fn worker(name: &str) -> WorkerId {
    WorkerId::new("default", "wasm", name)
}

pub fn run(w: &WorkerId, a: &ActorRef, workload: &Workload) -> RunRequest {
    RunRequest {
        worker: w.clone(),
        actor: a.clone(),
        actor_uid: None,
        workload: workload.clone(),
    }
}

pub fn checkpoint(
    w: &WorkerId,
    a: &ActorRef,
    workload: &Workload,
    seal: bool,
) -> CheckpointRequest {
    CheckpointRequest {
        worker: w.clone(),
        actor: a.clone(),
        workload: workload.clone(),
        location: String::new(),
        id: ate_snapshots::new_snapshot_id(),
        scope: ate_model::SnapshotScope::Full,
        durability: Durability::Durable,
        seal,
        evict: false,
    }
}

pub fn restore(w: &WorkerId, a: &ActorRef, workload: &Workload, s: &SnapshotRef) -> RestoreRequest {
    RestoreRequest {
        worker: w.clone(),
        actor: a.clone(),
        actor_uid: None,
        workload: workload.clone(),
        snapshot: s.clone(),
    }
}

pub fn stop(w: &WorkerId, a: &ActorRef) -> StopRequest {
    StopRequest {
        worker: w.clone(),
        actor: a.clone(),
    }
}

/// The ticker's environment: `count` events, `interval_ms` apart.
pub fn ticks(count: u32, interval_ms: u32) -> Vec<EnvVar> {
    vec![
        EnvVar {
            name: "TICK_COUNT".into(),
            value: count.to_string(),
        },
        EnvVar {
            name: "TICK_INTERVAL_MS".into(),
            value: interval_ms.to_string(),
        },
    ]
}

pub fn get(uri: &str) -> http::Request<Body> {
    http::Request::builder()
        .uri(uri)
        .body(empty_body())
        .unwrap()
}

/// The request the refusal tests send, recognisable when handed back.
pub fn tagged_request(body: Body) -> http::Request<Body> {
    http::Request::builder()
        .method(http::Method::POST)
        .uri("/count?x=1&y=two")
        .header("content-type", "text/plain")
        .header("x-trace", "abc-123")
        .body(body)
        .unwrap()
}

/// Asserts `result` is a `NotHosted` refusal handing back the request `tagged_request`
/// built, with `body`, all of it; returns the error.
pub async fn assert_handed_back(
    result: Result<http::Response<Body>, InvokeError>,
    body: &[u8],
) -> SeamError {
    let err = match result {
        Ok(resp) => panic!("expected a refusal, got {}", resp.status()),
        Err(e) => e,
    };
    assert!(
        matches!(err.error, SeamError::NotHosted { .. }),
        "{}",
        err.error
    );
    let (parts, back) = err
        .request
        .expect("the request is handed back")
        .into_parts();
    assert_eq!(parts.method, http::Method::POST);
    assert_eq!(parts.uri, "/count?x=1&y=two");
    assert_eq!(parts.headers.len(), 2, "{:?}", parts.headers);
    assert_eq!(parts.headers["content-type"], "text/plain");
    assert_eq!(parts.headers["x-trace"], "abc-123");
    assert_eq!(back.collect().await.unwrap().to_bytes(), body);
    err.error
}

/// One request; its status, headers and body.
pub async fn call(
    exec: &Arc<dyn NodeExecutor>,
    w: &WorkerId,
    a: &ActorRef,
    req: http::Request<Body>,
) -> (u16, http::HeaderMap, Bytes) {
    let resp = match exec.invoke(w, a, req).await {
        Ok(r) => r,
        Err(e) => panic!("invoke failed: {}", e.error),
    };
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status.as_u16(), parts.headers, body)
}

pub async fn count(exec: &Arc<dyn NodeExecutor>, w: &WorkerId, a: &ActorRef) -> String {
    let (status, _, body) = call(exec, w, a, get("/count")).await;
    assert_eq!(status, 200);
    String::from_utf8(body.to_vec()).unwrap()
}
