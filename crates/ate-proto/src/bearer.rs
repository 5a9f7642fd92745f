//! Presenting a bearer token on every call of a gRPC client, the one way ate's clients (the
//! CLI, routers resuming actors, benchmarks) authenticate to the control API.

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Adds `authorization: Bearer <token>` to each request; without a token, nothing.
#[derive(Clone, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Bearer")
            .field(&self.0.as_ref().map(|_| "<token>"))
            .finish()
    }
}

/// A token that cannot be sent as a header value.
#[derive(Debug, thiserror::Error)]
#[error("token: not a valid header value (printable ASCII only)")]
pub struct InvalidToken;

impl Bearer {
    pub fn new(token: Option<&str>) -> Result<Self, InvalidToken> {
        match token.map(str::trim).filter(|t| !t.is_empty()) {
            None => Ok(Self(None)),
            Some(t) => format!("Bearer {t}")
                .parse()
                .map(|v| Self(Some(v)))
                .map_err(|_| InvalidToken),
        }
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            request.metadata_mut().insert("authorization", v.clone());
        }
        Ok(request)
    }
}
