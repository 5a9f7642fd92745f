//! Mutual TLS between real `ate serve` processes: a CA made with `ate admin init-ca`,
//! certificates with `ate admin issue-cert`, a control plane and node daemons with
//! `--tls-dir`. Registrations are observed the way a router sees them (Registry.Watch with
//! the router's certificate), never through the control API.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ate_dataspace::{Assertion, Dataspace, Filter};
use ate_proto::ateapi as api;
use ate_proto::ateapi::control_client::ControlClient;
use ate_proto::atenode as pb;
use ate_proto::atenode::node_client::NodeClient;
use ate_proto::atenode::registry_client::RegistryClient;
use ate_seam::{Dialer, NodeRegistration};
use ate_tls::{PeerIdentity, TlsConnector, TlsDir};
use common::{ATE, Up, http_get};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

/// A CA and the certificates of a small cluster, under one temp dir.
struct Pki {
    root: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let pki = Self {
            root: tempfile::tempdir().unwrap(),
        };
        pki.admin(&["init-ca", "--dir", &pki.path("ca")]);
        pki
    }

    fn path(&self, name: &str) -> String {
        self.root.path().join(name).display().to_string()
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// `ate admin ARGS`, which must succeed.
    fn admin(&self, args: &[&str]) {
        let out = Command::new(ATE).arg("admin").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "ate admin {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Certificates of `ca` for a control plane, node n1 and a router.
    fn cluster(&self) -> (PathBuf, PathBuf, PathBuf) {
        (
            self.issue("ca", "control", None, "control"),
            self.issue("ca", "node", Some("n1"), "n1"),
            self.issue("ca", "router", None, "router"),
        )
    }

    /// Issues a certificate of `ca` for `role` (and node `name`) into the dir `out`.
    fn issue(&self, ca: &str, role: &str, name: Option<&str>, out: &str) -> PathBuf {
        let (ca, out_path) = (self.path(ca), self.path(out));
        let mut args = vec![
            "issue-cert",
            "--ca",
            &ca,
            "--role",
            role,
            "--out",
            &out_path,
        ];
        if let Some(n) = name {
            args.extend(["--name", n]);
        }
        self.admin(&args);
        self.dir(out)
    }
}

/// The control plane: `ate serve --roles api` on SQLite in `dir`, with `tls`.
fn control(dir: &Path, tls: &Path) -> (Up, String) {
    let store = format!("sqlite://{}", dir.join("ate.db").display());
    let tls = tls.display().to_string();
    let up = Up::serve(
        &dir.join("control"),
        &["--roles", "api", "--store", &store, "--tls-dir", &tls],
    );
    assert!(up.endpoint.starts_with("https://"), "{}", up.endpoint);
    let addr = up.endpoint.trim_start_matches("https://").to_string();
    (up, addr)
}

/// A node daemon process whose output the test reads.
struct Node {
    child: Child,
    log: Arc<Mutex<String>>,
    /// `host:port` of its node service, once printed.
    service: Option<String>,
}

impl Node {
    /// `ate serve --roles node` named `name`, registering with `control`, with `tls` if any.
    fn start(dir: &Path, name: &str, control: &str, tls: Option<&Path>) -> Self {
        let mut cmd = Command::new(ATE);
        cmd.args(["serve", "--roles", "node", "--node-name", name])
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(["--control", control, "--liveness-timeout", "3s"])
            .args(["--runc", "off", "--criu", "off", "--data-dir"])
            .arg(dir.join(name));
        if let Some(tls) = tls {
            cmd.arg("--tls-dir").arg(tls);
        }
        let mut child = cmd
            .env("RUST_LOG", "warn,ate_seam=info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let err = BufReader::new(child.stderr.take().unwrap());
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in err.lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut service = None;
        for line in lines.by_ref().map_while(Result::ok) {
            if let Some(rest) = line.trim().strip_prefix("node service") {
                let url = rest.split_whitespace().next().unwrap_or_default();
                service = Some(url.trim_start_matches("https://").to_string());
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Self {
            child,
            log,
            service,
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log shows `text`.
    fn wait_log(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.log().contains(text) {
            assert!(
                Instant::now() < deadline,
                "no {text:?} in the node's log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A channel to `peer` at `addr` as the holder of the TLS dir `tls`.
async fn dial(tls: &Path, addr: &str, peer: &PeerIdentity) -> Channel {
    Dialer::tls(TlsDir::open(tls).unwrap())
        .connect(addr, peer)
        .await
        .unwrap()
}

/// The names of the nodes registered, as a router following the control plane sees them.
fn registered(view: &Dataspace) -> Vec<String> {
    let mut names: Vec<String> = view
        .list::<NodeRegistration>(&Filter::All)
        .into_iter()
        .map(|(_, r)| r.name)
        .collect();
    names.sort();
    names
}

/// What the registry answers a `Register` that says hello as `node`.
async fn register_as(channel: Channel, node: &str) -> tonic::Status {
    let hello = pb::NodeMessage {
        message: Some(pb::node_message::Message::Hello(pb::Hello {
            node: node.into(),
            incarnation: "test".into(),
            generation: 0,
            liveness_timeout_ms: 3000,
        })),
    };
    let outbound = tonic::codegen::tokio_stream::iter(vec![hello]);
    match RegistryClient::new(channel).register(outbound).await {
        Err(status) => status,
        Ok(answer) => match answer.into_inner().message().await {
            Err(status) => status,
            Ok(m) => panic!("{node} registered: {m:?}"),
        },
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn only_nodes_with_their_own_certificate_register() {
    let pki = Pki::new();
    let (ctl, n1, router) = pki.cluster();
    // A node of another CA, trusting ours: our control plane must refuse its certificate.
    pki.admin(&["init-ca", "--dir", &pki.path("other-ca")]);
    let stranger = pki.issue("other-ca", "node", Some("n2"), "n2");
    std::fs::copy(pki.dir("ca").join("trust.crt"), stranger.join("ca.crt")).unwrap();

    let (_control, addr) = control(pki.root.path(), &ctl);
    let (view, mut follower) = ate_seam::follow_control_with(
        vec![addr.clone()],
        &ate_seam::carry::ROUTER_TYPES,
        Dialer::tls(TlsDir::open(&router).unwrap()),
    );
    follower.synced().await;

    let good = Node::start(pki.root.path(), "n1", &addr, Some(&n1));
    let other_ca = Node::start(pki.root.path(), "n2", &addr, Some(&stranger));
    let plaintext = Node::start(pki.root.path(), "n0", &addr, None);
    // Another node's certificate: the daemon will not even start with it.
    let borrowed = Node::start(pki.root.path(), "n3", &addr, Some(&n1));

    let deadline = Instant::now() + Duration::from_secs(15);
    while registered(&view) != ["n1"] {
        assert!(
            Instant::now() < deadline,
            "n1 never registered: {:?}\n{}",
            registered(&view),
            good.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    good.wait_log("node registered");
    other_ca.wait_log("UnknownCA");
    plaintext.wait_log("registration stream ended");
    borrowed.wait_log("role node needs a certificate for n3.node.ate");

    // Straight at the registry: another node's name under n1's certificate, no
    // certificate at all, and a node watching.
    let status = register_as(dial(&n1, &addr, &PeerIdentity::Control).await, "n3").await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status}");
    let ca = std::fs::read(pki.dir("ca").join("trust.crt")).unwrap();
    let anonymous = Endpoint::from_shared(ate_tls::connector_uri(&addr))
        .unwrap()
        .connect_with_connector(
            TlsConnector::new(
                ate_tls::client_config_for_ca(&ca).unwrap(),
                &PeerIdentity::Control,
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let status = register_as(anonymous, "n4").await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status}");
    let status = RegistryClient::new(dial(&n1, &addr, &PeerIdentity::Control).await)
        .watch(pb::WatchRequest {
            types: vec![NodeRegistration::TYPE.into()],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status}");

    // Nothing but n1 ever showed up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(registered(&view), ["n1"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_router_cannot_drive_a_node() {
    let pki = Pki::new();
    let (ctl, n1, router) = pki.cluster();
    let (_control, addr) = control(pki.root.path(), &ctl);
    let node = Node::start(pki.root.path(), "n1", &addr, Some(&n1));
    let service = node.service.clone().expect("the node printed its address");
    let me = PeerIdentity::node("n1").unwrap();

    let mut as_router = NodeClient::new(dial(&router, &service, &me).await);
    let status = as_router.run(pb::RunRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status}");
    let status = as_router
        .stop(pb::StopRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status}");

    // The control plane gets past the check (to the request's own faults).
    let status = NodeClient::new(dial(&ctl, &service, &me).await)
        .run(pb::RunRequest::default())
        .await
        .unwrap_err();
    assert_ne!(status.code(), Code::PermissionDenied, "{status}");

    // Without a certificate there is no connection to a node at all: the handshake is
    // refused (TLS 1.3 tells the client on its first call, by an alert or a closed
    // connection, whichever it reads first), and no call reaches the service.
    let ca = std::fs::read(n1.join("ca.crt")).unwrap();
    let connector = TlsConnector::new(ate_tls::client_config_for_ca(&ca).unwrap(), &me).unwrap();
    if let Ok(channel) = Endpoint::from_shared(ate_tls::connector_uri(&service))
        .unwrap()
        .connect_with_connector(connector)
        .await
    {
        let status = NodeClient::new(channel)
            .run(pb::RunRequest::default())
            .await
            .unwrap_err();
        assert!(
            matches!(
                status.code(),
                Code::Unavailable | Code::Unknown | Code::Cancelled
            ),
            "{}",
            ate_tls::error_chain(&status)
        );
    }
}

/// `ate ARGS` against the TLS control API at `endpoint`, trusting `ca`, as `token`.
fn cli(endpoint: &str, ca: &Path, token: &str, args: &[&str]) -> std::process::Output {
    Command::new(ATE)
        .args(args)
        .env("ATE_ENDPOINT", endpoint)
        .env("ATE_CA_CERT", ca)
        .env("ATE_TOKEN", token)
        .env("ATE_CONFIG", ca.with_file_name("no-config.json"))
        .output()
        .unwrap()
}

fn cli_ok(endpoint: &str, ca: &Path, token: &str, args: &[&str]) -> String {
    let out = cli(endpoint, ca, token, args);
    assert!(
        out.status.success(),
        "ate {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_over_tls_serves_actor_traffic_with_tokens() {
    let pki = Pki::new();
    let (ctl, n1, router_tls) = pki.cluster();
    let (control_up, addr) = control(pki.root.path(), &ctl);
    let endpoint = control_up.endpoint.clone();
    let token = control_up.admin_token();
    let ca = ctl.join("ca.crt");
    let _node = Node::start(pki.root.path(), "n1", &addr, Some(&n1));
    // A router of its own with a certificate and no token: the control plane takes its
    // certificate for its resumes. Its own traffic to team-a needs tokens.
    let router = Up::serve(
        &pki.dir("router-data"),
        &[
            "--roles",
            "router",
            "--control",
            &addr,
            "--tls-dir",
            &router_tls.display().to_string(),
            "--require-token",
            "team-a",
            "--keys-refresh",
            "1s",
        ],
    );

    // The CLI refuses an https endpoint it cannot verify, and one signed by another CA.
    let out = cli(&endpoint, Path::new(""), &token, &["get", "atespaces"]);
    assert!(!out.status.success());
    pki.admin(&["init-ca", "--dir", &pki.path("other-ca")]);
    let out = cli(
        &endpoint,
        &pki.dir("other-ca").join("trust.crt"),
        &token,
        &["get", "atespaces"],
    );
    assert!(!out.status.success(), "a foreign CA was trusted");

    let dir = pki.dir("work");
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = common::counter_manifest(&dir, 2);
    cli_ok(&endpoint, &ca, &token, &["apply", "-f", &manifest]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cli_ok(&endpoint, &ca, &token, &["get", "workers", "-A"]).contains("n1") {
        assert!(Instant::now() < deadline, "no worker on n1");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cli_ok(
        &endpoint,
        &ca,
        &token,
        &[
            "create",
            "actor",
            "c1",
            "-t",
            "demo/counter",
            "-a",
            "team-a",
        ],
    );
    let editor = cli_ok(
        &endpoint,
        &ca,
        &token,
        &[
            "admin",
            "create-token",
            "--subject",
            "web",
            "--atespaces",
            "team-a",
            "--role",
            "editor",
        ],
    );
    let viewer = cli_ok(
        &endpoint,
        &ca,
        &token,
        &[
            "admin",
            "create-token",
            "--subject",
            "peek",
            "--atespaces",
            "team-a",
            "--role",
            "viewer",
        ],
    );

    let path = "/a/team-a/c1/";
    assert_eq!(http_get(&router.router, path, None).0, 401);
    assert_eq!(http_get(&router.router, path, Some(viewer.trim())).0, 403);
    let (status, body) = http_get(&router.router, path, Some(editor.trim()));
    assert_eq!(status, 200, "{body}");
    let (status, again) = http_get(&router.router, path, Some(editor.trim()));
    assert_eq!(status, 200, "{again}");
    assert_ne!(body, again, "the counter counts");

    // The router resumed c1 with its certificate, and the trail says so.
    let trail = cli_ok(
        &endpoint,
        &ca,
        &token,
        &[
            "get",
            "auditevents",
            "--field-selector",
            "method=ResumeActor,result=ok",
        ],
    );
    assert!(trail.contains("component:router"), "{trail}");

    // The router's certificate reads and resumes actors, and does nothing else.
    let mut as_router = ControlClient::new(dial(&router_tls, &addr, &PeerIdentity::Control).await);
    let c1 = || {
        Some(api::ActorRef {
            atespace: "team-a".into(),
            name: "c1".into(),
        })
    };
    as_router
        .get_actor(api::GetActorRequest { actor_ref: c1() })
        .await
        .unwrap();
    as_router
        .resume_actor(api::ResumeActorRequest {
            actor_ref: c1(),
            ..Default::default()
        })
        .await
        .unwrap();
    let refused = [
        as_router
            .create_actor(api::CreateActorRequest {
                actor_ref: Some(api::ActorRef {
                    atespace: "team-a".into(),
                    name: "planted".into(),
                }),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        as_router
            .suspend_actor(api::SuspendActorRequest { actor_ref: c1() })
            .await
            .map(|_| ()),
        as_router
            .pause_actor(api::PauseActorRequest { actor_ref: c1() })
            .await
            .map(|_| ()),
        as_router
            .delete_actor(api::DeleteActorRequest { actor_ref: c1() })
            .await
            .map(|_| ()),
        as_router
            .get_actor_logs(api::GetActorLogsRequest {
                actor_ref: c1(),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        as_router
            .list_actors(api::ListActorsRequest {
                atespace: "team-a".into(),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        as_router
            .resume_actor(api::ResumeActorRequest {
                actor_ref: Some(api::ActorRef {
                    atespace: "ate-golden".into(),
                    name: "demo-counter".into(),
                }),
                ..Default::default()
            })
            .await
            .map(|_| ()),
    ];
    for (i, result) in refused.into_iter().enumerate() {
        let status = result.expect_err("a router certificate changed or read more than actors");
        assert_eq!(status.code(), Code::PermissionDenied, "call {i}: {status}");
    }
    let status = cli_ok(
        &endpoint,
        &ca,
        &token,
        &["get", "actor", "c1", "-a", "team-a"],
    );
    assert!(status.contains("c1"), "{status}");

    // A revoked token reaches the router with its next key refresh.
    cli_ok(
        &endpoint,
        &ca,
        &token,
        &["admin", "revoke-token", editor.trim()],
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while http_get(&router.router, path, Some(editor.trim())).0 != 401 {
        assert!(
            Instant::now() < deadline,
            "the router still takes a revoked token"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
