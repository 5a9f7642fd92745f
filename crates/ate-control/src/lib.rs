//! The ate control plane: the `ateapi.Control` gRPC service over any [`Store`], plus gRPC
//! health and server reflection. It validates every request uniformly (bad input is
//! `InvalidArgument` naming the field) and maps store outcomes onto the codes of the API
//! contract.

mod actors;
mod admin;
pub mod auth;
mod catalog;
mod drain;
mod errors;
mod fleet;
mod golden;
mod guard;
mod lifecycle;
mod logs;
pub mod metrics;
mod placement;
mod registry;
mod server;
mod service;

use std::sync::Arc;

use ate_model::{Atespace, names::GOLDEN_ATESPACE};
use ate_store::{Store, StoreError};

pub use admin::{AdminService, DEFAULT_TOKEN_TTL, mint as mint_token};
pub use auth::{Authenticator, Caller};
pub use errors::REASON_KEY;
pub use fleet::{Fleet, FleetHandle, FleetReport, NODE_LOST, NODE_READY};
pub use golden::{Golden, GoldenHandle, PHASE_PENDING, PHASE_READY, golden_actor};
pub use lifecycle::{
    CRASH_AT_ENV, ExitHandle, IdleHandle, Lifecycle, LifecycleConfig, LifecycleError,
    PROCESS_EXITED, RecoveryHandle, RecoveryReport,
};
pub use placement::{Action, NodeSlots, plan};
pub use registry::{Registry, RegistryHandle, node_lease};
pub use server::{ServeError, control_routes, serve, serve_incoming, serve_routes};
pub use service::ControlService;

/// Creates the system atespaces (`ate-golden`) if they are missing. Idempotent.
pub async fn ensure_system_atespaces(store: &Arc<dyn Store>) -> Result<(), StoreError> {
    match store
        .create(Atespace {
            name: GOLDEN_ATESPACE.into(),
            version: 0,
        })
        .await
    {
        Ok(_) => {
            tracing::info!(atespace = GOLDEN_ATESPACE, "created system atespace");
            Ok(())
        }
        Err(StoreError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// `N` random bytes in hex: audit keys, actor uids.
pub(crate) fn random_hex<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    if getrandom::fill(&mut bytes).is_err() {
        // The time and a process-wide counter still keep ids apart within this process.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        for (i, b) in bytes.iter_mut().enumerate() {
            let src = if i < 8 {
                n.to_le_bytes()[i]
            } else {
                t.to_le_bytes()[i % 8]
            };
            *b = src;
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new actor's uid (see [`ate_model::Actor::uid`]): 128 random bits.
pub(crate) fn new_actor_uid() -> Option<String> {
    Some(random_hex::<16>())
}
