//! Bearer tokens on actor traffic: a router that guards atespace team-a (the harness's)
//! lets in only requests with a token that verifies and allows changes there, checks before
//! resuming anything, and keeps the token from the actor. Other atespaces stay public.
#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
mod common;

use std::time::{Duration, SystemTime};

use ate_auth::{Claims, Role, SharedVerifier, SigningKey, Verifier};
use ate_net::TokenGate;
use ate_testkit::http as client;
use common::*;

fn token(key: &SigningKey, atespaces: &[&str], role: Role, ttl: Duration) -> String {
    let atespaces: Vec<String> = atespaces.iter().map(|a| a.to_string()).collect();
    let claims = Claims::new("alice", &atespaces, role, ttl, SystemTime::now()).unwrap();
    key.sign(&claims).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guarded_atespace_needs_an_editor_token_and_the_actor_never_sees_it() {
    let key = SigningKey::generate(0).unwrap();
    let keys = SharedVerifier::default();
    keys.replace(Verifier::new([key.verification_key()]));
    let other_key = SigningKey::generate(0).unwrap();
    let env = harness()
        .config(|c| c.token_gate = Some(TokenGate::new(vec![ATESPACE.into()], keys)))
        .actor("echo", echo("echo", 0))
        .start()
        .await;
    let url = env.url(&format!("/a/{ATESPACE}/echo/"));
    let send = |auth: Option<String>| {
        let url = url.clone();
        async move {
            let headers: Vec<(&str, String)> =
                auth.into_iter().map(|a| ("authorization", a)).collect();
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            client::send(
                &client::client(),
                request_with(&url, &headers),
                ANSWER_TIMEOUT,
            )
            .await
            .unwrap()
        }
    };
    let bearer = |t: &str| Some(format!("Bearer {t}"));
    let hour = Duration::from_secs(3600);

    let refused = [
        (None, 401, "no token"),
        (Some("Basic eDp5".to_string()), 401, "not a bearer token"),
        (bearer("not.a.token"), 401, "malformed"),
        (
            bearer(&token(&other_key, &[ATESPACE], Role::Editor, hour)),
            401,
            "unknown key",
        ),
        (
            bearer(&token(&key, &[ATESPACE], Role::Viewer, hour)),
            403,
            "viewer",
        ),
        (
            bearer(&token(&key, &["team-b"], Role::Admin, hour)),
            403,
            "other atespace",
        ),
    ];
    for (auth, status, what) in refused {
        let a = send(auth).await;
        assert_eq!(a.status, status, "{what}: {a:?}");
        if status == 401 {
            assert_eq!(
                a.headers
                    .get("www-authenticate")
                    .map(|v| v.to_str().unwrap()),
                Some("Bearer realm=\"ate\""),
                "{what}"
            );
        }
    }
    // Nothing was resumed for the refused requests.
    assert_eq!(env.activator.calls(&actor("echo")), 0);

    // An expired token: signed a second before it ran out.
    let short = token(&key, &[ATESPACE], Role::Editor, Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(send(bearer(&short)).await.status, 401, "expired");

    for (atespaces, role) in [(vec![ATESPACE], Role::Editor), (vec!["*"], Role::Admin)] {
        let a = send(bearer(&token(&key, &atespaces, role, hour))).await;
        assert_eq!(a.status, 200, "{role}: {a:?}");
        let got = Echoed::parse(&a.body);
        assert_eq!(
            got.header("authorization"),
            None,
            "the token reached the actor"
        );
    }
    assert_eq!(env.activator.calls(&actor("echo")), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unguarded_atespaces_stay_public() {
    let keys = SharedVerifier::default();
    let env = harness()
        .config(|c| c.token_gate = Some(TokenGate::new(vec!["team-z".into()], keys)))
        .actor("echo", echo("echo", 0))
        .start()
        .await;
    let a = env.get_path("echo", "/").await;
    assert_eq!(a.status, 200, "{a:?}");
    // A header the actor's own protocol uses passes through untouched.
    let req = request_with(
        &env.url("/a/team-a/echo/"),
        &[("authorization", "Basic eDp5")],
    );
    let a = client::send(&client::client(), req, ANSWER_TIMEOUT)
        .await
        .unwrap();
    let got = Echoed::parse(&a.body);
    assert_eq!(got.header("authorization").as_deref(), Some("Basic eDp5"));
}
