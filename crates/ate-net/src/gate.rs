//! Bearer tokens on actor traffic. An atespace whose actors are not public gets its
//! requests checked at the router, before anything is resumed: the token must verify
//! against the control plane's signing keys and allow changes in the actor's atespace
//! (role editor or admin), since a request may resume the actor. The token is for ate, not
//! for the actor, so it is removed before the request is forwarded.

use std::time::SystemTime;

use ate_auth::{Access, Scope, SharedVerifier};
use ate_model::ActorRef;
use ate_seam::Body;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

use crate::proxy::answer;

/// Which atespaces need a token for actor traffic, and the keys tokens verify against.
#[derive(Debug, Clone)]
pub struct TokenGate {
    atespaces: Vec<String>,
    keys: SharedVerifier,
}

impl TokenGate {
    /// Tokens required for the actors of `atespaces` (`*` for all).
    pub fn new(atespaces: Vec<String>, keys: SharedVerifier) -> Self {
        Self { atespaces, keys }
    }

    fn guards(&self, atespace: &str) -> bool {
        self.atespaces
            .iter()
            .any(|a| a == ate_auth::ALL_ATESPACES || a == atespace)
    }

    /// Lets a request for `actor` through (its token removed), or answers 401 or 403.
    #[allow(clippy::result_large_err)]
    pub(crate) fn admit(
        &self,
        actor: &ActorRef,
        headers: &mut HeaderMap,
    ) -> Result<(), Response<Body>> {
        if !self.guards(&actor.atespace) {
            return Ok(());
        }
        let Some(value) = headers.remove(header::AUTHORIZATION) else {
            return Err(challenge(format!(
                "atespace {} needs a bearer token (Authorization: Bearer <token>)",
                actor.atespace
            )));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.get(..7)
                    .filter(|s| s.eq_ignore_ascii_case("bearer "))
                    .map(|_| v[7..].trim())
            })
            .ok_or_else(|| challenge("authorization: expected a bearer token"))?;
        let claims = self
            .keys
            .verify(token, SystemTime::now())
            .map_err(|e| challenge(format!("invalid bearer token: {e}")))?;
        ate_auth::authorize(&claims, Scope::Atespace(&actor.atespace), Access::Write)
            .map_err(|denied| answer(StatusCode::FORBIDDEN, denied))
    }
}

fn challenge(message: impl std::fmt::Display) -> Response<Body> {
    let mut r = answer(StatusCode::UNAUTHORIZED, message);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"ate\""),
    );
    r
}
