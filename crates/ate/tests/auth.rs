//! Authentication and authorization of the control API through a real `ate up`: a matrix of
//! tokens x atespaces x operations asserting allowed or denied, scoped listings, expired,
//! tampered and foreign tokens, minting limits, key rotation and the audit trail.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, SystemTime};

use ate_auth::{Claims, Role, SigningKey};
use ate_proto::ateapi as pb;
use ate_proto::ateapi::admin_client::AdminClient;
use ate_proto::ateapi::control_client::ControlClient;
use ate_proto::bearer::Bearer;
use common::{Up, http_get};
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

type Control = ControlClient<InterceptedService<Channel, Bearer>>;
type Admin = AdminClient<InterceptedService<Channel, Bearer>>;

async fn clients(endpoint: &str, token: &str) -> (Control, Admin) {
    let channel = Channel::from_shared(endpoint.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let bearer = Bearer::new(Some(token)).unwrap();
    (
        ControlClient::with_interceptor(channel.clone(), bearer.clone()),
        AdminClient::with_interceptor(channel, bearer),
    )
}

fn aref(ns: &str, name: &str) -> Option<pb::ActorRef> {
    Some(pb::ActorRef {
        atespace: ns.into(),
        name: name.into(),
    })
}

async fn mint(
    admin: &mut Admin,
    subject: &str,
    atespaces: &[&str],
    role: &str,
    ttl: i64,
) -> String {
    admin
        .create_token(pb::CreateTokenRequest {
            subject: subject.into(),
            atespaces: atespaces.iter().map(|a| a.to_string()).collect(),
            role: role.into(),
            ttl_seconds: ttl,
        })
        .await
        .unwrap()
        .into_inner()
        .token
}

fn code<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Code {
    match r {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

/// Runs one operation in `ns` as `c`; the code it got.
async fn op(c: &mut Control, name: &str, ns: &str, tag: &str) -> Code {
    let actor = format!("{ns}-actor");
    match name {
        "get" => code(
            c.get_actor(pb::GetActorRequest {
                actor_ref: aref(ns, &actor),
            })
            .await,
        ),
        "list" => code(
            c.list_actors(pb::ListActorsRequest {
                atespace: ns.into(),
                ..Default::default()
            })
            .await,
        ),
        "logs" => code(
            c.get_actor_logs(pb::GetActorLogsRequest {
                actor_ref: aref(ns, &actor),
                follow: false,
            })
            .await,
        ),
        "create" => code(
            c.create_actor(pb::CreateActorRequest {
                actor_ref: aref(ns, &format!("new-{tag}")),
                actor_template_namespace: "demo".into(),
                actor_template_name: "counter".into(),
                worker_selector: None,
            })
            .await,
        ),
        "update" => code(
            c.update_actor(pb::UpdateActorRequest {
                actor_ref: aref(ns, &actor),
                worker_selector: None,
            })
            .await,
        ),
        "resume" => code(
            c.resume_actor(pb::ResumeActorRequest {
                actor_ref: aref(ns, &actor),
                boot: false,
            })
            .await,
        ),
        "suspend" => code(
            c.suspend_actor(pb::SuspendActorRequest {
                actor_ref: aref(ns, &actor),
            })
            .await,
        ),
        "delete" => code(
            c.delete_actor(pb::DeleteActorRequest {
                actor_ref: aref(ns, &format!("new-{tag}")),
            })
            .await,
        ),
        // Creating an existing atespace: AlreadyExists when allowed.
        "create-atespace" => code(
            c.create_atespace(pb::CreateAtespaceRequest { name: ns.into() })
                .await,
        ),
        "get-atespace" => code(
            c.get_atespace(pb::GetAtespaceRequest { name: ns.into() })
                .await,
        ),
        other => panic!("unknown op {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_by_atespaces_by_operations() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    let (mut root, mut root_admin) = clients(&up.endpoint, &up.admin_token()).await;
    for ns in ["team-a", "team-b"] {
        root.create_atespace(pb::CreateAtespaceRequest { name: ns.into() })
            .await
            .unwrap();
        root.create_actor(pb::CreateActorRequest {
            actor_ref: aref(ns, &format!("{ns}-actor")),
            actor_template_namespace: "demo".into(),
            actor_template_name: "counter".into(),
            worker_selector: None,
        })
        .await
        .unwrap();
    }

    // (subject, atespaces, role)
    let principals = [
        ("viewer-a", vec!["team-a"], Role::Viewer),
        ("editor-a", vec!["team-a"], Role::Editor),
        ("admin-a", vec!["team-a"], Role::Admin),
        ("editor-b", vec!["team-b"], Role::Editor),
        ("editor-ab", vec!["team-a", "team-b"], Role::Editor),
        ("admin-all", vec!["*"], Role::Admin),
    ];
    // (operation, role it needs)
    let operations = [
        ("get", Role::Viewer),
        ("list", Role::Viewer),
        ("logs", Role::Viewer),
        ("get-atespace", Role::Viewer),
        ("create", Role::Editor),
        ("update", Role::Editor),
        ("resume", Role::Editor),
        ("suspend", Role::Editor),
        ("delete", Role::Editor),
        ("create-atespace", Role::Admin),
    ];
    for (subject, atespaces, role) in &principals {
        let token = mint(&mut root_admin, subject, atespaces, &role.to_string(), 600).await;
        let (mut c, mut a) = clients(&up.endpoint, &token).await;
        for ns in ["team-a", "team-b"] {
            let covered = atespaces.iter().any(|a| *a == "*" || *a == ns);
            for (name, needs) in operations {
                let got = op(&mut c, name, ns, subject).await;
                let allowed = covered && role >= &needs;
                if allowed {
                    assert!(
                        !matches!(got, Code::PermissionDenied | Code::Unauthenticated),
                        "{subject} {name} in {ns}: allowed, got {got:?}"
                    );
                } else {
                    assert_eq!(got, Code::PermissionDenied, "{subject} {name} in {ns}");
                }
            }
        }

        // Cluster-wide: templates and pools readable by all, changed by admins of all.
        let everything = atespaces.contains(&"*") && *role == Role::Admin;
        let listed = c
            .list_actor_templates(pb::ListActorTemplatesRequest::default())
            .await;
        assert_eq!(code(listed), Code::Ok, "{subject} lists templates");
        let template = c
            .get_actor_template(pb::GetActorTemplateRequest {
                namespace: "demo".into(),
                name: "counter".into(),
            })
            .await
            .unwrap()
            .into_inner();
        let cluster_ops = [
            code(
                c.apply_actor_template(pb::ApplyActorTemplateRequest {
                    template: Some(template),
                })
                .await,
            ),
            code(c.list_nodes(pb::ListNodesRequest {}).await),
            code(c.list_workers(pb::ListWorkersRequest::default()).await),
            code(
                c.drain_node(pb::DrainNodeRequest {
                    name: "no-such-node".into(),
                })
                .await,
            ),
            code(
                a.rotate_signing_key(pb::RotateSigningKeyRequest::default())
                    .await,
            ),
        ];
        for (i, got) in cluster_ops.into_iter().enumerate() {
            if everything {
                assert!(
                    got != Code::PermissionDenied,
                    "{subject} cluster op {i}: {got:?}"
                );
            } else {
                assert_eq!(got, Code::PermissionDenied, "{subject} cluster op {i}");
            }
        }

        // Listings across atespaces show only what the token covers.
        let all = c
            .list_actors(pb::ListActorsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .actors;
        assert!(!all.is_empty(), "{subject} sees its actors");
        for actor in &all {
            assert!(
                atespaces.iter().any(|a| *a == "*" || *a == actor.atespace),
                "{subject} sees {}/{}",
                actor.atespace,
                actor.actor_id
            );
        }
        let spaces: Vec<String> = c
            .list_atespaces(pb::ListAtespacesRequest {})
            .await
            .unwrap()
            .into_inner()
            .atespaces
            .into_iter()
            .map(|a| a.name)
            .collect();
        if !atespaces.contains(&"*") {
            let mut want: Vec<String> = atespaces.iter().map(|a| a.to_string()).collect();
            want.sort();
            let mut got = spaces.clone();
            got.sort();
            assert_eq!(got, want, "{subject} lists atespaces");
        }

        // The audit trail: admins only, scoped admins see their atespaces' events.
        let audit = a
            .list_audit_events(pb::ListAuditEventsRequest::default())
            .await;
        match role {
            Role::Admin => {
                let events = audit.unwrap().into_inner().events;
                assert!(!events.is_empty(), "{subject} reads the audit trail");
                if !everything {
                    assert!(
                        events
                            .iter()
                            .all(|e| atespaces.contains(&e.atespace.as_str()))
                    );
                }
            }
            _ => assert_eq!(
                code(audit),
                Code::PermissionDenied,
                "{subject} reads the audit trail"
            ),
        }
    }

    // Every refusal above left an audit event naming who, what, where and the outcome.
    let denied = root_admin
        .list_audit_events(pb::ListAuditEventsRequest {
            field_selector: "subject=editor-b,result=denied,method=CreateActor".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0].atespace, "team-a");
    assert_eq!(denied[0].target, "team-a/new-editor-b");
    assert_eq!(denied[0].code, "PermissionDenied");
    let created = root_admin
        .list_audit_events(pb::ListAuditEventsRequest {
            field_selector: "subject=editor-a,result=ok,method=CreateActor".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(created.len(), 1, "{created:?}");
    assert!(created[0].time_unix_ms > 0);
    // Reads are not audited.
    let reads = root_admin
        .list_audit_events(pb::ListAuditEventsRequest {
            field_selector: "method=GetActor".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert!(reads.is_empty(), "{reads:?}");

    // The CLI shows the trail to the admin `ate up` made.
    let out = up.ok(&["get", "auditevents", "--field-selector", "subject=admin-a"]);
    assert!(out.contains("CreateAtespace"), "{out}");
    up.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tampered_foreign_and_missing_tokens_are_unauthenticated() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    let (_, mut root_admin) = clients(&up.endpoint, &up.admin_token()).await;
    let viewer = mint(&mut root_admin, "v", &["team-a"], "viewer", 600).await;

    // Tampered: the payload says admin of everything, the signature is the viewer's.
    let parts: Vec<&str> = viewer.split('.').collect();
    let forged_claims = Claims::new(
        "v",
        &["*".to_string()],
        Role::Admin,
        Duration::from_secs(600),
        SystemTime::now(),
    )
    .unwrap();
    use base64::Engine as _;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&forged_claims).unwrap());
    let tampered = format!("{}.{payload}.{}", parts[0], parts[2]);
    // Foreign: a well-formed token from a key this control plane never had.
    let foreign = SigningKey::generate(0)
        .unwrap()
        .sign(&forged_claims)
        .unwrap();
    let short = mint(&mut root_admin, "short", &["team-a"], "viewer", 1).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;

    for (what, token) in [
        ("expired", short.as_str()),
        ("tampered", tampered.as_str()),
        ("foreign", foreign.as_str()),
        ("garbage", "garbage"),
        ("missing", ""),
    ] {
        let (mut c, _) = clients(&up.endpoint, token).await;
        let err = c
            .list_atespaces(pb::ListAtespacesRequest {})
            .await
            .expect_err(what);
        assert_eq!(err.code(), Code::Unauthenticated, "{what}: {err:?}");
        // The CLI says the same.
        let out = up.ate_as(token, &["get", "atespaces"]);
        assert!(!out.status.success(), "{what}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("code = Unauthenticated"),
            "{what}: {stderr}"
        );
    }
    // A refused mutation is audited as anonymous.
    let (mut anon, _) = clients(&up.endpoint, "garbage").await;
    let _ = anon
        .create_atespace(pb::CreateAtespaceRequest {
            name: "team-x".into(),
        })
        .await;
    let events = root_admin
        .list_audit_events(pb::ListAuditEventsRequest {
            field_selector: "subject=anonymous,method=CreateAtespace".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].result, "denied");
    up.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minting_is_bounded_by_the_minter_and_rotation_retires_old_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    let root_token = up.admin_token();
    let (_, mut root_admin) = clients(&up.endpoint, &root_token).await;
    let admin_a = mint(&mut root_admin, "admin-a", &["team-a"], "admin", 600).await;
    let editor_a = mint(&mut root_admin, "editor-a", &["team-a"], "editor", 600).await;
    let (_, mut as_admin_a) = clients(&up.endpoint, &admin_a).await;
    let (_, mut as_editor_a) = clients(&up.endpoint, &editor_a).await;
    let request = |ns: &str, role: &str| pb::CreateTokenRequest {
        subject: "x".into(),
        atespaces: vec![ns.into()],
        role: role.into(),
        ttl_seconds: 60,
    };
    assert_eq!(
        code(as_admin_a.create_token(request("team-a", "viewer")).await),
        Code::Ok
    );
    assert_eq!(
        code(as_admin_a.create_token(request("team-b", "viewer")).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(as_admin_a.create_token(request("*", "viewer")).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(as_editor_a.create_token(request("team-a", "viewer")).await),
        Code::PermissionDenied
    );
    // Bad input names the field.
    let bad = root_admin
        .create_token(request("team-a", "owner"))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("role"), "{bad:?}");
    let bad = root_admin
        .create_token(request("Team A", "viewer"))
        .await
        .unwrap_err();
    assert!(bad.message().contains("atespaces"), "{bad:?}");

    // Rotating keeps issued tokens valid; retiring the old keys ends them.
    let keys_before = root_admin
        .list_verification_keys(pb::ListVerificationKeysRequest {})
        .await
        .unwrap()
        .into_inner()
        .keys;
    assert_eq!(keys_before.len(), 1);
    let rotated = root_admin
        .rotate_signing_key(pb::RotateSigningKeyRequest {
            retire_previous: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(rotated.kid, keys_before[0].kid);
    assert_eq!(
        code(as_editor_a.who_am_i(pb::WhoAmIRequest {}).await),
        Code::Ok
    );
    let fresh = mint(&mut root_admin, "fresh", &["*"], "admin", 600).await;
    let (_, mut as_fresh) = clients(&up.endpoint, &fresh).await;
    let retired = as_fresh
        .rotate_signing_key(pb::RotateSigningKeyRequest {
            retire_previous: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retired.retired.len(), 2, "{retired:?}");
    // Every token signed before is now refused, including the one that retired them.
    for token in [&root_token, &editor_a, &fresh] {
        let (_, mut a) = clients(&up.endpoint, token).await;
        assert_eq!(
            code(a.who_am_i(pb::WhoAmIRequest {}).await),
            Code::Unauthenticated
        );
    }
    up.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ate_up_can_require_tokens_for_one_atespace_s_actor_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::launch(dir.path(), None, &["--require-token", "team-a"], &[]);
    let (_, mut root_admin) = clients(&up.endpoint, &up.admin_token()).await;
    for ns in ["team-a", "team-b"] {
        up.ok(&["create", "atespace", ns]);
        up.ok(&["create", "actor", "c1", "-t", "demo/counter", "-a", ns]);
    }
    let editor_a = mint(&mut root_admin, "web", &["team-a"], "editor", 600).await;
    let editor_b = mint(&mut root_admin, "other", &["team-b"], "editor", 600).await;
    let guarded = "/a/team-a/c1/";
    assert_eq!(http_get(&up.router, guarded, None).0, 401);
    assert_eq!(http_get(&up.router, guarded, Some(&editor_b)).0, 403);
    assert_eq!(
        up.status_of("c1"),
        "SUSPENDED",
        "a refused request resumes nothing"
    );
    let (status, body) = http_get(&up.router, guarded, Some(&editor_a));
    assert_eq!((status, body.trim()), (200, "1"));
    // team-b is not guarded: no token needed.
    let (status, body) = http_get(&up.router, "/a/team-b/c1/", None);
    assert_eq!((status, body.trim()), (200, "1"));

    // A bad --require-token is refused at start, naming the flag.
    let out = std::process::Command::new(common::ATE)
        .args([
            "up",
            "--require-token",
            "Team A",
            "--api-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("other"))
        .env("ATE_CONFIG", dir.path().join("other.json"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--require-token"), "{stderr}");
    up.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ate_up_prunes_audit_events_past_their_retention() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::launch(dir.path(), None, &["--audit-retention", "3s"], &[]);
    up.ok(&["create", "atespace", "team-r"]);
    let query = [
        "get",
        "auditevents",
        "--field-selector",
        "method=CreateAtespace",
    ];
    assert!(up.ok(&query).contains("team-r"), "the event is recorded");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while up.ok(&query).contains("team-r") {
        assert!(
            std::time::Instant::now() < deadline,
            "the event outlived its retention"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    up.stop();
}

/// `ate admin revoke-token TOKEN` as `token`; with `-`, the token to revoke goes on stdin.
fn revoke(up: &Up, token: &str, target: &str, on_stdin: bool) -> std::process::Output {
    use std::io::Write;
    let args = ["admin", "revoke-token", if on_stdin { "-" } else { target }];
    let mut child = up
        .client_as(token, &args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    if on_stdin {
        writeln!(stdin, "{target}").unwrap();
    }
    drop(stdin);
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_refused_by_the_api_and_the_router() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::launch(dir.path(), None, &["--require-token", "team-a"], &[]);
    let (_, mut root_admin) = clients(&up.endpoint, &up.admin_token()).await;
    up.ok(&["create", "atespace", "team-a"]);
    up.create_counter("c1");
    let admin_a = mint(&mut root_admin, "admin-a", &["team-a"], "admin", 600).await;
    let admin_b = mint(&mut root_admin, "admin-b", &["team-b"], "admin", 600).await;
    let editor_a = mint(&mut root_admin, "web", &["team-a"], "editor", 600).await;
    let laptop = mint(&mut root_admin, "laptop", &["team-a"], "viewer", 600).await;
    let guarded = "/a/team-a/c1/";
    assert_eq!(http_get(&up.router, guarded, Some(&editor_a)).0, 200);

    // Only an admin who could have minted it may revoke it; a garbled token is named.
    for (who, code) in [
        (&admin_b, "PermissionDenied"),
        (&laptop, "PermissionDenied"),
    ] {
        let out = revoke(&up, who, &editor_a, false);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            !out.status.success() && stderr.contains(code),
            "{stderr} {stdout}"
        );
    }
    let out = revoke(&up, &admin_a, "not-a-token", false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("InvalidArgument") && stderr.contains("token:"),
        "{stderr}"
    );
    assert_eq!(http_get(&up.router, guarded, Some(&editor_a)).0, 200);

    // Revoked (read from stdin): the router and the API refuse it at once; others still work.
    let out = revoke(&up, &admin_a, &editor_a, true);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("of web revoked"),
        "{stdout}"
    );
    assert_eq!(http_get(&up.router, guarded, Some(&editor_a)).0, 401);
    let (_, mut as_editor) = clients(&up.endpoint, &editor_a).await;
    let refused = as_editor.who_am_i(pb::WhoAmIRequest {}).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(refused.message().contains("revoked"), "{refused:?}");
    assert!(up.ate_as(&admin_a, &["admin", "whoami"]).status.success());
    // Revoking again is no error; a token may revoke itself.
    assert!(revoke(&up, &admin_a, &editor_a, false).status.success());
    assert!(revoke(&up, &laptop, &laptop, false).status.success());
    assert!(!up.ate_as(&laptop, &["admin", "whoami"]).status.success());

    // Routers of their own learn the revocations with the keys.
    let keys = root_admin
        .list_verification_keys(pb::ListVerificationKeysRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(keys.revoked_jtis.len(), 2, "{keys:?}");
    let out = up.ok(&[
        "get",
        "auditevents",
        "--field-selector",
        "method=RevokeToken",
    ]);
    assert_eq!(out.matches("denied").count(), 2, "{out}");
    let ok = out.lines().filter(|l| l.trim_end().ends_with(" ok"));
    assert_eq!(ok.count(), 3, "{out}");
    up.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_actors_change_only_by_an_admin_of_every_atespace() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    let (mut root, mut root_admin) = clients(&up.endpoint, &up.admin_token()).await;
    let golden = || aref("ate-golden", "demo-counter");
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while code(
        root.get_actor(pb::GetActorRequest {
            actor_ref: golden(),
        })
        .await,
    ) != Code::Ok
    {
        assert!(std::time::Instant::now() < deadline, "no golden actor");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let editor_all = mint(&mut root_admin, "editor-all", &["*"], "editor", 600).await;
    let golden_admin = mint(&mut root_admin, "golden", &["ate-golden"], "admin", 600).await;
    for token in [editor_all, golden_admin] {
        let (mut c, _) = clients(&up.endpoint, &token).await;
        assert_eq!(
            code(
                c.get_actor(pb::GetActorRequest {
                    actor_ref: golden()
                })
                .await
            ),
            Code::Ok
        );
        let changes = [
            code(
                c.suspend_actor(pb::SuspendActorRequest {
                    actor_ref: golden(),
                })
                .await,
            ),
            code(
                c.resume_actor(pb::ResumeActorRequest {
                    actor_ref: golden(),
                    boot: false,
                })
                .await,
            ),
            code(
                c.update_actor(pb::UpdateActorRequest {
                    actor_ref: golden(),
                    worker_selector: None,
                })
                .await,
            ),
            code(
                c.delete_actor(pb::DeleteActorRequest {
                    actor_ref: golden(),
                })
                .await,
            ),
            code(
                c.create_actor(pb::CreateActorRequest {
                    actor_ref: aref("ate-golden", "planted"),
                    actor_template_namespace: "demo".into(),
                    actor_template_name: "counter".into(),
                    worker_selector: None,
                })
                .await,
            ),
        ];
        assert_eq!(changes, [Code::PermissionDenied; 5]);
    }
    // An administrator of every atespace may (the resume is no change to a running one).
    assert_eq!(
        code(
            root.resume_actor(pb::ResumeActorRequest {
                actor_ref: golden(),
                boot: false,
            })
            .await
        ),
        Code::Ok
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_refusals_cost_bounded_writes() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    let (_, mut root_admin) = clients(&up.endpoint, &up.admin_token()).await;
    let size = || {
        ["ate.db", "ate.db-wal"]
            .iter()
            .filter_map(|f| std::fs::metadata(dir.path().join(f)).ok())
            .map(|m| m.len())
            .sum::<u64>()
    };
    let before = size();
    let (mut anon, _) = clients(&up.endpoint, "garbage").await;
    for i in 0..10 {
        let status = anon
            .create_actor(pb::CreateActorRequest {
                actor_ref: aref(&"a".repeat(1 << 20), &format!("{i}{}", "é".repeat(1 << 19))),
                actor_template_namespace: "demo".into(),
                actor_template_name: "counter".into(),
                worker_selector: None,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status}");
    }
    let grown = size().saturating_sub(before);
    // Ten events of the requests' size would be 20 MB; the golden bakes write a little.
    assert!(
        grown < 4 << 20,
        "ten refused calls grew the store by {grown} bytes"
    );

    let anonymous = async |admin: &mut Admin| {
        admin
            .list_audit_events(pb::ListAuditEventsRequest {
                field_selector: "subject=anonymous".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .events
    };
    let events = anonymous(&mut root_admin).await;
    assert_eq!(
        events.len(),
        1,
        "one event for the first refusal: {events:?}"
    );
    let e = &events[0];
    assert_eq!(
        (e.atespace.as_str(), e.target.as_str()),
        ("<invalid>", "<invalid>/<invalid>")
    );
    assert!(e.message.len() <= 300, "{}", e.message);
    // The rest of the window is one event with its count.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let events = loop {
        let events = anonymous(&mut root_admin).await;
        if events.len() > 1 {
            break events;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no count of the refusals"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(
        events[0].message.starts_with("9 calls refused in 10 s"),
        "{}",
        events[0].message
    );
    // What the server returns prints.
    let trail = up.ok(&["get", "auditevents", "-o", "wide"]);
    assert!(trail.contains("9 calls refused"), "{trail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_several_atespaces_never_names_another_one() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    let (mut root, mut root_admin) = clients(&up.endpoint, &up.admin_token()).await;
    for ns in ["team-a", "team-b", "team-c"] {
        root.create_atespace(pb::CreateAtespaceRequest { name: ns.into() })
            .await
            .unwrap();
        for i in 0..3 {
            root.create_actor(pb::CreateActorRequest {
                actor_ref: aref(ns, &format!("{ns}-{i}")),
                actor_template_namespace: "demo".into(),
                actor_template_name: "counter".into(),
                worker_selector: None,
            })
            .await
            .unwrap();
        }
    }
    let token = mint(&mut root_admin, "ac", &["team-c", "team-a"], "viewer", 600).await;
    let (mut c, _) = clients(&up.endpoint, &token).await;
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = c
            .list_actors(pb::ListActorsRequest {
                page_size: 2,
                page_token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.actors.into_iter().map(|a| a.actor_id));
        if page.next_page_token.is_empty() {
            break;
        }
        let bytes: Vec<u8> = (0..page.next_page_token.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&page.next_page_token[i..i + 2], 16).unwrap())
            .collect();
        let named = String::from_utf8(bytes).unwrap();
        assert!(!named.contains("team-b"), "a page token names {named}");
        page_token = page.next_page_token;
    }
    assert_eq!(
        seen,
        [
            "team-a-0", "team-a-1", "team-a-2", "team-c-0", "team-c-1", "team-c-2"
        ]
    );
}
