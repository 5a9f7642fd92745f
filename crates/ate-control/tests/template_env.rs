//! Template `env` values through the Control service with tokens: an admin of every
//! atespace reads them; a viewer, and an admin of one atespace, read the names with the
//! values redacted, from GetActorTemplate and ListActorTemplates alike.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use ate_control::{Authenticator, ControlService, mint_token};
use ate_proto::ateapi as pb;
use ate_proto::ateapi::control_server::Control;
use ate_store::Store;
use ate_store_sqlite::SqliteStore;
use tonic::Request;

const SECRET: &str = "sk-live-0123456789";
const REDACTED: &str = "<redacted>";

async fn token(store: &Arc<dyn Store>, subject: &str, atespaces: &[&str], role: &str) -> String {
    let request = pb::CreateTokenRequest {
        subject: subject.into(),
        atespaces: atespaces.iter().map(|a| a.to_string()).collect(),
        role: role.into(),
        ttl_seconds: 3600,
    };
    mint_token(store, &request).await.unwrap().1.token
}

fn as_caller<T>(token: &str, message: T) -> Request<T> {
    let mut r = Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// The `env` of the template `demo/agent` as the holder of `token` reads it, from a get and
/// from a listing.
async fn env_seen(svc: &ControlService, token: &str) -> [Vec<(String, String)>; 2] {
    let pairs = |t: &pb::ActorTemplate| -> Vec<(String, String)> {
        t.spec
            .as_ref()
            .unwrap()
            .env
            .iter()
            .map(|e| (e.name.clone(), e.value.clone()))
            .collect()
    };
    let got = svc
        .get_actor_template(as_caller(
            token,
            pb::GetActorTemplateRequest {
                namespace: "demo".into(),
                name: "agent".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let listed = svc
        .list_actor_templates(as_caller(
            token,
            pb::ListActorTemplatesRequest {
                namespace: "demo".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.templates.len(), 1);
    [pairs(&got), pairs(&listed.templates[0])]
}

#[tokio::test]
async fn env_values_are_for_admins_of_every_atespace() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("ate.db")).unwrap());
    let auth = Authenticator::start(store.clone()).await.unwrap();
    let svc = ControlService::new(store.clone()).with_auth(auth);

    let admin_all = token(&store, "root", &["*"], "admin").await;
    let admin_one = token(&store, "team-lead", &["team-a"], "admin").await;
    let viewer = token(&store, "watcher", &["team-a"], "viewer").await;

    let template = pb::ActorTemplate {
        namespace: "demo".into(),
        name: "agent".into(),
        spec: Some(pb::ActorTemplateSpec {
            sandbox_class: "wasm".into(),
            module: "/opt/agent.wasm".into(),
            env: vec![
                pb::EnvVar {
                    name: "API_KEY".into(),
                    value: SECRET.into(),
                },
                pb::EnvVar {
                    name: "MODE".into(),
                    value: "fast".into(),
                },
            ],
            ..Default::default()
        }),
        ..Default::default()
    };
    svc.apply_actor_template(as_caller(
        &admin_all,
        pb::ApplyActorTemplateRequest {
            template: Some(template),
        },
    ))
    .await
    .unwrap();

    let clear = vec![
        ("API_KEY".to_string(), SECRET.to_string()),
        ("MODE".to_string(), "fast".to_string()),
    ];
    let redacted = vec![
        ("API_KEY".to_string(), REDACTED.to_string()),
        ("MODE".to_string(), REDACTED.to_string()),
    ];
    assert_eq!(env_seen(&svc, &admin_all).await, [clear.clone(), clear]);
    for (who, token) in [("viewer", &viewer), ("admin of team-a", &admin_one)] {
        assert_eq!(
            env_seen(&svc, token).await,
            [redacted.clone(), redacted.clone()],
            "{who}"
        );
    }
}
