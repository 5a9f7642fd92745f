//! Who is calling and what they may do. Every Control and Admin call names its caller: a
//! bearer token (a JWT from [`ate_auth`], verified against the store's signing keys) or, over
//! mutual TLS, an ate component (a router resuming actors for its traffic). Handlers then
//! authorize the caller for the atespace and access the call needs, and mutating calls
//! leave an [`audit`] event whatever their outcome.

pub mod audit;
pub mod keyring;
pub mod revocation;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use ate_auth::{Access, Claims, Scope, SharedVerifier, TokenError, Verifier};
use ate_model::Kind;
use ate_store::{Store, WatchEvent};
use tonic::{Request, Status};

pub use keyring::KeyringError;

/// The caller of one call.
#[derive(Debug, Clone)]
pub enum Caller {
    /// No authentication configured (in-process use and tests of the service alone).
    Unrestricted,
    /// A verified bearer token.
    Token(Claims),
    /// An ate component identified by its client certificate (`router`, `control`): it may
    /// make the calls in [`COMPONENT_CALLS`] in the users' atespaces, nothing else.
    Component(&'static str),
}

impl Caller {
    pub fn subject(&self) -> String {
        match self {
            Caller::Unrestricted => "unrestricted".into(),
            Caller::Token(c) => c.sub.clone(),
            Caller::Component(c) => format!("component:{c}"),
        }
    }

    pub fn role(&self) -> String {
        match self {
            Caller::Token(c) => c.role.to_string(),
            _ => String::new(),
        }
    }

    /// The atespaces a listing may show: `None` for all.
    pub fn visible_atespaces(&self) -> Option<Vec<String>> {
        match self {
            Caller::Token(c) if !c.covers_all() => Some(c.atespaces.clone()),
            _ => None,
        }
    }

    /// Whether this caller may have `access` in `scope`; `PermissionDenied` saying why not.
    /// A component's certificate stands for no access by itself: only for the calls
    /// [`Caller::admits`] names.
    pub fn authorize(&self, scope: Scope<'_>, access: Access) -> Result<(), Status> {
        match self {
            Caller::Unrestricted => Ok(()),
            Caller::Token(claims) => ate_auth::authorize(claims, scope, access)
                .map_err(|denied| Status::permission_denied(denied.to_string())),
            Caller::Component(name) => Err(Status::permission_denied(format!(
                "component {name} may not {access} {}",
                describe(scope)
            ))),
        }
    }

    /// Whether this caller may make the call `method`, which needs `access` in `scope`.
    /// Tokens go by their role and atespaces; a component certificate by
    /// [`COMPONENT_CALLS`], in the users' atespaces only.
    pub fn admits(&self, method: &str, scope: Scope<'_>, access: Access) -> Result<(), Status> {
        match (self, scope) {
            (Caller::Component(name), Scope::Atespace(ns))
                if COMPONENT_CALLS.contains(&method) && !is_reserved(ns) =>
            {
                tracing::trace!(component = %name, %method, atespace = %ns, "component call admitted");
                Ok(())
            }
            (Caller::Component(name), _) => Err(Status::permission_denied(format!(
                "component {name} may not call {method} {}: a component certificate stands only \
                 for reading and resuming actors in the users' atespaces",
                describe(scope)
            ))),
            _ => self.authorize(scope, access),
        }
    }
}

/// The calls a component certificate (router, replica) may make: a router reads and resumes
/// actors for the traffic it carries, and nothing else; creating, changing, deleting actors
/// and reading their logs takes a token.
pub const COMPONENT_CALLS: [&str; 2] = ["GetActor", "ResumeActor"];

/// Whether `atespace` is one the system owns (golden actors).
pub fn is_reserved(atespace: &str) -> bool {
    atespace.starts_with(ate_model::names::RESERVED_PREFIX)
}

fn describe(scope: Scope<'_>) -> String {
    match scope {
        Scope::Atespace(ns) => format!("in atespace {ns}"),
        Scope::Cluster => "cluster-wide".into(),
    }
}

/// Checks bearer tokens against the store's signing keys and revoked tokens, kept current by
/// store watches.
#[derive(Clone)]
pub struct Authenticator {
    store: Arc<dyn Store>,
    keys: SharedVerifier,
    /// When a token naming an unknown key last made this replica reread the keys.
    unknown_key_reload: Arc<Mutex<Option<Instant>>>,
    reloads: Arc<AtomicU64>,
}

/// Least time between rereads of the keys for tokens naming a key not loaded: anyone can
/// send such tokens, and each reread costs the store two listings.
pub const UNKNOWN_KEY_RELOAD_EVERY: Duration = Duration::from_secs(1);
/// How often the keys and revocations are reread whatever the watches say, so that a
/// missed store notification cannot leave a revoked token accepted for long.
pub const REREAD_EVERY: Duration = Duration::from_secs(30);

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

/// The scheme of the `authorization` metadata value.
const BEARER: &str = "bearer ";

impl Authenticator {
    /// Makes sure a signing key exists, loads the keys and revocations and follows their
    /// changes (a rotation or revocation on another replica is seen here within one store
    /// notification).
    pub async fn start(store: Arc<dyn Store>) -> Result<Self, KeyringError> {
        keyring::active(&store).await?;
        let auth = Self {
            store,
            keys: SharedVerifier::default(),
            unknown_key_reload: Arc::default(),
            reloads: Arc::default(),
        };
        for kind in [Kind::SigningKey, Kind::RevokedToken] {
            let mut watch = auth.store.watch(kind).await?;
            let follower = auth.clone();
            tokio::spawn(async move {
                while let Some(event) = watch.recv().await {
                    if matches!(event, WatchEvent::Resync) {
                        tracing::debug!(%kind, "token state watch resynced");
                    }
                    if let Err(e) = follower.reload().await {
                        tracing::warn!(error = %e, "cannot reload signing keys and revocations");
                    }
                }
            });
        }
        auth.reload().await?;
        // Holds the store weakly: the loop ends when the store is dropped.
        let weak = (
            Arc::downgrade(&auth.store),
            auth.keys.clone(),
            Arc::downgrade(&auth.reloads),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REREAD_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let (Some(store), Some(reloads)) = (weak.0.upgrade(), weak.2.upgrade()) else {
                    return;
                };
                let auth = Self {
                    store,
                    keys: weak.1.clone(),
                    unknown_key_reload: Arc::default(),
                    reloads,
                };
                if let Err(e) = auth.reload().await {
                    tracing::warn!(error = %e, "cannot reread signing keys and revocations");
                }
            }
        });
        Ok(auth)
    }

    /// How many times the keys and revocations were read from the store.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// The verification keys, for in-process routers.
    pub fn verifier(&self) -> SharedVerifier {
        self.keys.clone()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Rereads the stored keys and revoked tokens.
    pub async fn reload(&self) -> Result<(), KeyringError> {
        self.reloads.fetch_add(1, Ordering::Relaxed);
        let keys = keyring::verification_keys(&self.store).await?;
        let revoked = revocation::revoked_jtis(&self.store).await?;
        self.keys
            .replace(Verifier::new(keys.into_iter().map(|(k, _)| k)).with_revoked(revoked));
        Ok(())
    }

    /// Verifies a token, rereading the keys if it names one not loaded yet (a key rotated
    /// in a moment ago), at most once per [`UNKNOWN_KEY_RELOAD_EVERY`].
    pub async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        match self.keys.verify(token, SystemTime::now()) {
            Err(unknown @ TokenError::UnknownKey { .. }) => {
                let due = {
                    let mut last = self
                        .unknown_key_reload
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    let due = last.is_none_or(|at| at.elapsed() >= UNKNOWN_KEY_RELOAD_EVERY);
                    if due {
                        *last = Some(Instant::now());
                    }
                    due
                };
                if !due {
                    return Err(unknown);
                }
                if let Err(e) = self.reload().await {
                    tracing::warn!(error = %e, "cannot reload signing keys");
                }
                self.keys.verify(token, SystemTime::now())
            }
            other => other,
        }
    }

    /// The caller of `request`: its bearer token, else its client certificate's component
    /// identity; `Unauthenticated` when it has neither or the token does not verify.
    pub async fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        if let Some(value) = request.metadata().get("authorization") {
            let value = value
                .to_str()
                .map_err(|_| Status::unauthenticated("authorization: not valid text"))?;
            let token = value
                .get(..BEARER.len())
                .filter(|scheme| scheme.eq_ignore_ascii_case(BEARER))
                .map(|_| value[BEARER.len()..].trim())
                .ok_or_else(|| Status::unauthenticated("authorization: expected a bearer token"))?;
            return self
                .verify(token)
                .await
                .map(Caller::Token)
                .map_err(|e| Status::unauthenticated(format!("invalid bearer token: {e}")));
        }
        if let Some(component) = component_of(request) {
            return Ok(Caller::Component(component));
        }
        Err(Status::unauthenticated(
            "missing bearer token: pass --token or ATE_TOKEN, or use the CLI config `ate up` writes",
        ))
    }
}

/// The ate component a request's verified client certificate names, if any: routers
/// resume actors for their traffic, replicas may call each other. A node has no business
/// with the control API, so its certificate stands for nothing here.
fn component_of<T>(request: &Request<T>) -> Option<&'static str> {
    match ate_tls::peer_identity(request)? {
        ate_tls::PeerIdentity::Router => Some("router"),
        ate_tls::PeerIdentity::Control => Some("control"),
        ate_tls::PeerIdentity::Node(_) => None,
    }
}
