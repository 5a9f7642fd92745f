//! The `ateapi.Admin` service: minting bearer tokens, rotating the keys that sign them, and
//! reading the audit trail. It shares the Control service's store and authenticator.

use std::time::{Duration, SystemTime};

use ate_auth::{Access, Claims, Role, Scope};
use ate_model::{AuditEvent, Kind};
use ate_proto::ateapi as pb;
use ate_proto::ateapi::admin_server::{Admin, AdminServer};
use ate_proto::convert::audit_event_to_pb;
use ate_store::{ListOptions, MAX_PAGE};
use tonic::{Request, Response, Status};

use crate::ControlService;
use crate::auth::audit::Call;
use crate::auth::{keyring, revocation};
use crate::errors::{self, field_selector};

/// Lifetime of a token minted without one.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The Admin service over a Control service's store and authenticator.
#[derive(Debug, Clone)]
pub struct AdminService {
    control: ControlService,
}

impl AdminService {
    pub fn new(control: ControlService) -> Self {
        Self { control }
    }

    /// The gRPC server for this service.
    pub fn server(self) -> AdminServer<Self> {
        AdminServer::new(self)
    }
}

fn keyring_status(e: keyring::KeyringError) -> Status {
    match e {
        keyring::KeyringError::Store(e) => errors::store(e),
        e => {
            tracing::error!(error = %e, "keyring failure");
            Status::internal(e.to_string())
        }
    }
}

fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Mints a token with the store's active signing key: the claims `request` asks for, checked
/// field by field.
pub async fn mint(
    store: &std::sync::Arc<dyn ate_store::Store>,
    request: &pb::CreateTokenRequest,
) -> Result<(Claims, pb::CreateTokenResponse), Status> {
    let role: Role = request
        .role
        .parse()
        .map_err(|e: ate_auth::AuthError| Status::invalid_argument(format!("role: {e}")))?;
    let ttl = match request.ttl_seconds {
        0 => DEFAULT_TOKEN_TTL,
        s if s < 0 => {
            return Err(Status::invalid_argument(format!(
                "ttl_seconds: must be positive (got {s})"
            )));
        }
        s => Duration::from_secs(s as u64),
    };
    let claims = Claims::new(
        &request.subject,
        &request.atespaces,
        role,
        ttl,
        SystemTime::now(),
    )
    .map_err(|e| Status::invalid_argument(e.to_string()))?;
    let key = keyring::active(store).await.map_err(keyring_status)?;
    let token = key
        .sign(&claims)
        .map_err(|e| Status::internal(e.to_string()))?;
    let reply = pb::CreateTokenResponse {
        token,
        expires_at_unix: unix_secs(claims.expires_at()),
        kid: key.kid().to_string(),
    };
    Ok((claims, reply))
}

/// The atespace an audit event of a token call names: the token's only one, else none.
fn token_atespace(atespaces: &[String]) -> &str {
    match atespaces {
        [one] if one != ate_auth::ALL_ATESPACES => one,
        _ => "",
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn create_token(
        &self,
        r: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let q = r.get_ref();
        let call = Call::new(
            "CreateToken",
            token_atespace(&q.atespaces),
            format!("{} ({}, {})", q.subject, q.role, q.atespaces.join(",")),
        );
        let c = &self.control;
        let caller = c
            .admit_change(&r, &call, Scope::Cluster, Access::Read)
            .await?;
        let result = async {
            let (claims, reply) = mint(&c.store, q).await?;
            if let crate::Caller::Token(issuer) = &caller {
                ate_auth::may_grant(issuer, &claims)
                    .map_err(|d| Status::permission_denied(d.to_string()))?;
            } else if !matches!(caller, crate::Caller::Unrestricted) {
                return Err(Status::permission_denied(
                    "only a token holder with role admin may mint tokens",
                ));
            }
            Ok(reply)
        }
        .await;
        c.audited(&caller, &call, result).await
    }

    async fn rotate_signing_key(
        &self,
        r: Request<pb::RotateSigningKeyRequest>,
    ) -> Result<Response<pb::RotateSigningKeyResponse>, Status> {
        let c = &self.control;
        let retire = r.get_ref().retire_previous;
        let call = Call::cluster(
            "RotateSigningKey",
            if retire { "retire-previous" } else { "" },
        );
        let caller = c
            .admit_change(&r, &call, Scope::Cluster, Access::Admin)
            .await?;
        let result = async {
            let (key, retired) = keyring::rotate(&c.store, retire)
                .await
                .map_err(keyring_status)?;
            if let Some(auth) = c.authenticator()
                && let Err(e) = auth.reload().await
            {
                tracing::warn!(error = %e, "cannot reload signing keys");
            }
            Ok(pb::RotateSigningKeyResponse {
                kid: key.kid().to_string(),
                retired,
            })
        }
        .await;
        c.audited(&caller, &call, result).await
    }

    async fn revoke_token(
        &self,
        r: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        let c = &self.control;
        // Any key the cluster knows may have signed it; expired tokens can be named too.
        let keys = keyring::verification_keys(&c.store)
            .await
            .map_err(keyring_status)?;
        let verifier = ate_auth::Verifier::new(keys.into_iter().map(|(k, _)| k));
        let named = verifier.signed_claims(r.get_ref().token.trim());
        let call = match &named {
            Ok(t) => Call::new(
                "RevokeToken",
                token_atespace(&t.atespaces),
                format!("{} ({})", t.sub, t.jti),
            ),
            Err(_) => Call::cluster("RevokeToken", "(unreadable token)"),
        };
        let caller = c
            .admit_change(&r, &call, Scope::Cluster, Access::Read)
            .await?;
        let result = async {
            let target = named.map_err(|e| Status::invalid_argument(format!("token: {e}")))?;
            match &caller {
                crate::Caller::Unrestricted => {}
                crate::Caller::Token(me) if me.jti == target.jti => {}
                crate::Caller::Token(me) => ate_auth::may_grant(me, &target).map_err(|d| {
                    Status::permission_denied(format!("cannot revoke this token: {d}"))
                })?,
                crate::Caller::Component(name) => {
                    return Err(Status::permission_denied(format!(
                        "component {name} may not revoke tokens"
                    )));
                }
            }
            let record = revocation::revoke(&c.store, &target, &caller.subject())
                .await
                .map_err(errors::store)?;
            if let Some(auth) = c.authenticator()
                && let Err(e) = auth.reload().await
            {
                tracing::warn!(error = %e, "cannot reload revoked tokens");
            }
            Ok(pb::RevokeTokenResponse {
                jti: record.jti,
                subject: record.subject,
                expires_at_unix: (record.expires_ms / 1000) as i64,
            })
        }
        .await;
        c.audited(&caller, &call, result).await
    }

    async fn list_verification_keys(
        &self,
        _r: Request<pb::ListVerificationKeysRequest>,
    ) -> Result<Response<pb::ListVerificationKeysResponse>, Status> {
        let keys = keyring::verification_keys(&self.control.store)
            .await
            .map_err(keyring_status)?;
        let newest = keys.len().saturating_sub(1);
        let revoked_jtis = revocation::revoked_jtis(&self.control.store)
            .await
            .map_err(errors::store)?;
        Ok(Response::new(pb::ListVerificationKeysResponse {
            revoked_jtis,
            keys: keys
                .into_iter()
                .enumerate()
                .map(|(i, (k, created_ms))| pb::VerificationKey {
                    kid: k.kid,
                    public_key: k.public_key,
                    active: i == newest,
                    created_unix_ms: created_ms as i64,
                })
                .collect(),
        }))
    }

    async fn list_audit_events(
        &self,
        r: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let c = &self.control;
        let caller = c
            .admit(&r, "ListAuditEvents", Scope::Cluster, Access::Read)
            .await?;
        let q = r.get_ref();
        let visible = caller.visible_atespaces();
        // An admin of some atespaces reads the events in those.
        match &visible {
            None => caller.authorize(Scope::Cluster, Access::Admin)?,
            Some(v) => {
                for ns in v {
                    caller.authorize(Scope::Atespace(ns), Access::Admin)?;
                }
            }
        }
        if !(0..=MAX_PAGE as i32).contains(&q.limit) {
            return Err(Status::invalid_argument(format!(
                "limit: must be between 0 and {MAX_PAGE} (got {})",
                q.limit
            )));
        }
        let mut selector = field_selector(&q.field_selector, Kind::AuditEvent)?;
        if let Some([only]) = visible.as_deref() {
            selector = selector.and_eq("atespace", only);
        }
        let opts = ListOptions {
            field_selector: selector,
            limit: q.limit as usize,
            continue_token: (!q.continue_token.is_empty()).then(|| q.continue_token.clone()),
            ..Default::default()
        };
        let page = c
            .store
            .list::<AuditEvent>(&opts)
            .await
            .map_err(errors::store)?;
        Ok(Response::new(pb::ListAuditEventsResponse {
            events: page
                .items
                .iter()
                .filter(|e| visible.as_ref().is_none_or(|v| v.contains(&e.atespace)))
                .map(audit_event_to_pb)
                .collect(),
            continue_token: page.continue_token.unwrap_or_default(),
        }))
    }

    async fn who_am_i(
        &self,
        r: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let caller = self
            .control
            .admit(&r, "WhoAmI", Scope::Cluster, Access::Read)
            .await?;
        Ok(Response::new(match caller {
            crate::Caller::Token(c) => pb::WhoAmIResponse {
                subject: c.sub.clone(),
                role: c.role.to_string(),
                atespaces: c.atespaces.clone(),
                expires_at_unix: unix_secs(c.expires_at()),
            },
            other => pb::WhoAmIResponse {
                subject: other.subject(),
                ..Default::default()
            },
        }))
    }
}
