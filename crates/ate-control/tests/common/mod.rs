//! A whole system in one process for lifecycle tests: a SQLite file store, in-process
//! nodes running real wasm guests, one shared `file://` snapshot store, the fleet, and
//! the lifecycle workflows with a short lease so interrupted operations settle quickly.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ate_control::{Fleet, FleetHandle, Lifecycle, LifecycleConfig};
use ate_dataspace::Dataspace;
use ate_model::{
    Actor, ActorRef, ActorStatus, ActorTemplate, Atespace, FieldSelector, Labels, NamespacedName,
    PoolSpec, TemplateSpec, Worker, WorkerPool,
};
use ate_node::{Node, NodeConfig};
use ate_seam::{LocalSeam, NodeDirectory, WorkerId, full_body};
use ate_store::{ListOptions, Store};
use ate_store_sqlite::SqliteStore;
use http_body_util::BodyExt;

pub const COUNTER: &str = include_str!("../../../../demo/counter/counter.wat");
pub const TICKER: &str = include_str!("../../../../demo/ticker/ticker.wat");

pub struct System {
    pub dir: tempfile::TempDir,
    pub store: Arc<dyn Store>,
    pub seam: LocalSeam,
    pub lifecycle: Lifecycle,
    pub fleet: Fleet,
    nodes: BTreeMap<String, Node>,
    _fleet: Option<FleetHandle>,
}

pub fn config() -> LifecycleConfig {
    LifecycleConfig {
        lease_ttl: Duration::from_secs(2),
        upload_wait: Duration::from_secs(5),
    }
}

impl System {
    /// A system over the store file and snapshot dir in `dir` (reused across restarts).
    pub fn open(dir: tempfile::TempDir) -> Self {
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir.path().join("ate.db")).expect("open store"));
        let seam = LocalSeam::new(Dataspace::new());
        let lifecycle = Lifecycle::new(
            store.clone(),
            Some(Arc::new(seam.clone()) as Arc<dyn NodeDirectory>),
            config(),
        );
        let fleet =
            Fleet::new(store.clone(), Arc::new(seam.clone())).with_lifecycle(lifecycle.clone());
        Self {
            dir,
            store,
            seam,
            lifecycle,
            fleet,
            nodes: BTreeMap::new(),
            _fleet: None,
        }
    }

    pub async fn new() -> Self {
        let s = Self::open(tempfile::tempdir().expect("tempdir"));
        s.store
            .create(Atespace {
                name: "team-a".into(),
                version: 0,
            })
            .await
            .expect("atespace");
        ate_control::ensure_system_atespaces(&s.store)
            .await
            .expect("system atespaces");
        s
    }

    pub fn snapshots(&self) -> PathBuf {
        self.dir.path().join("snapshots")
    }

    pub fn start_node(&mut self, name: &str, capacity: u32) {
        let mut config = NodeConfig::local(name, self.dir.path().join(name));
        config.snapshot_location = format!("file://{}", self.snapshots().display());
        config.capacity = capacity;
        let node = Node::start(config, &self.seam).expect("node starts");
        self.nodes.insert(name.into(), node);
    }

    /// The node goes away as a crashed daemon would: its registration and adverts vanish.
    pub fn kill_node(&mut self, name: &str) {
        self.nodes.remove(name);
    }

    pub fn run_fleet(&mut self) {
        self._fleet = Some(self.fleet.clone().start());
    }

    pub async fn pool(&self, replicas: u32) {
        self.store
            .create(WorkerPool {
                namespace: "default".into(),
                name: "wasm".into(),
                version: 0,
                spec: PoolSpec {
                    replicas,
                    sandbox_class: "wasm".into(),
                    labels: Labels::new(),
                    node_selector: Labels::new(),
                },
                status: Default::default(),
            })
            .await
            .expect("pool");
    }

    /// A system whose fleet has made `replicas` wasm workers on `nodes`.
    pub async fn with_workers(nodes: &[&str], replicas: u32) -> Self {
        let mut s = Self::new().await;
        for n in nodes {
            s.start_node(n, 16);
        }
        s.pool(replicas).await;
        s.run_fleet();
        wait_for("workers created", || async {
            s.workers().await.len() == replicas as usize
        })
        .await;
        s
    }

    /// The counter template (keeping `keep` snapshots per actor).
    pub async fn template(&self, name: &str, keep: u32) -> NamespacedName {
        let mut spec = self.wasm_spec("counter.wat", COUNTER);
        spec.snapshots.keep = keep;
        self.template_of(name, spec).await
    }

    /// The spec of a wasm template whose module is `text`, written as `file`.
    pub fn wasm_spec(&self, file: &str, text: &str) -> TemplateSpec {
        let module = self.dir.path().join(file);
        std::fs::write(&module, text).expect("module");
        TemplateSpec {
            sandbox_class: "wasm".into(),
            module: module.display().to_string(),
            ..Default::default()
        }
    }

    /// The ticker template: `count` server-sent events `interval_ms` apart per request.
    pub async fn ticker(&self, name: &str, count: u32, interval_ms: u32) -> NamespacedName {
        let mut spec = self.wasm_spec("ticker.wat", TICKER);
        spec.env = vec![
            ate_model::EnvVar {
                name: "TICK_COUNT".into(),
                value: count.to_string(),
            },
            ate_model::EnvVar {
                name: "TICK_INTERVAL_MS".into(),
                value: interval_ms.to_string(),
            },
        ];
        self.template_of(name, spec).await
    }

    /// Creates template `demo/<name>` with `spec`.
    pub async fn template_of(&self, name: &str, spec: TemplateSpec) -> NamespacedName {
        let t = ActorTemplate {
            namespace: "demo".into(),
            name: name.into(),
            version: 0,
            spec,
            status: Default::default(),
        };
        self.store.create(t).await.expect("template").id()
    }

    pub async fn actor(&self, id: &str, template: &NamespacedName) -> ActorRef {
        let a = Actor {
            atespace: "team-a".into(),
            id: id.into(),
            template: template.clone(),
            status: ActorStatus::Suspended,
            ..Default::default()
        };
        self.store.create(a).await.expect("actor").actor_ref()
    }

    pub async fn get(&self, aref: &ActorRef) -> Actor {
        self.store.get(&aref.key()).await.expect("get actor")
    }

    pub async fn workers(&self) -> Vec<Worker> {
        self.store
            .list_all::<Worker>(&ListOptions::default())
            .await
            .expect("workers")
    }

    /// Workers bound to `aref`.
    pub async fn bound_to(&self, aref: &ActorRef) -> Vec<Worker> {
        let sel = FieldSelector::eq([
            ("actor_atespace", aref.atespace.as_str()),
            ("actor_id", aref.id.as_str()),
        ]);
        self.store
            .list_all::<Worker>(&ListOptions::with_fields(sel))
            .await
            .expect("workers")
    }

    /// Sends one request to a running actor on its worker; returns the body (the count).
    pub async fn hit(&self, aref: &ActorRef) -> String {
        let body = self
            .request(aref)
            .await
            .collect()
            .await
            .expect("body")
            .to_bytes();
        String::from_utf8(body.to_vec()).expect("utf-8")
    }

    /// Sends one request to a running actor on its worker and returns the response body
    /// unread: the request stays in flight until the body ends or is dropped.
    pub async fn request(&self, aref: &ActorRef) -> ate_seam::Body {
        let a = self.get(aref).await;
        assert_eq!(a.status, ActorStatus::Running, "{aref} is not running");
        let p = a.worker.expect("running actor has a worker");
        let exec = self.seam.executor(&p.node_name).expect("node");
        let req = http::Request::builder()
            .uri("/")
            .body(full_body(""))
            .expect("request");
        let resp = exec
            .invoke(&WorkerId::new(&p.namespace, &p.pool, &p.name), aref, req)
            .await
            .expect("invoke");
        resp.into_body()
    }

    /// Every actor and worker agree: a RUNNING actor's worker is bound to it, every bound
    /// worker's actor is RUNNING on it, and nothing is in transition.
    pub async fn assert_consistent(&self) {
        let actors = self
            .store
            .list_all::<Actor>(&ListOptions::default())
            .await
            .expect("actors");
        let workers = self.workers().await;
        for a in &actors {
            assert!(
                matches!(
                    a.status,
                    ActorStatus::Running | ActorStatus::Suspended | ActorStatus::Paused
                ),
                "{} left {}",
                a.actor_ref(),
                a.status
            );
            if a.status == ActorStatus::Running {
                let p = a.worker.as_ref().expect("running actor has a worker");
                let key = format!("{}/{}/{}", p.namespace, p.pool, p.name);
                let w = workers.iter().find(|w| w.key() == key).expect("its worker");
                assert_eq!(
                    w.assignment.as_ref().map(|x| &x.actor),
                    Some(&a.actor_ref())
                );
            } else {
                assert!(a.worker.is_none(), "{} keeps a worker", a.actor_ref());
            }
        }
        for w in workers.iter().filter(|w| !w.is_free()) {
            let owner = &w.assignment.as_ref().expect("bound").actor;
            let a = actors
                .iter()
                .find(|a| &a.actor_ref() == owner)
                .unwrap_or_else(|| panic!("worker {} bound to nobody", w.key()));
            assert_eq!(
                a.status,
                ActorStatus::Running,
                "worker {} bound to a parked actor",
                w.key()
            );
        }
    }
}

pub async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not reached in 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
