//! The checks every Control and Admin call passes through: authenticate, authorize for the
//! scope and access the call needs, and for mutating calls, audit the outcome.

use ate_auth::{Access, Scope};
use tonic::{Request, Response, Status};

use crate::ControlService;
use crate::auth::audit::{self, Call};
use crate::auth::{Authenticator, Caller};

impl ControlService {
    /// The same service, requiring every call to authenticate with `auth`.
    pub fn with_auth(self, auth: Authenticator) -> Self {
        Self {
            auth: Some(auth),
            ..self
        }
    }

    pub fn authenticator(&self) -> Option<&Authenticator> {
        self.auth.as_ref()
    }

    async fn caller<T>(&self, r: &Request<T>) -> Result<Caller, Status> {
        match &self.auth {
            Some(auth) => auth.caller(r).await,
            None => Ok(Caller::Unrestricted),
        }
    }

    /// Admits a read: the caller, if allowed to call `method` with `access` in `scope`.
    pub(crate) async fn admit<T>(
        &self,
        r: &Request<T>,
        method: &'static str,
        scope: Scope<'_>,
        access: Access,
    ) -> Result<Caller, Status> {
        let caller = self.caller(r).await?;
        caller.admits(method, scope, access)?;
        Ok(caller)
    }

    /// Admits a mutating call, auditing a refusal.
    pub(crate) async fn admit_change<T>(
        &self,
        r: &Request<T>,
        call: &Call,
        scope: Scope<'_>,
        access: Access,
    ) -> Result<Caller, Status> {
        let caller = self.caller(r).await;
        let admitted = caller
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|c| c.admits(call.method, scope, access));
        match admitted {
            Ok(()) => caller,
            Err(status) => {
                match caller.as_ref() {
                    Ok(c) => {
                        let (subject, role) = audit::who(Some(c));
                        audit::record(&self.store, subject, role, call, Err(&status)).await;
                    }
                    // Anyone can send these, as fast as they like: counted per peer.
                    Err(_) => {
                        let peer = r
                            .remote_addr()
                            .map_or_else(|| "an unknown peer".to_string(), |a| a.ip().to_string());
                        self.refusals
                            .record(&self.store, &peer, call, &status)
                            .await;
                    }
                }
                Err(status)
            }
        }
    }

    /// Audits the outcome of an admitted mutating call and passes it on.
    pub(crate) async fn audited<T>(
        &self,
        caller: &Caller,
        call: &Call,
        result: Result<T, Status>,
    ) -> Result<Response<T>, Status> {
        audit::record(
            &self.store,
            caller.subject(),
            caller.role(),
            call,
            result.as_ref().map(|_| ()),
        )
        .await;
        result.map(Response::new)
    }
}
